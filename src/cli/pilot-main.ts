#!/usr/bin/env node
// A command with only the pilot's subcommands (pilot, proxy-status), for processes that run
// just the control plane. Usage errors exit 2 and runtime failures 1, as in `sextant`.
import { Command } from 'commander';
import { runProgram } from './flags.ts';
import { registerPilot } from './pilot.ts';
import { registerProxyStatus } from './proxy-status.ts';

const program = new Command('sextant').showHelpAfterError();
registerPilot(program);
registerProxyStatus(program);
await runProgram(program, process.argv);

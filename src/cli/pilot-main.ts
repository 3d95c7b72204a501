#!/usr/bin/env node
// A command with only the pilot's subcommands (pilot, proxy-status), for processes that run
// just the control plane.
import { Command } from 'commander';
import { registerPilot } from './pilot.ts';
import { registerProxyStatus } from './proxy-status.ts';

const program = new Command('sextant').showHelpAfterError();
registerPilot(program);
registerProxyStatus(program);
try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.stderr.write(`sextant: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

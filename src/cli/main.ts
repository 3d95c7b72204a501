#!/usr/bin/env node
// The sextant command: one CLI for the control plane, the proxy and istioctl-style tools.
// Each subcommand lives in its own file and registers itself on the program.
import { Command } from 'commander';
import { registerPilot } from './pilot.ts';
import { registerProxy } from './proxy.ts';
import { registerValidate } from './validate.ts';
import { registerConfigCommands } from './config.ts';
import { registerProxyStatus } from './proxy-status.ts';
import { registerProxyConfig } from './proxy-config.ts';
import { registerDemo } from './demo.ts';

const program = new Command('sextant')
  .description('Sextant service mesh: an xDS control plane for Istio config, and its sidecar proxy')
  .version('0.1.0')
  .showHelpAfterError();

registerPilot(program);
registerProxy(program);
registerValidate(program);
registerConfigCommands(program);
registerProxyStatus(program);
registerProxyConfig(program);
registerDemo(program);

await program.parseAsync(process.argv);

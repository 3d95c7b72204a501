#!/usr/bin/env node
// The sextant command: one CLI for the control plane, the proxy and istioctl-style tools.
// Each subcommand lives in its own file and registers itself on the program.
import { Command } from 'commander';
import { registerValidate } from './validate.ts';
import { registerDemo } from './demo.ts';
import { registerProxyConfig } from './proxy-config.ts';

const program = new Command('sextant')
  .description('Sextant service mesh: an xDS control plane for Istio config, and its sidecar proxy')
  .version('0.1.0')
  .showHelpAfterError();

registerValidate(program);
registerDemo(program);
registerProxyConfig(program);

await program.parseAsync(process.argv);

// Runs `sextant proxy` in a child process for tests, through the same registerProxy the
// CLI uses (so the tests do not depend on how main.ts wires its subcommands).
import { Command } from 'commander';
import { registerProxy } from '../../../src/cli/proxy.ts';

const program = new Command('sextant').exitOverride();
registerProxy(program);
await program.parseAsync(process.argv);

#!/usr/bin/env node
// Entry point installed as `sextant`. Plain JavaScript so that it runs before any TypeScript
// loads: it turns on Node's compile cache (stripped sources and bytecode are reused, so a
// warm start parses no TypeScript and keeps no TypeScript parser in memory) and gives the
// sidecar its runtime profile.
import module from 'node:module';
import process from 'node:process';
import { setTimeout } from 'node:timers';

/**
 * The sidecar's V8 and allocator settings: a young generation capped at 2 MB semi-spaces
 * (request garbage dies young; a bigger nursery only grows RSS), and glibc told to keep
 * two arenas and trim freed memory so RSS falls back after a burst (M15). Applied by
 * re-executing in place (same pid) unless the caller set its own semi-space size; the
 * caller's environment wins for the malloc settings.
 */
const PROXY_NODE_FLAGS = ['--max-semi-space-size=2'];

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(`sextant needs Node 24 or later (this is Node ${process.versions.node}); the project pins it: run \`npx sextant …\` or \`npm run sextant -- …\`\n`);
  process.exit(1);
}

if (process.argv[2] === 'proxy' && typeof process.execve === 'function' && !process.execArgv.some((a) => a.startsWith('--max-semi-space-size'))) {
  process.execve(process.execPath, [process.execPath, ...PROXY_NODE_FLAGS, ...process.execArgv, ...process.argv.slice(1)], {
    ...process.env,
    MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2',
    MALLOC_TRIM_THRESHOLD_: process.env.MALLOC_TRIM_THRESHOLD_ ?? '131072',
  });
}

module.enableCompileCache();
// Node writes the cache at exit; a long-running process (proxy, pilot) that is later killed
// would never write it, so flush once start-up has loaded its modules.
setTimeout(() => module.flushCompileCache(), 5000).unref();
await import('../src/cli/main.ts');

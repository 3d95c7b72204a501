// Which config store a CLI command talks to: a directory (--config-dir, the embedded
// default) or etcd (--etcd-endpoints). The demo's working folder is used when neither is
// named and it exists, so commands printed by `sextant demo` work as shown.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { UsageError } from './flags.ts';

export { UsageError };

export interface StoreFlags {
  configDir?: string;
  etcdEndpoints?: string;
  etcdPrefix?: string;
}

export type StoreTarget = { configDir: string } | { etcdEndpoints: string[]; etcdPrefix?: string };

export function addStoreOptions(cmd: Command): Command {
  return cmd
    .option('--config-dir <dir>', 'directory config store (default: $SEXTANT_CONFIG_DIR)')
    .option('--etcd-endpoints <urls>', 'etcd config store, comma-separated endpoints')
    .option('--etcd-prefix <prefix>', 'etcd key prefix', '/sextant/config');
}

/** Resolves the store to use; throws a usage error naming the flags when none can be found. */
export function storeTarget(flags: StoreFlags): StoreTarget {
  if (flags.configDir !== undefined && flags.etcdEndpoints !== undefined) {
    throw new UsageError('name one store: --config-dir or --etcd-endpoints, not both');
  }
  if (flags.etcdEndpoints !== undefined) {
    const endpoints = flags.etcdEndpoints.split(',').map((s) => s.trim()).filter(Boolean);
    if (endpoints.length === 0) throw new UsageError('--etcd-endpoints: expected URL[,URL…]');
    return { etcdEndpoints: endpoints, ...(flags.etcdPrefix !== undefined ? { etcdPrefix: flags.etcdPrefix } : {}) };
  }
  const dir = flags.configDir ?? (process.env['SEXTANT_CONFIG_DIR'] || undefined);
  if (dir === undefined) throw new UsageError('no config store: pass --config-dir DIR or --etcd-endpoints URL (or set SEXTANT_CONFIG_DIR)');
  if (!existsSync(dir)) throw new UsageError(`--config-dir ${dir}: no such directory`);
  return { configDir: path.resolve(dir) };
}


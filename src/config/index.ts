// Config stores: where Istio config lives and how the pilot and the CLI read, write and watch it.
// The directory store is the embedded default; etcd is the HA, multi-replica store.
export type {
  ConfigStore, ConfigStoreStatus, ConfigWatch, DeleteOptions, ListOptions, Revision, StoreProblem, WatchEvent, WatchEventType, WatchHandler, WatchOptions,
} from './store.ts';
export { MAX_APPLY_OPS, type ApplyOp, type ApplyOpResult, type ApplyResult } from './store.ts';
export {
  CONFIRM_DELETE_MARKER, DEFAULT_DELETE_GUARD, deleteGuard, judgeDeletion, type DeleteGuard, type DeleteGuardOptions, type DeletionVerdict, type HeldChange,
} from './delete-guard.ts';
export {
  AlreadyExistsError, ConfigStoreError, ConflictError, InvalidArgumentError, InvalidSelectorError, NotFoundError,
  RevisionCompactedError, SourceUnavailableError, StoreClosedError, ValidationFailedError,
} from './errors.ts';
export { parseLabelSelector, toLabelSelector, type LabelSelector, type Requirement } from './selector.ts';
export { DirectoryConfigStore, openDirectoryStore, type DirectoryStoreOptions } from './file/store.ts';
export { EtcdConfigStore, openEtcdStore, type EtcdStoreOptions } from './etcd/store.ts';
export { DEFAULT_ETCD_PREFIX } from './etcd/keys.ts';

import type { Logger } from 'pino';
import { InvalidArgumentError } from './errors.ts';
import { openDirectoryStore, type DirectoryStoreOptions } from './file/store.ts';
import { openEtcdStore, type EtcdStoreOptions } from './etcd/store.ts';
import type { ConfigStore } from './store.ts';

export type OpenConfigStoreOptions =
  | ({ configDir: string; logger?: Logger } & Omit<DirectoryStoreOptions, 'dir' | 'logger'>)
  | ({ etcdEndpoints: string[]; etcdPrefix?: string; logger?: Logger } & Omit<EtcdStoreOptions, 'endpoints' | 'prefix' | 'logger'>);

/**
 * Opens the store the options name: `{configDir}` for a directory of YAML files (loaded before
 * this resolves; it must exist unless `create: true`), `{etcdEndpoints, etcdPrefix?}` for etcd
 * (reachable before this resolves).
 */
export async function openConfigStore(options: OpenConfigStoreOptions): Promise<ConfigStore> {
  if ('configDir' in options && 'etcdEndpoints' in options) {
    throw new InvalidArgumentError('give either configDir or etcdEndpoints, not both');
  }
  if ('configDir' in options) {
    const { configDir, ...rest } = options;
    return await openDirectoryStore({ ...rest, dir: configDir });
  }
  if ('etcdEndpoints' in options) {
    const { etcdEndpoints, etcdPrefix, ...rest } = options;
    return await openEtcdStore({ ...rest, endpoints: etcdEndpoints, ...(etcdPrefix !== undefined ? { prefix: etcdPrefix } : {}) });
  }
  throw new InvalidArgumentError('a config store needs configDir or etcdEndpoints');
}

// Typed errors the config stores throw, so callers (CLI, REST API, pilot) can map them to
// exact outcomes (409 Conflict, 404 Not Found, 422 Invalid) without parsing messages.
import type { ConfigError } from '../api/index.ts';

/** Base class of every error a ConfigStore throws on purpose. */
export class ConfigStoreError extends Error {
  override name = 'ConfigStoreError';
}

/**
 * An optimistic-concurrency check failed: the write named a resourceVersion that is no longer
 * current, named none where one is required, or the resource changed under it.
 */
export class ConflictError extends ConfigStoreError {
  override name = 'ConflictError';
  readonly key: string;
  /** The version the caller sent (undefined when it sent none). */
  readonly expected: string | undefined;
  /** The version the store holds (undefined when the resource does not exist). */
  readonly actual: string | undefined;
  constructor(key: string, expected: string | undefined, actual: string | undefined, detail?: string) {
    super(
      detail ??
        (expected === undefined
          ? `${key}: metadata.resourceVersion is required (current is ${actual ?? 'none'})`
          : `${key}: resourceVersion ${expected} is stale (current is ${actual ?? 'none: the resource was deleted'})`),
    );
    this.key = key;
    this.expected = expected;
    this.actual = actual;
  }
}

/** create() of a Kind/namespace/name that already exists. */
export class AlreadyExistsError extends ConfigStoreError {
  override name = 'AlreadyExistsError';
  readonly key: string;
  constructor(key: string, where?: string) {
    super(`${key} already exists${where !== undefined ? ` (in ${where})` : ''}`);
    this.key = key;
  }
}

/** update() or delete() of a resource that does not exist. */
export class NotFoundError extends ConfigStoreError {
  override name = 'NotFoundError';
  readonly key: string;
  constructor(key: string) {
    super(`${key} not found`);
    this.key = key;
  }
}

/** A write failed validation; nothing of it was applied. `errors` are one line each. */
export class ValidationFailedError extends ConfigStoreError {
  override name = 'ValidationFailedError';
  readonly errors: readonly ConfigError[];
  constructor(key: string, errors: readonly ConfigError[]) {
    super(`${key} is invalid:\n${errors.map((e) => `  ${e.toString()}`).join('\n')}`);
    this.errors = errors;
  }
}

/** A label selector that does not parse; `position` is the character offset of the problem. */
export class InvalidSelectorError extends ConfigStoreError {
  override name = 'InvalidSelectorError';
  readonly selector: string;
  readonly position: number;
  constructor(selector: string, position: number, expected: string) {
    super(`invalid label selector ${JSON.stringify(selector)} at position ${position}: expected ${expected}`);
    this.selector = selector;
    this.position = position;
  }
}

/** An argument that can never be valid (empty name, a '/' in a key segment, a negative revision). */
export class InvalidArgumentError extends ConfigStoreError {
  override name = 'InvalidArgumentError';
}

/**
 * watch(fromRevision) asked for history the store no longer has (etcd compacted it, or it fell
 * out of the directory store's bounded history). Watch again without a revision to start from
 * the current state.
 */
export class RevisionCompactedError extends ConfigStoreError {
  override name = 'RevisionCompactedError';
  readonly requested: number;
  /** The oldest revision a watch can start from, when the store knows it. */
  readonly oldest: number | undefined;
  constructor(requested: number, oldest: number | undefined) {
    super(`revision ${requested} is no longer available${oldest !== undefined ? ` (oldest available is ${oldest})` : ' (compacted)'}; watch from the current state instead`);
    this.requested = requested;
    this.oldest = oldest;
  }
}

/** The store was closed; no further calls are served. */
export class StoreClosedError extends ConfigStoreError {
  override name = 'StoreClosedError';
  constructor() {
    super('config store is closed');
  }
}

/**
 * The store cannot follow its source, so it keeps serving the last good state and refuses
 * writes: the config directory does not exist or is not a directory (at open), has vanished
 * or been replaced, or a mass deletion is held waiting for an operator's confirmation.
 */
export class SourceUnavailableError extends ConfigStoreError {
  override name = 'SourceUnavailableError';
}

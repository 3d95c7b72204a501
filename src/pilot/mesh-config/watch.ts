// The mesh config file as the running pilot sees it: read once at start (an invalid file
// stops the start), then re-read when it changes. A change that is invalid keeps the last
// good config and logs an error naming the field; a valid one is handed to the listeners.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { DEFAULT_MESH_CONFIG, MeshConfigError, parseMeshConfig } from './mesh-config.ts';
import type { MeshConfig, ParsedMeshConfig } from './mesh-config.ts';

/** Where the pilot gets its mesh config: the current one, and word when it changes. */
export interface MeshConfigSource {
  current(): MeshConfig;
  /** Called after the config changed to a new valid one. */
  onChange(listener: (config: MeshConfig) => void): void;
  close(): void;
}

/** A mesh config that never changes (the defaults, or one given in code). */
export function staticMeshConfig(config: MeshConfig = DEFAULT_MESH_CONFIG): MeshConfigSource {
  return { current: () => config, onChange: () => {}, close: () => {} };
}

/** Reads and checks a mesh config file; throws a MeshConfigError naming the file and field. */
export function readMeshConfigFile(file: string): ParsedMeshConfig {
  const source = path.resolve(file);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new MeshConfigError(source, '', code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory, expected a file' : (err as Error).message);
  }
  return parseMeshConfig(text, source);
}

export interface MeshConfigFileOptions {
  logger: Logger;
  /** How often the file's metadata is checked for a change (default 1 s). */
  pollMs?: number;
}

/**
 * A mesh config file, watched by reading it at each poll and comparing the text (which follows
 * a Kubernetes ConfigMap volume's symlink swap and an editor's rename into place alike).
 * Metadata alone can miss a change: a file renamed into place may reuse the old inode number,
 * with the same size, within one timestamp tick. The file is small; reading it is cheap.
 * `initial` is what the caller read and checked at start.
 */
export class MeshConfigFile implements MeshConfigSource {
  private config: MeshConfig;
  private lastText: string;
  private readonly listeners: ((config: MeshConfig) => void)[] = [];
  private readonly file: string;
  private readonly logger: Logger;
  /** The text the last poll saw (valid or not, undefined when unreadable): each change is handled once. */
  private lastSeen: string | undefined;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(file: string, initial: MeshConfig, options: MeshConfigFileOptions) {
    this.file = path.resolve(file);
    this.config = initial;
    this.logger = options.logger;
    this.lastText = safeRead(this.file) ?? '';
    this.lastSeen = this.lastText;
    this.timer = setInterval(() => {
      const text = safeRead(this.file);
      if (text !== this.lastSeen) this.apply(text);
    }, options.pollMs ?? 1000);
    this.timer.unref();
  }

  current(): MeshConfig {
    return this.config;
  }

  onChange(listener: (config: MeshConfig) => void): void {
    this.listeners.push(listener);
  }

  /** Re-reads the file now (a poll does when its text changed). */
  reload(): void {
    this.apply(safeRead(this.file));
  }

  private apply(text: string | undefined): void {
    if (this.closed) return;
    this.lastSeen = text;
    if (text === undefined) {
      this.logger.error({ file: this.file }, 'mesh config file unreadable; keeping the last good mesh config');
      return;
    }
    if (text === this.lastText) return;
    let parsed: ParsedMeshConfig;
    try {
      parsed = parseMeshConfig(text, this.file);
    } catch (err) {
      const field = err instanceof MeshConfigError ? err.field : '';
      this.logger.error({ file: this.file, field, err: (err as Error).message }, 'mesh config change refused; keeping the last good mesh config');
      return;
    }
    this.lastText = text;
    for (const w of parsed.warnings) this.logger.warn({ file: this.file }, w);
    if (JSON.stringify(parsed.config) === JSON.stringify(this.config)) return;
    this.config = parsed.config;
    this.logger.info({ file: this.file, meshConfig: parsed.config }, 'mesh config changed; pushing to every proxy');
    for (const l of this.listeners) l(parsed.config);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }
}

function safeRead(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

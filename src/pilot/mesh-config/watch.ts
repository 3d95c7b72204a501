// The mesh config file as the running pilot sees it: read once at start (an invalid file
// stops the start), then re-read when it changes. A change that is invalid keeps the last
// good config and logs an error naming the field; a valid one is handed to the listeners.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { Stats } from 'node:fs';
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
 * A mesh config file, watched by polling its metadata (which follows a Kubernetes ConfigMap
 * volume's symlink swap and an editor's rename into place alike). `initial` is what the
 * caller read and checked at start.
 */
export class MeshConfigFile implements MeshConfigSource {
  private config: MeshConfig;
  private lastText: string;
  private readonly listeners: ((config: MeshConfig) => void)[] = [];
  private readonly file: string;
  private readonly logger: Logger;
  private readonly onStat: (curr: Stats, prev: Stats) => void;
  private closed = false;

  constructor(file: string, initial: MeshConfig, options: MeshConfigFileOptions) {
    this.file = path.resolve(file);
    this.config = initial;
    this.logger = options.logger;
    this.lastText = safeRead(this.file) ?? '';
    this.onStat = (curr, prev) => {
      if (curr.mtimeMs === prev.mtimeMs && curr.size === prev.size && curr.ino === prev.ino) return;
      this.reload();
    };
    watchFile(this.file, { interval: options.pollMs ?? 1000, persistent: false }, this.onStat);
  }

  current(): MeshConfig {
    return this.config;
  }

  onChange(listener: (config: MeshConfig) => void): void {
    this.listeners.push(listener);
  }

  /** Re-reads the file now; also what a change of its metadata triggers. */
  reload(): void {
    if (this.closed) return;
    const text = safeRead(this.file);
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
    unwatchFile(this.file, this.onStat);
  }
}

function safeRead(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

// Who may call the registration API: bearer tokens from a file (`--registration-tokens`), one
// `TOKEN NAMESPACE[,NAMESPACE...]` or `TOKEN *` per line, re-read when it changes. Tokens are
// kept only as SHA-256 digests and compared in constant time; they are never logged.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, watch as watchFs, writeFileSync, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';

/** A token file that cannot be used; the message names the file and line. */
export class TokenFileError extends Error {
  override name = 'TokenFileError';
}

interface Grant {
  digest: Buffer;
  /** Namespaces the token may read and write; null for every namespace (`*`). */
  namespaces: ReadonlySet<string> | null;
}

export type Authorization = 'ok' | 'unauthenticated' | 'forbidden';

const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Printable ASCII without spaces: what fits in an `Authorization: Bearer` header. */
const TOKEN = /^[\x21-\x7e]{16,4096}$/;

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/**
 * Parses a token file. Blank lines and lines starting with `#` are skipped. Tokens must be at
 * least 16 printable characters; a token named twice is an error (which grant would win?).
 */
export function parseTokenFile(text: string, file: string): Grant[] {
  const grants: Grant[] = [];
  const seen = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${file}:${i + 1}`;
    const parts = line.split(/\s+/);
    if (parts.length !== 2) throw new TokenFileError(`${where}: expected "TOKEN NAMESPACE[,NAMESPACE...]" or "TOKEN *", got ${parts.length} field${parts.length === 1 ? '' : 's'}`);
    const [token, scope] = parts as [string, string];
    if (!TOKEN.test(token)) throw new TokenFileError(`${where}: a token must be 16 to 4096 printable characters without spaces`);
    let namespaces: Set<string> | null = null;
    if (scope !== '*') {
      namespaces = new Set();
      for (const ns of scope.split(',')) {
        if (!NAMESPACE.test(ns)) throw new TokenFileError(`${where}: ${JSON.stringify(ns)} is not a namespace name (lowercase letters, digits and '-', at most 63) nor *`);
        namespaces.add(ns);
      }
    }
    const d = digest(token);
    const hex = d.toString('hex');
    if (seen.has(hex)) throw new TokenFileError(`${where}: this token is already granted on an earlier line`);
    seen.add(hex);
    grants.push({ digest: d, namespaces });
  });
  return grants;
}

/** Reads and parses a token file; TokenFileError when it cannot be read or is invalid. */
export function readTokenFile(file: string, what = 'registration'): Grant[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new TokenFileError(`cannot read ${what} token file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseTokenFile(text, file);
}

/**
 * The tokens of one file, kept current: a change of the file (seen by a watch on its directory,
 * and by a stat check every `pollMs` for changes a watch misses) is re-read; a file that has
 * become invalid or unreadable is logged and the last good tokens stay in force.
 */
export class TokenFile {
  readonly file: string;
  private grants: Grant[];
  private readonly log: Logger;
  private stamp: string;
  private watcher: FSWatcher | undefined;
  private readonly poll: NodeJS.Timeout;
  private lastError = '';
  /** What the tokens are for, in messages ('registration', 'CA bootstrap'). */
  private readonly what: string;

  /** Reads the file now: throws TokenFileError when it is missing or invalid. */
  constructor(file: string, logger: Logger, options: { pollMs?: number; what?: string } = {}) {
    this.file = path.resolve(file);
    this.log = logger;
    this.what = options.what ?? 'registration';
    const pollMs = options.pollMs ?? 2000;
    this.grants = readTokenFile(this.file, this.what);
    this.stamp = this.statStamp();
    try {
      // The directory, not the file: editors and secret mounts replace the file by renaming.
      this.watcher = watchFs(path.dirname(this.file), () => this.check());
      this.watcher.on('error', () => undefined);
      this.watcher.unref();
    } catch {
      this.watcher = undefined;
    }
    this.poll = setInterval(() => this.check(), pollMs);
    this.poll.unref();
  }

  /** Whether `token` may act on `namespace`. */
  authorize(token: string | undefined, namespace: string): Authorization {
    if (token === undefined || token === '') return 'unauthenticated';
    const d = digest(token);
    let match: Grant | undefined;
    // Every grant is compared, matched or not, so the time taken says nothing of the tokens.
    for (const g of this.grants) if (timingSafeEqual(g.digest, d) && match === undefined) match = g;
    if (match === undefined) return 'unauthenticated';
    return match.namespaces === null || match.namespaces.has(namespace) ? 'ok' : 'forbidden';
  }

  get size(): number {
    return this.grants.length;
  }

  /** Re-reads the file if its identity, size or mtime changed. */
  check(): void {
    const stamp = this.statStamp();
    if (stamp === this.stamp) return;
    this.stamp = stamp;
    try {
      this.grants = readTokenFile(this.file, this.what);
      this.lastError = '';
      this.log.info({ file: this.file, tokens: this.grants.length }, `${this.what} tokens reloaded`);
    } catch (err) {
      const message = (err as Error).message;
      if (message !== this.lastError) this.log.error({ file: this.file, err: message, tokens: this.grants.length }, `${this.what} token file rejected; keeping the last good tokens`);
      this.lastError = message;
    }
  }

  private statStamp(): string {
    try {
      const st = statSync(this.file, { bigint: true });
      return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`;
    } catch {
      return 'missing';
    }
  }

  close(): void {
    this.watcher?.close();
    clearInterval(this.poll);
  }
}

/** A token generated once into a directory, and the token file granting it on every namespace. */
export interface GeneratedToken {
  /** The file holding the token alone (mode 0600): what a client reads (`--token-file`, `--ca-token-file`). */
  tokenFile: string;
  /** The token file (`TOKEN *`) the server reads. */
  tokensFile: string;
}

/**
 * The token in `dir/NAME` (created once, 32 random bytes, mode 0600; a concurrent start that wrote
 * it first wins) and `dir/NAME` + `s` granting it on `*`. For one host's defaults: a pilot's
 * first certificates, its monitoring pages. The token itself is never logged.
 */
export function generatedToken(dir: string, name: string, comment: string): GeneratedToken {
  const tokenFile = path.join(dir, name);
  const tokensFile = path.join(dir, `${name}s`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    writeFileSync(tokenFile, `${randomBytes(32).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const token = readFileSync(tokenFile, 'utf8').trim().split(/\s+/)[0] ?? '';
  if (!TOKEN.test(token)) throw new TokenFileError(`${tokenFile}: not a token (delete the file to have a new one generated)`);
  writeFileSync(tokensFile, `# ${comment} (generated from ${tokenFile})\n${token} *\n`, { mode: 0o600 });
  return { tokenFile, tokensFile };
}

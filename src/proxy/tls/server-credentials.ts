// A gateway's certificates: SDS secrets received over ADS (`kubernetes://NAME`, validated and
// parsed when they arrive, so a bad one is NACKed and the last good one keeps serving), files
// (read when a listener names them and re-read when they change), and inline bytes. Each
// listener chain's TLS spec gets a SecureContext built once per generation of what it uses:
// a rotation makes the next handshake use the new certificate, while connections already open
// keep the one they were accepted with. Key material is never logged or shown.
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import tls from 'node:tls';
import type pino from 'pino';
import type { ProtoJson } from '../../envoy/index.ts';
import type { XdsResource } from '../xds/ads-client.ts';
import type { DownstreamTlsSpec, ServerTlsSpec, TlsSource } from './transport-socket.ts';

/** How often certificate files are checked for a change (they are stat'ed, not read). */
const FILE_POLL_MS = 1000;

/** One secret or file as the contexts use it: PEM text and a generation that moves on every change. */
interface Material {
  /** `cert`: a key and chain; `ca`: trusted roots. */
  kind: 'cert' | 'ca';
  chainPem?: string;
  keyPem?: string;
  caPem?: string;
  generation: number;
  /** The leaf certificate's serial and expiry (what config dumps and tests may show). */
  serial?: string;
  notAfter?: string;
}

interface FileEntry {
  path: string;
  pem: string | undefined;
  error: string | undefined;
  generation: number;
  users: number;
}

export interface SecretSummary {
  name: string;
  kind: 'cert' | 'ca';
  /** The leaf certificate's serial number (hex) and expiry, for `cert` secrets. */
  serial?: string;
  notAfter?: string;
  version: string;
}

let generations = 0;

function pemOf(b: Buffer): string {
  return b.toString('utf8');
}

function bytesOf(v: unknown): Buffer | undefined {
  const d = (v ?? {}) as ProtoJson;
  if (typeof d['inlineString'] === 'string') return Buffer.from(d['inlineString'], 'utf8');
  const b = d['inlineBytes'];
  if (b === undefined) return undefined;
  if (b instanceof Uint8Array) return Buffer.from(b);
  return Buffer.from(String(b), 'base64');
}

/** Parses a received Secret into material; throws (without any of its content) when it is unusable. */
function materialOf(name: string, r: ProtoJson): Material {
  const tc = r['tlsCertificate'] as ProtoJson | undefined;
  const vc = r['validationContext'] as ProtoJson | undefined;
  if (tc !== undefined) {
    const chain = bytesOf(tc['certificateChain']);
    const key = bytesOf(tc['privateKey']);
    if (chain === undefined || key === undefined) throw new Error(`SDS secret ${name}: tlsCertificate needs inline certificateChain and privateKey`);
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(chain);
    } catch {
      throw new Error(`SDS secret ${name}: certificateChain is not a PEM certificate`);
    }
    let k;
    try {
      k = createPrivateKey({ key: pemOf(key), format: 'pem' });
    } catch {
      throw new Error(`SDS secret ${name}: privateKey is not an unencrypted PEM private key`);
    }
    if (!leaf.checkPrivateKey(k)) throw new Error(`SDS secret ${name}: privateKey does not belong to the certificate`);
    return { kind: 'cert', chainPem: pemOf(chain), keyPem: pemOf(key), generation: ++generations, serial: leaf.serialNumber, notAfter: leaf.validTo };
  }
  if (vc !== undefined) {
    const ca = bytesOf(vc['trustedCa']);
    if (ca === undefined) throw new Error(`SDS secret ${name}: validationContext needs inline trustedCa`);
    try {
      new X509Certificate(ca);
    } catch {
      throw new Error(`SDS secret ${name}: trustedCa is not a PEM certificate`);
    }
    return { kind: 'ca', caPem: pemOf(ca), generation: ++generations };
  }
  throw new Error(`SDS secret ${name}: neither tlsCertificate nor validationContext (session ticket keys and generic secrets are not supported)`);
}

/** Why a TLS chain cannot serve yet, or its context. */
export type ContextResult = { context: tls.SecureContext } | { error: string };

export class ServerCredentials {
  private secrets = new Map<string, Material>();
  private readonly versions = new Map<string, string>();
  private readonly files = new Map<string, FileEntry>();
  private readonly contexts = new WeakMap<ServerTlsSpec, { key: string; context: tls.SecureContext }>();
  private readonly logger: pino.Logger;
  /** SDS updates refused (NACKed). */
  rejected = 0;

  constructor(logger: pino.Logger) {
    this.logger = logger;
  }

  /**
   * The SDS secrets after an update (the complete set the proxy subscribed to). Every one is
   * checked first; a bad one refuses the whole update (the caller NACKs), nothing changes.
   */
  apply(resources: ReadonlyMap<string, XdsResource>): void {
    const next = new Map<string, Material>();
    for (const [name, r] of resources) {
      const version = r.version;
      const old = this.secrets.get(name);
      if (old !== undefined && this.versions.get(name) === version && version !== '') {
        next.set(name, old);
        continue;
      }
      try {
        next.set(name, materialOf(name, r.resource));
      } catch (err) {
        this.rejected++;
        throw err;
      }
    }
    for (const [name, r] of resources) this.versions.set(name, r.version);
    for (const name of this.versions.keys()) if (!resources.has(name)) this.versions.delete(name);
    const changed = [...next].filter(([n, m]) => this.secrets.get(n) !== m).map(([n]) => n);
    this.secrets = next;
    if (changed.length > 0) this.logger.info({ secrets: changed }, 'SDS secrets updated');
  }

  /** Whether an SDS secret has arrived. */
  has(name: string): boolean {
    return this.secrets.has(name);
  }

  /** What each SDS secret is (no key material), for the config dump. */
  summaries(): SecretSummary[] {
    return [...this.secrets].map(([name, m]) => ({
      name, kind: m.kind, version: this.versions.get(name) ?? '',
      ...(m.serial !== undefined ? { serial: m.serial } : {}), ...(m.notAfter !== undefined ? { notAfter: m.notAfter } : {}),
    }));
  }

  /**
   * Keeps the files the listeners' TLS names read and watched (and forgets the others).
   * Unreadable files are reported once per change; their chains refuse handshakes meanwhile.
   */
  syncFiles(specs: Iterable<DownstreamTlsSpec>): void {
    const wanted = new Set<string>();
    for (const spec of specs) {
      const server = spec.server;
      if (server === undefined) continue;
      for (const c of server.certificates) {
        for (const s of [c.chain, c.key]) if (s !== undefined && 'file' in s) wanted.add(s.file);
      }
      if (server.trustedCa !== undefined && 'file' in server.trustedCa) wanted.add(server.trustedCa.file);
    }
    for (const path of wanted) {
      if (this.files.has(path)) continue;
      const entry: FileEntry = { path, pem: undefined, error: undefined, generation: 0, users: 1 };
      this.files.set(path, entry);
      this.readFile(entry);
      watchFile(path, { interval: FILE_POLL_MS, persistent: false }, (cur, prev) => {
        if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size && cur.ino === prev.ino) return;
        this.readFile(entry);
      });
    }
    for (const [path] of this.files) {
      if (wanted.has(path)) continue;
      unwatchFile(path);
      this.files.delete(path);
    }
  }

  private readFile(entry: FileEntry): void {
    try {
      const pem = readFileSync(entry.path, 'utf8');
      if (pem === entry.pem) return;
      entry.pem = pem;
      entry.error = undefined;
      entry.generation = ++generations;
      this.logger.info({ file: entry.path }, 'certificate file loaded');
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? 'unreadable';
      if (entry.error !== reason) this.logger.error({ file: entry.path, err: reason }, 'certificate file cannot be read; its TLS chains refuse connections');
      entry.error = reason;
      entry.pem = undefined;
      entry.generation = ++generations;
    }
  }

  /** PEM and generation of a source, or why there is none. */
  private source(s: TlsSource): { pem: string; generation: number; keyPem?: string } | { error: string } {
    if ('inline' in s) return { pem: pemOf(s.inline), generation: 0 };
    if ('file' in s) {
      const f = this.files.get(s.file);
      if (f === undefined || f.pem === undefined) return { error: `certificate file ${s.file}: ${f?.error ?? 'not read yet'}` };
      return { pem: f.pem, generation: f.generation };
    }
    const m = this.secrets.get(s.sds);
    if (m === undefined) return { error: `SDS secret ${s.sds} not received` };
    if (m.kind === 'cert') return { pem: m.chainPem!, keyPem: m.keyPem!, generation: m.generation };
    return { pem: m.caPem!, generation: m.generation };
  }

  /**
   * The SecureContext for a chain's gateway TLS, built once per generation of the certificates
   * and CA it uses; an error when one of them is missing (the handshake is then refused).
   */
  contextFor(server: ServerTlsSpec): ContextResult {
    const parts: { cert: string; key: string }[] = [];
    let key = '';
    for (const c of server.certificates) {
      const chain = this.source(c.chain);
      if ('error' in chain) return chain;
      let keyPem = chain.keyPem;
      let gen = `${chain.generation}`;
      if (c.key !== undefined) {
        const k = this.source(c.key);
        if ('error' in k) return k;
        keyPem = k.pem;
        gen += `/${k.generation}`;
      }
      if (keyPem === undefined) return { error: 'a certificate without its private key' };
      parts.push({ cert: chain.pem, key: keyPem });
      key += `${gen};`;
    }
    let ca: string | undefined;
    if (server.trustedCa !== undefined) {
      const c = this.source(server.trustedCa);
      if ('error' in c) return c;
      ca = c.pem;
      key += `ca${c.generation}`;
    }
    const cached = this.contexts.get(server);
    if (cached !== undefined && cached.key === key) return { context: cached.context };
    let context: tls.SecureContext;
    try {
      context = tls.createSecureContext({
        cert: parts.map((p) => p.cert),
        key: parts.map((p) => p.key),
        ...(ca !== undefined ? { ca } : {}),
        minVersion: server.minVersion,
        maxVersion: server.maxVersion,
        ...(server.ciphers !== undefined ? { ciphers: server.ciphers } : {}),
        ...(server.ecdhCurve !== undefined ? { ecdhCurve: server.ecdhCurve } : {}),
      });
    } catch (err) {
      // OpenSSL's reason (a mismatched key, an unknown cipher), never the material.
      return { error: `cannot build the TLS context: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
    }
    this.contexts.set(server, { key, context });
    return { context };
  }

  close(): void {
    for (const path of this.files.keys()) unwatchFile(path);
    this.files.clear();
  }
}

/** The SHA-256 of a certificate's SubjectPublicKeyInfo in base64 (Envoy's verify_certificate_spki). */
export function spkiHash(cert: X509Certificate): string {
  return createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
}

/** The SHA-256 of a certificate in lower-case hex (Envoy's verify_certificate_hash). */
export function certificateHash(cert: X509Certificate): string {
  return createHash('sha256').update(cert.raw).digest('hex');
}

/** Every downstream TLS spec of a set of listeners (filter chains and default chains). */
export function tlsSpecsOf(listeners: Iterable<{ filterChains: readonly { tls: DownstreamTlsSpec | undefined }[]; defaultChain: { tls: DownstreamTlsSpec | undefined } | undefined }>): DownstreamTlsSpec[] {
  const out: DownstreamTlsSpec[] = [];
  for (const l of listeners) {
    for (const c of [...l.filterChains, ...(l.defaultChain ? [l.defaultChain] : [])]) if (c.tls !== undefined) out.push(c.tls);
  }
  return out;
}

/** The SDS secret names listeners' TLS refers to: what the proxy subscribes to. */
export function secretNamesOf(specs: Iterable<DownstreamTlsSpec>): Set<string> {
  const out = new Set<string>();
  for (const spec of specs) {
    const server = spec.server;
    if (server === undefined) continue;
    for (const c of server.certificates) if ('sds' in c.chain) out.add(c.chain.sds);
    if (server.trustedCa !== undefined && 'sds' in server.trustedCa) out.add(server.trustedCa.sds);
  }
  return out;
}

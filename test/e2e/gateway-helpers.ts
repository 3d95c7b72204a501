// Shared by the gateway tests: certificates made with openssl (a CA, server and client leaves),
// Secrets in Istio's `kubernetes.io/tls` layout, a pilot and a gateway as real processes
// (`sextant pilot`, `sextant gateway`) whose output is kept (to check no secret is ever logged),
// TLS clients (openssl s_client, node:https) and a poll for what a gateway serves.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI } from '../helpers/pilot-process.ts';
import { freePort } from '../helpers/ports.ts';

export interface CertFiles {
  cert: string;
  key: string;
  /** The certificate and key as PEM text. */
  certPem: string;
  keyPem: string;
  /** The serial number in upper-case hex, as node:tls reports it. */
  serial: string;
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

let serials = 0;

/** A self-signed EC P-256 CA in `dir/NAME.crt` and `dir/NAME.key`. */
export function makeCa(dir: string, name: string): CertFiles {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`,
    '-subj', `/CN=${name}`, '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return files(dir, name);
}

/** A leaf for `cn` (a DNS SAN too) signed by `ca`: a server certificate, or a client one. */
export function issue(dir: string, ca: CertFiles, name: string, cn: string, usage: 'server' | 'client' = 'server'): CertFiles {
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
  writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=DNS:${cn}\nextendedKeyUsage=${usage === 'server' ? 'serverAuth' : 'clientAuth'}\n`);
  const serial = `0x${(Date.now() * 1000 + (++serials)).toString(16)}`;
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', serial, '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`], dir);
  return files(dir, name);
}

function files(dir: string, name: string): CertFiles {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  const certPem = readFileSync(cert, 'utf8');
  const serial = new X509Certificate(certPem).serialNumber;
  return { cert, key, certPem, keyPem: readFileSync(key, 'utf8'), serial };
}

/** An Istio credential Secret (`kubernetes.io/tls`: tls.crt, tls.key, and ca.crt when given). */
export function tlsSecret(name: string, namespace: string, leaf: CertFiles, ca?: CertFiles): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return `apiVersion: v1
kind: Secret
metadata: {name: ${name}, namespace: ${namespace}}
type: kubernetes.io/tls
data:
  tls.crt: ${b64(leaf.certPem)}
  tls.key: ${b64(leaf.keyPem)}
${ca !== undefined ? `  ca.crt: ${b64(ca.certPem)}\n` : ''}`;
}

export interface Process {
  child: ChildProcess;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

function spawnCli(args: string[], env?: Record<string, string>): Process {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...(env !== undefined ? { env: { ...process.env, ...env } } : {}) });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { out += c.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    async stop(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return child.exitCode;
      try { process.kill(signal === 'SIGKILL' ? -child.pid : child.pid, signal); } catch { /* gone */ }
      return exited;
    },
  };
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting until ${what}`);
}

export interface GatewayMesh {
  dir: string;
  configDir: string;
  pilot: Process;
  pilotUrl: string;
  xds: string;
  /** Writes (atomically) one file of the config directory. */
  write(file: string, yaml: string): void;
  /** Starts `sextant gateway` with these extra flags; waits until its admin /ready answers 200. */
  gateway(flags: string[]): Promise<{ proc: Process; admin: string }>;
  /** Starts `sextant proxy` (a sidecar) with these flags; waits until its admin /ready answers 200. */
  sidecar(flags: string[]): Promise<{ proc: Process; admin: string }>;
  /** The last lines each process wrote (pilot first), for a failure message. */
  outputs(): string;
  stop(): Promise<void>;
}

/** A pilot (real process, info logs kept) on a config directory under `dir`. */
export async function startGatewayMesh(dir: string, files: Record<string, string>, pilotArgs: string[] = []): Promise<GatewayMesh> {
  const configDir = path.join(dir, 'config');
  mkdirSync(configDir, { recursive: true });
  const write = (file: string, yaml: string): void => {
    const tmp = path.join(dir, `.${file}.tmp`);
    writeFileSync(tmp, yaml);
    renameSync(tmp, path.join(configDir, file));
  };
  for (const [f, y] of Object.entries(files)) write(f, y);
  const xds = `127.0.0.1:${await freePort()}`;
  const http = `127.0.0.1:${await freePort()}`;
  // Plaintext xDS: these tests are about the gateway's own TLS, not the control plane's.
  const pilot = spawnCli(['pilot', '--config-dir', configDir, '--xds-address', xds, '--http-address', http, '--log-level', 'info', '--debounce-after', '20ms', '--ca-dir', path.join(dir, 'ca'), '--plaintext-xds', ...pilotArgs],
    { SEXTANT_DATA_DIR: path.join(dir, 'data') });
  const procs: Process[] = [pilot];
  try {
    await until('the pilot is ready', async () => (await fetch(`http://${http}/ready`)).status === 200);
  } catch (err) {
    await pilot.stop();
    throw new Error(`${(err as Error).message}; its output:\n${pilot.output().slice(-4000)}`, { cause: err });
  }
  return {
    dir, configDir, pilot, pilotUrl: `http://${http}`, xds, write,
    async gateway(flags) {
      const admin = `127.0.0.1:${await freePort()}`;
      const proc = spawnCli(['gateway', '--xds', xds, '--admin-address', admin, '--log-level', 'info', ...flags]);
      procs.push(proc);
      try {
        await until('the gateway is ready', async () => (await fetch(`http://${admin}/ready`)).status === 200);
      } catch (err) {
        throw new Error(`${(err as Error).message}; its output:\n${proc.output().slice(-4000)}\npilot:\n${pilot.output().slice(-4000)}`, { cause: err });
      }
      return { proc, admin };
    },
    async sidecar(flags) {
      const admin = `127.0.0.1:${await freePort()}`;
      const proc = spawnCli(['proxy', '--xds', xds, '--admin-address', admin, '--log-level', 'warn', ...flags]);
      procs.push(proc);
      try {
        await until('the sidecar is ready', async () => (await fetch(`http://${admin}/ready`)).status === 200);
      } catch (err) {
        throw new Error(`${(err as Error).message}; its output:\n${proc.output().slice(-4000)}`, { cause: err });
      }
      return { proc, admin };
    },
    outputs() {
      return procs.map((p) => `--- ${p.child.spawnargs.slice(2, 3).join(' ')} (pid ${p.child.pid}):\n${p.output().slice(-3000)}`).join('\n');
    },
    async stop() {
      for (const p of procs.reverse()) await p.stop();
    },
  };
}

export interface TlsAnswer {
  /** The server certificate's subject CN and serial, '' when the handshake failed. */
  cn: string;
  serial: string;
  /** The HTTP status line and body, or the error. */
  status: number;
  body: string;
  error: string;
}

/** One HTTPS request to `host:port` with SNI `servername`, trusting `ca`, optionally with a client certificate. */
export function httpsGet(host: string, port: number, servername: string, pathName: string, ca: string, client?: CertFiles): Promise<TlsAnswer> {
  return new Promise((resolve) => {
    let cn = '';
    let serial = '';
    const req = https.request({
      host, port, servername, path: pathName, method: 'GET', headers: { host: servername }, ca, agent: false,
      ...(client !== undefined ? { cert: client.certPem, key: client.keyPem } : {}),
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ cn, serial, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), error: '' }));
    });
    req.on('socket', (s) => {
      (s as tls.TLSSocket).once('secureConnect', () => {
        const peer = (s as tls.TLSSocket).getPeerCertificate();
        cn = String(peer.subject?.CN ?? '');
        serial = String(peer.serialNumber ?? '');
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ cn, serial, status: 0, body: '', error: e.code ?? e.message }));
    req.end();
  });
}

/** openssl s_client to `host:port` with SNI `servername`: its whole output (`-brief`), given stdin. */
export function sClient(host: string, port: number, servername: string, ca: string, stdin: string, extra: string[] = []): Promise<string> {
  const args = ['s_client', '-connect', `${host}:${port}`, '-servername', servername, '-CAfile', ca, '-verify_return_error', '-ign_eof', '-brief', ...extra];
  const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString('latin1'); });
  child.stderr.on('data', (c: Buffer) => { out += c.toString('latin1'); });
  child.stdin.end(stdin);
  const timer = setTimeout(() => child.kill(), 10_000);
  return new Promise((resolve) => child.on('close', () => { clearTimeout(timer); resolve(out); }));
}

/**
 * Polls `probe` every 100 ms until it returns true. With `mesh`, a timeout's message carries what
 * `describe` says of the last probe and the last output of every process of the mesh.
 */
export async function eventually(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000, mesh?: GatewayMesh, describe?: () => string): Promise<void> {
  try {
    await until(what, probe, timeoutMs);
  } catch (err) {
    if (mesh === undefined) throw err;
    throw new Error(`${(err as Error).message}${describe !== undefined ? ` (last probe: ${describe()})` : ''}\n${mesh.outputs()}`, { cause: err });
  }
}

/** An EnvoyFilter giving the egress gateway (`istio: egressgateway`) a JSON access log in `file`, as Istio users write it. */
export function egressGatewayAccessLog(file: string): string {
  return `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: egress-access-log, namespace: istio-system}
spec:
  workloadSelector: {labels: {istio: egressgateway}}
  configPatches:
  - applyTo: NETWORK_FILTER
    match:
      context: GATEWAY
      listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}
    patch:
      operation: MERGE
      value:
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ${file}
`;
}

// `sextant register`: the registration API from a shell or a deployment pipeline — register a
// service or an instance, pull an instance out of traffic or back in (optionally waiting until
// every proxy holding it has ACKed), and set a release's subset weights.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from './flags.ts';
import { readApiToken } from './monitoring-api.ts';
import { exchangeJson, isRecord, RemoteError } from './remote-json.ts';

const API = '/apis/registration/v1';

interface CommonFlags {
  pilot: string;
  tokenFile?: string;
  namespace: string;
  ifMatch?: string;
  output: string;
  timeout: string;
}

interface BodyFlags extends CommonFlags {
  file?: string;
  delete?: boolean;
}

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

function common(cmd: Command): Command {
  return cmd
    .option('--pilot <url>', "the pilot's HTTP address", 'http://127.0.0.1:15014')
    .option('--token-file <file>', 'file holding the registration token (its first word)')
    .option('-n, --namespace <ns>', 'the config namespace', 'default')
    .option('--if-match <resourceVersion>', 'write only if the object is at this version')
    .option('-o, --output <format>', 'text or json', 'text')
    .option('--timeout <seconds>', 'give up on the pilot after this long', '10');
}

export function registerRegister(program: Command): void {
  const register = program
    .command('register')
    .description("register services and instances, pull instances in and out of traffic, set release weights (the pilot's registration API)");

  common(register.command('service').argument('<name>', 'service name').description('register or replace a service (a ServiceEntry NAME.NAMESPACE.svc.cluster.local selecting app=NAME)'))
    .option('--port <name:number[:protocol]>', 'a port, e.g. http:8080 or grpc:9090:GRPC (repeat for several)', collect)
    .option('--host <host>', 'a host name instead of NAME.NAMESPACE.svc.cluster.local (repeat for several)', collect)
    .option('--location <location>', 'MESH_INTERNAL (default) or MESH_EXTERNAL')
    .option('--resolution <resolution>', 'STATIC (default), NONE, DNS or DNS_ROUND_ROBIN')
    .option('--export-to <namespaces>', 'comma-separated namespaces that see the service')
    .option('-f, --file <file>', 'the JSON body (flags given too override its fields; - for stdin)')
    .option('--delete', 'remove the service, its instances and its release instead')
    .action(run(async (name: string, f: BodyFlags & { port?: string[]; host?: string[]; location?: string; resolution?: string; exportTo?: string }) => {
      const path = `/namespaces/${seg(f.namespace)}/services/${seg(name)}`;
      if (f.delete === true) return deleted(await call(f, 'DELETE', path), f);
      const body = bodyFrom(f);
      if (f.port !== undefined) body['ports'] = f.port.map(parsePort);
      if (f.host !== undefined) body['hosts'] = f.host;
      if (f.location !== undefined) body['location'] = f.location;
      if (f.resolution !== undefined) body['resolution'] = f.resolution;
      if (f.exportTo !== undefined) body['exportTo'] = f.exportTo.split(',').map((s) => s.trim()).filter((s) => s !== '');
      if (body['ports'] === undefined) throw new UsageError('a service needs at least one --port NAME:NUMBER (or a body with ports from -f)');
      const r = await call(f, 'PUT', path, body);
      return out(f, r, () => {
        const b = r.body;
        return `service ${String(b['namespace'])}/${String(b['name'])} ${r.status === 201 ? 'registered' : 'updated'}: ${(b['hosts'] as string[]).join(', ')} (resourceVersion ${String(b['resourceVersion'])})`;
      });
    }));

  common(register.command('instance').argument('<service>', 'service name').argument('<id>', 'instance id (the WorkloadEntry is SERVICE-ID)').description('register or replace an instance of a service (a WorkloadEntry); it is in traffic unless --state out'))
    .option('--address <ip>', 'the instance address')
    .option('--port <name=number>', 'the port the instance listens on for a service port (repeat)', collect)
    .option('--label <key=value>', 'a label (repeat), e.g. version=v2', collect)
    .option('--locality <region/zone/subzone>', 'where the instance runs')
    .option('--weight <n>', 'load balancing weight')
    .option('--network <network>', 'network of the instance')
    .option('--cluster <cluster>', 'cluster of the instance')
    .option('--service-account <sa>', 'service account of the instance')
    .option('--state <state>', 'in (default) or out')
    .option('-f, --file <file>', 'the JSON body (flags given too override its fields; - for stdin)')
    .option('--delete', 'remove the instance instead')
    .action(run(async (service: string, id: string, f: BodyFlags & { address?: string; port?: string[]; label?: string[]; locality?: string; weight?: string; network?: string; cluster?: string; serviceAccount?: string; state?: string }) => {
      const path = `/namespaces/${seg(f.namespace)}/services/${seg(service)}/instances/${seg(id)}`;
      if (f.delete === true) return deleted(await call(f, 'DELETE', path), f);
      const body = bodyFrom(f);
      if (f.address !== undefined) body['address'] = f.address;
      if (f.port !== undefined) body['ports'] = Object.fromEntries(f.port.map((p) => { const [k, v] = pair(p, '--port'); return [k, integer(v, '--port')]; }));
      if (f.label !== undefined) body['labels'] = Object.fromEntries(f.label.map((l) => pair(l, '--label')));
      for (const k of ['locality', 'network', 'cluster', 'serviceAccount', 'state'] as const) if (f[k] !== undefined) body[k] = f[k];
      if (f.weight !== undefined) body['weight'] = integer(f.weight, '--weight');
      if (body['address'] === undefined) throw new UsageError('an instance needs --address (or a body with address from -f)');
      const r = await call(f, 'PUT', path, body);
      return out(f, r, () => `instance ${String(r.body['id'])} of ${String(r.body['namespace'])}/${String(r.body['service'])} ${r.status === 201 ? 'registered' : 'updated'} at ${String(r.body['address'])}, ${r.body['state'] === 'out' ? 'out of traffic' : 'in traffic'} (resourceVersion ${String(r.body['resourceVersion'])})`);
    }));

  for (const [verb, state] of [['pull-out', 'out'], ['pull-in', 'in']] as const) {
    common(register.command(verb).argument('<service>', 'service name').argument('<id>', 'instance id')
      .description(state === 'out'
        ? 'take an instance out of every proxy\'s load balancing; requests in flight finish'
        : 'put an instance back into load balancing'))
      .option('--wait [seconds]', 'then wait until every proxy holding the instance has ACKed (default 30 s)')
      .action(run(async (service: string, id: string, f: CommonFlags & { wait?: string | boolean }) => {
        const path = `/namespaces/${seg(f.namespace)}/services/${seg(service)}/instances/${seg(id)}`;
        const waitMs = f.wait === undefined || f.wait === false ? undefined : f.wait === true ? 30_000 : seconds(f.wait, '--wait');
        const started = Date.now();
        const r = await call(f, 'POST', `${path}:${verb}`);
        let acks: Record<string, unknown> | undefined;
        if (waitMs !== undefined) acks = await waitForAcks(f, path, String(r.body['resourceVersion']), waitMs);
        return out(f, acks === undefined ? r : { ...r, body: { ...r.body, acks } }, () => {
          const what = `instance ${id} of ${f.namespace}/${service} ${state === 'out' ? 'pulled out of traffic' : 'pulled into traffic'} (resourceVersion ${String(r.body['resourceVersion'])})`;
          if (acks === undefined) return what;
          return `${what}; ${String(acks['acked'])} prox${acks['acked'] === 1 ? 'y' : 'ies'} acked in ${Date.now() - started} ms`;
        });
      }));
  }

  common(register.command('release').argument('<service>', 'service name').description('set the subsets of a service and their share of the traffic (a DestinationRule and a VirtualService); a canary step is one call'))
    .option('--subset <name:key=value[,key=value]:weight>', 'a subset, e.g. v2:version=v2:10 (repeat; the weights add up to 100)', collect)
    .option('-f, --file <file>', 'the JSON body, e.g. with match (flags given too override its fields; - for stdin)')
    .option('--delete', 'remove the release instead')
    .action(run(async (service: string, f: BodyFlags & { subset?: string[] }) => {
      const path = `/namespaces/${seg(f.namespace)}/services/${seg(service)}/release`;
      if (f.delete === true) return deleted(await call(f, 'DELETE', path), f);
      const body = bodyFrom(f);
      if (f.subset !== undefined) body['subsets'] = f.subset.map(parseSubset);
      if (body['subsets'] === undefined) throw new UsageError('a release needs at least one --subset NAME:LABELS:WEIGHT (or a body with subsets from -f)');
      const r = await call(f, 'PUT', path, body);
      return out(f, r, () => {
        const subsets = (r.body['subsets'] as Array<{ name: string; weight: number }>).map((s) => `${s.name} ${s.weight}%`).join(', ');
        return `release of ${String(r.body['namespace'])}/${String(r.body['service'])}: ${subsets} (resourceVersion ${String(r.body['resourceVersion'])})`;
      });
    }));

  // runProgram makes the top-level commands throw instead of exiting; these are one level down.
  for (const sub of register.commands) sub.exitOverride().configureOutput({ outputError: () => undefined });
}

/** Wraps an action: RemoteError → one line on stderr and exit code 1 (UsageErrors go on to runProgram: exit 2). */
function run<A extends unknown[]>(action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (err) {
      if (!(err instanceof RemoteError)) throw err;
      process.stderr.write(`error: ${err.message}\n`);
      process.exitCode = 1;
    }
  };
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

function seg(s: string): string {
  return encodeURIComponent(s);
}

function pilotUrl(f: CommonFlags, path: string): URL {
  let url: URL;
  try {
    url = new URL(`${API}${path}`, /^[a-z][a-z0-9+.-]*:\/\//i.test(f.pilot) ? f.pilot : `http://${f.pilot}`);
  } catch {
    throw new UsageError(`invalid --pilot "${f.pilot}": expected the pilot's HTTP address, e.g. http://127.0.0.1:15014`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`invalid --pilot "${f.pilot}": expected an http:// or https:// address`);
  return url;
}

/** The token of `--token-file` (its first word; see readApiToken), which the registration API requires. */
export function readToken(file: string | undefined): string {
  if (file === undefined) throw new UsageError('--token-file FILE is required: the registration API answers only callers with a token');
  return readApiToken(file);
}

async function call(f: CommonFlags, method: string, path: string, body?: unknown): Promise<Answer> {
  if (f.output !== 'text' && f.output !== 'json') throw new UsageError(`invalid --output "${f.output}": expected text or json`);
  const url = pilotUrl(f, path);
  const timeoutMs = seconds(f.timeout, '--timeout');
  const headers: Record<string, string> = { authorization: `Bearer ${readToken(f.tokenFile)}`, accept: 'application/json' };
  if (f.ifMatch !== undefined) headers['if-match'] = f.ifMatch;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const { status, headers: answered, body: parsed } = await exchangeJson(url, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) }, timeoutMs, 'the pilot');
  if (!isRecord(parsed)) {
    const type = answered.get('content-type') ?? 'no content type';
    throw new RemoteError(`${url.href} answered ${status} ${type}: not a Sextant pilot's registration API`);
  }
  if (status >= 300) {
    const error = typeof parsed['error'] === 'string' ? parsed['error'] : JSON.stringify(parsed);
    throw new RemoteError(`${method} ${url.href} answered ${status}: ${error}`);
  }
  return { status, body: parsed };
}

async function waitForAcks(f: CommonFlags, path: string, version: string, waitMs: number): Promise<Record<string, unknown>> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const r = await call(f, 'GET', path);
    const acks = r.body['acks'];
    if (!isRecord(acks)) throw new RemoteError('the pilot does not report acks for this instance (it serves no proxies)');
    // A later write (another pull) supersedes the one waited for: its acks count too.
    if (acks['complete'] === true && Number(acks['resourceVersion']) >= Number(version)) return acks;
    if (Date.now() >= deadline) {
      const pending = Array.isArray(acks['proxies']) ? (acks['proxies'] as Array<Record<string, unknown>>).filter((p) => p['acked'] !== true).map((p) => String(p['proxy'])) : [];
      throw new RemoteError(`not every proxy acked within ${waitMs / 1000} s: ${acks['pushed'] === true ? `${pending.length} pending (${pending.slice(0, 5).join(', ')}${pending.length > 5 ? ', …' : ''})` : 'the pilot has not pushed the change yet'}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function out(f: CommonFlags, r: Answer, text: () => string): void {
  process.stdout.write(f.output === 'json' ? `${JSON.stringify(r.body, null, 2)}\n` : `${text()}\n`);
}

function deleted(r: Answer, f: CommonFlags): void {
  out(f, r, () => `deleted ${(r.body['deleted'] as string[]).join(', ') || 'nothing'} (revision ${String(r.body['resourceVersion'])})`);
}

function bodyFrom(f: BodyFlags): Record<string, unknown> {
  if (f.file === undefined) return {};
  let text: string;
  try {
    text = readFileSync(f.file === '-' ? 0 : f.file, 'utf8');
  } catch (err) {
    throw new UsageError(`-f ${f.file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`-f ${f.file}: not JSON (${(err as Error).message})`);
  }
  if (!isRecord(body)) throw new UsageError(`-f ${f.file}: expected a JSON object`);
  return body;
}

function integer(v: string, flag: string): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`invalid ${flag} "${v}": expected a whole number`);
  return Number(v);
}

function seconds(v: string, flag: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new UsageError(`invalid ${flag} "${v}": expected a number of seconds above 0`);
  return n * 1000;
}

function pair(v: string, flag: string): [string, string] {
  const i = v.indexOf('=');
  if (i <= 0) throw new UsageError(`invalid ${flag} "${v}": expected KEY=VALUE`);
  return [v.slice(0, i), v.slice(i + 1)];
}

/** `http:8080` or `grpc:9090:GRPC`. */
function parsePort(v: string): Record<string, unknown> {
  const m = /^([^:]+):(\d+)(?::([A-Za-z0-9-]+))?$/.exec(v);
  if (m === null) throw new UsageError(`invalid --port "${v}": expected NAME:NUMBER or NAME:NUMBER:PROTOCOL, e.g. http:8080`);
  return { name: m[1], number: Number(m[2]), ...(m[3] !== undefined ? { protocol: m[3].toUpperCase() } : {}) };
}

/** `v2:version=v2,track=canary:10`. */
function parseSubset(v: string): Record<string, unknown> {
  const m = /^([^:]+):([^:]*):(\d+)$/.exec(v);
  if (m === null) throw new UsageError(`invalid --subset "${v}": expected NAME:KEY=VALUE[,KEY=VALUE]:WEIGHT, e.g. v2:version=v2:10`);
  const labels = m[2] === '' ? {} : Object.fromEntries(m[2]!.split(',').map((l) => pair(l, '--subset')));
  return { name: m[1], labels, weight: Number(m[3]) };
}

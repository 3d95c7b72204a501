// The registration API's requests: routing, the token check, bounded JSON bodies, and each
// operation as reads of the store followed by one atomic batch (ConfigStore.apply). A write
// that raced another is planned again from fresh reads, unless the caller pinned a version
// with If-Match (then it is a 412).
import type http from 'node:http';
import type { Logger } from 'pino';
import type { Resource } from '../../api/index.ts';
import {
  AlreadyExistsError, ConfigStoreError, ConflictError, InvalidArgumentError, MAX_APPLY_OPS, NotFoundError, SourceUnavailableError,
  StoreClosedError, ValidationFailedError, type ApplyOp, type ApplyResult, type ConfigStore,
} from '../../config/index.ts';
import type { ServiceEntrySpec } from '../istio.ts';
import { ApiError, badRequest, notFound } from './errors.ts';
import { API_PREFIX, openApiDocument } from './openapi.ts';
import {
  INSTANCE_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, destinationRuleField, instanceField, instanceResourceName, instanceView, isInstanceOf, isManaged,
  releaseOf, releaseVersion, releaseView, serviceEntryOf, serviceField, serviceView, trafficState, virtualServiceField, withTrafficState,
  workloadEntryOf, type InstanceBody, type InstanceView, type ReleaseBody, type ServiceBody,
} from './resources.ts';
import { EMPTY_BODY, INSTANCE_BODY, RELEASE_BODY, SERVICE_BODY, checkShape } from './schema.ts';
import type { Authorization } from './tokens.ts';

/** What the pilot knows of one instance's delivery to the proxies (see AckSource). */
export interface InstanceAckQuery {
  /** `WorkloadEntry/ns/name`. */
  key: string;
  /** The version of the instance the caller asks about. */
  resourceVersion: string;
  address: string;
  /** The service's hosts and port numbers: which clusters can hold the instance. */
  hosts: readonly string[];
  ports: readonly number[];
}

export interface ProxyAck {
  proxy: string;
  connection: string;
  /** The clusters this proxy holds whose current assignment contains the instance. */
  clusters: string[];
  /** The proxy has ACKed the current assignment of every one of those clusters. */
  acked: boolean;
}

export interface InstanceAcks {
  /** The snapshot being served holds this version of the instance (or a later one). */
  pushed: boolean;
  proxies: ProxyAck[];
}

/** Answers an InstanceAckQuery from the pilot's xDS server; absent when no pilot serves proxies. */
export type AckSource = (query: InstanceAckQuery) => InstanceAcks;

export interface RegistrationHandlerOptions {
  /** The store to write, or undefined while it is being opened (503). */
  store: () => ConfigStore | undefined;
  authorize: (token: string | undefined, namespace: string) => Authorization;
  acks?: AckSource | undefined;
  /**
   * The pilot's copy of a resource, as its watch of the store last delivered it (so possibly
   * behind the store). A pull plans its write from it, pinned with If-Match to that version:
   * one store read less per call; a copy that turns out stale is a conflict, and the call is
   * planned again from the store.
   */
  cached?: ((kind: string, namespace: string, name: string) => Resource | undefined) | undefined;
  logger: Logger;
  /** Largest request body; default 1 MiB. */
  maxBodyBytes?: number;
}

type Method = 'GET' | 'PUT' | 'POST' | 'DELETE';

interface Call {
  method: Method;
  namespace: string;
  service: string | undefined;
  id: string | undefined;
  ifMatch: string | undefined;
  body: unknown;
}

interface Answer {
  status: number;
  body: unknown;
  /** The version to send as ETag. */
  version?: string | undefined;
  /** Resources the call wrote, for the log line. */
  wrote?: string[];
}

type Operation = (call: Call) => Promise<Answer>;

interface Route {
  /** Methods → operation; a method missing here is a 405. */
  ops: Partial<Record<Method, Operation>>;
  namespace: string;
  service?: string;
  id?: string;
  /** Body shape per method that takes one. */
  bodies?: Partial<Record<Method, Parameters<typeof checkShape>[1]>>;
}

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const RETRIES = 5;

const fail = (status: number, message: string, field?: string): ApiError => new ApiError(status, message, { field });

/** A write's ops and how to name a validation error's field in the caller's terms. */
interface Plan {
  ops: ApplyOp[];
  fieldOf: (resourceKey: string, path: string) => string | undefined;
}

export class RegistrationHandler {
  private readonly opts: RegistrationHandlerOptions;
  private readonly maxBody: number;
  private readonly openapi: string;

  constructor(opts: RegistrationHandlerOptions) {
    this.opts = opts;
    this.maxBody = opts.maxBodyBytes ?? 1024 * 1024;
    this.openapi = `${JSON.stringify(openApiDocument(), null, 2)}\n`;
  }

  /** Serves one request under /apis/registration/v1; never throws. */
  handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const started = performance.now();
    const url = new URL(req.url ?? '/', 'http://pilot');
    const method = req.method ?? 'GET';
    let wrote: string[] | undefined;
    const done = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      const text = `${JSON.stringify(body)}\n`;
      if (!res.headersSent) res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers });
      res.end(method === 'HEAD' ? undefined : text);
      const line = { method, path: url.pathname, status, ms: Math.round(performance.now() - started), ...(wrote !== undefined ? { wrote } : {}) };
      if (status >= 500) this.opts.logger.error(line, 'registration request failed');
      else if (status === 401 || status === 403) this.opts.logger.warn({ ...line, remote: req.socket.remoteAddress }, 'registration request refused');
      else if (wrote !== undefined && wrote.length > 0) this.opts.logger.info(line, 'registration write');
      else this.opts.logger.debug(line, 'registration request');
    };
    const serve = async (): Promise<void> => {
      const rel = url.pathname.slice(API_PREFIX.length);
      if (rel === '/openapi.json') {
        if (method !== 'GET' && method !== 'HEAD') throw new ApiError(405, `${method} not allowed on ${url.pathname}: only GET`, { headers: { allow: 'GET, HEAD' } });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(this.openapi) });
        res.end(method === 'HEAD' ? undefined : this.openapi);
        return;
      }
      const route = this.route(rel);
      if (route === undefined) throw notFound(`no such endpoint ${url.pathname}; see ${API_PREFIX}/openapi.json`);
      const auth = this.opts.authorize(bearerToken(req.headers.authorization), route.namespace);
      if (auth === 'unauthenticated') {
        throw new ApiError(401, 'a registration token is required: send "Authorization: Bearer TOKEN" with a token from the pilot\'s --registration-tokens file', { headers: { 'www-authenticate': 'Bearer realm="sextant-registration"' } });
      }
      if (auth === 'forbidden') throw fail(403, `this token may not act on namespace ${route.namespace}`, 'namespace');
      const m = (method === 'HEAD' ? 'GET' : method) as Method;
      const op = route.ops[m];
      if (op === undefined) {
        const allow = Object.keys(route.ops).join(', ');
        throw new ApiError(405, `${method} not allowed on ${url.pathname}: ${allow}`, { headers: { allow } });
      }
      checkName(route.namespace, 'namespace');
      if (route.service !== undefined) checkName(route.service, 'service');
      if (route.id !== undefined) checkName(route.id, 'id');
      const shape = route.bodies?.[m];
      let body: unknown;
      if (shape !== undefined) {
        body = await this.readJson(req, m === 'POST');
        checkShape(body ?? {}, shape);
      } else {
        req.resume();
      }
      const call: Call = { method: m, namespace: route.namespace, service: route.service, id: route.id, ifMatch: ifMatchOf(req.headers['if-match']), body };
      const answer = await op(call);
      wrote = answer.wrote;
      done(answer.status, answer.body, answer.version !== undefined && answer.version !== '' ? { etag: `"${answer.version}"` } : {});
    };
    serve().catch((err: unknown) => {
      const e = toApiError(err);
      if (e.status === 413) res.setHeader('connection', 'close');
      done(e.status, e.body(), e.headers);
    });
  }

  private route(rel: string): Route | undefined {
    const parts = rel.split('/').slice(1).map((p) => safeDecode(p));
    if (parts[0] !== 'namespaces' || parts[2] !== 'services' || parts.some((p) => p === undefined)) return undefined;
    const namespace = parts[1]!;
    const [, , , service, sub, idPart, ...rest] = parts as string[];
    if (rest.length > 0 || namespace === '') return undefined;
    if (service === undefined) return parts.length === 3 ? { namespace, ops: { GET: (c) => this.listServices(c) } } : undefined;
    if (service === '') return undefined;
    if (sub === undefined) {
      return {
        namespace, service,
        ops: { GET: (c) => this.getService(c), PUT: (c) => this.putService(c), DELETE: (c) => this.deleteService(c) },
        bodies: { PUT: SERVICE_BODY },
      };
    }
    if (sub === 'release' && idPart === undefined) {
      return {
        namespace, service,
        ops: { GET: (c) => this.getRelease(c), PUT: (c) => this.putRelease(c), DELETE: (c) => this.deleteRelease(c) },
        bodies: { PUT: RELEASE_BODY },
      };
    }
    if (sub !== 'instances') return undefined;
    if (idPart === undefined) return { namespace, service, ops: { GET: (c) => this.listInstances(c) } };
    const action = /^(.+):(pull-in|pull-out)$/.exec(idPart);
    if (action !== null) {
      const state = action[2] === 'pull-out' ? 'out' : 'in';
      return { namespace, service, id: action[1]!, ops: { POST: (c) => this.pull(c, state) }, bodies: { POST: EMPTY_BODY } };
    }
    if (idPart === '') return undefined;
    return {
      namespace, service, id: idPart,
      ops: { GET: (c) => this.getInstance(c), PUT: (c) => this.putInstance(c), DELETE: (c) => this.deleteInstance(c) },
      bodies: { PUT: INSTANCE_BODY },
    };
  }

  /** Reads the body: at most maxBody bytes (413), JSON only (415), parsed (400). Empty is allowed when `optional`. */
  private async readJson(req: http.IncomingMessage, optional: boolean): Promise<unknown> {
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > this.maxBody) {
      req.resume();
      throw fail(413, `the body is ${declared} bytes; at most ${this.maxBody} are accepted`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > this.maxBody) {
        req.resume();
        throw fail(413, `the body is larger than ${this.maxBody} bytes`);
      }
      chunks.push(chunk);
    }
    if (size === 0) {
      if (optional) return undefined;
      throw badRequest('a JSON body is required');
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') throw fail(415, `the body must be application/json, got ${type === '' ? 'no content type' : type}`);
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    } catch (err) {
      throw badRequest(`the body is not valid JSON: ${(err as Error).message}`);
    }
  }

  private store(): ConfigStore {
    const s = this.opts.store();
    if (s === undefined) throw fail(503, 'the config store is still opening; retry shortly');
    return s;
  }

  /**
   * Plans a write from fresh reads and applies it; when another writer got in between (a
   * ConflictError the caller did not ask for with If-Match), plans again.
   */
  private async write(call: Call, plan: (store: ConfigStore) => Promise<Plan | Answer>, answer: (result: ApplyResult) => Answer): Promise<Answer> {
    const store = this.store();
    for (let attempt = 1; ; attempt++) {
      const planned = await plan(store);
      if (!('ops' in planned)) return planned;
      let result: ApplyResult;
      try {
        result = await store.apply(planned.ops);
      } catch (err) {
        if (err instanceof ValidationFailedError) throw validationError(err, planned.fieldOf);
        const raced = (err instanceof ConflictError || err instanceof AlreadyExistsError || err instanceof NotFoundError) && call.ifMatch === undefined;
        if (raced && attempt < RETRIES) continue;
        if (raced) throw fail(409, `the resources kept changing while this call was applied (${attempt} attempts); retry`);
        throw err;
      }
      const out = answer(result);
      out.wrote = result.results.filter((r) => r.changed).map((r) => `${r.op} ${r.key}`);
      return out;
    }
  }

  // ---------------------------------------------------------------- services

  private async managedService(store: ConfigStore, call: Call): Promise<Resource> {
    const se = await store.get('ServiceEntry', call.namespace, call.service!);
    if (se === undefined || !isManaged(se)) throw notFound(`service ${call.namespace}/${call.service!} is not registered`);
    return se;
  }

  private async listServices(call: Call): Promise<Answer> {
    const items = await this.store().list('ServiceEntry', { namespace: call.namespace, labelSelector: { [MANAGED_BY_LABEL]: MANAGED_BY } });
    return { status: 200, body: { items: items.map(serviceView) } };
  }

  private async getService(call: Call): Promise<Answer> {
    const se = await this.managedService(this.store(), call);
    return { status: 200, body: serviceView(se), version: se.metadata.resourceVersion };
  }

  private async putService(call: Call): Promise<Answer> {
    const body = call.body as ServiceBody;
    let existed = false;
    return await this.write(call, async (store) => {
      const current = await store.get('ServiceEntry', call.namespace, call.service!);
      refuseUnmanaged(current, 'service');
      checkIfMatch(call, current?.metadata.resourceVersion);
      existed = current !== undefined;
      const se = serviceEntryOf(call.namespace, call.service!, body);
      return { ops: [{ op: 'put', resource: se, ifMatch: current?.metadata.resourceVersion }], fieldOf: (_k, p) => serviceField(p) };
    }, (result) => {
      const se = result.results[0]!.resource!;
      return { status: existed ? 200 : 201, body: serviceView(se), version: se.metadata.resourceVersion };
    });
  }

  private async deleteService(call: Call): Promise<Answer> {
    return await this.write(call, async (store) => {
      const se = await this.managedService(store, call);
      checkIfMatch(call, se.metadata.resourceVersion);
      const instances = await this.instancesOf(store, call);
      const [dr, vs] = await Promise.all([store.get('DestinationRule', call.namespace, call.service!), store.get('VirtualService', call.namespace, call.service!)]);
      const ops: ApplyOp[] = [{ op: 'delete', kind: 'ServiceEntry', namespace: call.namespace, name: call.service!, ifMatch: se.metadata.resourceVersion }];
      for (const r of [dr, vs, ...instances]) {
        if (r !== undefined && isManaged(r)) ops.push({ op: 'delete', kind: r.kind, namespace: r.metadata.namespace, name: r.metadata.name, ifMatch: r.metadata.resourceVersion });
      }
      if (ops.length > MAX_APPLY_OPS) {
        throw fail(409, `service ${call.namespace}/${call.service!} has ${instances.length} instances: one call removes at most ${MAX_APPLY_OPS - 3}; delete some instances first`);
      }
      return { ops, fieldOf: () => undefined };
    }, (result) => ({ status: 200, body: { deleted: result.results.filter((r) => r.changed).map((r) => r.key), resourceVersion: String(result.revision) } }));
  }

  // ---------------------------------------------------------------- instances

  private async instancesOf(store: ConfigStore, call: Call): Promise<Resource[]> {
    const wes = await store.list('WorkloadEntry', { namespace: call.namespace, labelSelector: { [MANAGED_BY_LABEL]: MANAGED_BY, app: call.service! } });
    return wes.filter((we) => isInstanceOf(we, call.service!));
  }

  private async managedInstance(store: ConfigStore, call: Call): Promise<Resource> {
    const we = await store.get('WorkloadEntry', call.namespace, instanceResourceName(call.service!, call.id!));
    if (we === undefined || !isInstanceOf(we, call.service!) || we.metadata.annotations?.[INSTANCE_ANNOTATION] !== call.id) {
      throw notFound(`instance ${call.id!} of service ${call.namespace}/${call.service!} is not registered`);
    }
    return we;
  }

  /** The instance as the pilot's copy has it (see RegistrationHandlerOptions.cached), when it is this API's and versioned. */
  private cachedInstance(call: Call): Resource | undefined {
    const we = this.opts.cached?.('WorkloadEntry', call.namespace, instanceResourceName(call.service!, call.id!));
    if (we === undefined || we.metadata.resourceVersion === undefined || !isInstanceOf(we, call.service!) || we.metadata.annotations?.[INSTANCE_ANNOTATION] !== call.id) return undefined;
    return we;
  }

  private async listInstances(call: Call): Promise<Answer> {
    const store = this.store();
    await this.managedService(store, call);
    const items = await this.instancesOf(store, call);
    return { status: 200, body: { items: items.map(instanceView) } };
  }

  private async getInstance(call: Call): Promise<Answer> {
    const store = this.store();
    const [we, se] = await Promise.all([this.managedInstance(store, call), this.managedService(store, call)]);
    const view: InstanceView & { acks?: unknown } = instanceView(we);
    if (this.opts.acks !== undefined) {
      const spec = se.spec as ServiceEntrySpec;
      const acks = this.opts.acks({
        key: `WorkloadEntry/${we.metadata.namespace}/${we.metadata.name}`,
        resourceVersion: we.metadata.resourceVersion ?? '',
        address: view.address,
        hosts: spec.hosts,
        ports: (spec.ports ?? []).map((p) => p.number),
      });
      const acked = acks.proxies.filter((p) => p.acked).length;
      view.acks = {
        state: view.state, resourceVersion: view.resourceVersion, pushed: acks.pushed, proxies: acks.proxies,
        acked, pending: acks.proxies.length - acked, complete: acks.pushed && acked === acks.proxies.length,
      };
    }
    return { status: 200, body: view, version: we.metadata.resourceVersion };
  }

  private async putInstance(call: Call): Promise<Answer> {
    const body = call.body as InstanceBody;
    const app = body.labels?.['app'];
    if (app !== undefined && app !== call.service) throw badRequest(`labels.app: must be the service name ${call.service!} (or left out), got ${JSON.stringify(app)}`, 'labels.app');
    const name = instanceResourceName(call.service!, call.id!);
    if (name.length > 253) throw badRequest(`id: service name and id together make the WorkloadEntry name ${name.slice(0, 40)}…, longer than 253 characters`, 'id');
    let existed = false;
    return await this.write(call, async (store) => {
      await this.managedService(store, call);
      const current = await store.get('WorkloadEntry', call.namespace, name);
      refuseUnmanaged(current, 'instance');
      if (current !== undefined && !isInstanceOf(current, call.service!)) throw fail(409, `WorkloadEntry/${call.namespace}/${name} belongs to another registration; choose another id`, 'id');
      checkIfMatch(call, current?.metadata.resourceVersion);
      existed = current !== undefined;
      return { ops: [{ op: 'put', resource: workloadEntryOf(call.namespace, call.service!, call.id!, body), ifMatch: current?.metadata.resourceVersion }], fieldOf: (_k, p) => instanceField(p) };
    }, (result) => {
      const we = result.results[0]!.resource!;
      return { status: existed ? 200 : 201, body: instanceView(we), version: we.metadata.resourceVersion };
    });
  }

  private async deleteInstance(call: Call): Promise<Answer> {
    return await this.write(call, async (store) => {
      const we = await this.managedInstance(store, call);
      checkIfMatch(call, we.metadata.resourceVersion);
      return { ops: [{ op: 'delete', kind: 'WorkloadEntry', namespace: call.namespace, name: we.metadata.name, ifMatch: we.metadata.resourceVersion }], fieldOf: () => undefined };
    }, (result) => ({ status: 200, body: { deleted: result.results.filter((r) => r.changed).map((r) => r.key), resourceVersion: String(result.revision) } }));
  }

  private async pull(call: Call, state: 'in' | 'out'): Promise<Answer> {
    let planned = 0;
    return await this.write(call, async (store) => {
      // First from the pilot's copy, when it says a write is needed (that it is not needed, or
      // a caller's If-Match, is decided on the store's own state).
      const cached = ++planned === 1 && call.ifMatch === undefined ? this.cachedInstance(call) : undefined;
      if (cached !== undefined && trafficState(cached) !== state) {
        return { ops: [{ op: 'put', resource: withTrafficState(cached, state), ifMatch: cached.metadata.resourceVersion }], fieldOf: () => undefined };
      }
      const we = await this.managedInstance(store, call);
      checkIfMatch(call, we.metadata.resourceVersion);
      // Already in that state: nothing to write, the answer is the same as the first call's.
      if (trafficState(we) === state) return { status: 200, body: instanceView(we), version: we.metadata.resourceVersion };
      return { ops: [{ op: 'put', resource: withTrafficState(we, state), ifMatch: we.metadata.resourceVersion }], fieldOf: () => undefined };
    }, (result) => {
      const we = result.results[0]!.resource!;
      return { status: 200, body: instanceView(we), version: we.metadata.resourceVersion };
    });
  }

  // ---------------------------------------------------------------- release

  private async getRelease(call: Call): Promise<Answer> {
    const store = this.store();
    const [dr, vs] = await Promise.all([store.get('DestinationRule', call.namespace, call.service!), store.get('VirtualService', call.namespace, call.service!)]);
    if (dr === undefined || !isManaged(dr)) throw notFound(`service ${call.namespace}/${call.service!} has no release`);
    const view = releaseView(dr, isManaged(vs) ? vs : undefined);
    return { status: 200, body: view, version: view.resourceVersion };
  }

  private async putRelease(call: Call): Promise<Answer> {
    const body = call.body as ReleaseBody;
    const total = body.subsets.reduce((sum, s) => sum + s.weight, 0);
    if (total !== 100) throw badRequest(`subsets: the weights add up to ${total}; they must add up to 100`, 'subsets');
    const names = new Set<string>();
    body.subsets.forEach((s, i) => {
      if (names.has(s.name)) throw badRequest(`subsets[${i}].name: subset ${s.name} is named twice`, `subsets[${i}].name`);
      names.add(s.name);
    });
    let existed = false;
    return await this.write(call, async (store) => {
      const se = await this.managedService(store, call);
      const [dr, vs] = await Promise.all([store.get('DestinationRule', call.namespace, call.service!), store.get('VirtualService', call.namespace, call.service!)]);
      refuseUnmanaged(dr, 'release');
      refuseUnmanaged(vs, 'release');
      checkIfMatch(call, dr === undefined && vs === undefined ? undefined : releaseVersion(dr, vs));
      existed = dr !== undefined || vs !== undefined;
      const host = (se.spec as ServiceEntrySpec).hosts[0]!;
      const next = releaseOf(call.namespace, call.service!, host, body);
      return {
        ops: [
          { op: 'put', resource: next.dr, ifMatch: dr?.metadata.resourceVersion },
          { op: 'put', resource: next.vs, ifMatch: vs?.metadata.resourceVersion },
        ],
        fieldOf: (key, p) => (key.startsWith('DestinationRule/') ? destinationRuleField(p) : virtualServiceField(p)),
      };
    }, (result) => {
      const view = releaseView(result.results[0]!.resource!, result.results[1]!.resource);
      return { status: existed ? 200 : 201, body: view, version: view.resourceVersion };
    });
  }

  private async deleteRelease(call: Call): Promise<Answer> {
    return await this.write(call, async (store) => {
      const [dr, vs] = await Promise.all([store.get('DestinationRule', call.namespace, call.service!), store.get('VirtualService', call.namespace, call.service!)]);
      if (dr === undefined || !isManaged(dr)) throw notFound(`service ${call.namespace}/${call.service!} has no release`);
      const managedVs = isManaged(vs) ? vs : undefined;
      checkIfMatch(call, releaseVersion(dr, managedVs));
      const ops: ApplyOp[] = [{ op: 'delete', kind: 'DestinationRule', namespace: call.namespace, name: call.service!, ifMatch: dr.metadata.resourceVersion }];
      if (managedVs !== undefined) ops.push({ op: 'delete', kind: 'VirtualService', namespace: call.namespace, name: call.service!, ifMatch: managedVs.metadata.resourceVersion });
      return { ops, fieldOf: () => undefined };
    }, (result) => ({ status: 200, body: { deleted: result.results.filter((r) => r.changed).map((r) => r.key), resourceVersion: String(result.revision) } }));
  }
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

function checkName(value: string, field: string): void {
  if (value.length > 63 || !NAME.test(value)) {
    throw badRequest(`${field}: ${JSON.stringify(value.slice(0, 80))} must be 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit`, field);
  }
}

function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m === null ? undefined : m[1];
}

/** `If-Match: "123"`, `123` or `W/"123"` → 123; `*` means "exists", which every write below checks anyway. */
function ifMatchOf(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const v = header.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
  return v === '' || v === '*' ? undefined : v;
}

function checkIfMatch(call: Call, actual: string | undefined): void {
  if (call.ifMatch === undefined) return;
  if (actual === undefined) throw fail(412, `If-Match ${call.ifMatch}: there is nothing to match (not registered)`);
  if (actual !== call.ifMatch) throw fail(412, `If-Match ${call.ifMatch} is stale: the current resourceVersion is ${actual}`);
}

function refuseUnmanaged(r: Resource | undefined, what: string): void {
  if (r !== undefined && !isManaged(r)) {
    throw fail(409, `${r.kind}/${r.metadata.namespace}/${r.metadata.name} exists and is not managed by the registration API (no label ${MANAGED_BY_LABEL}=${MANAGED_BY}); this ${what} is left alone`);
  }
}

function validationError(err: ValidationFailedError, fieldOf: Plan['fieldOf']): ApiError {
  const first = err.errors[0];
  if (first === undefined) return badRequest(err.message);
  const field = fieldOf(first.resource, first.path);
  const message = field !== undefined ? `${field}: ${first.detail}` : first.toString();
  return new ApiError(400, message, { field, details: err.errors.map(String) });
}

function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof ConflictError) return fail(412, err.message);
  if (err instanceof NotFoundError) return notFound(err.message);
  if (err instanceof AlreadyExistsError) return fail(409, err.message);
  if (err instanceof ValidationFailedError) return validationError(err, () => undefined);
  if (err instanceof InvalidArgumentError) return badRequest(err.message);
  if (err instanceof SourceUnavailableError || err instanceof StoreClosedError) return fail(503, err.message);
  if (err instanceof ConfigStoreError) return fail(500, err.message);
  return fail(503, `the config store call failed: ${err instanceof Error ? err.message : String(err)}`);
}

// RTDS over ADS (SotW and delta) with leases: Runtime resources come from a source the
// controllers set (not from the PushContext), so a limit moves without rebuilding any snapshot.
// A resource with a TTL is sent wrapped in `envoy.service.discovery.v3.Resource` (SotW: as an
// Any of that type; delta: its own `ttl` field) and refreshed by heartbeats (the wrapper with
// no body) every TTL/3, as the xDS protocol's "TTL" section describes: if the pilot dies, the
// heartbeats stop and the proxy drops the resource when the TTL runs out.
import { createHash } from 'node:crypto';
import { DISCOVERY_RESOURCE_TYPE, RUNTIME_TYPE, encodeMessage, formatDuration } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';
import type { EncodedResource } from './cache.ts';
import type { Connection, WatchedResource } from './connection.ts';
import { anyMessage, deltaResponse, lengthDelimited, sotwResponse, type SerializedResponse } from './wire.ts';
import type { RespondReason, RespondResult } from './ads.ts';

/** One Runtime resource for one proxy and how long it holds without a refresh (undefined: for good). */
export interface RuntimeResource {
  resource: ProtoJson;
  ttlMs: number | undefined;
}

/** Every Runtime resource a proxy should have, by name (a controller's view at this moment). */
export type RuntimeSource = (proxy: Proxy) => ReadonlyMap<string, RuntimeResource>;

/** What the runtime service needs of the ADS server: its streams and its way of sending. */
export interface RuntimeHost {
  readonly connections: ReadonlyMap<string, Connection>;
  readonly controlPlaneSotw: Buffer;
  readonly controlPlaneDelta: Buffer;
  send(con: Connection, w: WatchedResource, body: SerializedResponse, version: string, nonce: string, reason: RespondReason, started: number): Promise<void>;
  readonly logger: { debug(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/** A sent resource with its lease. */
interface Leased extends EncodedResource {
  /** Resource{version, resource, name, ttl} bytes; for SotW as an Any of the wrapper type. */
  readonly ttlMs: number | undefined;
  /** When the resource or its last heartbeat was sent. */
  refreshedAt: number;
}

const NOTHING: RespondResult = { sent: false, changed: [], edsServiceNames: [] };
const NO_RESOURCES: ReadonlyMap<string, RuntimeResource> = new Map();

function ttlJson(ms: number): string {
  return formatDuration(Math.floor(ms / 1000), (ms % 1000) * 1e6);
}

/** `envoy.service.discovery.v3.Resource` bytes: the body is omitted for a heartbeat. */
function wrapper(name: string, version: string, ttlMs: number, body: ProtoJson | undefined): Uint8Array {
  const r: ProtoJson = { name, version, ttl: ttlJson(ttlMs) };
  if (body !== undefined) r['resource'] = { '@type': RUNTIME_TYPE, ...body };
  return encodeMessage(DISCOVERY_RESOURCE_TYPE, r);
}

function encode(name: string, r: RuntimeResource): Leased {
  const bytes = encodeMessage(RUNTIME_TYPE, r.resource);
  const hash = createHash('sha256').update(bytes).update(`|ttl=${r.ttlMs ?? ''}`).digest();
  const version = hash.subarray(0, 8).toString('hex');
  // SotW: a leased resource travels inside the Resource wrapper; an unleased one as itself.
  const sotwField = r.ttlMs === undefined
    ? lengthDelimited(2, anyMessage(RUNTIME_TYPE, bytes))
    : lengthDelimited(2, anyMessage(DISCOVERY_RESOURCE_TYPE, wrapper(name, version, r.ttlMs, r.resource)));
  const delta = r.ttlMs === undefined
    ? encodeMessage(DISCOVERY_RESOURCE_TYPE, { name, version, resource: { '@type': RUNTIME_TYPE, ...r.resource } })
    : wrapper(name, version, r.ttlMs, r.resource);
  return {
    name,
    version,
    digest: new Uint32Array([hash.readUInt32LE(0), hash.readUInt32LE(4), hash.readUInt32LE(8), hash.readUInt32LE(12)]),
    sotwField,
    deltaField: lengthDelimited(2, delta),
    size: bytes.length,
    ttlMs: r.ttlMs,
    refreshedAt: 0,
  };
}

export interface RuntimeDiscoveryOptions {
  /** How often leases are checked for a due heartbeat (default 200 ms). */
  checkEveryMs?: number;
  /** The clock (tests). */
  now?: () => number;
}

/**
 * Serves `RUNTIME_TYPE` on the ADS streams: answers subscriptions from the source, pushes when
 * the source changes (`changed()`), and heartbeats leased resources every TTL/3.
 */
export class RuntimeDiscovery {
  private source: RuntimeSource = () => NO_RESOURCES;
  private readonly host: RuntimeHost;
  private readonly timer: NodeJS.Timeout;
  private readonly now: () => number;
  heartbeats = 0;

  constructor(host: RuntimeHost, options: RuntimeDiscoveryOptions = {}) {
    this.host = host;
    this.now = options.now ?? Date.now;
    this.timer = setInterval(() => this.refreshLeases(), options.checkEveryMs ?? 200);
    this.timer.unref();
  }

  /** Replaces the source and pushes to every subscribed proxy what changed for it. */
  setSource(source: RuntimeSource): void {
    this.source = source;
    this.changed();
  }

  /** The source's answers moved: regenerate for every subscribed proxy and send what changed. */
  changed(): void {
    for (const con of this.host.connections.values()) {
      const w = con.watched.get(RUNTIME_TYPE);
      if (w === undefined || w.nonceSent === undefined || con.closed) continue;
      void con.run(async () => {
        const drained = await this.respondNow(con, w, { kind: 'push' });
        await drained.drained;
      }).catch((err: unknown) => this.host.logger.warn({ proxy: con.proxy.id, err: err instanceof Error ? err.message : String(err) }, 'runtime push failed'));
    }
  }

  /** The response to a request or push for `w` (the ADS server's respond for RUNTIME_TYPE). */
  async respond(con: Connection, w: WatchedResource, reason: RespondReason): Promise<RespondResult> {
    const { result, drained } = await this.respondNow(con, w, reason);
    await drained;
    return result;
  }

  private async respondNow(con: Connection, w: WatchedResource, reason: RespondReason): Promise<{ result: RespondResult; drained: Promise<void> | undefined }> {
    const started = performance.now();
    const first = w.nonceSent === undefined;
    const all = this.source(con.proxy);
    const wanted = [...all].filter(([name]) => w.wildcard || w.names.has(name));
    const changed: Leased[] = [];
    const removed: string[] = [];
    const now = this.now();
    for (const [name, r] of wanted) {
      const previous = w.sent.get(name);
      if (previous !== undefined && previous.version === versionOf(r) && previous.stub !== true && reason.force?.has(name) !== true) continue;
      const e = encode(name, r);
      e.refreshedAt = now;
      if (previous !== undefined) w.acc.remove(previous.digest);
      w.acc.add(e.digest);
      w.sent.set(name, e);
      changed.push(e);
    }
    for (const [name, previous] of w.sent) {
      if (all.has(name) && (w.wildcard || w.names.has(name))) continue;
      w.acc.remove(previous.digest);
      w.sent.delete(name);
      removed.push(name);
    }
    if (con.protocol === 'delta' && reason.newlySubscribed !== undefined) {
      for (const name of reason.newlySubscribed) if (!all.has(name) && !removed.includes(name) && name !== '*') removed.push(name);
    }
    if (!first && changed.length === 0 && removed.length === 0) return { result: NOTHING, drained: undefined };
    const version = w.acc.version;
    const nonce = con.nextNonce();
    let body: SerializedResponse;
    if (con.protocol === 'delta') {
      body = deltaResponse(version, Buffer.concat(changed.map((e) => e.deltaField!)), RUNTIME_TYPE, nonce, removed, this.host.controlPlaneDelta);
    } else {
      // SotW: every subscribed resource in each response, so a response is the whole state.
      const entries = [...w.sent.values()] as Leased[];
      for (const e of entries) e.refreshedAt = now;
      body = sotwResponse(version, Buffer.concat(entries.map((e) => e.sotwField)), RUNTIME_TYPE, nonce, this.host.controlPlaneSotw);
    }
    const drained = this.host.send(con, w, body, version, nonce, reason, started);
    return { result: { sent: true, changed: changed.map((e) => e.name), edsServiceNames: [] }, drained };
  }

  /** Sends a heartbeat for every leased resource whose last refresh is a third of its TTL old. */
  private refreshLeases(): void {
    const now = this.now();
    for (const con of this.host.connections.values()) {
      const w = con.watched.get(RUNTIME_TYPE);
      if (w === undefined || w.nonceSent === undefined || con.closed) continue;
      let due = false;
      for (const e of w.sent.values()) {
        const l = e as Leased;
        if (l.ttlMs !== undefined && now - l.refreshedAt >= l.ttlMs / 3) due = true;
      }
      if (!due) continue;
      void con.run(() => this.heartbeat(con, w)).catch((err: unknown) => this.host.logger.warn({ proxy: con.proxy.id, err: err instanceof Error ? err.message : String(err) }, 'runtime heartbeat failed'));
    }
  }

  private async heartbeat(con: Connection, w: WatchedResource): Promise<void> {
    const now = this.now();
    // A resource whose content moved is sent whole, not heartbeated: the source decides.
    const pushed = await this.respondNow(con, w, { kind: 'push' });
    if (pushed.result.sent) {
      await pushed.drained;
      return;
    }
    const due: Leased[] = [];
    for (const e of w.sent.values()) {
      const l = e as Leased;
      if (l.ttlMs !== undefined && now - l.refreshedAt >= l.ttlMs / 3) due.push(l);
    }
    if (due.length === 0 || w.versionSent === undefined) return;
    const started = performance.now();
    const nonce = con.nextNonce();
    const fields = due.map((l) => {
      l.refreshedAt = now;
      const bytes = wrapper(l.name, l.version, l.ttlMs!, undefined);
      return con.protocol === 'delta' ? lengthDelimited(2, bytes) : lengthDelimited(2, anyMessage(DISCOVERY_RESOURCE_TYPE, bytes));
    });
    const body = con.protocol === 'delta'
      ? deltaResponse(w.versionSent, Buffer.concat(fields), RUNTIME_TYPE, nonce, [], this.host.controlPlaneDelta)
      : sotwResponse(w.versionSent, Buffer.concat(fields), RUNTIME_TYPE, nonce, this.host.controlPlaneSotw);
    this.heartbeats++;
    this.host.logger.debug({ proxy: con.proxy.id, resources: due.map((l) => l.name), nonce }, 'runtime lease heartbeat');
    await this.host.send(con, w, body, w.versionSent, nonce, { kind: 'push' }, started);
  }

  close(): void {
    clearInterval(this.timer);
  }
}

// Versions are content hashes: recomputed on every comparison, which is cheap for one small layer.
function versionOf(r: RuntimeResource): string {
  const bytes = encodeMessage(RUNTIME_TYPE, r.resource);
  return createHash('sha256').update(bytes).update(`|ttl=${r.ttlMs ?? ''}`).digest().subarray(0, 8).toString('hex');
}

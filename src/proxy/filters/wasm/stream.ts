// Runs the WASM filters of one point of the HTTP filter chain on one request: the request's
// headers, body (chunk by chunk, buffered per the ABI's contract while a filter pauses:
// proxy_on_request_body is called again with everything held so far, and with end_of_stream
// once the body ended) and trailers through each plugin in chain order, then the response
// through the same plugins in reverse order, via a DownstreamRequest wrapper the router
// answers through. Local replies, fail-open and fail-closed are decided here.
import { ACTION_CONTINUE, MapType, Status, StreamType } from './abi.ts';
import { BodyBuffer, HeaderMap } from './header-map.ts';
import type { HostContext, LocalResponse } from './host-calls.ts';
import type { WasmPlugin } from './plugin.ts';
import type { VmFailure, WasmVm } from './vm.ts';
import { BodyStream, emptyBody, reasonPhrase } from '../../http/index.ts';
import type { AbortSignalLike, DownstreamRequest, RawHeader, RequestHead, RespondOptions, ResponseHead } from '../../http/index.ts';

/** The request as the chain has it at this point (pseudo-headers apart from the fields). */
export interface WasmRequestView {
  method: string;
  /** Path and query. */
  target: string;
  authority: string;
  scheme: string;
  /** The fields, `host` among them. */
  headers: RawHeader[];
}

/** A local answer the router sends through `req` (the filters before the one that answered see it). */
export interface WasmReply {
  status: number;
  details: string;
  flags: string[];
  body: string | undefined;
  headers: RawHeader[];
}

export type WasmStageResult =
  | { kind: 'continue'; req: DownstreamRequest; view: WasmRequestView }
  | { kind: 'reply'; req: DownstreamRequest; reply: WasmReply };

/** One WASM filter of the chain as the router holds it: the plugin it runs, looked up per request. */
export interface WasmFilterSlot {
  /** The HTTP filter's name in the chain. */
  readonly name: string;
  /** The plugin now configured; undefined while its config (ECDS) has not arrived. */
  plugin(): WasmPlugin | undefined;
  /** Waits (bounded) for a missing config. */
  waitForPlugin(): Promise<WasmPlugin | undefined>;
}

/** What the stage reports and is bounded by (the proxy's WASM host). */
export interface StageEnvironment {
  /** Bytes of body the filters of one request may hold while paused (Envoy's buffer limit). */
  bufferLimit: number;
  count(event: 'fail_open' | 'fail_closed' | 'missing_config' | 'local_reply', plugin: string): void;
}

const HIGH_WATER = 64 * 1024;
const NO_HEADERS: RawHeader[] = [];

/**
 * Runs the request side of `slots` on `req`. Resolves once the request's headers went through
 * every filter (the result's `req` then carries the filtered body and answers through the
 * filters), or with a local reply to send.
 */
export function runWasmStage(slots: readonly WasmFilterSlot[], req: DownstreamRequest, view: WasmRequestView, envr: StageEnvironment): Promise<WasmStageResult> {
  const plugins: (WasmPlugin | undefined)[] = [];
  let missing = false;
  for (const s of slots) {
    const p = s.plugin();
    plugins.push(p);
    if (p === undefined) missing = true;
  }
  if (!missing) return new StageRun(req, view, envr).start(plugins as WasmPlugin[]);
  return Promise.all(slots.map((s, i) => plugins[i] ?? s.waitForPlugin())).then((ps) => {
    const absent = ps.findIndex((p) => p === undefined);
    if (absent >= 0) {
      envr.count('missing_config', slots[absent]!.name);
      return { kind: 'reply', req, reply: { status: 500, details: 'filter_config_not_found', flags: ['NFCF'], body: undefined, headers: [] } };
    }
    return new StageRun(req, view, envr).start(ps as WasmPlugin[]);
  });
}

// ---------------------------------------------------------------- one plugin on one request

/** One plugin's stream context on one request: what its host calls see and change. */
class HttpStream implements HostContext {
  readonly id: number;
  readonly kind = 'http' as const;
  readonly plugin: WasmPlugin;
  readonly vm: WasmVm;
  readonly run: StageRun;
  /** The VM failed (fail open): no more calls. */
  dead = false;
  finished = false;
  /** Inside a callback of this stream (a local reply then takes effect when it returns). */
  inCall = false;
  local: LocalResponse | undefined;
  requestBody: BodyBuffer | null = null;
  responseBody: BodyBuffer | null = null;
  /** Set by the pipeline running this stream: continue_stream / an out-of-callback local reply. */
  onResume: ((type: number) => void) | undefined;
  onLocal: (() => void) | undefined;
  private properties: Map<string, Uint8Array> | undefined;

  constructor(plugin: WasmPlugin, vm: WasmVm, run: StageRun) {
    this.plugin = plugin;
    this.vm = vm;
    this.run = run;
    this.id = vm.newContextId();
  }

  map(type: number): HeaderMap | null | undefined {
    const x = this.run;
    switch (type) {
      case MapType.HTTP_REQUEST_HEADERS: return x.requestMap;
      case MapType.HTTP_REQUEST_TRAILERS: return x.requestTrailers;
      case MapType.HTTP_RESPONSE_HEADERS: return x.responseMap;
      case MapType.HTTP_RESPONSE_TRAILERS: return x.responseTrailers;
      case MapType.GRPC_CALL_INITIAL_METADATA: case MapType.GRPC_CALL_TRAILING_METADATA:
      case MapType.HTTP_CALL_RESPONSE_HEADERS: case MapType.HTTP_CALL_RESPONSE_TRAILERS:
        return null;
      default: return undefined;
    }
  }

  body(type: number): BodyBuffer | null {
    if (type === 0) return this.requestBody;
    if (type === 1) return this.responseBody;
    return null;
  }

  sendLocalResponse(r: LocalResponse): number {
    if (this.finished || this.run.responseStarted) return Status.BAD_ARGUMENT;
    if (!(r.status >= 200 && r.status <= 599)) return Status.BAD_ARGUMENT;
    this.local = r;
    if (!this.inCall) queueMicrotask(() => this.onLocal?.());
    return Status.OK;
  }

  continueStream(type: number): number {
    if (type !== StreamType.HTTP_REQUEST && type !== StreamType.HTTP_RESPONSE) return type > StreamType.UPSTREAM ? Status.BAD_ARGUMENT : Status.UNIMPLEMENTED;
    // never re-entered from inside a call: the pipeline resumes once this call returned
    queueMicrotask(() => this.onResume?.(type));
    return Status.OK;
  }

  closeStream(type: number): number {
    if (type !== StreamType.HTTP_REQUEST && type !== StreamType.HTTP_RESPONSE) return Status.BAD_ARGUMENT;
    if (this.finished || this.run.responseStarted) {
      this.run.reset();
      return Status.OK;
    }
    // a reset before any answer: the client gets none, its connection is closed
    this.local = { status: 503, details: 'wasm_close_stream', body: Buffer.alloc(0), headers: [], grpcStatus: undefined };
    this.run.closeRequested = true;
    if (!this.inCall) queueMicrotask(() => this.onLocal?.());
    return Status.OK;
  }

  property(path: readonly string[]): Uint8Array | undefined {
    const key = path.join('.');
    const own = this.properties?.get(key);
    if (own !== undefined) return own;
    return this.run.property(path);
  }

  setProperty(path: readonly string[], value: Uint8Array): number {
    this.properties ??= new Map();
    if (this.properties.size >= 256) return Status.BAD_ARGUMENT;
    this.properties.set(path.join('.'), value.slice());
    return Status.OK;
  }

  /** Calls a stream callback; throws VmFailure. */
  call(fn: string, ...args: number[]): number {
    this.inCall = true;
    try {
      return this.vm.call(this, fn, this.id, ...args);
    } finally {
      this.inCall = false;
    }
  }

  /** on_done, on_log, on_delete (once); contexts whose on_done says "not yet" finish at proxy_done. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.dead || this.vm.broken !== undefined) return this.forget();
    try {
      if (this.call('proxy_on_done') === 0 && this.vm.has('proxy_on_done')) {
        this.plugin.deferDone(this, () => this.logAndDelete());
        return;
      }
      this.logAndDelete();
    } catch (err) {
      this.plugin.vmFailed(this.vm, err as VmFailure);
      this.forget();
    }
  }

  private logAndDelete(): void {
    try {
      this.run.readOnly();
      this.call('proxy_on_log');
      this.call('proxy_on_delete');
    } catch (err) {
      this.plugin.vmFailed(this.vm, err as VmFailure);
    }
    this.forget();
  }

  private forget(): void {
    this.vm.contexts.delete(this.id);
  }
}

// ---------------------------------------------------------------- the pipeline of one direction

interface Sink {
  headers(): void;
  data(chunk: Buffer, eos: boolean): void;
  trailers(map: HeaderMap): void;
}

class Slot {
  readonly s: HttpStream;
  skipped: boolean;
  sawHeaders = false;
  headersDone = false;
  pending: Buffer[] = [];
  pendingLen = 0;
  pendingEos = false;
  heldTrailers: HeaderMap | null = null;

  constructor(s: HttpStream) {
    this.s = s;
    this.skipped = s.dead;
  }

  take(): Buffer {
    const b = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = [];
    this.pendingLen = 0;
    return b;
  }
}

type Outcome = 'continue' | 'pause' | 'stop';

/**
 * The filters of one direction in order, each holding what it paused on. Events (headers, body
 * chunks, trailers) enter at a slot and go on to the next when the filter continues; the sink
 * gets them once every filter let them through.
 */
class Pipeline {
  readonly dir: 'request' | 'response';
  readonly slots: Slot[];
  readonly sink: Sink;
  /** A local reply, a fail-closed failure or a reset ended it: further events are dropped. */
  finished = false;
  eosOnHeaders = false;
  private readonly run: StageRun;
  private readonly fns: { headers: string; body: string; trailers: string };

  constructor(dir: 'request' | 'response', streams: readonly HttpStream[], sink: Sink, run: StageRun) {
    this.dir = dir;
    this.slots = streams.map((s) => new Slot(s));
    this.sink = sink;
    this.run = run;
    this.fns = dir === 'request'
      ? { headers: 'proxy_on_request_headers', body: 'proxy_on_request_body', trailers: 'proxy_on_request_trailers' }
      : { headers: 'proxy_on_response_headers', body: 'proxy_on_response_body', trailers: 'proxy_on_response_trailers' };
    this.slots.forEach((slot, i) => {
      slot.s.onResume = (type): void => {
        if (type === (dir === 'request' ? StreamType.HTTP_REQUEST : StreamType.HTTP_RESPONSE)) this.resume(i);
      };
      slot.s.onLocal = (): void => {
        const l = slot.s.local;
        if (l === undefined || this.finished) return;
        slot.s.local = undefined;
        this.finished = true;
        this.run.localReply(this, i, l);
      };
    });
  }

  private map(): HeaderMap {
    return this.dir === 'request' ? this.run.requestMap! : this.run.responseMap!;
  }

  private invoke(i: number, fn: string, args: number[]): Outcome {
    const slot = this.slots[i]!;
    const s = slot.s;
    let r: number;
    try {
      r = s.call(fn, ...args);
    } catch (err) {
      s.dead = true;
      s.plugin.vmFailed(s.vm, err as VmFailure);
      if (s.plugin.spec.failOpen) {
        slot.skipped = true;
        s.plugin.stats.failOpen++;
        this.run.envr.count('fail_open', s.plugin.spec.name);
        return 'continue';
      }
      s.plugin.stats.failClosed++;
      this.run.envr.count('fail_closed', s.plugin.spec.name);
      this.finished = true;
      this.run.failClosed(this, i);
      return 'stop';
    }
    if (s.local !== undefined) {
      const l = s.local;
      s.local = undefined;
      this.finished = true;
      this.run.localReply(this, i, l);
      return 'stop';
    }
    return r === ACTION_CONTINUE ? 'continue' : 'pause';
  }

  headers(from: number): void {
    for (let i = from; i < this.slots.length; i++) {
      if (this.finished) return;
      const slot = this.slots[i]!;
      if (slot.skipped) {
        slot.sawHeaders = slot.headersDone = true;
        continue;
      }
      slot.sawHeaders = true;
      const r = this.invoke(i, this.fns.headers, [this.map().size, this.eosOnHeaders ? 1 : 0]);
      if (r === 'stop') return;
      if (r === 'pause') return;
      slot.headersDone = true;
    }
    if (!this.finished) this.sink.headers();
  }

  data(from: number, chunk: Buffer, eos: boolean): void {
    for (let i = from; i < this.slots.length; i++) {
      if (this.finished) return;
      const slot = this.slots[i]!;
      if (slot.skipped) continue;
      slot.pending.push(chunk);
      slot.pendingLen += chunk.length;
      if (eos) slot.pendingEos = true;
      if (this.run.heldBytes(this) > this.run.envr.bufferLimit) {
        this.finished = true;
        this.run.overflow(this);
        return;
      }
      const buf = new BodyBuffer(slot.take());
      const s = slot.s;
      if (this.dir === 'request') s.requestBody = buf;
      else s.responseBody = buf;
      const r = this.invoke(i, this.fns.body, [buf.data.length, eos ? 1 : 0]);
      s.requestBody = s.responseBody = null;
      if (r === 'stop') return;
      if (r === 'pause') {
        slot.pending = [buf.data];
        slot.pendingLen = buf.data.length;
        return;
      }
      slot.pendingEos = false;
      chunk = buf.data;
      if (!slot.headersDone) {
        slot.headersDone = true;
        this.headers(i + 1);
        if (this.finished) return;
      }
    }
    this.sink.data(chunk, eos);
  }

  trailers(from: number, map: HeaderMap): void {
    for (let i = from; i < this.slots.length; i++) {
      if (this.finished) return;
      const slot = this.slots[i]!;
      if (slot.skipped) continue;
      const r = this.invoke(i, this.fns.trailers, [map.size]);
      if (r === 'stop') return;
      if (r === 'pause') {
        slot.heldTrailers = map;
        return;
      }
      if (!this.flushHeld(i)) return;
    }
    this.sink.trailers(map);
  }

  /** Slot i let everything it held go: its headers (when held) and its body bytes. False when that ended the pipeline. */
  private flushHeld(i: number): boolean {
    const slot = this.slots[i]!;
    if (!slot.headersDone) {
      slot.headersDone = true;
      this.headers(i + 1);
      if (this.finished) return false;
    }
    if (slot.pendingLen > 0) {
      this.data(i + 1, slot.take(), false);
      if (this.finished) return false;
    }
    return true;
  }

  /** proxy_continue_stream from slot i's plugin. */
  private resume(i: number): void {
    if (this.finished) return;
    const slot = this.slots[i]!;
    if (slot.skipped || !slot.sawHeaders) return;
    if (slot.heldTrailers !== null) {
      const t = slot.heldTrailers;
      slot.heldTrailers = null;
      if (this.flushHeld(i)) this.trailers(i + 1, t);
      return;
    }
    if (!slot.headersDone) {
      slot.headersDone = true;
      this.headers(i + 1);
      if (this.finished) return;
    }
    if (slot.pendingLen > 0 || slot.pendingEos) {
      const eos = slot.pendingEos;
      slot.pendingEos = false;
      this.data(i + 1, slot.take(), eos);
    }
  }

  /** Bytes the filters hold now. */
  held(): number {
    let n = 0;
    for (const s of this.slots) n += s.pendingLen;
    return n;
  }
}

// ---------------------------------------------------------------- one request through a stage

/** Feeds a body into a pipeline with backpressure: reads `source` only while the output wants more. */
class BodyPump {
  private readonly it: AsyncIterator<Buffer>;
  private readonly pipeline: Pipeline;
  private readonly trailersOf: () => RawHeader[] | null;
  private readonly makeMap: (t: RawHeader[]) => HeaderMap;
  private waiting: (() => void) | undefined;
  paused = false;
  stopped = false;

  private readonly source: AsyncIterable<Buffer>;

  constructor(source: AsyncIterable<Buffer>, pipeline: Pipeline, trailersOf: () => RawHeader[] | null, makeMap: (t: RawHeader[]) => HeaderMap) {
    this.source = source;
    this.it = source[Symbol.asyncIterator]();
    this.pipeline = pipeline;
    this.trailersOf = trailersOf;
    this.makeMap = makeMap;
  }

  resume(): void {
    this.paused = false;
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.resume();
    this.it.return?.().catch(() => { /* the source is going away anyway */ });
  }

  async run(onError: (e: Error) => void): Promise<void> {
    try {
      const stream = this.source instanceof BodyStream ? this.source : undefined;
      for (;;) {
        if (this.paused) await new Promise<void>((r) => { this.waiting = r; });
        if (this.stopped || this.pipeline.finished) return;
        // bytes already here are taken in this turn: a body that arrived whole is filtered
        // before its head goes on, and leaves with it in one write
        const ready = stream?.tryRead();
        if (ready === null) break;
        let chunk: Buffer;
        if (ready !== undefined) chunk = ready;
        else {
          const r = await this.it.next();
          if (this.stopped || this.pipeline.finished) return;
          if (r.done === true) break;
          chunk = r.value;
        }
        // the last chunk of a body already ended (and without trailers) carries end_of_stream
        if (stream !== undefined && stream.finished && stream.bufferedBytes === 0 && stream.trailers === null && stream.tryRead() === null) {
          this.pipeline.data(0, chunk, true);
          return;
        }
        if (chunk.length > 0) this.pipeline.data(0, chunk, false);
      }
      const t = this.trailersOf();
      if (t !== null && t.length > 0) this.pipeline.trailers(0, this.makeMap(t));
      else this.pipeline.data(0, Buffer.alloc(0), true);
    } catch (e) {
      if (!this.stopped) onError(e as Error);
    }
  }
}

/** A body the sink writes into, read by the router (request) or the codec (response). */
function outputStream(pump: () => BodyPump | undefined): BodyStream {
  return new BodyStream({
    resume: () => pump()?.resume(),
    abandon: () => pump()?.stop(),
  }, HIGH_WATER);
}

function pushOut(out: BodyStream, chunk: Buffer, pump: BodyPump | undefined): void {
  if (chunk.length > 0 && !out.push(chunk) && pump !== undefined) pump.paused = true;
}

/** The state of one request through one stage: its streams, maps, and both pipelines. */
class StageRun {
  readonly req: DownstreamRequest;
  readonly envr: StageEnvironment;
  readonly view: WasmRequestView;
  streams: HttpStream[] = [];
  requestMap: HeaderMap | null = null;
  requestTrailers: HeaderMap | null = null;
  responseMap: HeaderMap | null = null;
  responseTrailers: HeaderMap | null = null;
  responseStarted = false;
  closeRequested = false;
  private settle: ((r: WasmStageResult) => void) | undefined;
  private released = false;
  private requestOut: BodyStream | undefined;
  private requestPump: BodyPump | undefined;
  private responsePipeline: Pipeline | undefined;
  private responseOut: BodyStream | undefined;
  private responsePump: BodyPump | undefined;
  private finalized = false;
  private outBytes = 0;
  private respondDone: ((p: Promise<void>) => void) | undefined;

  constructor(req: DownstreamRequest, view: WasmRequestView, envr: StageEnvironment) {
    this.req = req;
    this.view = view;
    this.envr = envr;
  }

  start(plugins: readonly WasmPlugin[]): Promise<WasmStageResult> {
    return new Promise<WasmStageResult>((resolve) => {
      this.settle = resolve;
      this.req.signal.addEventListener('abort', () => this.finalize());
      // streams are created in chain order; a plugin that cannot run applies its failStrategy here
      for (let i = 0; i < plugins.length; i++) {
        const p = plugins[i]!;
        const vm = p.vmForStream();
        if (vm !== undefined) {
          const s = new HttpStream(p, vm, this);
          vm.contexts.set(s.id, s);
          try {
            s.call('proxy_on_context_create', p.rootContextId);
            this.streams.push(s);
            continue;
          } catch (err) {
            s.dead = true;
            p.vmFailed(vm, err as VmFailure);
            vm.contexts.delete(s.id);
          }
        }
        if (p.spec.failOpen) {
          p.stats.failOpen++;
          this.envr.count('fail_open', p.spec.name);
          continue;
        }
        p.stats.failClosed++;
        this.envr.count('fail_closed', p.spec.name);
        // the streams made so far saw no request: the 503 goes around them
        this.finishWithReply(0, failReply());
        return;
      }
      this.requestMap = new HeaderMap(requestEntries(this.view));
      this.startRequest();
    });
  }

  private startRequest(): void {
    const req = this.req;
    const hasBody = req.bodyLength !== 0 && req.upgrade === undefined;
    let pump: BodyPump | undefined;
    const sink: Sink = {
      headers: () => this.releaseRequest(),
      data: (chunk, eos) => {
        const out = this.requestOut!;
        this.outBytes += chunk.length;
        pushOut(out, chunk, pump);
        if (eos) out.end(null);
      },
      trailers: (map) => {
        this.requestTrailers = map;
        this.requestOut!.end(map.entries);
      },
    };
    const pipeline = new Pipeline('request', this.streams, sink, this);
    pipeline.eosOnHeaders = req.bodyLength === 0;
    if (hasBody) {
      this.requestOut = outputStream(() => pump);
      pump = new BodyPump(req.body, pipeline, () => req.body.trailers, (t) => (this.requestTrailers = new HeaderMap(t.slice())));
      this.requestPump = pump;
    } else {
      // no body (or an upgrade's tunnel bytes, which no filter sees)
      this.requestOut = req.upgrade !== undefined ? req.body : emptyBody();
    }
    pipeline.headers(0);
    if (pump !== undefined && !pipeline.finished) {
      void pump.run((e) => {
        if (!this.released) this.finishWithReply(this.streams.length, { status: 400, details: 'downstream_body_failed', flags: ['DC'], body: undefined, headers: [] });
        else this.requestOut?.fail(e);
      });
    }
  }

  /** Every filter let the request's headers go: the router takes it from here. */
  private releaseRequest(): void {
    // body bytes that go on with the headers arrive in this same turn: wait for them, so that a
    // body the filters buffered whole gets its real length
    queueMicrotask(() => {
      if (this.released) return;
      this.released = true;
      const map = this.requestMap!;
      map.writable = false;
      const view = viewFromMap(this.view, map);
      const out = this.requestOut!;
      const headers = view.headers;
      if (out.finished && this.req.bodyLength !== 0 && this.req.upgrade === undefined && headers.some((h) => h.name.toLowerCase() === 'content-length')) {
        view.headers = withContentLength(headers, this.outBytes);
      }
      const head: RequestHead = { method: view.method, target: view.target, version: this.req.head.version, headers: view.headers };
      const bodyLength = this.req.upgrade !== undefined ? this.req.bodyLength : out.isEmptyAndEnded ? 0 : (typeof this.req.bodyLength === 'number' && out.finished ? this.outBytes : 'chunked');
      const wrapped = new FilteredRequest(this.req, head, out, bodyLength === 0 && this.req.bodyLength !== 0 ? 0 : bodyLength, this.streams, this);
      this.settle?.({ kind: 'continue', req: wrapped, view });
    });
  }

  /** A plugin answered (proxy_send_local_response) from pipeline `p`, slot i. */
  localReply(p: Pipeline, i: number, l: LocalResponse): void {
    this.envr.count('local_reply', p.slots[i]!.s.plugin.spec.name);
    const reply: WasmReply = {
      status: l.status, details: l.details || 'wasm_local_reply', flags: [],
      body: l.body.length > 0 ? l.body.toString('latin1') : undefined,
      headers: l.headers.map(([name, value]) => ({ name, value })),
    };
    if (p.dir === 'request') {
      this.requestPump?.stop();
      // the local reply goes back through this filter and the ones before it
      const upTo = this.streams.indexOf(p.slots[i]!.s) + 1;
      if (!this.released) this.finishWithReply(upTo, reply);
      else {
        // the request already went on: answer now (the router's answer finds it answered) and stop the upstream
        if (!this.req.responded) void this.wrapper(upTo).respond(replyHead(reply), reply.body === undefined ? null : Buffer.from(reply.body, 'latin1')).catch(() => {});
        this.requestOut?.fail(new Error('WASM filter answered the request locally'));
      }
      return;
    }
    // response: the local reply replaces the response for the filters after this one
    this.responsePump?.stop();
    if (this.responseStarted) {
      this.reset();
      return;
    }
    const rest = p.slots.slice(i + 1).map((s) => s.s);
    this.responseHead = replyHead(reply);
    this.responseMap = new HeaderMap(responseEntries(this.responseHead));
    this.responseTrailers = null;
    const body = reply.body === undefined ? null : Buffer.from(reply.body, 'latin1');
    this.runResponse(rest, body);
  }

  /** A fail-closed plugin failed in pipeline `p` at slot i: 503 before anything was sent, else a reset. */
  failClosed(p: Pipeline, i: number): void {
    if (p.dir === 'request') {
      this.requestPump?.stop();
      if (!this.released) this.finishWithReply(this.streams.indexOf(p.slots[i]!.s), failReply());
      else this.requestOut?.fail(new Error('WASM filter failed (fail closed)'));
      return;
    }
    this.responsePump?.stop();
    if (this.responseStarted) this.reset();
    else this.respondPlain(503, 'wasm_fail_stream');
  }

  /** The filters held more body than allowed. */
  overflow(p: Pipeline): void {
    if (p.dir === 'request') {
      this.requestPump?.stop();
      if (!this.released) this.finishWithReply(this.streams.length, { status: 413, details: 'request_payload_too_large', flags: [], body: 'Payload Too Large', headers: [] });
      else this.requestOut?.fail(new Error('request body held by WASM filters is over the buffer limit'));
      return;
    }
    this.responsePump?.stop();
    if (this.responseStarted) this.reset();
    else this.respondPlain(500, 'response_payload_too_large');
  }

  heldBytes(p: Pipeline): number {
    return p.held();
  }

  private finishWithReply(upTo: number, reply: WasmReply): void {
    if (this.closeRequested) reply = { ...reply, details: 'wasm_close_stream' };
    this.released = true;
    this.settle?.({ kind: 'reply', req: this.wrapper(upTo), reply });
  }

  private wrapper(upTo: number): FilteredRequest {
    const head: RequestHead = { ...this.req.head };
    return new FilteredRequest(this.req, head, this.req.body, this.req.bodyLength, this.streams.slice(0, upTo), this);
  }

  // ---- response

  /** The response goes back through `streams` (chain order; run in reverse), then downstream. */
  respond(streams: readonly HttpStream[], head: ResponseHead, body: Buffer | AsyncIterable<Buffer> | null | undefined, opts: RespondOptions | undefined): Promise<void> {
    if (this.closeRequested) opts = { ...opts, close: true };
    const live = streams.filter((s) => !s.dead && !s.finished);
    if (live.length === 0) return this.track(this.req.respond(head, body ?? null, opts));
    this.responseMap = new HeaderMap(responseEntries(head));
    return new Promise<void>((resolve, reject) => {
      this.respondDone = (p) => { p.then(resolve, reject); };
      this.responseHead = head;
      this.responseOpts = opts;
      this.runResponse([...live].reverse(), body ?? null);
    });
  }

  private responseHead: ResponseHead | undefined;
  private responseOpts: RespondOptions | undefined;

  private runResponse(encodeOrder: readonly HttpStream[], body: Buffer | AsyncIterable<Buffer> | null): void {
    const noBody = body === null || (Buffer.isBuffer(body) && body.length === 0) || (body instanceof BodyStream && body.isEmptyAndEnded && body.trailers === null);
    const upgrade = this.req.upgrade !== undefined && this.responseHead?.status === 101;
    const ctl: { pump?: BodyPump } = {};
    let outBytes = 0;
    const out = noBody ? null : upgrade ? (body as AsyncIterable<Buffer>) : outputStream(() => ctl.pump);
    if (out instanceof BodyStream && out !== body) this.responseOut = out;
    const sink: Sink = {
      headers: () => {
        queueMicrotask(() => {
          if (this.responseStarted) return;
          this.responseStarted = true;
          this.responseMap!.writable = false;
          const base = this.responseHead ?? { status: 200, reason: '', version: '1.1' as const, headers: [] };
          const head = headFromMap(base, this.responseMap!);
          if (out instanceof BodyStream && out.finished && head.headers.some((h) => h.name.toLowerCase() === 'content-length')) {
            head.headers = withContentLength(head.headers, outBytes);
          }
          this.sendResponse(head, out);
        });
      },
      data: (chunk, eos) => {
        if (!(out instanceof BodyStream)) return;
        outBytes += chunk.length;
        pushOut(out, chunk, ctl.pump);
        if (eos) out.end(null);
      },
      trailers: (map) => {
        this.responseTrailers = map;
        if (out instanceof BodyStream) out.end(map.entries);
      },
    };
    const pipeline = new Pipeline('response', encodeOrder, sink, this);
    this.responsePipeline = pipeline;
    pipeline.eosOnHeaders = noBody;
    pipeline.headers(0);
    if (noBody || upgrade || pipeline.finished) return;
    if (Buffer.isBuffer(body)) {
      pipeline.data(0, body, true);
      return;
    }
    const source = body as AsyncIterable<Buffer>;
    const pump = new BodyPump(source, pipeline, () => (source instanceof BodyStream ? source.trailers : null), (t) => (this.responseTrailers = new HeaderMap(t.slice())));
    ctl.pump = pump;
    this.responsePump = pump;
    void pump.run((e) => {
      if (!this.responseStarted) this.respondPlain(503, 'upstream_reset_before_response_started');
      else if (out instanceof BodyStream) out.fail(e);
    });
  }

  private sendResponse(head: ResponseHead, body: Buffer | AsyncIterable<Buffer> | null): void {
    const done = this.respondDone;
    this.respondDone = undefined;
    let p: Promise<void>;
    try {
      p = this.req.respond(head, body, this.responseOpts);
    } catch (e) {
      p = Promise.reject(e as Error);
    }
    this.track(p);
    if (done !== undefined) done(p);
  }

  private respondPlain(status: number, details: string): void {
    this.responseStarted = true;
    this.responseDetails = details;
    const text = status === 503 ? '' : reasonPhrase(status);
    const headers: RawHeader[] = text === '' ? [] : [{ name: 'content-type', value: 'text/plain' }];
    headers.push({ name: 'date', value: new Date().toUTCString() }, { name: 'server', value: 'envoy' });
    this.sendResponse({ status, reason: reasonPhrase(status), version: '1.1', headers }, text === '' ? null : Buffer.from(text));
  }

  /** Why the response is not the one the router chose (a failure after the router answered). */
  responseDetails: string | undefined;

  /** close_stream or a failure after the response started: the client sees a reset. */
  reset(): void {
    this.requestPump?.stop();
    this.responsePump?.stop();
    const err = new Error('stream reset by a WASM filter');
    if (this.requestOut instanceof BodyStream && this.requestOut !== this.req.body) this.requestOut.fail(err);
    if (this.responseOut !== undefined) this.responseOut.fail(err);
    if (this.responsePipeline !== undefined) this.responsePipeline.finished = true;
  }

  private track(p: Promise<void>): Promise<void> {
    p.then(() => this.finalize(), () => this.finalize());
    return p;
  }

  /** on_done, on_log and on_delete for every stream, once the exchange is over. */
  finalize(): void {
    if (this.finalized) return;
    this.finalized = true;
    this.requestPump?.stop();
    this.responsePump?.stop();
    for (const s of this.streams) s.finish();
  }

  /** In on_log the maps are read-only. */
  readOnly(): void {
    for (const m of [this.requestMap, this.requestTrailers, this.responseMap, this.responseTrailers]) if (m !== null) m.writable = false;
  }

  // ---- properties

  property(path: readonly string[]): Uint8Array | undefined {
    const [a, b] = path;
    const req = this.req;
    const m = this.requestMap;
    if (path.length === 2 && a === 'request') {
      const target = m?.get(':path') ?? this.view.target;
      switch (b) {
        case 'path': return text(target);
        case 'url_path': return text(target.split('?')[0]!);
        case 'query': { const q = target.indexOf('?'); return text(q < 0 ? '' : target.slice(q + 1)); }
        case 'host': return text(m?.get(':authority') ?? this.view.authority);
        case 'method': return text(m?.get(':method') ?? this.view.method);
        case 'scheme': return text(m?.get(':scheme') ?? this.view.scheme);
        case 'headers': return m?.serialize();
        case 'referer': return optional(m?.get('referer'));
        case 'useragent': return optional(m?.get('user-agent'));
        case 'id': return optional(m?.get('x-request-id'));
        case 'protocol': return text(req.protocol ?? `HTTP/${req.head.version}`);
        // the wall-clock time of the request's first byte, in nanoseconds
        case 'time': return int64(BigInt(Date.now()) * 1_000_000n - (process.hrtime.bigint() - req.receivedAt));
        case 'size': return typeof req.bodyLength === 'number' ? int64(BigInt(req.bodyLength)) : undefined;
      }
    }
    if (path.length === 3 && a === 'request' && b === 'headers') return optional(m?.get(path[2]!));
    if (path.length === 2 && a === 'response') {
      const r = this.responseMap;
      if (r === null) return undefined;
      if (b === 'code') return int64(BigInt(Number(r.get(':status') ?? 0)));
      if (b === 'headers') return r.serialize();
      if (b === 'code_details' && this.responseDetails !== undefined) return text(this.responseDetails);
    }
    if (path.length === 3 && a === 'response' && b === 'headers') return optional(this.responseMap?.get(path[2]!));
    if (path.length === 2 && (a === 'source' || a === 'destination')) {
      const addr = a === 'source' ? req.remoteAddress : req.localAddress;
      const port = a === 'source' ? req.remotePort : req.localPort;
      if (b === 'address') return text(addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);
      if (b === 'port') return int64(BigInt(port));
    }
    if (path.length === 2 && a === 'connection') {
      if (b === 'mtls') return Buffer.from([req.peerPrincipal !== undefined ? 1 : 0]);
      if (b === 'uri_san_peer_certificate') return optional(req.peerPrincipal);
    }
    return undefined;
  }
}

function text(s: string): Uint8Array {
  return Buffer.from(s, 'utf8');
}

function optional(s: string | undefined): Uint8Array | undefined {
  return s === undefined ? undefined : Buffer.from(s, 'latin1');
}

function int64(v: bigint): Uint8Array {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(BigInt.asIntN(64, v));
  return b;
}

function failReply(): WasmReply {
  return { status: 503, details: 'wasm_fail_stream', flags: [], body: undefined, headers: [] };
}

function replyHead(r: WasmReply): ResponseHead {
  const headers: RawHeader[] = [...r.headers];
  if (r.body !== undefined && !headers.some((h) => h.name.toLowerCase() === 'content-type')) headers.push({ name: 'content-type', value: 'text/plain' });
  return { status: r.status, reason: reasonPhrase(r.status), version: '1.1', headers };
}

/** The request map: Envoy's pseudo-headers first, then the fields without `host` (it is `:authority`). */
function requestEntries(v: WasmRequestView): RawHeader[] {
  const out: RawHeader[] = [
    { name: ':authority', value: v.authority },
    { name: ':path', value: v.target },
    { name: ':method', value: v.method },
    { name: ':scheme', value: v.scheme },
  ];
  for (const h of v.headers) if (!(h.name.length === 4 && h.name.toLowerCase() === 'host')) out.push(h);
  return out;
}

/** The request after the filters: pseudo-headers back into method, target and authority, `host` where it was. */
function viewFromMap(before: WasmRequestView, map: HeaderMap): WasmRequestView {
  if (!map.changed) return before;
  const method = map.get(':method') ?? before.method;
  const target = map.get(':path') ?? before.target;
  const authority = map.get(':authority') ?? before.authority;
  const scheme = map.get(':scheme') ?? before.scheme;
  const fields = map.entries.filter((h) => !h.name.startsWith(':'));
  const hostAt = before.headers.findIndex((h) => h.name.length === 4 && h.name.toLowerCase() === 'host');
  if (hostAt >= 0) {
    // the host field keeps its place among the fields that were before it
    const before0 = before.headers.slice(0, hostAt).filter((h) => !(h.name.length === 4 && h.name.toLowerCase() === 'host')).length;
    fields.splice(Math.min(before0, fields.length), 0, { name: before.headers[hostAt]!.name, value: authority });
  } else if (authority !== before.authority) {
    fields.unshift({ name: 'host', value: authority });
  }
  return { method, target, authority, scheme, headers: fields };
}

function responseEntries(head: ResponseHead): RawHeader[] {
  return [{ name: ':status', value: String(head.status) }, ...head.headers];
}

function headFromMap(base: ResponseHead, map: HeaderMap): ResponseHead {
  if (!map.changed) return { ...base, headers: base.headers === NO_HEADERS ? [] : base.headers };
  const s = Number(map.get(':status'));
  const status = Number.isInteger(s) && s >= 200 && s <= 999 ? s : base.status;
  return { status, reason: status === base.status ? base.reason : reasonPhrase(status), version: base.version, headers: map.entries.filter((h) => !h.name.startsWith(':')) };
}

function withContentLength(headers: RawHeader[], length: number): RawHeader[] {
  return headers.map((h) => (h.name.length === 14 && h.name.toLowerCase() === 'content-length' ? { name: h.name, value: String(length) } : h));
}

/** The request as the rest of the chain sees it: filtered head and body, answered through the filters. */
class FilteredRequest implements DownstreamRequest {
  head: RequestHead;
  body: BodyStream;
  bodyLength: number | 'chunked' | 0;
  private readonly inner: DownstreamRequest;
  private readonly streams: readonly HttpStream[];
  private readonly run: StageRun;
  private answered = false;

  constructor(inner: DownstreamRequest, head: RequestHead, body: BodyStream, bodyLength: number | 'chunked' | 0, streams: readonly HttpStream[], run: StageRun) {
    this.inner = inner;
    this.head = head;
    this.body = body;
    this.bodyLength = bodyLength;
    this.streams = streams;
    this.run = run;
  }

  get protocol(): 'HTTP/2' | undefined { return this.inner.protocol; }
  get upgrade(): string | undefined { return this.inner.upgrade; }
  get responseTrailers(): readonly RawHeader[] | null | undefined { return this.inner.responseTrailers; }
  get remoteAddress(): string { return this.inner.remoteAddress; }
  get remotePort(): number { return this.inner.remotePort; }
  get localAddress(): string { return this.inner.localAddress; }
  get localPort(): number { return this.inner.localPort; }
  get peerPrincipal(): string | undefined { return this.inner.peerPrincipal; }
  set peerPrincipal(v: string | undefined) { this.inner.peerPrincipal = v; }
  get receivedAt(): bigint { return this.inner.receivedAt; }
  get signal(): AbortSignalLike { return this.inner.signal; }
  get responded(): boolean { return this.answered || this.inner.responded; }
  get complete(): boolean { return this.inner.complete; }
  bytesReceived(): number { return this.inner.bytesReceived(); }
  bytesSent(): number { return this.inner.bytesSent(); }

  respond(head: ResponseHead, body?: Buffer | AsyncIterable<Buffer> | null, opts?: RespondOptions): Promise<void> {
    if (this.responded) return Promise.reject(new Error('respond() called twice for one request'));
    this.answered = true;
    return this.run.respond(this.streams, head, body, opts);
  }
}

export { NO_HEADERS };

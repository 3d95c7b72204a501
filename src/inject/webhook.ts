// `sextant injector`: Kubernetes' mutating admission webhook for pods, a thin HTTPS wrapper
// over the injection transform. An AdmissionReview v1 comes in on POST /inject; the answer is
// an AdmissionReview v1 whose JSONPatch (RFC 6902, base64) is the one `sextant inject` applies.
// A request it cannot read is admitted with a warning (failure policy Ignore: fail open) or
// refused (Fail), as configured. HTTPS only: the API server calls webhooks over TLS.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type net from 'node:net';
import type { Logger } from 'pino';
import { Counter, Registry } from 'prom-client';
import { injectionPatch } from './inject.ts';
import type { JsonValue } from './inject-patch.ts';
import { InjectError, type InjectOptions } from './inject-template.ts';

// node:https without an ESM import (whose facade loads Node's bundled fetch for nothing).
const https = process.getBuiltinModule('node:https');

/** Kubernetes' words: Ignore admits what cannot be read (fail open), Fail refuses it. */
export type FailurePolicy = 'Ignore' | 'Fail';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
export const INJECT_PATH = '/inject';
/** Larger bodies are refused unread (the API server's own limit on an object is 3 MiB). */
export const MAX_BODY_BYTES = 6 * 1024 * 1024;

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  /** base64 of the JSON Patch. */
  patch?: string;
  warnings?: string[];
  status?: { status: 'Failure'; code: number; reason: string; message: string };
}

export interface AdmissionReviewResponse {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: 'AdmissionReview';
  response: AdmissionResponse;
}

/** What was decided for one request, for the log and the metrics. */
export interface ReviewOutcome {
  result: 'injected' | 'skipped' | 'bad-request';
  reason?: string;
  namespace?: string;
  pod?: string;
}

type JsonObject = { [key: string]: JsonValue };
const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A request that is not an AdmissionReview of a pod; `uid` when the request had one. */
class BadRequest extends Error {
  readonly uid: string;
  constructor(message: string, uid = '') {
    super(message);
    this.uid = uid;
  }
}

function readRequest(body: string, contentType: string | undefined): { uid: string; request: JsonObject } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (err) {
    throw new BadRequest(`the body is not JSON (${(err as Error).message})`);
  }
  const request = isObject(parsed) ? parsed['request'] : undefined;
  const uid = isObject(request) && typeof request['uid'] === 'string' ? request['uid'] : '';
  const fail = (message: string): never => {
    throw new BadRequest(message, uid);
  };
  if (!/^application\/json\b/i.test(contentType ?? '')) fail(`Content-Type ${JSON.stringify(contentType ?? '')} is not application/json`);
  if (!isObject(parsed)) fail('the body is not an AdmissionReview (a JSON object)');
  const review = parsed as JsonObject;
  if (review['kind'] !== 'AdmissionReview' || review['apiVersion'] !== ADMISSION_API_VERSION) {
    fail(`expected kind AdmissionReview, apiVersion ${ADMISSION_API_VERSION}; got ${JSON.stringify(review['kind'] ?? null)}, ${JSON.stringify(review['apiVersion'] ?? null)}`);
  }
  if (!isObject(request)) fail('the AdmissionReview has no request');
  if (uid === '') fail('request.uid is missing');
  return { uid, request: request as JsonObject };
}

function answer(response: AdmissionResponse): AdmissionReviewResponse {
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response };
}

/** The answer to a request that cannot be served: admitted with a warning (Ignore) or refused (Fail). */
export function badRequestAnswer(uid: string, message: string, policy: FailurePolicy): AdmissionReviewResponse {
  if (policy === 'Ignore') return answer({ uid, allowed: true, warnings: [`${message}; admitted without a sidecar (failure policy Ignore)`] });
  return answer({ uid, allowed: false, status: { status: 'Failure', code: 400, reason: 'BadRequest', message } });
}

/**
 * Answers one AdmissionReview body (pure: the HTTP server only reads and writes bytes).
 * Never throws: whatever the body, the answer is an AdmissionReview.
 */
export function review(body: string, contentType: string | undefined, inject: InjectOptions, policy: FailurePolicy): { answer: AdmissionReviewResponse; outcome: ReviewOutcome } {
  let uid = '';
  const outcome: ReviewOutcome = { result: 'skipped' };
  try {
    const read = readRequest(body, contentType);
    uid = read.uid;
    const request = read.request;
    const namespace = typeof request['namespace'] === 'string' ? request['namespace'] : undefined;
    if (namespace !== undefined) outcome.namespace = namespace;
    const kind = isObject(request['kind']) ? request['kind'] : {};
    if (kind['kind'] !== 'Pod' || (kind['group'] ?? '') !== '') {
      throw new BadRequest(`this webhook injects pods; it was sent ${JSON.stringify(kind['kind'] ?? null)} (check the rules of the MutatingWebhookConfiguration)`);
    }
    // Pods get their sidecar when created; an update or a subresource (binding, status) is let through.
    if (request['operation'] !== 'CREATE' || (typeof request['subResource'] === 'string' && request['subResource'] !== '')) {
      outcome.reason = `operation ${String(request['operation'])}${request['subResource'] ? ` on ${String(request['subResource'])}` : ''}`;
      return { answer: answer({ uid, allowed: true }), outcome };
    }
    const pod = request['object'];
    if (!isObject(pod)) throw new BadRequest('request.object is not a Pod');
    const meta = isObject(pod['metadata']) ? pod['metadata'] : {};
    outcome.pod = typeof meta['name'] === 'string' && meta['name'] !== '' ? meta['name'] : `${typeof meta['generateName'] === 'string' ? meta['generateName'] : ''}*`;
    // The object may come without kind when the API server fills it in later; read it as a Pod.
    const { patch, results } = injectionPatch({ ...pod, kind: 'Pod' }, inject, namespace);
    const r = results[0];
    if (r === undefined || !r.injected || patch.length === 0) {
      outcome.reason = r?.reason ?? 'nothing to inject';
      return { answer: answer({ uid, allowed: true }), outcome };
    }
    outcome.result = 'injected';
    return {
      answer: answer({
        uid,
        allowed: true,
        patchType: 'JSONPatch',
        patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
        ...(r.warnings.length > 0 ? { warnings: r.warnings } : {}),
      }),
      outcome,
    };
  } catch (err) {
    if (!(err instanceof BadRequest) && !(err instanceof InjectError)) throw err;
    if (uid === '' && err instanceof BadRequest) uid = err.uid;
    const message = `sextant injector: ${err instanceof InjectError ? 'cannot inject the pod: ' : 'bad request: '}${err.message}`;
    outcome.result = 'bad-request';
    outcome.reason = err.message;
    return { answer: badRequestAnswer(uid, message, policy), outcome };
  }
}

export interface InjectorOptions {
  /** `host:port` to listen on (HTTPS). */
  address: string;
  certFile: string;
  keyFile: string;
  inject: InjectOptions;
  failurePolicy: FailurePolicy;
  logger: Logger;
  /** How often the cert and key files are checked for a new pair (cert-manager rotates them); default 10 s. */
  certCheckMs?: number;
}

export interface Injector {
  /** Bound `host:port`. */
  readonly address: string;
  readonly registry: Registry;
  close(): Promise<void>;
}

function readPair(certFile: string, keyFile: string): { cert: Buffer; key: Buffer } {
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`cannot read the TLS ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
  };
  return { cert: read(certFile, 'certificate'), key: read(keyFile, 'key') };
}

function splitHostPort(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(address);
  if (m === null) throw new Error(`expected HOST:PORT, got ${JSON.stringify(address)}`);
  return { host: m[1]!, port: Number(m[2]) };
}

/** Starts the webhook server; resolves once it listens. */
export async function startInjector(o: InjectorOptions): Promise<Injector> {
  const pair = readPair(o.certFile, o.keyFile);
  const registry = new Registry();
  const registers = [registry];
  // Istio's injector metric names.
  const requests = new Counter({ name: 'sidecar_injection_requests_total', help: 'Total number of sidecar injection requests.', registers });
  const success = new Counter({ name: 'sidecar_injection_success_total', help: 'Total number of successful sidecar injection requests.', registers });
  const skipped = new Counter({ name: 'sidecar_injection_skip_total', help: 'Total number of skipped sidecar injection requests.', registers });
  const failures = new Counter({ name: 'sidecar_injection_failure_total', help: 'Total number of failed sidecar injection requests.', labelNames: ['type'], registers });

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.method === 'GET' && (path === '/ready' || path === '/healthz/ready')) return send(200, 'ready\n');
    if (req.method === 'GET' && path === '/metrics') {
      void registry.metrics().then((text) => send(200, text, registry.contentType));
      return;
    }
    if (path !== INJECT_PATH) return send(404, 'not found\n');
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return send(405, 'use POST\n');
    }
    const started = performance.now();
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(c);
    });
    req.on('end', () => {
      requests.inc();
      let reviewed: ReturnType<typeof review>;
      if (tooLarge) {
        const reason = `the body is larger than ${MAX_BODY_BYTES} bytes`;
        reviewed = { answer: badRequestAnswer('', `sextant injector: bad request: ${reason}`, o.failurePolicy), outcome: { result: 'bad-request', reason } };
      } else {
        reviewed = review(Buffer.concat(chunks).toString('utf8'), req.headers['content-type'], o.inject, o.failurePolicy);
      }
      const { answer, outcome } = reviewed;
      if (outcome.result === 'injected') success.inc();
      else if (outcome.result === 'skipped') skipped.inc();
      else failures.inc({ type: 'bad-request' });
      const level = outcome.result === 'bad-request' ? 'warn' : 'info';
      o.logger[level]({ uid: answer.response.uid, ...outcome, allowed: answer.response.allowed, ms: Math.round(performance.now() - started) }, 'admission review');
      send(200, JSON.stringify(answer), 'application/json');
    });
    req.on('error', () => res.destroy());
  };

  const server = https.createServer({ ...pair, minVersion: 'TLSv1.2' }, handle);
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  // A rotated pair (cert-manager, a re-created Secret) is picked up without a restart; a pair
  // that does not load keeps the last good one serving.
  const reload = (): void => {
    try {
      const next = readPair(o.certFile, o.keyFile);
      server.setSecureContext({ ...next, minVersion: 'TLSv1.2' });
      o.logger.info({ cert: o.certFile }, 'TLS certificate reloaded');
    } catch (err) {
      o.logger.error({ cert: o.certFile, key: o.keyFile, err: (err as Error).message }, 'TLS certificate not reloaded; the previous one keeps serving');
    }
  };
  const interval = o.certCheckMs ?? 10_000;
  for (const f of [o.certFile, o.keyFile]) watchFile(f, { interval, persistent: false }, (cur, prev) => {
    if (cur.mtimeMs !== prev.mtimeMs || cur.ino !== prev.ino) reload();
  });

  const { host, port } = splitHostPort(o.address);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as net.AddressInfo;
  const address = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  o.logger.info({ address, failurePolicy: o.failurePolicy, pilotAddress: o.inject.pilotAddress, clusterId: o.inject.clusterId }, 'injector listening');
  return {
    address,
    registry,
    close: () => new Promise<void>((resolve) => {
      for (const f of [o.certFile, o.keyFile]) unwatchFile(f);
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

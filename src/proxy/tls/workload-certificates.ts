// The sidecar's own certificate, as Istio's agent keeps it for Envoy's SDS `default` and
// `ROOTCA` secrets: a fresh key and CSR per certificate, the first one before the listeners
// need it, a new one at half its remaining life (±1 % jitter), retried with backoff while the
// current one stays in use. Listeners and pools take the SecureContext of the current
// generation for each new connection, so a rotation never touches a connection in flight.
import tls from 'node:tls';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type pino from 'pino';
import type { IssuedChain } from './ca-client.ts';

/** Asks a CA to sign a CSR (CaClient.request, or a test's CA). */
export type CertificateSigner = (csrPem: string, ttlSeconds: number) => Promise<IssuedChain>;

export interface WorkloadSecret {
  identity: string;
  keyPem: string;
  chainPem: string;
  rootPem: string;
  serial: string;
  notAfter: number;
  /** 1 for the first certificate, +1 per rotation. */
  generation: number;
}

export interface WorkloadCertificatesOptions {
  /** The SPIFFE URI to request. */
  identity: string;
  sign: CertificateSigner;
  /** Requested lifetime (Istio's SECRET_TTL, 24 h). */
  ttlSeconds: number;
  /** Rotate when this share of the lifetime is left (SECRET_GRACE_PERIOD_RATIO, 0.5). */
  graceRatio?: number;
  logger: pino.Logger;
}

const MAX_RETRY_MS = 30_000;

export class WorkloadCertificates {
  private readonly opts: WorkloadCertificatesOptions;
  private secret: WorkloadSecret | undefined;
  private serverContexts = new Map<string, tls.SecureContext>();
  private clientCtx: tls.SecureContext | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly listeners: ((s: WorkloadSecret) => void)[] = [];
  /** Rotations that failed and were retried. */
  failures = 0;

  constructor(opts: WorkloadCertificatesOptions) {
    this.opts = opts;
  }

  get identity(): string {
    return this.opts.identity;
  }

  /** Obtains the first certificate (rejects when the CA refuses or cannot be reached). */
  async start(): Promise<WorkloadSecret> {
    const s = await this.fetch();
    this.install(s);
    return s;
  }

  current(): WorkloadSecret | undefined {
    return this.secret;
  }

  /** Called after each rotation with the new secret. */
  onRotate(cb: (s: WorkloadSecret) => void): void {
    this.listeners.push(cb);
  }

  /** The server context of the current generation (requests and verifies client certificates against ROOTCA). */
  serverContext(): tls.SecureContext {
    const s = this.required();
    let ctx = this.serverContexts.get('');
    if (ctx === undefined) {
      // a session id context is what lets OpenSSL resume sessions that carry a client certificate
      ctx = tls.createSecureContext({ key: s.keyPem, cert: s.chainPem, ca: s.rootPem, minVersion: 'TLSv1.2', sessionIdContext: 'sextant-mesh-mtls' } as tls.SecureContextOptions);
      this.serverContexts.set('', ctx);
    }
    return ctx;
  }

  /** The client context of the current generation (presents the workload certificate, trusts ROOTCA). */
  clientContext(): tls.SecureContext {
    const s = this.required();
    this.clientCtx ??= tls.createSecureContext({ key: s.keyPem, cert: s.chainPem, ca: s.rootPem, minVersion: 'TLSv1.2' });
    return this.clientCtx;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  private required(): WorkloadSecret {
    if (this.secret === undefined) throw new Error('no workload certificate yet');
    return this.secret;
  }

  private async fetch(): Promise<WorkloadSecret> {
    // loaded on first use: sidecars without mTLS never load the X.509 library
    const { generateKeyAndCsr } = await import('./csr.ts');
    const { keyPem, csrPem } = await generateKeyAndCsr(this.opts.identity);
    const issued = await this.opts.sign(csrPem, this.opts.ttlSeconds);
    const leaf = new X509Certificate(issued.chainPem);
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new Error('the CA answered a certificate for another key');
    const sans = leaf.subjectAltName ?? '';
    if (!sans.split(', ').includes(`URI:${this.opts.identity}`)) throw new Error(`the CA answered a certificate for ${sans || 'no identity'}, not ${this.opts.identity}`);
    return {
      identity: this.opts.identity,
      keyPem,
      chainPem: issued.chainPem,
      rootPem: issued.rootPem,
      serial: leaf.serialNumber,
      notAfter: Date.parse(leaf.validTo),
      generation: (this.secret?.generation ?? 0) + 1,
    };
  }

  private install(s: WorkloadSecret): void {
    this.secret = s;
    this.serverContexts = new Map();
    this.clientCtx = undefined;
    this.opts.logger.info({ identity: s.identity, serial: s.serial, notAfter: new Date(s.notAfter).toISOString(), generation: s.generation }, 'workload certificate installed');
    for (const l of this.listeners) l(s);
    this.schedule(s);
  }

  private schedule(s: WorkloadSecret): void {
    if (this.closed) return;
    // measured from now, not from notBefore: the CA backdates notBefore for clock skew
    const left = s.notAfter - Date.now();
    const grace = this.opts.graceRatio ?? 0.5;
    const jitter = 1 + (Math.random() * 0.02 - 0.01);
    const delay = Math.max(0, left * (1 - grace) * jitter);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.rotate(1000), delay);
    this.timer.unref();
  }

  private rotate(retryMs: number): void {
    if (this.closed) return;
    this.fetch().then((s) => {
      if (!this.closed) this.install(s);
    }, (err: unknown) => {
      this.failures++;
      this.opts.logger.warn({ identity: this.opts.identity, err: (err as Error).message, retryMs }, 'workload certificate rotation failed; keeping the current one');
      this.timer = setTimeout(() => this.rotate(Math.min(retryMs * 2, MAX_RETRY_MS)), retryMs);
      this.timer.unref();
    });
  }
}

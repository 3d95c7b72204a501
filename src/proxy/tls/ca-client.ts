// A client of Istio's CreateCertificate (the pilot's CA, or istiod's): a CSR and the
// caller's metadata in, the chain out, split into the leaf chain and the root.
import * as grpc from '@grpc/grpc-js';
import { certificateServiceDefinition, stringStruct } from '../../envoy/istio-ca.ts';
import type { IstioCertificateRequest, IstioCertificateResponse } from '../../envoy/istio-ca.ts';

export interface CertificateRequest {
  csrPem: string;
  ttlSeconds: number;
  /** NAMESPACE, SERVICE_ACCOUNT, … as the CA checks them. */
  metadata: Readonly<Record<string, string>>;
  /** A bootstrap token, sent as `authorization: Bearer …`. */
  token?: string;
}

export interface IssuedChain {
  /** The leaf and any intermediates, PEM, leaf first. */
  chainPem: string;
  /** The trust anchor, PEM (the last certificate of the answer). */
  rootPem: string;
}

type CreateCertificate = (req: IstioCertificateRequest, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: IstioCertificateResponse) => void) => void;

/**
 * TLS to a closed control plane: the root that signed the pilot's certificate, the name to
 * check it for, and the workload certificate to present once there is one (renewals).
 */
export interface ControlPlaneTls {
  rootPem: string;
  /**
   * The name the pilot's certificate must carry (`--xds-server-name`); default
   * `istiod.istio-system.svc`, which every pilot certificate names, as Istio's agents check istiod.
   */
  serverName?: string;
  /** The current workload certificate, when there is one (presented as the client certificate). */
  clientCertificate?: () => { keyPem: string; chainPem: string } | undefined;
}

/** Channel credentials and options for the pilot's TLS port (xDS and the CA). */
export function controlPlaneCredentials(t: ControlPlaneTls): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  const own = t.clientCertificate?.();
  const credentials = grpc.credentials.createSsl(Buffer.from(t.rootPem), own !== undefined ? Buffer.from(own.keyPem) : null, own !== undefined ? Buffer.from(own.chainPem) : null);
  const name = t.serverName ?? DEFAULT_CONTROL_PLANE_NAME;
  return { credentials, options: { 'grpc.ssl_target_name_override': name, 'grpc.default_authority': name } };
}

export const DEFAULT_CONTROL_PLANE_NAME = 'istiod.istio-system.svc';

type CaStub = grpc.Client & { CreateCertificate: CreateCertificate };

export class CaClient {
  private readonly address: string;
  private readonly tls: ControlPlaneTls | undefined;
  private client: CaStub | undefined;

  constructor(address: string, tls?: ControlPlaneTls) {
    this.address = address;
    this.tls = tls;
  }

  // Over TLS the client certificate changes with each rotation: a channel per request (rare).
  private stub(): CaStub {
    const Ctor = grpc.makeGenericClientConstructor(certificateServiceDefinition(), 'IstioCertificateService');
    if (this.tls === undefined) return (this.client ??= new Ctor(this.address, grpc.credentials.createInsecure()) as unknown as CaStub);
    const { credentials, options } = controlPlaneCredentials(this.tls);
    return new Ctor(this.address, credentials, options) as unknown as CaStub;
  }

  request(req: CertificateRequest, timeoutMs = 10_000): Promise<IssuedChain> {
    const md = new grpc.Metadata();
    if (req.token !== undefined) md.set('authorization', `Bearer ${req.token}`);
    const client = this.stub();
    const done = (): void => { if (client !== this.client) client.close(); };
    return new Promise<IssuedChain>((resolve, reject) => {
      client.CreateCertificate(
        { csr: req.csrPem, validityDuration: String(req.ttlSeconds), metadata: stringStruct(req.metadata) },
        md,
        { deadline: Date.now() + timeoutMs },
        (err, res) => {
          if (err !== null) return reject(new Error(`CreateCertificate failed: ${err.details || err.message}`));
          const chain = res?.certChain ?? [];
          if (chain.length < 2) return reject(new Error(`CreateCertificate answered ${chain.length} certificate(s); expected the leaf and the root`));
          resolve({ chainPem: chain.slice(0, -1).join(''), rootPem: chain[chain.length - 1]! });
        },
      );
    }).finally(done);
  }

  close(): void {
    this.client?.close();
  }
}

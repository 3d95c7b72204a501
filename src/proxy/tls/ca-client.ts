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

export class CaClient {
  private readonly client: grpc.Client & { CreateCertificate: CreateCertificate };

  constructor(address: string) {
    const Ctor = grpc.makeGenericClientConstructor(certificateServiceDefinition(), 'IstioCertificateService');
    this.client = new Ctor(address, grpc.credentials.createInsecure()) as unknown as grpc.Client & { CreateCertificate: CreateCertificate };
  }

  request(req: CertificateRequest, timeoutMs = 10_000): Promise<IssuedChain> {
    const md = new grpc.Metadata();
    if (req.token !== undefined) md.set('authorization', `Bearer ${req.token}`);
    return new Promise((resolve, reject) => {
      this.client.CreateCertificate(
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
    });
  }

  close(): void {
    this.client.close();
  }
}

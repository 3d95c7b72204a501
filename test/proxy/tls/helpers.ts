// An in-process mesh CA for the proxy's TLS tests: the pilot's signing code without the gRPC hop.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { loadSigningRoot, parseCsr, signWorkloadCertificate } from '../../../src/pilot/ca/index.ts';
import type { SigningRoot } from '../../../src/pilot/ca/index.ts';
import { WorkloadCertificates } from '../../../src/proxy/tls/workload-certificates.ts';

export async function testRoot(): Promise<SigningRoot> {
  return loadSigningRoot({ dir: path.join(mkdtempSync(path.join(tmpdir(), 'sextant-tls-')), 'ca'), trustDomain: 'cluster.local' });
}

/** Workload certificates for `sa` in `ns` signed by `root` (whatever identity the CSR names, when `lie` is set). */
export async function workloadCerts(root: SigningRoot, ns: string, sa: string, opts: { ttlSeconds?: number; signAs?: string } = {}): Promise<WorkloadCertificates> {
  const identity = `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
  const certs = new WorkloadCertificates({
    identity,
    ttlSeconds: opts.ttlSeconds ?? 3600,
    logger: pino({ level: 'silent' }),
    sign: async (csrPem, ttlSeconds) => {
      const { csr } = await parseCsr(csrPem);
      const chain = await signWorkloadCertificate(root, csr, opts.signAs ?? identity, ttlSeconds * 1000);
      return { chainPem: chain.slice(0, -1).join(''), rootPem: chain[chain.length - 1]! };
    },
  });
  return certs;
}

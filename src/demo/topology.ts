// The demo's workloads, read from the same Istio config the pilot serves: each
// WorkloadEntry with the Sidecar that selects it gives the workload address, the app's
// local endpoint and the egress address the app calls through.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

export interface DemoWorkload {
  /** `reviews-v2` */
  name: string;
  namespace: string;
  service: string;
  version: string;
  /** The workload's own address (127.0.1.N): the sidecar's inbound listener binds here. */
  address: string;
  port: number;
  /** Where the app listens (the Sidecar's ingress defaultEndpoint). */
  appEndpoint: { host: string; port: number };
  /** The sidecar's egress listener the app sends outbound requests to. */
  egress: { host: string; port: number };
  labels: Record<string, string>;
  /** Istio's node id for this sidecar. */
  nodeId: string;
  adminAddress: string;
}

interface Doc {
  kind?: string;
  metadata?: { name?: string; namespace?: string };
  spec?: Record<string, unknown>;
}

function readDocs(file: string): Doc[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((d) => d.toJSON() as Doc | null)
    .filter((d): d is Doc => d !== null);
}

function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  if (!selector) return true;
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function hostPort(s: string, what: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  const port = Number(s.slice(i + 1));
  if (i < 0 || !Number.isInteger(port)) throw new Error(`demo topology: ${what} ${JSON.stringify(s)} is not HOST:PORT`);
  return { host: s.slice(0, i), port };
}

/** Reads workloads.yaml and sidecars.yaml from `dir` and pairs each workload with its Sidecar. */
export function readTopology(dir: string): DemoWorkload[] {
  const docs = ['workloads.yaml', 'sidecars.yaml'].flatMap((f) => readDocs(path.join(dir, f)));
  const sidecars = docs.filter((d) => d.kind === 'Sidecar');
  const out: DemoWorkload[] = [];
  for (const we of docs.filter((d) => d.kind === 'WorkloadEntry')) {
    const spec = we.spec as { address: string; labels: Record<string, string>; ports?: Record<string, number> };
    const name = we.metadata?.name ?? '';
    const namespace = we.metadata?.namespace ?? 'default';
    const sidecar = sidecars.find(
      (s) => (s.metadata?.namespace ?? 'default') === namespace &&
        selects((s.spec?.['workloadSelector'] as { labels?: Record<string, string> } | undefined)?.labels, spec.labels),
    );
    if (!sidecar) throw new Error(`demo topology: no Sidecar selects WorkloadEntry ${namespace}/${name}`);
    const ingress = (sidecar.spec?.['ingress'] as Array<{ port: { number: number }; defaultEndpoint: string }>)[0];
    const egress = (sidecar.spec?.['egress'] as Array<{ port: { number: number }; bind: string }>)[0];
    if (!ingress || !egress) throw new Error(`demo topology: Sidecar ${namespace}/${sidecar.metadata?.name} needs one ingress and one egress`);
    const service = spec.labels['app'] ?? name;
    out.push({
      name,
      namespace,
      service,
      version: spec.labels['version'] ?? 'v1',
      address: spec.address,
      port: ingress.port.number,
      appEndpoint: hostPort(ingress.defaultEndpoint, 'defaultEndpoint'),
      egress: { host: egress.bind, port: egress.port.number },
      labels: spec.labels,
      nodeId: `sidecar~${spec.address}~${name}.${namespace}~${namespace}.svc.cluster.local`,
      adminAddress: `${spec.address}:15000`,
    });
  }
  return out;
}

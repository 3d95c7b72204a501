// Istio Sidecar resources as YAML documents, as the end-to-end tests write them into a
// pilot's config directory: a workload whose app calls its sidecar's egress listener
// explicitly, or whose sidecar listens in front of the app, both in captureMode NONE.
// Each returns one document without a trailing newline: put it on a line of its own.

export interface SidecarPort {
  /** The Sidecar's name (and, without `labels`, the `app` label it selects). */
  name: string;
  labels?: Record<string, string>;
  namespace?: string;
  /** The address the listener binds. */
  bind: string;
  port?: number;
  protocol?: string;
  /** The port's name (`http`). */
  portName?: string;
}

function header(s: SidecarPort): string[] {
  const labels = Object.entries(s.labels ?? { app: s.name }).map(([k, v]) => `${k}: ${v}`).join(', ');
  return [
    'apiVersion: networking.istio.io/v1',
    'kind: Sidecar',
    `metadata: {name: ${s.name}, namespace: ${s.namespace ?? 'default'}}`,
    'spec:',
    `  workloadSelector: {labels: {${labels}}}`,
  ];
}

const port = (s: SidecarPort): string => `  - port: {number: ${s.port ?? 9080}, protocol: ${s.protocol ?? 'HTTP'}, name: ${s.portName ?? 'http'}}`;

/** A Sidecar with one egress listener on `bind`, to every host of its namespace (`./*`). */
export function egressSidecar(s: SidecarPort): string {
  return [...header(s), '  egress:', port(s), `    bind: ${s.bind}`, '    captureMode: NONE', '    hosts: ["./*"]'].join('\n');
}

/** A Sidecar with one ingress listener on `bind` in front of the app at `defaultEndpoint`. */
export function ingressSidecar(s: SidecarPort & { defaultEndpoint: string }): string {
  return [...header(s), '  ingress:', port(s), `    bind: ${s.bind}`, `    defaultEndpoint: ${s.defaultEndpoint}`, '    captureMode: NONE'].join('\n');
}

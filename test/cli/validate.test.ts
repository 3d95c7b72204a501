// `sextant validate -f`: exit 0 when all is valid, else exit 1 with one error per line on stderr.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '../..');
const NODE = path.join(ROOT, 'node_modules/.bin/node');
const BOOKINFO = path.resolve(ROOT, '../shared/istio-compat/bookinfo');

function sextant(args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [path.join(ROOT, 'src/cli/main.ts'), ...args], { cwd: ROOT, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    if (input !== undefined) child.stdin!.end(input);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (b: Buffer) => { stdout += b.toString(); });
    child.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

test('valid files and directories exit 0', { skip: existsSync(BOOKINFO) ? false : `Istio fixtures not found at ${BOOKINFO}` }, async () => {
  const r = await sextant(['validate', '-f', BOOKINFO, '-f', path.join(BOOKINFO, 'virtual-service-all-v1.yaml')]);
  assert.equal(r.stderr, '');
  assert.equal(r.code, 0);
  assert.equal(r.stdout, 'validated 42 resources: all valid\n');
});

test('invalid documents exit 1 with one error per line naming file, index, resource and field', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-validate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'mesh.yaml');
  writeFileSync(file, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: -5
    - destination: {host: reviews, subset: v2}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ok}
spec: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: ["*"]
---
apiVersion: networking.istio.io/v1beta1
kind: ProxyConfig
metadata: {name: strict}
spec: {concurrency: 2}
`);
  const r = await sextant(['validate', '-f', file]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.deepEqual(r.stderr.trimEnd().split('\n'), [
    `${file}:0 VirtualService/shop/reviews: spec.http[0].route[0].weight: weight -5 < 0`,
    `${file}:2 ServiceEntry/default/db: spec.hosts[0]: Invalid value: "string": hostname cannot be wildcard`,
    `${file}:3 ProxyConfig/default/strict: unsupported kind ProxyConfig (networking.istio.io/v1beta1): Sextant serves VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, WorkloadGroup, Sidecar, Gateway, EnvoyFilter, Telemetry, AuthorizationPolicy, PeerAuthentication, RequestAuthentication, Secret, AdaptiveLimit, LaneGroup, WasmPlugin, RouteTemplates, RateLimit, LazyScope, WorkloadScope`,
  ]);
});

test('a missing path is an error, not an empty success', async () => {
  const r = await sextant(['validate', '-f', '/nonexistent/sextant/config.yaml']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, '/nonexistent/sextant/config.yaml: cannot read: ENOENT\n');
});

test('"-" reads standard input', async () => {
  const ok = await sextant(['validate', '-f', '-'], 'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: reviews}\n');
  assert.equal(ok.code, 0);
  assert.equal(ok.stdout, 'validated 1 resource: all valid\n');
  const bad = await sextant(['validate', '-f', '-'], 'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {}\n');
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr, '<stdin>:0 DestinationRule/default/r: spec.host: Required value\n');
});

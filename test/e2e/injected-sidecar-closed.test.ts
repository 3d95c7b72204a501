// A Kubernetes-injected sidecar against the closed control plane, as deploy/pilot.yaml runs it
// (a plugged platform CA, bootstrap tokens per namespace, no --plaintext-xds): the pod the
// injector writes is run by the kubelet stand-in (start-order-harness.ts: env from the pod's
// fields, volumes from the namespace's ConfigMap sextant-ca-root-cert and Secret
// sextant-bootstrap-token), its sidecar a real `sextant proxy` process.
// It gets its certificate and its config; the same pod in a namespace the token is not for gets
// nothing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { injectObject } from '../../src/inject/inject.ts';
import { BOOTSTRAP_TOKEN_SECRET, CA_ROOT_CONFIGMAP, DEFAULT_OPTIONS, PROXY_CONTAINER } from '../../src/inject/inject-template.ts';
import type { JsonValue } from '../../src/inject/inject-patch.ts';
import { spawnPilot, waitFor, type PilotProcess } from '../helpers/pilot-process.ts';
import { runPod, type PodSpec, type RunningPod } from './start-order-harness.ts';
import { freePort } from '../helpers/ports.ts';
import { makeCa } from './gateway-helpers.ts';

const TOKEN_SHOP = 'bootstrap-token-for-shop-0123456789abcdef';

const dir = mkdtempSync(path.join(tmpdir(), 'sextant-injected-closed-'));
const pods: RunningPod[] = [];
let pilot: PilotProcess | undefined;

after(async () => {
  for (const p of pods) await p.stop(0);
  await pilot?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface ProxyContainer { name: string; args: string[]; volumeMounts: { name: string }[] }

/** A Deployment of service account `reviews` in `namespace`, injected with the default (closed) options: its pod. */
function injectedPod(namespace: string, pilotAddress: string, ports: typeof DEFAULT_OPTIONS.ports): PodSpec {
  const deployment = {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'reviews-v1', namespace },
    spec: {
      selector: { matchLabels: { app: 'reviews' } },
      template: {
        metadata: { labels: { app: 'reviews', version: 'v1' } },
        // the app idles: what is tested is its sidecar
        spec: { serviceAccountName: 'reviews', containers: [{ name: 'reviews', image: 'reviews:1', command: ['node', '-e', 'setInterval(() => {}, 1 << 30)'], ports: [{ containerPort: 9080 }] }] },
      },
    },
  };
  const { after: out, results } = injectObject(deployment as unknown as JsonValue, { ...DEFAULT_OPTIONS, pilotAddress, ports, interceptionMode: 'NONE' });
  assert.equal(results[0]?.injected, true);
  const spec = (out as unknown as { spec: { template: { spec: PodSpec['spec'] } } }).spec.template.spec;
  return { metadata: { name: 'reviews-v1-7d9f8-abcde', namespace }, spec };
}

/** Runs the injected pod as the kubelet would, its namespace holding the mesh root and shop's token. */
async function startInjected(namespace: string, ca: string): Promise<{ health: string; admin: string; pod: RunningPod }> {
  const ports = { ...DEFAULT_OPTIONS.ports, admin: await freePort(), health: await freePort(), stats: await freePort() };
  const spec = injectedPod(namespace, pilot!.xds, ports);
  const objects = { [`ConfigMap/${CA_ROOT_CONFIGMAP}`]: { 'root-cert.pem': readFileSync(ca, 'utf8') }, [`Secret/${BOOTSTRAP_TOKEN_SECRET}`]: { token: `${TOKEN_SHOP}\n` } };
  const runDir = path.join(dir, `pod-${namespace}`);
  mkdirSync(runDir, { recursive: true });
  // not held by the sidecar's postStart: the bank pod's sidecar is never ready
  const pod = await runPod(spec, { podIP: '127.0.0.1', dir: runDir, objects, skipPostStart: true });
  pods.push(pod);
  return { health: `http://127.0.0.1:${ports.health}/healthz/ready`, admin: `http://127.0.0.1:${ports.admin}`, pod };
}

test('an injected sidecar mounts its namespace\'s mesh root and bootstrap token and is served by a closed pilot; in another namespace the token gets nothing', async () => {
  const caDir = path.join(dir, 'platform-ca');
  mkdirSync(caDir);
  const ca = makeCa(caDir, 'platform-root');
  const tokens = path.join(dir, 'ca-tokens');
  writeFileSync(tokens, `${TOKEN_SHOP} shop\n`, { mode: 0o600 });
  mkdirSync(path.join(dir, 'config'));
  // deploy/pilot.yaml's CA flags: the platform's CA plugged in, the tokens from a Secret
  pilot = await spawnPilot({ configDir: path.join(dir, 'config'), plaintext: false, args: ['--ca-dir', path.join(dir, 'ca'), '--ca-cert-file', ca.cert, '--ca-key-file', ca.key, '--ca-tokens', tokens] });

  const shop = await startInjected('shop', ca.cert);
  const bank = await startInjected('bank', ca.cert);
  await waitFor('the injected sidecar in shop is ready', async () => (await fetch(shop.health).catch(() => undefined))?.status === 200, 30_000);
  // its workload certificate came from the pilot's CA (and the pilot serves a stream only to a certificate of the node's namespace)
  const stats = async (admin: string): Promise<string> => (await fetch(`${admin}/stats/prometheus`)).text();
  assert.match(await stats(shop.admin), /^sextant_workload_cert_generation 1$/m);
  // the bank pod had longer: the CA refuses shop's token for bank, so it has no certificate and no config
  await sleep(2000);
  assert.notEqual((await fetch(bank.health).catch(() => undefined))?.status, 200);
  const gone = await Promise.race([bank.pod.exited(PROXY_CONTAINER).then((code) => `exited ${code}`), sleep(0).then(() => undefined)]);
  assert.equal(gone, undefined, 'the bank sidecar keeps asking (it is not ready, and it is not gone)');
});

test('with --plaintext-xds injection mounts no root and no token; the identity flag stays', () => {
  const deployment = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'shop' }, spec: { containers: [{ name: 'app', image: 'app:1' }] } };
  const { after: out } = injectObject(deployment as unknown as JsonValue, { ...DEFAULT_OPTIONS, interceptionMode: 'NONE', plaintextXds: true });
  const spec = (out as unknown as { spec: PodSpec['spec'] }).spec;
  const proxy = spec.containers[0]! as unknown as ProxyContainer;
  assert.deepEqual((spec.volumes ?? []).map((v) => v.name), ['sextant-data']);
  assert.deepEqual(proxy.volumeMounts.map((m) => m.name), ['sextant-data']);
  assert.ok(!proxy.args.includes('--xds-root-cert') && !proxy.args.includes('--ca-token-file'));
  assert.deepEqual(proxy.args.slice(proxy.args.indexOf('--service-account'), proxy.args.indexOf('--service-account') + 2), ['--service-account', '$(SERVICE_ACCOUNT)']);
});

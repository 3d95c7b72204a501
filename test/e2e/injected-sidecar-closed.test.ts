// A Kubernetes-injected sidecar against the closed control plane, as deploy/pilot.yaml runs it
// (a plugged platform CA, bootstrap tokens per namespace, no --plaintext-xds): the pod the
// injector writes is "run" as the kubelet would run it (its env resolved from the pod, each
// volume mounted from the namespace's ConfigMap sextant-ca-root-cert and Secret
// sextant-bootstrap-token), then its sidecar container's command is started as a real process.
// It gets its certificate and its config; the same pod in a namespace the token is not for gets
// nothing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { injectObject } from '../../src/inject/inject.ts';
import { BOOTSTRAP_TOKEN_SECRET, CA_ROOT_CONFIGMAP, DEFAULT_OPTIONS, PROXY_CONTAINER } from '../../src/inject/inject-template.ts';
import type { JsonValue } from '../../src/inject/inject-patch.ts';
import { CLI, spawnPilot, waitFor, type PilotProcess } from '../helpers/pilot-process.ts';
import { freePort } from '../helpers/ports.ts';
import { makeCa } from './gateway-helpers.ts';

const TOKEN_SHOP = 'bootstrap-token-for-shop-0123456789abcdef';

const dir = mkdtempSync(path.join(tmpdir(), 'sextant-injected-closed-'));
const kids: ChildProcess[] = [];
let pilot: PilotProcess | undefined;

after(async () => {
  for (const c of kids) {
    if (c.pid === undefined || c.exitCode !== null || c.signalCode !== null) continue;
    const exited = new Promise((r) => c.once('exit', r));
    try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
    await exited;
  }
  await pilot?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface EnvVar { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }
interface Mount { name: string; mountPath: string; readOnly?: boolean }
interface Volume { name: string; emptyDir?: object; configMap?: { name: string; items: { key: string; path: string }[] }; secret?: { secretName: string; items: { key: string; path: string }[] } }
interface ProxyContainer { name: string; command: string[]; args: string[]; env: EnvVar[]; volumeMounts: Mount[] }

/** A Deployment of `sa` in `namespace`, injected with the default (closed) options. */
function injected(namespace: string, pilotAddress: string, ports: typeof DEFAULT_OPTIONS.ports): { proxy: ProxyContainer; volumes: Volume[] } {
  const deployment = {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'reviews-v1', namespace },
    spec: {
      selector: { matchLabels: { app: 'reviews' } },
      template: {
        metadata: { labels: { app: 'reviews', version: 'v1' } },
        spec: { serviceAccountName: 'reviews', containers: [{ name: 'reviews', image: 'reviews:1', ports: [{ containerPort: 9080 }] }] },
      },
    },
  };
  const { after: out, results } = injectObject(deployment as unknown as JsonValue, { ...DEFAULT_OPTIONS, pilotAddress, ports, interceptionMode: 'NONE' });
  assert.equal(results[0]?.injected, true);
  const spec = (out as unknown as { spec: { template: { spec: { containers: ProxyContainer[]; volumes: Volume[] } } } }).spec.template.spec;
  const proxy = spec.containers.find((c) => c.name === PROXY_CONTAINER);
  assert.ok(proxy);
  return { proxy, volumes: spec.volumes };
}

/**
 * What the kubelet does with the sidecar container: env from values and the pod's fields,
 * $(VAR) in args expanded, each volume's ConfigMap or Secret keys written under its mount path
 * (here below `root`, so the paths in args are rewritten to it).
 */
function runAsKubelet(c: ProxyContainer, volumes: Volume[], pod: Record<string, string>, objects: Record<string, Record<string, string>>, root: string): { args: string[]; env: Record<string, string> } {
  const env: Record<string, string> = {};
  for (const e of c.env) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    const v = e.value ?? (field !== undefined ? pod[field] : undefined);
    assert.ok(v !== undefined, `env ${e.name}: no value for ${field ?? '(none)'}`);
    env[e.name] = v;
  }
  for (const m of c.volumeMounts) {
    const vol = volumes.find((v) => v.name === m.name);
    assert.ok(vol, `volumeMount ${m.name} names no volume of the pod`);
    const dirOnHost = path.join(root, m.mountPath);
    mkdirSync(dirOnHost, { recursive: true });
    const source = vol.configMap !== undefined ? `ConfigMap/${vol.configMap.name}` : vol.secret !== undefined ? `Secret/${vol.secret.secretName}` : undefined;
    if (source === undefined) continue; // emptyDir
    const data = objects[source];
    assert.ok(data, `the namespace has no ${source}`);
    for (const item of vol.configMap?.items ?? vol.secret?.items ?? []) {
      assert.ok(data[item.key] !== undefined, `${source} has no key ${item.key}`);
      writeFileSync(path.join(dirOnHost, item.path), data[item.key]!);
    }
  }
  const mounts = [...c.volumeMounts].sort((a, b) => b.mountPath.length - a.mountPath.length);
  const args = c.args.map((a) => {
    const expanded = a.replace(/\$\(([A-Z_]+)\)/g, (_, name: string) => env[name] ?? `$(${name})`);
    return mounts.some((m) => expanded.startsWith(`${m.mountPath}/`)) ? path.join(root, expanded) : expanded;
  });
  return { args, env };
}

async function startInjected(namespace: string, ca: string): Promise<{ health: string; admin: string; child: ChildProcess }> {
  const ports = { ...DEFAULT_OPTIONS.ports, admin: await freePort(), health: await freePort(), stats: await freePort() };
  const { proxy, volumes } = injected(namespace, pilot!.xds, ports);
  assert.deepEqual(proxy.command, ['sextant']);
  const root = path.join(dir, `pod-${namespace}`);
  const objects = { [`ConfigMap/${CA_ROOT_CONFIGMAP}`]: { 'root-cert.pem': readFileSync(ca, 'utf8') }, [`Secret/${BOOTSTRAP_TOKEN_SECRET}`]: { token: `${TOKEN_SHOP}\n` } };
  const pod = { 'metadata.name': 'reviews-v1-7d9f8-abcde', 'metadata.namespace': namespace, 'status.podIP': '127.0.0.1', 'spec.serviceAccountName': 'reviews' };
  const { args, env } = runAsKubelet(proxy, volumes, pod, objects, root);
  env['TMPDIR'] = root;
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'ignore'], detached: true, env: { ...process.env, ...env } });
  kids.push(child);
  return { health: `http://127.0.0.1:${ports.health}/healthz/ready`, admin: `http://127.0.0.1:${ports.admin}`, child };
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
  assert.equal(bank.child.exitCode, null, 'the bank sidecar keeps asking (it is not ready, and it is not gone)');
});

test('with --plaintext-xds injection mounts no root and no token; the identity flag stays', () => {
  const deployment = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'shop' }, spec: { containers: [{ name: 'app', image: 'app:1' }] } };
  const { after: out } = injectObject(deployment as unknown as JsonValue, { ...DEFAULT_OPTIONS, interceptionMode: 'NONE', plaintextXds: true });
  const spec = (out as unknown as { spec: { containers: ProxyContainer[]; volumes: Volume[] } }).spec;
  const proxy = spec.containers[0]!;
  assert.deepEqual(spec.volumes.map((v) => v.name), ['sextant-data']);
  assert.deepEqual(proxy.volumeMounts.map((m) => m.name), ['sextant-data']);
  assert.ok(!proxy.args.includes('--xds-root-cert') && !proxy.args.includes('--ca-token-file'));
  assert.deepEqual(proxy.args.slice(proxy.args.indexOf('--service-account'), proxy.args.indexOf('--service-account') + 2), ['--service-account', '$(SERVICE_ACCOUNT)']);
});

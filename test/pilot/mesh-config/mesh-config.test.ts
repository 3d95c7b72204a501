// The mesh config file (`--mesh-config`): Istio's MeshConfig YAML, or the istio ConfigMap
// holding it; honoured fields are checked and an invalid value names its field; unknown and
// unimplemented fields are reported; cluster-local hosts follow Istio's rules and defaults.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { ClusterLocalHosts, DEFAULT_MESH_CONFIG, MeshConfigError, MeshConfigFile, parseMeshConfig, readMeshConfigFile } from '../../../src/pilot/mesh-config/index.ts';
import type { MeshConfig } from '../../../src/pilot/mesh-config/index.ts';

test('an empty file is Istio\'s defaults', () => {
  assert.deepEqual(parseMeshConfig('', 'mesh.yaml'), { config: DEFAULT_MESH_CONFIG, warnings: [] });
  assert.deepEqual(DEFAULT_MESH_CONFIG, {
    rootNamespace: 'istio-system',
    outboundTrafficPolicy: { mode: 'ALLOW_ANY' },
    connectTimeout: '10s',
    pathNormalization: { normalization: 'DEFAULT' },
    serviceSettings: [],
    defaultConfig: { discoveryAddress: 'istiod.istio-system.svc:15012' },
  });
});

test('the honoured fields are read, in camelCase or as proto field names', () => {
  const { config, warnings } = parseMeshConfig([
    'rootNamespace: mesh-root',
    'outbound_traffic_policy: {mode: REGISTRY_ONLY}',
    'connectTimeout: 2.5s',
    'pathNormalization: {normalization: MERGE_SLASHES}',
    'serviceSettings:',
    '- settings: {cluster_local: true}',
    '  hosts: ["*.payments.svc.cluster.local", "ledger.core.svc.cluster.local"]',
    '- settings: {clusterLocal: false}',
    '  hosts: ["*.kube-system.svc.cluster.local"]',
    'defaultConfig: {discoveryAddress: "pilot.mesh.example.com:15010"}',
  ].join('\n'), 'mesh.yaml');
  assert.deepEqual(warnings, []);
  assert.deepEqual(config, {
    rootNamespace: 'mesh-root',
    outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' },
    connectTimeout: '2.5s',
    pathNormalization: { normalization: 'MERGE_SLASHES' },
    serviceSettings: [
      { settings: { clusterLocal: true }, hosts: ['*.payments.svc.cluster.local', 'ledger.core.svc.cluster.local'] },
      { settings: { clusterLocal: false }, hosts: ['*.kube-system.svc.cluster.local'] },
    ],
    defaultConfig: { discoveryAddress: 'pilot.mesh.example.com:15010' },
  });
  assert.equal(parseMeshConfig('connectTimeout: 250ms', 'm').config.connectTimeout, '0.25s');
});

test('the istio ConfigMap is read from data.mesh', () => {
  const text = [
    'apiVersion: v1',
    'kind: ConfigMap',
    'metadata: {name: istio, namespace: istio-system}',
    'data:',
    '  mesh: |-',
    '    serviceSettings:',
    '    - settings: {clusterLocal: true}',
    '      hosts: ["*.payments.svc.cluster.local"]',
    '  meshNetworks: "networks: {}"',
  ].join('\n');
  const { config, warnings } = parseMeshConfig(text, 'istio.yaml');
  assert.deepEqual(config.serviceSettings, [{ settings: { clusterLocal: true }, hosts: ['*.payments.svc.cluster.local'] }]);
  assert.deepEqual(warnings, ['istio.yaml: ConfigMap data keys other than mesh are not read (ignored): meshNetworks']);
  assert.throws(() => parseMeshConfig('kind: ConfigMap\ndata: {}\n', 'istio.yaml'), {
    message: 'istio.yaml: data.mesh: a ConfigMap must hold the MeshConfig YAML as a string in data.mesh (as the istio ConfigMap does)',
  });
});

test('unknown fields and MeshConfig fields Sextant does not implement are reported, one warning each', () => {
  const { config, warnings } = parseMeshConfig([
    'accessLogFile: /dev/stdout',
    'trustDomain: cluster.local',
    'enableAutoMtls: true',
    'defaultConfig: {discoveryAddress: "istiod.istio-system.svc:15012", proxyMetadata: {A: b}, holdApplicationUntilProxyStarts: true}',
    'clusterLocl: true',
    'serviceSettings: [{settings: {clusterLocal: true, exportTo: x}, hosts: [a.b.svc.cluster.local], host: c}]',
  ].join('\n'), 'mesh.yaml');
  assert.deepEqual(config.serviceSettings, [{ settings: { clusterLocal: true }, hosts: ['a.b.svc.cluster.local'] }]);
  assert.deepEqual(warnings, [
    'mesh.yaml: unknown fields, not part of Istio\'s MeshConfig (ignored): clusterLocl, serviceSettings[0].host, serviceSettings[0].settings.exportTo',
    'mesh.yaml: MeshConfig fields Sextant does not implement (ignored): accessLogFile, trustDomain, enableAutoMtls, defaultConfig.proxyMetadata, defaultConfig.holdApplicationUntilProxyStarts',
  ]);
});

test('an invalid value is refused with the field it is in', () => {
  const refuse = (yaml: string, message: string, field: string): void => {
    assert.throws(() => parseMeshConfig(yaml, 'mesh.yaml'), (err: unknown) => {
      assert.ok(err instanceof MeshConfigError);
      assert.equal(err.message, message);
      assert.equal(err.field, field);
      return true;
    });
  };
  refuse('serviceSettings: [{settings: {clusterLocal: "yes"}, hosts: [a.b]}]', 'mesh.yaml: serviceSettings[0].settings.clusterLocal: expected true or false, got "yes"', 'serviceSettings[0].settings.clusterLocal');
  refuse('serviceSettings: [{hosts: [ok.example.com, "a.*.example.com"]}]', 'mesh.yaml: serviceSettings[0].hosts[1]: invalid host "a.*.example.com": expected a DNS name, optionally with a leading wildcard (*.ns.svc.cluster.local)', 'serviceSettings[0].hosts[1]');
  refuse('serviceSettings: {hosts: [a]}', 'mesh.yaml: serviceSettings: expected a list, got an object', 'serviceSettings');
  refuse('outboundTrafficPolicy: {mode: ALLOW_ALL}', 'mesh.yaml: outboundTrafficPolicy.mode: expected one of ALLOW_ANY, REGISTRY_ONLY, got "ALLOW_ALL"', 'outboundTrafficPolicy.mode');
  refuse('connectTimeout: 10', 'mesh.yaml: connectTimeout: expected a duration such as "10s" or "500ms", got 10', 'connectTimeout');
  refuse('connectTimeout: 0s', 'mesh.yaml: connectTimeout: must be at least 1ms, got "0s"', 'connectTimeout');
  refuse('rootNamespace: Istio_System', 'mesh.yaml: rootNamespace: invalid namespace name "Istio_System": expected a DNS-1123 label', 'rootNamespace');
  refuse('pathNormalization: {normalization: FULL}', 'mesh.yaml: pathNormalization.normalization: expected one of DEFAULT, NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES, got "FULL"', 'pathNormalization.normalization');
  refuse('rootNamespace: a\nroot_namespace: b', 'mesh.yaml: rootNamespace: set twice (under its proto name and its JSON name)', 'rootNamespace');
  refuse('- a\n- b', 'mesh.yaml: expected an object, got a list', '');
  refuse('a: 1\na: 2', 'mesh.yaml: invalid YAML: Map keys must be unique at line 2, column 1:', '');
});

function hosts(yaml: string): ClusterLocalHosts {
  return new ClusterLocalHosts(parseMeshConfig(yaml, 'mesh.yaml').config);
}

test('Istio\'s default cluster-local hosts: kube-system, the API server and the discovery address', () => {
  const d = new ClusterLocalHosts(DEFAULT_MESH_CONFIG);
  assert.deepEqual(d.toJSON(), {
    '*.kube-system.svc.cluster.local': true,
    'istiod.istio-system.svc.cluster.local': true,
    'kubernetes.default.svc.cluster.local': true,
  });
  assert.equal(d.isClusterLocal('kube-dns.kube-system.svc.cluster.local'), true);
  assert.equal(d.isClusterLocal('kubernetes.default.svc.cluster.local'), true);
  assert.equal(d.isClusterLocal('istiod.istio-system.svc.cluster.local'), true);
  assert.equal(d.isClusterLocal('reviews.default.svc.cluster.local'), false);
  assert.equal(d.isClusterLocal('*.example.com'), false);
  // An address with a domain keeps it; a discovery address without a port names no host (as in Istio).
  assert.equal(hosts('defaultConfig: {discoveryAddress: "pilot.cluster.local:15010"}').isClusterLocal('pilot.cluster.local'), true);
  assert.deepEqual(Object.keys(hosts('defaultConfig: {discoveryAddress: pilot}').toJSON()), ['*.kube-system.svc.cluster.local', 'kubernetes.default.svc.cluster.local']);
});

test('serviceSettings: the most specific host decides; clusterLocal false removes a default it covers', () => {
  const h = hosts([
    'serviceSettings:',
    '- settings: {clusterLocal: true}',
    '  hosts: ["*.payments.svc.cluster.local", "*.svc.cluster.local"]',
    '- settings: {clusterLocal: false}',
    '  hosts: ["public.payments.svc.cluster.local", "*.shared.svc.cluster.local", "coredns.kube-system.svc.cluster.local"]',
  ].join('\n'));
  assert.equal(h.isClusterLocal('ledger.payments.svc.cluster.local'), true);
  assert.equal(h.isClusterLocal('public.payments.svc.cluster.local'), false);
  assert.equal(h.isClusterLocal('cache.shared.svc.cluster.local'), false);
  assert.equal(h.isClusterLocal('reviews.default.svc.cluster.local'), true); // *.svc.cluster.local
  assert.equal(h.isClusterLocal('api.example.com'), false);
  // Naming one kube-system host as not cluster-local removes Istio's whole kube-system default;
  // kube-system hosts then fall under *.svc.cluster.local here.
  assert.equal(h.toJSON()['*.kube-system.svc.cluster.local'], undefined);
  assert.equal(h.isClusterLocal('coredns.kube-system.svc.cluster.local'), false);
  assert.equal(h.isClusterLocal('metrics.kube-system.svc.cluster.local'), true);
  // A wildcard service host is matched as a pattern: exactly, else by the longest covering wildcard.
  assert.equal(h.isClusterLocal('*.payments.svc.cluster.local'), true);
  assert.equal(h.isClusterLocal('*.shared.svc.cluster.local'), false);
  assert.equal(hosts('serviceSettings: [{settings: {clusterLocal: true}, hosts: ["*"]}]').isClusterLocal('api.example.com'), true);
});

test('the file is re-read when it changes; an invalid change keeps the last good config', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-mesh-config-'));
  const file = path.join(dir, 'mesh.yaml');
  const write = (text: string): void => {
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };
  write('serviceSettings: [{settings: {clusterLocal: true}, hosts: ["*.a.svc.cluster.local"]}]\n');
  const lines: { level: number; msg: string; field?: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => { lines.push(JSON.parse(l) as { level: number; msg: string; field?: string }); } });
  const initial = readMeshConfigFile(file).config;
  const source = new MeshConfigFile(file, initial, { logger, pollMs: 20 });
  const seen: MeshConfig[] = [];
  source.onChange((c) => seen.push(c));
  try {
    const waitFor = async (what: () => boolean): Promise<void> => {
      for (let i = 0; i < 1500 && !what(); i++) await sleep(20);
      assert.ok(what());
    };
    write('serviceSettings: [{settings: {clusterLocal: true}, hosts: ["*.b.svc.cluster.local"]}]\n');
    await waitFor(() => seen.length === 1);
    assert.deepEqual(source.current().serviceSettings[0]?.hosts, ['*.b.svc.cluster.local']);

    write('serviceSettings: [{settings: {clusterLocal: maybe}, hosts: ["*.c.svc.cluster.local"]}]\n');
    await waitFor(() => lines.some((l) => l.msg === 'mesh config change refused; keeping the last good mesh config'));
    const refused = lines.find((l) => l.msg === 'mesh config change refused; keeping the last good mesh config');
    assert.equal(refused?.level, 50);
    assert.equal(refused?.field, 'serviceSettings[0].settings.clusterLocal');
    assert.equal(seen.length, 1);
    assert.deepEqual(source.current().serviceSettings[0]?.hosts, ['*.b.svc.cluster.local']);
  } finally {
    source.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a missing file or a directory is an error naming the path', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-mesh-config-'));
  try {
    assert.throws(() => readMeshConfigFile(path.join(dir, 'nope.yaml')), { message: `${path.join(dir, 'nope.yaml')}: no such file` });
    assert.throws(() => readMeshConfigFile(dir), { message: `${dir}: is a directory, expected a file` });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

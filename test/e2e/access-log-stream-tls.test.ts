// Access logs over ALS on a closed control plane (the CLI's default): the sidecar streams to
// the pilot's TLS port with its workload certificate, as it speaks xDS, and the sink takes the
// stream because the certificate's namespace is the node's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { egressSidecar } from '../helpers/istio-yaml.ts';
import { countBy, load, pilotRun, query, sample, sidecar, until } from './access-log-helpers.ts';
import type { PilotRun, SidecarRun } from './access-log-helpers.ts';

const CLIENT_IP = '127.0.64.2';
const SERVER_IP = '127.0.64.9';
const PORT = 8080;
const HOST = 'orders.default.svc.cluster.local';

test('over TLS with the workload certificate: every request stored, nothing dropped', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-als-tls-'));
  const caDir = path.join(dir, 'ca');
  mkdirSync(path.join(dir, 'config'));
  writeFileSync(path.join(dir, 'config', 'mesh.yaml'), `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: sextant}]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: default}
spec:
  hosts: [${HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: http, protocol: HTTP}]
  endpoints: [{address: ${SERVER_IP}}]
---
${egressSidecar({ name: 'client', bind: CLIENT_IP, port: PORT })}
`);
  const app = http.createServer((_req, res) => res.writeHead(200).end('ok'));
  await new Promise<void>((r) => app.listen(PORT, SERVER_IP, r));
  const storeFile = path.join(dir, 'access-log.db');
  let pilot: PilotRun | undefined;
  let client: SidecarRun | undefined;
  try {
    pilot = await pilotRun(path.join(dir, 'config'), storeFile, ['--ca-dir', caDir], true);
    client = await sidecar(pilot.xds, CLIENT_IP, 'client-v1', { app: 'client' }, [
      '--xds-root-cert', path.join(caDir, 'root-cert.pem'), '--ca-token-file', path.join(caDir, 'bootstrap-token'), '--service-account', 'client',
    ]);
    assert.deepEqual(countBy(await load(CLIENT_IP, PORT, `${HOST}:${PORT}`, 200, (i) => `/tls/${i}`, 4)), { 200: 200 });
    await until('200 entries stored', () => Number(query<{ n: number }>(storeFile, "SELECT count(*) AS n FROM access_log WHERE path LIKE '/tls/%'")[0]?.n) === 200);
    const stats = await client.stats();
    assert.equal(sample(stats, 'sextant_accesslog_dropped_total'), 0);
    assert.equal(sample(stats, 'sextant_accesslog_streams_connected'), 1);
    assert.deepEqual(query(storeFile, "SELECT DISTINCT reporter, src_ip, src_workload, dst_service FROM access_log WHERE path LIKE '/tls/%'").map((r) => ({ ...r })), [
      { reporter: 'source', src_ip: CLIENT_IP, src_workload: 'client', dst_service: HOST },
    ]);
  } finally {
    await client?.kill();
    await pilot?.stop();
    app.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

// `sextant proxy-config (listeners|routes|clusters|endpoints) PROXY`: what a sidecar is
// running, read from its admin /config_dump (Envoy's shape), as istioctl shows it.
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { table } from './table.ts';
import { UsageError } from './flags.ts';
import { fetchJson, isRecord, notExpected, RemoteError } from './remote-json.ts';
import { pilotToken } from './monitoring-api.ts';

type Json = Record<string, unknown>;
const SECTIONS = ['listeners', 'routes', 'clusters', 'endpoints', 'secrets'] as const;
type Section = (typeof SECTIONS)[number];

const DUMP_PREFIX = 'type.googleapis.com/envoy.admin.v3.';
const DUMP_TYPES: Record<Section, string> = {
  listeners: `${DUMP_PREFIX}ListenersConfigDump`,
  routes: `${DUMP_PREFIX}RoutesConfigDump`,
  clusters: `${DUMP_PREFIX}ClustersConfigDump`,
  endpoints: `${DUMP_PREFIX}EndpointsConfigDump`,
  // a gateway's SDS secrets: the proxy dumps them with every value redacted
  secrets: `${DUMP_PREFIX}SecretsConfigDump`,
};

export function registerProxyConfig(program: Command): void {
  program
    .command('proxy-config')
    .description("show a sidecar's or gateway's listeners, routes, clusters, endpoints or secrets (from its admin /config_dump; secret values are never shown)")
    .argument('<section>', `${SECTIONS.join(' | ')} | dependencies`)
    .argument('<proxy>', "the sidecar's admin address HOST[:PORT] (port 15000 when omitted)")
    .option('-o, --output <format>', 'table | json | yaml', 'table')
    .option('--pilot <url>', "dependencies: the pilot's HTTP address (its /debug/lazyscope)", 'http://127.0.0.1:15014')
    .option('--token-file <file>', "dependencies: a token of the pilot's --api-tokens file (default: the one a pilot on this host generated, when there)")
    .action(async (section: string, proxy: string, o: { output: string; pilot: string; tokenFile?: string }) => {
      try {
        // lazy scope: the workload's learned dependencies, from the pilot, checked against the proxy's clusters
        if (section === 'dependencies' || section === 'dependency') process.exitCode = await dependencies(proxy, o);
        else process.exitCode = await proxyConfig(section, proxy, o.output);
      } catch (err) {
        if (!(err instanceof RemoteError)) throw err;
        process.stderr.write(`error: ${err.message}\n`);
        process.exitCode = 1;
      }
    });
}

const SIDECAR_ADMIN = "a sidecar's admin endpoint (Sextant or Envoy)";

async function proxyConfig(sectionName: string, proxy: string, output: string): Promise<number> {
  const section = SECTIONS.find((s) => s === sectionName || `${s.slice(0, -1)}` === sectionName);
  if (!section) throw new UsageError(`unknown section "${sectionName}"; expected ${SECTIONS.join(', ')}, dependencies`);
  if (!['table', 'json', 'yaml'].includes(output)) throw new UsageError(`--output ${output}: expected table, json or yaml`);
  const admin = /:\d+$/.test(proxy) ? proxy : `${proxy}:15000`;
  let url: URL;
  try {
    // Envoy leaves endpoints out of /config_dump unless asked; Sextant's admin always has them.
    url = new URL(`http://${admin}/config_dump${section === 'endpoints' ? '?include_eds' : ''}`);
  } catch {
    throw new UsageError(`invalid proxy "${proxy}": expected the sidecar's admin address HOST[:PORT]`);
  }
  const answer = await fetchJson(url, SIDECAR_ADMIN);
  const configs = isRecord(answer.body) ? answer.body['configs'] : undefined;
  // Envoy's ConfigDump: {configs: [{"@type": "type.googleapis.com/envoy.admin.v3.…ConfigDump", …}]}.
  if (!Array.isArray(configs) || !configs.every((c) => isRecord(c) && typeof c['@type'] === 'string' && c['@type'].startsWith(DUMP_PREFIX))) {
    throw notExpected(answer, SIDECAR_ADMIN, 'not a config dump');
  }
  const part = (configs as Json[]).find((c) => c['@type'] === DUMP_TYPES[section]) ?? {};
  const resources = extract(section, part);
  if (output === 'json') process.stdout.write(JSON.stringify(resources, null, 2) + '\n');
  else if (output === 'yaml') process.stdout.write(stringify(resources));
  else process.stdout.write(render(section, resources) + '\n');
  return 0;
}

/** The resources of one section, whatever dynamic/static lists Envoy's dump shape holds them in. */
function extract(section: Section, part: Json): Json[] {
  const lists = (...keys: string[]): Json[] => keys.flatMap((k) => (part[k] as Json[] | undefined) ?? []);
  switch (section) {
    case 'listeners':
      return lists('staticListeners', 'dynamicListeners').map((l) => ((l['activeState'] as Json | undefined)?.['listener'] ?? l['listener'] ?? l) as Json);
    case 'routes':
      return lists('staticRouteConfigs', 'dynamicRouteConfigs').map((r) => (r['routeConfig'] ?? r) as Json);
    case 'clusters':
      return lists('staticClusters', 'dynamicActiveClusters').map((c) => (c['cluster'] ?? c) as Json);
    case 'endpoints':
      return lists('staticEndpointConfigs', 'dynamicEndpointConfigs').map((e) => (e['endpointConfig'] ?? e) as Json);
    case 'secrets':
      return lists('staticSecrets', 'dynamicActiveSecrets');
  }
}

function render(section: Section, items: Json[]): string {
  switch (section) {
    case 'clusters':
      return table(['SERVICE FQDN', 'PORT', 'SUBSET', 'DIRECTION', 'TYPE'], items.map((c) => {
        const name = String(c['name'] ?? '');
        const parts = name.split('|');
        if (parts.length === 4) return [parts[3] ?? '', parts[1] ?? '', parts[2] || '-', parts[0] ?? '', String(c['type'] ?? 'EDS')];
        return [name, '-', '-', '-', String(c['type'] ?? '')];
      }));
    case 'listeners':
      return table(['NAME', 'ADDRESS', 'PORT', 'DESTINATION'], items.map((l) => {
        const sa = ((l['address'] as Json | undefined)?.['socketAddress'] ?? {}) as Json;
        return [String(l['name'] ?? ''), String(sa['address'] ?? ''), String(sa['portValue'] ?? ''), listenerDestination(l)];
      }));
    case 'routes':
      return table(['NAME', 'VHOST NAME', 'DOMAINS', 'ROUTES'], items.flatMap((r) =>
        ((r['virtualHosts'] as Json[] | undefined) ?? []).map((vh) => [
          String(r['name'] ?? ''),
          String(vh['name'] ?? ''),
          abbreviate((vh['domains'] as string[] | undefined) ?? []),
          String(((vh['routes'] as Json[] | undefined) ?? []).length),
        ]),
      ));
    case 'secrets':
      return table(['RESOURCE NAME', 'TYPE', 'SERIAL NUMBER', 'NOT AFTER', 'VERSION'], items.map((x) => {
        const secret = (x['secret'] ?? {}) as Json;
        return [String(x['name'] ?? ''), secret['tlsCertificate'] !== undefined ? 'Cert Chain' : 'CA', String(x['serialNumber'] ?? '-'), String(x['notAfter'] ?? '-'), String(x['versionInfo'] ?? '')];
      }));
    case 'endpoints':
      return table(['ENDPOINT', 'HEALTH', 'WEIGHT', 'CLUSTER'], items.flatMap((cla) =>
        ((cla['endpoints'] as Json[] | undefined) ?? []).flatMap((locality) =>
          ((locality['lbEndpoints'] as Json[] | undefined) ?? []).map((lb) => {
            const sa = (((lb['endpoint'] as Json | undefined)?.['address'] as Json | undefined)?.['socketAddress'] ?? {}) as Json;
            return [`${String(sa['address'] ?? '')}:${String(sa['portValue'] ?? '')}`, String(lb['healthStatus'] ?? 'HEALTHY'), String(lb['loadBalancingWeight'] ?? 1), String(cla['clusterName'] ?? '')];
          }),
        ),
      ));
  }
}

function listenerDestination(l: Json): string {
  const chains = (l['filterChains'] as Json[] | undefined) ?? [];
  const filters = chains.flatMap((c) => (c['filters'] as Json[] | undefined) ?? []);
  for (const f of filters) {
    const tc = (f['typedConfig'] ?? {}) as Json;
    const rds = tc['rds'] as Json | undefined;
    if (rds) return `Route: ${String(rds['routeConfigName'] ?? '')}`;
    if (typeof tc['cluster'] === 'string') return `Cluster: ${tc['cluster']}`;
  }
  return chains.length > 0 ? `${chains.length} filter chain(s)` : '-';
}

function abbreviate(domains: string[]): string {
  if (domains.length <= 2) return domains.join(', ');
  return `${domains.slice(0, 2).join(', ')} + ${domains.length - 2} more`;
}

/**
 * `sextant proxy-config dependencies PROXY`: the lazy workload's learned dependencies (host,
 * where each was seen first and last, ACTIVE or EXPIRING, first and last use) as the pilot's
 * store holds them, and whether the proxy holds each one's cluster now.
 */
async function dependencies(proxy: string, o: { output: string; pilot: string; tokenFile?: string }): Promise<number> {
  if (!['table', 'json', 'yaml'].includes(o.output)) throw new UsageError(`--output ${o.output}: expected table, json or yaml`);
  const admin = /:\d+$/.test(proxy) ? proxy : `${proxy}:15000`;
  let dumpUrl: URL;
  let pilotUrl: URL;
  try {
    dumpUrl = new URL(`http://${admin}/config_dump`);
  } catch {
    throw new UsageError(`invalid proxy "${proxy}": expected the sidecar's admin address HOST[:PORT]`);
  }
  try {
    pilotUrl = new URL('/debug/lazyscope', /^[a-z][a-z0-9+.-]*:\/\//i.test(o.pilot) ? o.pilot : `http://${o.pilot}`);
  } catch {
    throw new UsageError(`invalid --pilot "${o.pilot}": expected the pilot's HTTP address, e.g. http://127.0.0.1:15014`);
  }
  const dump = await fetchJson(dumpUrl, SIDECAR_ADMIN);
  const configs = isRecord(dump.body) && Array.isArray(dump.body['configs']) ? dump.body['configs'] as Json[] : undefined;
  if (configs === undefined) throw notExpected(dump, SIDECAR_ADMIN, 'not a config dump');
  const node = ((configs.find((c) => c['@type'] === `${DUMP_PREFIX}BootstrapConfigDump`)?.['bootstrap'] as Json | undefined)?.['node'] ?? {}) as Json;
  const meta = (node['metadata'] ?? {}) as Json;
  const workload = `${String(meta['NAMESPACE'] ?? '')}/${String(meta['WORKLOAD_NAME'] ?? '')}`;
  const clusters = extract('clusters', configs.find((c) => c['@type'] === DUMP_TYPES.clusters) ?? {}).map((c) => String(c['name'] ?? ''));
  const token = pilotToken(o.tokenFile);
  const report = await fetchJson(pilotUrl, "the pilot's /debug/lazyscope", 5000, token !== undefined ? { authorization: `Bearer ${token}` } : {});
  const workloads = isRecord(report.body) && Array.isArray(report.body['workloads']) ? report.body['workloads'] as Json[] : undefined;
  if (workloads === undefined) throw notExpected(report, "the pilot's /debug/lazyscope", 'no workloads list');
  const w = workloads.find((x) => x['workload'] === workload);
  if (w === undefined) {
    process.stderr.write(`error: workload ${workload} has no WorkloadScope at ${pilotUrl.origin}: it is not lazy (no LazyScope selects it, or the controller has not seen it yet)\n`);
    return 1;
  }
  const edges: (Json & { inProxy: boolean })[] = ((w['edges'] as Json[] | undefined) ?? []).map((e) => ({ ...e, inProxy: clusters.some((c) => c.endsWith(`|${String(e['host'])}`)) }));
  if (o.output === 'json') process.stdout.write(JSON.stringify({ ...w, edges }, null, 2) + '\n');
  else if (o.output === 'yaml') process.stdout.write(stringify({ ...w, edges }));
  else {
    const sidecar = w['userSidecar'] !== null && w['userSidecar'] !== undefined ? `${String(w['userSidecar'])} (the user's; lazy scope leaves it)` : String(w['sidecar'] ?? '-');
    process.stdout.write(`workload ${workload}  LazyScope ${String(w['lazyScope'] ?? '-')}  Sidecar ${sidecar}\n`);
    process.stdout.write(table(['HOST', 'SOURCE', 'LAST SOURCE', 'STATE', 'FIRST SEEN', 'LAST SEEN', 'IN PROXY'], edges.map((e) => [
      String(e['host']), String(e['source']), String(e['lastSource'] ?? e['source']), String(e['state']), String(e['firstSeen']), String(e['lastSeen']), e.inProxy ? 'yes' : 'no',
    ])) + '\n');
  }
  return 0;
}

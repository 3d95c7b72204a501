// `sextant proxy-config (listeners|routes|clusters|endpoints) PROXY`: what a sidecar is
// running, read from its admin /config_dump (Envoy's shape), as istioctl shows it.
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { table } from './table.ts';
import { UsageError } from './flags.ts';
import { fetchJson, isRecord, notExpected, RemoteError } from './remote-json.ts';

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
    .argument('<section>', SECTIONS.join(' | '))
    .argument('<proxy>', "the sidecar's admin address HOST[:PORT] (port 15000 when omitted)")
    .option('-o, --output <format>', 'table | json | yaml', 'table')
    .action(async (section: string, proxy: string, o: { output: string }) => {
      try {
        process.exitCode = await proxyConfig(section, proxy, o.output);
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
  if (!section) throw new UsageError(`unknown section "${sectionName}"; expected ${SECTIONS.join(', ')}`);
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

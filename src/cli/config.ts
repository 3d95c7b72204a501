// `sextant apply`, `sextant get`, `sextant delete`: kubectl-style config management against
// the store the pilot reads. Exit codes: 0 done; 1 the request failed (invalid config, not
// found, conflict); 2 the command was called wrongly.
import type { Command } from 'commander';
import { stringify } from 'yaml';
import pino from 'pino';
import { KINDS, loadPaths, resourceKey, validateResource, type ConfigError, type Resource } from '../api/index.ts';
import { openConfigStore, ConfigStoreError, NotFoundError, ConflictError, type ConfigStore } from '../config/index.ts';
import { UsageError } from './flags.ts';
import { addStoreOptions, storeTarget, type StoreFlags, type StoreTarget } from './store-options.ts';
import { table } from './table.ts';

const SHORT_NAMES: Record<string, string[]> = {
  VirtualService: ['vs'],
  DestinationRule: ['dr'],
  ServiceEntry: ['se'],
  WorkloadEntry: ['we'],
  WorkloadGroup: ['wg'],
  Gateway: ['gw'],
  EnvoyFilter: ['ef'],
};

/** Kind names as users type them: kind, plural, lower case, and Istio's short names. */
const KIND_ALIASES: ReadonlyMap<string, string> = new Map(
  KINDS.flatMap((k) => [
    [k.kind.toLowerCase(), k.kind],
    [k.plural, k.kind],
    [`${k.plural}.${k.group}`, k.kind],
    ...(SHORT_NAMES[k.kind] ?? []).map((s) => [s, k.kind] as [string, string]),
  ]),
);


export function resolveKind(name: string): string {
  const kind = KIND_ALIASES.get(name.toLowerCase());
  if (!kind) throw new UsageError(`unknown kind "${name}"; expected one of ${KINDS.map((k) => k.kind).join(', ')}`);
  return kind;
}

export function registerConfigCommands(program: Command): void {
  addStoreOptions(
    program
      .command('apply')
      .description('create or update config from files or directories (all validated first; nothing is applied if any is invalid)')
      .requiredOption('-f, --filename <path...>', 'file or directory (recursive)'),
  ).action(async (o: StoreFlags & { filename: string[] }) => run(() => apply(o)));

  addStoreOptions(
    program
      .command('get')
      .description('list config of one kind, or show one resource')
      .argument('<kind>', 'VirtualService, vs, destinationrules, …')
      .argument('[name]', 'resource name')
      .option('-n, --namespace <ns>', 'namespace (default: all namespaces for lists, "default" for a name)')
      .option('-l, --selector <selector>', 'label selector, e.g. app=reviews,version!=v1')
      .option('-o, --output <format>', 'table | yaml | json', 'table'),
  ).action(async (kind: string, name: string | undefined, o: StoreFlags & { namespace?: string; selector?: string; output: string }) =>
    run(() => get(kind, name, o)),
  );

  addStoreOptions(
    program
      .command('delete')
      .description('delete config by kind and name, or every resource in files')
      .argument('[kind]', 'kind of the resource')
      .argument('[name]', 'resource name')
      .option('-n, --namespace <ns>', 'namespace', 'default')
      .option('-f, --filename <path...>', 'delete the resources these files describe'),
  ).action(async (kind: string | undefined, name: string | undefined, o: StoreFlags & { namespace: string; filename?: string[] }) =>
    run(() => del(kind, name, o)),
  );
}

async function run(fn: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await fn();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\n`);
      process.exitCode = 2;
    } else if (err instanceof ConfigStoreError) {
      process.stderr.write(`error: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      throw err;
    }
  }
}

async function withStore<T>(target: StoreTarget, fn: (store: ConfigStore) => Promise<T>): Promise<T> {
  // The CLI's stdout is for results: the store logs only warnings, to stderr.
  const store = await openConfigStore({ ...target, logger: pino({ level: 'warn' }, pino.destination(2)) });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

async function loadValid(paths: string[]): Promise<Resource[] | ConfigError[]> {
  const loaded = await loadPaths(paths);
  const errors = [...loaded.errors, ...loaded.documents.flatMap((d) => validateResource(d.resource, d.origin))];
  if (errors.length > 0) return errors;
  if (loaded.documents.length === 0) throw new UsageError(`no resources found in ${paths.join(', ')}`);
  return loaded.documents.map((d) => d.resource);
}

function isErrors(x: Resource[] | ConfigError[]): x is ConfigError[] {
  return x.length > 0 && !('spec' in (x[0] as object));
}

async function apply(o: StoreFlags & { filename: string[] }): Promise<number> {
  const target = storeTarget(o);
  const loaded = await loadValid(o.filename);
  if (isErrors(loaded)) {
    for (const e of loaded) process.stderr.write(`${e.toString()}\n`);
    return 1;
  }
  return withStore(target, async (store) => {
    for (const r of loaded) {
      const outcome = await applyOne(store, r);
      process.stdout.write(`${r.kind.toLowerCase()}/${r.metadata.name} ${outcome} (namespace ${r.metadata.namespace})\n`);
    }
    return 0;
  });
}

/** Creates or updates one resource, retrying once when another writer got in between. */
async function applyOne(store: ConfigStore, r: Resource): Promise<'created' | 'configured' | 'unchanged'> {
  for (let attempt = 0; ; attempt++) {
    const current = await store.get(r.kind, r.metadata.namespace, r.metadata.name);
    if (!current) {
      await store.create(r);
      return 'created';
    }
    if (sameContent(current, r)) return 'unchanged';
    try {
      await store.update({ ...r, metadata: { ...r.metadata, resourceVersion: current.metadata.resourceVersion ?? '' } });
      return 'configured';
    } catch (err) {
      if (!(err instanceof ConflictError) || attempt >= 2) throw err;
    }
  }
}

function sameContent(a: Resource, b: Resource): boolean {
  return (
    JSON.stringify(a.spec) === JSON.stringify(b.spec) &&
    JSON.stringify(a.metadata.labels ?? {}) === JSON.stringify(b.metadata.labels ?? {}) &&
    JSON.stringify(a.metadata.annotations ?? {}) === JSON.stringify(b.metadata.annotations ?? {})
  );
}

async function get(kindName: string, name: string | undefined, o: StoreFlags & { namespace?: string; selector?: string; output: string }): Promise<number> {
  const kind = resolveKind(kindName);
  if (!['table', 'yaml', 'json'].includes(o.output)) throw new UsageError(`--output ${o.output}: expected table, yaml or json`);
  return withStore(storeTarget(o), async (store) => {
    let items: Resource[];
    if (name !== undefined) {
      const r = await store.get(kind, o.namespace ?? 'default', name);
      if (!r) throw new NotFoundError(`${kind}/${o.namespace ?? 'default'}/${name}`);
      items = [r];
    } else {
      items = await store.list(kind, {
        ...(o.namespace !== undefined ? { namespace: o.namespace } : {}),
        ...(o.selector !== undefined ? { labelSelector: o.selector } : {}),
      });
    }
    if (o.output === 'json') {
      process.stdout.write(JSON.stringify(name !== undefined ? items[0] : { apiVersion: 'v1', kind: 'List', items }, null, 2) + '\n');
    } else if (o.output === 'yaml') {
      process.stdout.write(items.map((r) => stringify(r)).join('---\n'));
    } else if (items.length === 0) {
      process.stderr.write(`No ${kind} resources found.\n`);
    } else {
      const rows = items.map((r) => [r.metadata.namespace, r.metadata.name, summarize(r), r.metadata.resourceVersion ?? '', age(r.metadata.creationTimestamp)]);
      process.stdout.write(table(['NAMESPACE', 'NAME', 'SUMMARY', 'VERSION', 'AGE'], rows) + '\n');
    }
    return 0;
  });
}

/** The column kubectl users look for first, per kind. */
function summarize(r: Resource): string {
  const s = r.spec as Record<string, unknown>;
  switch (r.kind) {
    case 'VirtualService':
    case 'ServiceEntry':
      return `hosts=${((s['hosts'] as string[] | undefined) ?? []).join(',')}`;
    case 'DestinationRule':
      return `host=${String(s['host'] ?? '')} subsets=${((s['subsets'] as Array<{ name: string }> | undefined) ?? []).map((x) => x.name).join(',')}`;
    case 'WorkloadEntry':
      return `address=${String(s['address'] ?? '')} ${Object.entries((s['labels'] as Record<string, string> | undefined) ?? {}).map(([k, v]) => `${k}=${v}`).join(',')}`;
    default:
      return '';
  }
}

function age(created: string | undefined): string {
  if (!created) return '-';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(created)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

async function del(kindName: string | undefined, name: string | undefined, o: StoreFlags & { namespace: string; filename?: string[] }): Promise<number> {
  let targets: Array<{ kind: string; namespace: string; name: string }>;
  if (o.filename) {
    if (kindName !== undefined) throw new UsageError('delete: give either KIND NAME or -f FILE, not both');
    const loaded = await loadPaths(o.filename);
    if (loaded.errors.length > 0) {
      for (const e of loaded.errors) process.stderr.write(`${e.toString()}\n`);
      return 1;
    }
    targets = loaded.documents.map((d) => ({ kind: d.resource.kind, namespace: d.resource.metadata.namespace, name: d.resource.metadata.name }));
  } else {
    if (kindName === undefined || name === undefined) throw new UsageError('delete: expected KIND NAME or -f FILE');
    targets = [{ kind: resolveKind(kindName), namespace: o.namespace, name }];
  }
  return withStore(storeTarget(o), async (store) => {
    let failed = 0;
    for (const t of targets) {
      try {
        await store.delete(t.kind, t.namespace, t.name);
        process.stdout.write(`${t.kind.toLowerCase()}/${t.name} deleted (namespace ${t.namespace})\n`);
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
        process.stderr.write(`error: ${resourceKey({ kind: t.kind, metadata: t })} not found\n`);
        failed++;
      }
    }
    return failed > 0 ? 1 : 0;
  });
}

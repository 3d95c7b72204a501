// `sextant hub`: `sextant proxy` in the lazy-scope hub role (node metadata SEXTANT_ROLE=hub):
// full scope, one listener per LazyScope hub port on its address, forwarding first calls of
// lazy workloads byte for byte with the caller's own Istio semantics and source address
// (docs/lazy-scope.md). Defaults: sextant-hub in istio-system, labelled app=sextant-hub; run
// several replicas behind the ServiceEntry the LazyScope's fallback names. Every other flag is
// `sextant proxy`'s.
import { Command } from 'commander';
import { registerProxy } from './proxy.ts';
import { runProgram, UsageError } from './flags.ts';

const collect = (v: string, prev: string[]): string[] => [...prev, v];

interface HubFlags {
  name: string;
  namespace: string;
  ip: string;
  label: string[];
}

const LABEL_RE = /^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?=([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;
const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** The `sextant proxy` arguments a hub's flags stand for (the rest passed on as given). */
export function hubProxyArguments(flags: HubFlags, rest: readonly string[]): string[] {
  if (!DNS_LABEL_RE.test(flags.name)) throw new UsageError(`invalid --name "${flags.name}": expected a DNS label (lower-case letters, digits, '-')`);
  if (!DNS_LABEL_RE.test(flags.namespace)) throw new UsageError(`invalid --namespace "${flags.namespace}": expected a DNS label`);
  if (flags.ip.includes('~') || flags.ip === '') throw new UsageError(`invalid --ip "${flags.ip}": expected an IP address`);
  const labels = flags.label.length > 0 ? flags.label : ['app=sextant-hub'];
  for (const l of labels) if (!LABEL_RE.test(l)) throw new UsageError(`invalid --label "${l}": expected KEY=VALUE`);
  if (rest.includes('--id')) throw new UsageError('--id: a hub\'s node id comes from --name, --namespace and --ip');
  if (rest.some((a) => a.startsWith('SEXTANT_ROLE='))) throw new UsageError('SEXTANT_ROLE: `sextant hub` sets the hub role itself');
  const args = ['--id', `sidecar~${flags.ip}~${flags.name}.${flags.namespace}~${flags.namespace}.svc.cluster.local`, '--meta', 'SEXTANT_ROLE=hub'];
  for (const l of labels) args.push('--label', l);
  return [...args, ...rest];
}

export function registerHub(program: Command): void {
  program
    .command('hub')
    .description('run a lazy-scope hub: `sextant proxy` with full scope serving the first calls of lazy workloads (LazyScope fallback.hub); takes every `sextant proxy` flag too (--xds, --admin-address, --stats-address, --drain-duration, --service-account, …)')
    .option('--name <name>', 'the hub replica\'s name', 'sextant-hub')
    .option('--namespace <ns>', 'the hub\'s namespace', 'istio-system')
    .option('--ip <addr>', 'the hub\'s address: its listeners bind there (the address its WorkloadEntry registers)', '127.0.0.1')
    .option('--label <key=value>', 'a workload label (repeatable; default app=sextant-hub)', collect, [])
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async (flags: HubFlags, cmd: Command) => {
      const args = hubProxyArguments(flags, cmd.args);
      // `sextant proxy` does the rest: flag checks, start, SIGTERM drain.
      const proxy = new Command('sextant');
      registerProxy(proxy);
      await runProgram(proxy, [process.argv[0] ?? 'node', process.argv[1] ?? 'sextant', 'proxy', ...args]);
    });
}

// `sextant gateway`: `sextant proxy` as an Istio gateway (a `router~…` node) with Istio's
// defaults: istio-ingressgateway in istio-system, labelled istio=ingressgateway (with
// --egress, istio-egressgateway and istio=egressgateway). Every other flag is `sextant proxy`'s.
import { Command } from 'commander';
import { registerProxy } from './proxy.ts';
import { runProgram, UsageError } from './flags.ts';

const collect = (v: string, prev: string[]): string[] => [...prev, v];

interface GatewayFlags {
  name?: string;
  namespace: string;
  ip: string;
  label: string[];
  egress?: boolean;
}

const LABEL_RE = /^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?=([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;
const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** The `sextant proxy` arguments a gateway's flags stand for (the rest passed on as given). */
export function proxyArguments(flags: GatewayFlags, rest: readonly string[]): string[] {
  const name = flags.name ?? (flags.egress === true ? 'istio-egressgateway' : 'istio-ingressgateway');
  if (!DNS_LABEL_RE.test(name)) throw new UsageError(`invalid --name "${name}": expected a DNS label (lower-case letters, digits, '-')`);
  if (!DNS_LABEL_RE.test(flags.namespace)) throw new UsageError(`invalid --namespace "${flags.namespace}": expected a DNS label`);
  if (flags.ip.includes('~') || flags.ip === '') throw new UsageError(`invalid --ip "${flags.ip}": expected an IP address`);
  const labels = flags.label.length > 0 ? flags.label : [`istio=${flags.egress === true ? 'egressgateway' : 'ingressgateway'}`];
  for (const l of labels) if (!LABEL_RE.test(l)) throw new UsageError(`invalid --label "${l}": expected KEY=VALUE`);
  if (rest.includes('--id')) throw new UsageError('--id: a gateway\'s node id comes from --name, --namespace and --ip');
  const args = ['--id', `router~${flags.ip}~${name}.${flags.namespace}~${flags.namespace}.svc.cluster.local`];
  for (const l of labels) args.push('--label', l);
  return [...args, ...rest];
}

export function registerGateway(program: Command): void {
  program
    .command('gateway')
    .description('run an Istio ingress or egress gateway: `sextant proxy` as a router node, configured by Gateway resources; takes every `sextant proxy` flag too (--xds, --admin-address, --health-address, --drain-duration, --service-account, …)')
    .option('--name <name>', 'the gateway workload\'s name (default istio-ingressgateway, or istio-egressgateway with --egress)')
    .option('--namespace <ns>', 'the gateway\'s namespace: its credentialName secrets are read from it', 'istio-system')
    .option('--ip <addr>', 'the gateway\'s address: its service\'s target ports and the source of its upstream connections', '127.0.0.1')
    .option('--label <key=value>', 'a label Gateway selectors match (repeatable; default istio=ingressgateway, or istio=egressgateway with --egress)', collect, [])
    .option('--egress', 'Istio\'s egress gateway defaults')
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async (flags: GatewayFlags, cmd: Command) => {
      const args = proxyArguments(flags, cmd.args);
      // `sextant proxy` does the rest: flag checks, start, SIGTERM drain.
      const proxy = new Command('sextant');
      registerProxy(proxy);
      await runProgram(proxy, [process.argv[0] ?? 'node', process.argv[1] ?? 'sextant', 'proxy', ...args]);
    });
}

// `sextant inject -f FILE` (istioctl kube-inject): adds the sidecar, its init container and
// its postStart `sextant wait` to every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
// Job and CronJob in a YAML file (multi-document, or a List); other documents pass through
// unchanged. The same transform serves the admission webhook (`sextant injector`).
import { readFileSync, writeFileSync } from 'node:fs';
import { text } from 'node:stream/consumers';
import type { Command } from 'commander';
import { DEFAULT_OPTIONS, InjectError, ipRanges, portList, type InjectOptions, type InterceptionMode } from '../inject/inject-template.ts';
import { InjectFileError, injectYaml } from '../inject/inject-yaml.ts';
import type { WorkloadResult } from '../inject/inject.ts';
import { UsageError } from './flags.ts';

/** The mesh-wide injection flags, shared by `inject` and `injector`. */
export interface InjectFlags {
  pilotAddress: string;
  clusterId: string;
  network?: string;
  dc?: string;
  region?: string;
  image: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  interceptionMode: InterceptionMode;
  includeOutboundPorts?: string;
  dnsCapture?: boolean;
  preserveSourceRanges?: string;
  proxyLogLevel: string;
  plaintextXds?: boolean;
}

/** Declares the injection flags on `cmd` (their values are checked in flags.ts). */
export function injectFlags(cmd: Command): Command {
  return cmd
    .option('--pilot-address <host:port,...>', "the pilot's xDS address the sidecars connect to (in a primary-remote mesh: the primary's)", DEFAULT_OPTIONS.pilotAddress)
    .option('--cluster-id <id>', "the cluster the pods run in, the sidecars' CLUSTER_ID", DEFAULT_OPTIONS.clusterId)
    .option('--network <name>', "the network the pods are on, the sidecars' NETWORK")
    .option('--dc <name>', 'the data centre of the pods (sidecar env SEXTANT_DC)')
    .option('--region <name>', 'the region of the pods (sidecar env SEXTANT_REGION)')
    .option('--image <image>', 'the image holding sextant, for the sidecar and init containers', DEFAULT_OPTIONS.image)
    .option('--image-pull-policy <policy>', 'Always, IfNotPresent or Never (default: Kubernetes\' own)')
    .option('--interception-mode <mode>', 'REDIRECT (init container sets iptables rules) or NONE (no rules; Sidecar bind addresses)', DEFAULT_OPTIONS.interceptionMode)
    .option('--include-outbound-ports <ports>', 'outbound ports captured for pods without the includeOutboundPorts annotation, e.g. 80,8080,9080 (default: none)')
    .option('--dns-capture', "turn on the sidecars' DNS proxy and capture port 53 (pods can opt in or out with sextant.io/dnsCapture)")
    .option('--preserve-source-ranges <cidrs>', "callers in these ranges (usually the pod CIDR) keep their IP as the app's TCP peer (M17); set on the rules and the sidecars")
    .option('--proxy-log-level <level>', "the sidecars' log level, unless sidecar.istio.io/logLevel says otherwise", DEFAULT_OPTIONS.logLevel)
    .option('--plaintext-xds', "the pilot runs with --plaintext-xds: the sidecars mount no mesh root and no bootstrap token (default: each pod mounts its namespace's ConfigMap sextant-ca-root-cert and Secret sextant-bootstrap-token)");
}

/** InjectOptions from the flags; a bad value is a UsageError. */
export function injectOptionsFrom(flags: InjectFlags): InjectOptions {
  try {
    if (flags.includeOutboundPorts !== undefined) portList(flags.includeOutboundPorts, '--include-outbound-ports');
    if (flags.preserveSourceRanges !== undefined) ipRanges(flags.preserveSourceRanges, '--preserve-source-ranges');
  } catch (err) {
    if (err instanceof InjectError) throw new UsageError(`invalid ${err.message}`);
    throw err;
  }
  return {
    ...DEFAULT_OPTIONS,
    pilotAddress: flags.pilotAddress,
    clusterId: flags.clusterId,
    ...(flags.network !== undefined ? { network: flags.network } : {}),
    ...(flags.dc !== undefined ? { dataCentre: flags.dc } : {}),
    ...(flags.region !== undefined ? { region: flags.region } : {}),
    image: flags.image,
    ...(flags.imagePullPolicy !== undefined ? { imagePullPolicy: flags.imagePullPolicy } : {}),
    interceptionMode: flags.interceptionMode,
    ...(flags.includeOutboundPorts !== undefined ? { includeOutboundPorts: flags.includeOutboundPorts } : {}),
    dnsCapture: flags.dnsCapture === true,
    ...(flags.preserveSourceRanges !== undefined ? { preserveSourceRanges: flags.preserveSourceRanges } : {}),
    logLevel: flags.proxyLogLevel,
    ...(flags.plaintextXds === true ? { plaintextXds: true } : {}),
  };
}

/** The lines `sextant inject` says on stderr: each warning, and each workload left alone and why. */
export function reportLines(results: readonly WorkloadResult[]): string[] {
  const out: string[] = [];
  for (const r of results) {
    for (const w of r.warnings) out.push(`warning: ${w}`);
    if (!r.injected) out.push(`${r.kind} ${r.name}: not injected: ${r.reason ?? 'unknown reason'}`);
  }
  return out;
}

interface InjectCommandFlags extends InjectFlags {
  filename: string;
  output?: string;
}

export function registerInject(program: Command): void {
  const cmd = program
    .command('inject')
    .description('add the sidecar to the workloads of a Kubernetes YAML file (as istioctl kube-inject); the result goes to stdout')
    .requiredOption('-f, --filename <file>', 'YAML file of Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs or Lists of them ("-": standard input)')
    .option('-o, --output <file>', 'write the result to FILE instead of stdout');
  injectFlags(cmd).action(async (flags: InjectCommandFlags) => {
    const options = injectOptionsFrom(flags);
    const source = flags.filename === '-' ? '<stdin>' : flags.filename;
    let input: string;
    try {
      input = flags.filename === '-' ? await text(process.stdin) : readFileSync(flags.filename, 'utf8');
    } catch (err) {
      process.stderr.write(`error: cannot read ${source}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
      process.exitCode = 1;
      return;
    }
    let result;
    try {
      result = injectYaml(input, options, source);
    } catch (err) {
      if (!(err instanceof InjectFileError)) throw err;
      process.stderr.write(`error: ${err.message}\n`);
      process.exitCode = 1;
      return;
    }
    const lines = reportLines(result.results);
    if (lines.length > 0) process.stderr.write(lines.join('\n') + '\n');
    if (flags.output !== undefined) writeFileSync(flags.output, result.text);
    else process.stdout.write(result.text);
  });
}

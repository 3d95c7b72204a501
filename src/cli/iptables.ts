// `sextant iptables`: the init step of a workload (a pod's init container, or a VM's setup):
// writes the capture rules of its network namespace in one iptables-restore transaction,
// `--clean` removes exactly them, `--dry-run` prints them. Istio's istio-iptables in spirit
// and short flags (-q -o -i -x -b -u -g -p -z -n).
import type { Command } from 'commander';
import {
  DEFAULT_OPTIONS, IptablesOptionError, PRESERVE_SOURCE_RANGES_ENV, applyRules, buildRules, cleanPreview, cleanRules,
  parsePortList, parseRangeList, restoreText,
} from '../inject/iptables/index.ts';
import type { IptablesOptions } from '../inject/iptables/index.ts';
import { UsageError } from './flags.ts';

interface IptablesFlags {
  includeOutboundPorts: string;
  excludeOutboundPorts: string;
  includeOutboundIpRanges: string;
  excludeOutboundIpRanges: string;
  includeInboundPorts: string;
  proxyUid: string;
  proxyGid?: string;
  appUid?: string;
  outboundCapturePort: string;
  inboundCapturePort: string;
  dnsCapturePort: string;
  preserveSourceRanges?: string;
  dns: boolean;
  dryRun: boolean;
  clean: boolean;
}

function id(value: string, flag: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`invalid ${flag} "${value}": expected a numeric id, e.g. 1337`);
  return Number(value);
}

function port(value: string, flag: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) < 1 || Number(value) > 65535) throw new UsageError(`invalid ${flag} "${value}": expected a port 1-65535`);
  return Number(value);
}

/** The options the flags describe; a bad value is a UsageError naming its flag. */
export function iptablesOptions(f: IptablesFlags): IptablesOptions {
  try {
    const proxyUid = id(f.proxyUid, '--proxy-uid');
    const o: IptablesOptions = {
      ...DEFAULT_OPTIONS,
      proxyUid,
      proxyGid: f.proxyGid !== undefined ? id(f.proxyGid, '--proxy-gid') : proxyUid,
      outboundCapturePort: port(f.outboundCapturePort, '--outbound-capture-port'),
      inboundCapturePort: port(f.inboundCapturePort, '--inbound-capture-port'),
      dnsCapturePort: port(f.dnsCapturePort, '--dns-capture-port'),
      includeOutboundPorts: parsePortList(f.includeOutboundPorts, '--include-outbound-ports'),
      excludeOutboundPorts: parsePortList(f.excludeOutboundPorts, '--exclude-outbound-ports'),
      includeOutboundIpRanges: parseRangeList(f.includeOutboundIpRanges, '--include-outbound-ip-ranges'),
      excludeOutboundIpRanges: parseRangeList(f.excludeOutboundIpRanges, '--exclude-outbound-ip-ranges'),
      includeInboundPorts: parsePortList(f.includeInboundPorts, '--include-inbound-ports'),
      preserveSourceRanges: (f.preserveSourceRanges ?? process.env[PRESERVE_SOURCE_RANGES_ENV] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== ''),
      dns: f.dns,
    };
    if (f.appUid !== undefined) o.appUid = id(f.appUid, '--app-uid');
    return o;
  } catch (err) {
    if (err instanceof IptablesOptionError) throw new UsageError(err.message);
    throw err;
  }
}

export function registerIptables(program: Command): void {
  program
    .command('iptables')
    .description('write the capture rules of this network namespace (a pod\'s, or a VM\'s) for its sidecar, atomically; --clean removes them, --dry-run prints them')
    .option('-q, --include-outbound-ports <ports>', 'TCP ports captured outbound, e.g. 9080,8080 (annotation traffic.sidecar.istio.io/includeOutboundPorts); no other outbound traffic reaches the sidecar', '')
    .option('-o, --exclude-outbound-ports <ports>', 'TCP ports never captured outbound', '')
    .option('-i, --include-outbound-ip-ranges <cidrs>', 'capture outbound only toward these ranges (default: any destination)', '')
    .option('-x, --exclude-outbound-ip-ranges <cidrs>', 'never capture outbound toward these ranges', '')
    .option('-b, --include-inbound-ports <ports>', 'the ports the app declares (annotation traffic.sidecar.istio.io/includeInboundPorts); only these are captured inbound', '')
    .option('-u, --proxy-uid <uid>', 'uid the sidecar runs as; its connections are never captured', String(DEFAULT_OPTIONS.proxyUid))
    .option('-g, --proxy-gid <gid>', 'gid the sidecar runs as (default: the proxy uid)')
    .option('--app-uid <uid>', 'VM mode: capture outbound only for the app\'s uid (other users of the host are left alone)')
    .option('-p, --outbound-capture-port <port>', 'the sidecar\'s outbound capture port (virtualOutbound)', String(DEFAULT_OPTIONS.outboundCapturePort))
    .option('-z, --inbound-capture-port <port>', 'the sidecar\'s inbound capture port (virtualInbound)', String(DEFAULT_OPTIONS.inboundCapturePort))
    .option('--dns', 'capture DNS (UDP and TCP port 53) to the sidecar\'s DNS proxy', false)
    .option('--dns-capture-port <port>', 'the sidecar\'s DNS proxy port on 127.0.0.1', String(DEFAULT_OPTIONS.dnsCapturePort))
    .option('--preserve-source-ranges <cidrs>', `callers in these ranges (each /9 or narrower) keep their IP as the app's TCP peer; give the proxy the same ranges (default: $${PRESERVE_SOURCE_RANGES_ENV})`)
    .option('-n, --dry-run', 'print the rules (with why each exists) instead of writing them', false)
    .option('--clean', 'remove exactly what an earlier run wrote, whatever its flags', false)
    .action((flags: IptablesFlags) => {
      if (flags.clean) {
        if (flags.dryRun) {
          process.stdout.write(cleanPreview() || '# nothing to remove\n');
          return;
        }
        const removed = cleanRules();
        process.stdout.write(removed ? 'sextant iptables: capture rules removed\n' : 'sextant iptables: no capture rules to remove\n');
        return;
      }
      const options = iptablesOptions(flags);
      let rules;
      try {
        rules = buildRules(options);
      } catch (err) {
        if (err instanceof IptablesOptionError) throw new UsageError(err.message);
        throw err;
      }
      if (flags.dryRun) {
        let out = '';
        for (const r of rules.routes) out += `# route (before the rules): ip ${r.join(' ')}\n`;
        process.stdout.write(out + restoreText(rules));
        return;
      }
      applyRules(rules);
      const count = [...rules.tables.values()].reduce((n, lines) => n + lines.filter((l) => l.startsWith('-A ')).length, 0);
      process.stdout.write(`sextant iptables: ${count} rules written (outbound ports ${options.includeOutboundPorts.join(',') || 'none'}, inbound ports ${options.includeInboundPorts.join(',') || 'none'}${options.dns ? ', DNS' : ''})\n`);
    });
}

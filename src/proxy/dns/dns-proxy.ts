// The sidecar's DNS proxy (Istio's DNS capture, opt-in with node metadata DNS_CAPTURE): UDP and
// TCP on 127.0.0.1:15053, where `sextant iptables --dns` sends the app's queries. A/AAAA
// questions for mesh hosts are answered from the NameTable (NDS) the control plane pushes;
// everything else goes, as it came, to the resolvers of /etc/resolv.conf, and their answer
// back as it came. The proxy runs as the proxy uid, so its own queries are not captured.
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket } from 'dns-packet';
import type pino from 'pino';
import type { XdsResource } from '../xds/ads-client.ts';
import { EMPTY_NAME_TABLE, NameTable } from './name-table.ts';

/** A resolver the proxy forwards to. */
export interface Upstream {
  host: string;
  port: number;
}

export interface DnsProxyOptions {
  /** Where to listen (UDP and TCP); default 127.0.0.1:15053. Port 0 picks one (the same for both). */
  address?: string;
  port?: number;
  /** The proxy's namespace: short names of its own namespace's hosts resolve. */
  namespace: string;
  /** Resolvers to forward to; default: the nameservers of `resolvConf`. */
  upstreams?: readonly Upstream[];
  /** Default /etc/resolv.conf. */
  resolvConf?: string;
  /** TTL of local answers, seconds (istio-agent's: 30). */
  ttlSeconds?: number;
  /** How long one resolver may take before the next is asked; default 2 s. */
  upstreamTimeoutMs?: number;
  /** Queries being forwarded at once; beyond it the answer is SERVFAIL at once. Default 1,024. */
  maxForwarding?: number;
  logger: pino.Logger;
}

/** The nameservers of a resolv.conf text, in order (at most 3, as glibc reads them); 127.0.0.1 when none. */
export function parseResolvConf(text: string): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const host = m[1]!.replace(/%.*$/, '');
    if (net.isIP(host) !== 0 && out.length < 3) out.push({ host, port: 53 });
  }
  return out.length > 0 ? out : [{ host: '127.0.0.1', port: 53 }];
}

const RCODE_SERVFAIL = 2;
const MAX_TCP_MESSAGE = 65535;
const TCP_IDLE_MS = 10_000;

/** Counters, as istio-agent names its DNS metrics. */
export interface DnsStats {
  requests: number;
  answeredLocally: number;
  upstreamRequests: number;
  upstreamFailures: number;
}

export class DnsProxy {
  private readonly opts: DnsProxyOptions;
  private table: NameTable = EMPTY_NAME_TABLE;
  private readonly upstreams: readonly Upstream[];
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly tcpConnections = new Set<net.Socket>();
  private forwarding = 0;
  private closed = false;
  readonly stats: DnsStats = { requests: 0, answeredLocally: 0, upstreamRequests: 0, upstreamFailures: 0 };
  /** Bound `host:port` once started. */
  boundAddress = '';

  constructor(opts: DnsProxyOptions) {
    this.opts = opts;
    this.upstreams = opts.upstreams ?? parseResolvConf(readResolvConf(opts.resolvConf ?? '/etc/resolv.conf'));
  }

  /** Hosts in the current name table. */
  get hosts(): number {
    return this.table.hosts;
  }

  /** NDS updates (the ADS client's sink for Istio's NameTable type); throws when the table is invalid. */
  apply(resources: ReadonlyMap<string, XdsResource>): void {
    const first = resources.values().next();
    const table = first.done === true ? EMPTY_NAME_TABLE : new NameTable(first.value.resource, this.opts.namespace);
    this.table = table;
    this.opts.logger.info({ hosts: table.hosts }, 'DNS name table updated');
  }

  /** Binds UDP, then TCP on the same port. */
  async start(): Promise<void> {
    const address = this.opts.address ?? '127.0.0.1';
    const udp = dgram.createSocket({ type: net.isIPv6(address) ? 'udp6' : 'udp4' });
    this.udp = udp;
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind({ address, port: this.opts.port ?? 15053, exclusive: true }, () => {
        udp.removeListener('error', reject);
        resolve();
      });
    });
    udp.on('error', (err) => this.opts.logger.warn({ err: err.message }, 'DNS UDP socket error'));
    udp.on('message', (msg, rinfo) => {
      void this.answer(msg, 'udp').then((reply) => {
        if (reply !== undefined && !this.closed) udp.send(reply, rinfo.port, rinfo.address);
      });
    });
    const port = udp.address().port;
    const tcp = net.createServer((s) => this.serveTcp(s));
    this.tcp = tcp;
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen({ host: address, port }, () => {
        tcp.removeListener('error', reject);
        resolve();
      });
    });
    this.boundAddress = `${address}:${port}`;
    this.opts.logger.info({ address: this.boundAddress, upstreams: this.upstreams.map((u) => `${u.host}:${u.port}`) }, 'DNS proxy listening');
  }

  close(): void {
    this.closed = true;
    this.udp?.close();
    this.tcp?.close();
    for (const s of this.tcpConnections) s.destroy();
  }

  /**
   * The reply to one query: a local answer for an A/AAAA question about a mesh host, else the
   * upstream's answer (SERVFAIL when none came). Undefined for what is not a DNS query.
   */
  async answer(query: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    let packet: DecodedPacket;
    try {
      packet = dnsPacket.decode(query);
    } catch {
      return undefined;
    }
    if (packet.type !== 'query') return undefined;
    this.stats.requests++;
    const q = packet.questions?.[0];
    if (q !== undefined && packet.questions?.length === 1 && (q.class ?? 'IN') === 'IN' && (q.type === 'A' || q.type === 'AAAA')) {
      const addrs = this.table.lookup(q.name);
      if (addrs !== undefined) {
        this.stats.answeredLocally++;
        return this.localAnswer(packet, q.name, q.type, q.type === 'A' ? addrs.v4 : addrs.v6);
      }
    }
    return this.forward(query, packet, transport);
  }

  // An authoritative answer; no records of the asked family is NOERROR with no answers
  // (NODATA), so a resolver asking A and AAAA together does not wait on the other.
  private localAnswer(query: DecodedPacket, name: string, type: 'A' | 'AAAA', ips: readonly string[]): Buffer {
    const ttl = this.opts.ttlSeconds ?? 30;
    const answers: Answer[] = ips.map((data) => ({ type, name, class: 'IN', ttl, data }));
    return dnsPacket.encode({
      type: 'response',
      id: query.id ?? 0,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | (query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0),
      questions: query.questions ?? [],
      answers,
    });
  }

  private servfail(query: DecodedPacket): Buffer {
    return dnsPacket.encode({
      type: 'response',
      id: query.id ?? 0,
      flags: RCODE_SERVFAIL | dnsPacket.RECURSION_AVAILABLE | (query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0),
      questions: query.questions ?? [],
    });
  }

  private async forward(query: Buffer, packet: DecodedPacket, transport: 'udp' | 'tcp'): Promise<Buffer> {
    if (this.forwarding >= (this.opts.maxForwarding ?? 1024)) {
      this.stats.upstreamFailures++;
      return this.servfail(packet);
    }
    this.forwarding++;
    try {
      for (const upstream of this.upstreams) {
        this.stats.upstreamRequests++;
        const reply = transport === 'udp' ? await this.forwardUdp(query, packet.id ?? 0, upstream) : await this.forwardTcp(query, upstream);
        if (reply !== undefined) return reply;
        this.stats.upstreamFailures++;
      }
      return this.servfail(packet);
    } finally {
      this.forwarding--;
    }
  }

  // One socket per forwarded query: the upstream's answer comes back to it alone.
  private forwardUdp(query: Buffer, id: number, upstream: Upstream): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const sock = dgram.createSocket(net.isIPv6(upstream.host) ? 'udp6' : 'udp4');
      let done = false;
      const finish = (reply: Buffer | undefined): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.close();
        resolve(reply);
      };
      const timer = setTimeout(() => finish(undefined), this.opts.upstreamTimeoutMs ?? 2000);
      sock.on('error', () => finish(undefined));
      sock.on('message', (msg, rinfo) => {
        // Only the resolver's answer to this query (a spoofed or stray datagram is ignored).
        if (rinfo.port !== upstream.port || msg.length < 2 || msg.readUInt16BE(0) !== id) return;
        finish(msg);
      });
      sock.send(query, upstream.port, upstream.host);
    });
  }

  private forwardTcp(query: Buffer, upstream: Upstream): Promise<Buffer | undefined> {
    return new Promise((resolve) => {
      const s = net.connect({ host: upstream.host, port: upstream.port });
      let buf: Buffer = Buffer.alloc(0);
      let done = false;
      const finish = (reply: Buffer | undefined): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        s.destroy();
        resolve(reply);
      };
      const timer = setTimeout(() => finish(undefined), this.opts.upstreamTimeoutMs ?? 2000);
      s.on('error', () => finish(undefined));
      s.on('close', () => finish(undefined));
      s.on('connect', () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(query.length);
        s.write(Buffer.concat([len, query]));
      });
      s.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) finish(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      });
    });
  }

  // DNS over TCP: each message prefixed by its 2-byte length, several per connection.
  private serveTcp(s: net.Socket): void {
    this.tcpConnections.add(s);
    s.once('close', () => this.tcpConnections.delete(s));
    s.on('error', () => s.destroy());
    s.setTimeout(TCP_IDLE_MS, () => s.destroy());
    let buf: Buffer = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len === 0 || len > MAX_TCP_MESSAGE) {
          s.destroy();
          return;
        }
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        void this.answer(Buffer.from(msg), 'tcp').then((reply) => {
          if (reply === undefined) {
            s.destroy();
            return;
          }
          const head = Buffer.alloc(2);
          head.writeUInt16BE(reply.length);
          if (!s.destroyed) s.write(Buffer.concat([head, reply]));
        });
      }
    });
  }
}

function readResolvConf(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

// The sidecar's DNS proxy: mesh hosts from the NameTable answered locally (A, AAAA as NODATA,
// Kubernetes short names, wildcards), everything else forwarded as it came to the resolvers
// of resolv.conf over the same transport, SERVFAIL when none answers.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { DecodedPacket, Packet, RecordType } from 'dns-packet';
import pino from 'pino';
import { DnsProxy, NameTable, parseResolvConf } from '../../src/proxy/dns/index.ts';
import type { XdsResource } from '../../src/proxy/index.ts';

const logger = pino({ level: 'silent' });
const TABLE = {
  table: {
    'reviews.default.svc.cluster.local': { ips: ['240.240.12.34'], registry: 'Kubernetes', shortname: 'reviews', namespace: 'default' },
    'ratings.other.svc.cluster.local': { ips: ['10.96.0.7', 'fd00::7'], registry: 'Kubernetes', shortname: 'ratings', namespace: 'other' },
    '*.wiki.example': { ips: ['198.51.100.9'], registry: 'External' },
  },
};

function nds(table: unknown): Map<string, XdsResource> {
  return new Map([['', { name: '', version: '1', resource: table as Record<string, unknown> }]]);
}

/** A resolver that answers every A question with 192.0.2.1 over UDP and TCP, counting the queries. */
class FakeUpstream {
  udp = dgram.createSocket('udp4');
  tcp = net.createServer((s) => s.on('data', (d: Buffer) => {
    this.queries++;
    const reply = this.reply(d.subarray(2));
    const len = Buffer.alloc(2);
    len.writeUInt16BE(reply.length);
    s.end(Buffer.concat([len, reply]));
  }));
  queries = 0;
  port = 0;

  reply(q: Buffer): Buffer {
    const p = dnsPacket.decode(q);
    const question = p.questions![0]!;
    return dnsPacket.encode({ type: 'response', id: p.id ?? 0, flags: dnsPacket.RECURSION_AVAILABLE, questions: p.questions ?? [], answers: question.type === 'A' ? [{ type: 'A', name: question.name, ttl: 300, data: '192.0.2.1' }] : [] });
  }

  async start(): Promise<void> {
    this.udp.on('message', (msg, rinfo) => {
      this.queries++;
      this.udp.send(this.reply(msg), rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => this.udp.bind(0, '127.0.0.1', r));
    this.port = this.udp.address().port;
    await new Promise<void>((r) => this.tcp.listen(this.port, '127.0.0.1', r));
  }

  close(): void {
    this.udp.close();
    this.tcp.close();
  }
}

const upstream = new FakeUpstream();
let proxy: DnsProxy;
let port = 0;

before(async () => {
  await upstream.start();
  proxy = new DnsProxy({ namespace: 'default', port: 0, upstreams: [{ host: '127.0.0.1', port: upstream.port }], logger });
  await proxy.start();
  port = Number(proxy.boundAddress.split(':')[1]);
  proxy.apply(nds(TABLE));
});

after(() => {
  proxy.close();
  upstream.close();
});

let nextId = 1;

function queryUdp(name: string, type: RecordType, to = port): Promise<DecodedPacket> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    const id = nextId++;
    const timer = setTimeout(() => { sock.close(); reject(new Error('no answer')); }, 5000);
    sock.on('message', (msg) => {
      clearTimeout(timer);
      sock.close();
      resolve(dnsPacket.decode(msg));
    });
    const q: Packet = { type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] };
    sock.send(dnsPacket.encode(q), to, '127.0.0.1');
  });
}

function queryTcp(name: string, type: RecordType): Promise<DecodedPacket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    s.on('error', reject);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        s.destroy();
        resolve(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
      }
    });
    s.write(dnsPacket.streamEncode({ type: 'query', id: nextId++, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }] }));
  });
}

/** The response code (dns-packet decodes it; its types do not declare it). */
function rcode(p: DecodedPacket): string {
  return (p as DecodedPacket & { rcode: string }).rcode;
}

function addresses(p: DecodedPacket): string[] {
  return (p.answers ?? []).map((a) => String((a as { data: unknown }).data));
}

test('an A question about a mesh host is answered by the sidecar, authoritatively, TTL 30', async () => {
  const before = upstream.queries;
  const r = await queryUdp('reviews.default.svc.cluster.local', 'A');
  assert.equal(r.type, 'response');
  assert.equal(r.flag_aa, true);
  assert.equal(rcode(r), 'NOERROR');
  assert.deepEqual(addresses(r), ['240.240.12.34']);
  assert.equal((r.answers![0] as { ttl: number }).ttl, 30);
  assert.equal(upstream.queries, before, 'not forwarded');
});

test('AAAA of an IPv4-only mesh host is NODATA; a host with IPv6 gets it', async () => {
  const r = await queryUdp('reviews.default.svc.cluster.local', 'AAAA');
  assert.equal(rcode(r), 'NOERROR');
  assert.deepEqual(addresses(r), []);
  assert.deepEqual(addresses(await queryUdp('ratings.other.svc.cluster.local', 'AAAA')), ['fd00::7']);
});

test('short names: NAME.NS.svc and NAME.NS everywhere, NAME in the proxy\'s own namespace; wildcards by suffix', async () => {
  assert.deepEqual(addresses(await queryUdp('reviews', 'A')), ['240.240.12.34']);
  assert.deepEqual(addresses(await queryUdp('reviews.default', 'A')), ['240.240.12.34']);
  assert.deepEqual(addresses(await queryUdp('ratings.other.svc', 'A')), ['10.96.0.7']);
  assert.deepEqual(addresses(await queryUdp('REVIEWS.Default.svc.cluster.local', 'A')), ['240.240.12.34']);
  assert.deepEqual(addresses(await queryUdp('en.wiki.example', 'A')), ['198.51.100.9']);
  // `ratings` alone is another namespace's short name: not a mesh host here.
  assert.deepEqual(addresses(await queryUdp('ratings', 'A')), ['192.0.2.1']);
});

test('other names are forwarded as they came, over UDP and TCP, and the answer relayed', async () => {
  const before = upstream.queries;
  const r = await queryUdp('example.org', 'A');
  assert.deepEqual(addresses(r), ['192.0.2.1']);
  assert.equal(r.flag_aa, false);
  const t = await queryTcp('example.net', 'A');
  assert.deepEqual(addresses(t), ['192.0.2.1']);
  assert.equal(upstream.queries, before + 2);
  assert.deepEqual(addresses(await queryTcp('reviews.default.svc.cluster.local', 'A')), ['240.240.12.34'], 'local answers over TCP too');
  assert.ok(proxy.stats.answeredLocally > 0 && proxy.stats.upstreamRequests >= 2);
});

test('a resolver that does not answer makes SERVFAIL, after the next one is tried', async () => {
  const dead = dgram.createSocket('udp4');
  await new Promise<void>((r) => dead.bind(0, '127.0.0.1', r));
  const lonely = new DnsProxy({ namespace: 'default', port: 0, upstreams: [{ host: '127.0.0.1', port: dead.address().port }, { host: '127.0.0.1', port: dead.address().port }], upstreamTimeoutMs: 200, logger });
  await lonely.start();
  try {
    const r = await queryUdp('example.org', 'A', Number(lonely.boundAddress.split(':')[1]));
    assert.equal(rcode(r), 'SERVFAIL');
    assert.equal(lonely.stats.upstreamFailures, 2);
  } finally {
    lonely.close();
    dead.close();
  }
});

test('an NDS update with a bad address is refused and the old table stays', () => {
  assert.throws(() => proxy.apply(nds({ table: { 'x.example': { ips: ['not-an-ip'] } } })), /NameTable host x\.example: "not-an-ip" is not an IP address/);
  assert.equal(proxy.hosts, 3);
  assert.equal(new NameTable(undefined, 'default').lookup('reviews'), undefined);
});

test('resolv.conf: nameservers in order, at most three, 127.0.0.1 when none', () => {
  assert.deepEqual(parseResolvConf('search default.svc.cluster.local\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\n# nameserver 1.1.1.1\nnameserver 8.8.8.8\nnameserver 9.9.9.9\n'), [
    { host: '10.96.0.10', port: 53 }, { host: 'fe80::1', port: 53 }, { host: '8.8.8.8', port: 53 },
  ]);
  assert.deepEqual(parseResolvConf(''), [{ host: '127.0.0.1', port: 53 }]);
});

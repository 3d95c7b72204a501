// `sextant iptables` against a real kernel, as root: rules written in one transaction,
// `--clean` leaving the namespace's rule set byte-identical to before (a fresh namespace, and
// one that already had rules of its own), a re-run replacing an earlier run, `--dry-run`
// writing nothing, and VM mode capturing the app's uid only.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { FIXTURES, NODE, SEXTANT, Topology, eventually, nsSh, rootSkipReason } from './helpers/netns.ts';

const skip = rootSkipReason();
const topo = skip ? undefined : new Topology();

after(async () => {
  await topo?.destroy();
});

/** iptables-save without its timestamp comments, and the local routes. */
function ruleSet(ns: string): string {
  const save = nsSh(ns, 'iptables-save', []).split('\n').filter((l) => !l.startsWith('#')).join('\n');
  return `${save}\n--- routes ---\n${nsSh(ns, 'ip', ['-4', 'route', 'show', 'table', 'all'])}`;
}

function sextant(ns: string, ...args: string[]): string {
  return nsSh(ns, NODE, [SEXTANT, 'iptables', ...args]);
}

const FULL = ['--include-outbound-ports', '9080,8080', '--exclude-outbound-ports', '8080', '--exclude-outbound-ip-ranges', '10.96.0.0/12',
  '--include-inbound-ports', '9080,9443', '--dns', '--preserve-source-ranges', '10.0.0.0/16,192.168.0.0/16'];

test('root: --clean leaves a fresh namespace\'s rule set byte-identical to before', { skip }, () => {
  const ns = topo!.namespace('fresh');
  const before = ruleSet(ns);
  sextant(ns, ...FULL);
  const applied = ruleSet(ns);
  assert.notEqual(applied, before);
  assert.match(applied, /-A SEXTANT_INBOUND -p tcp -m tcp --dport 9443 -j DNAT --to-destination 240\.241\.36\.227:15006/);
  assert.match(applied, /local 240\.241\.0\.0\/16 dev lo/);
  assert.match(sextant(ns, '--clean'), /capture rules removed/);
  assert.equal(ruleSet(ns), before);
  assert.match(sextant(ns, '--clean'), /no capture rules to remove/);
});

test('root: --clean removes exactly what was added next to rules of others', { skip }, () => {
  const ns = topo!.namespace('busy');
  // What a CNI or a container runtime might have left: chains, jumps, a filter policy.
  nsSh(ns, 'iptables-restore', [], [
    '*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]', ':CNI-HOSTPORT - [0:0]',
    '-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT', '-A OUTPUT -p tcp --dport 8000 -j REDIRECT --to-ports 8001',
    '-A POSTROUTING -s 10.88.0.0/16 ! -d 10.88.0.0/16 -j MASQUERADE', 'COMMIT',
    '*filter', ':INPUT ACCEPT [0:0]', ':FORWARD DROP [0:0]', ':OUTPUT ACCEPT [0:0]', '-A INPUT -p tcp --dport 22 -j ACCEPT', 'COMMIT', '',
  ].join('\n'));
  const before = ruleSet(ns);
  sextant(ns, ...FULL);
  const applied = ruleSet(ns);
  assert.match(applied, /-A OUTPUT -p tcp -m tcp --dport 8000 -j REDIRECT --to-ports 8001/, 'others\' rules stay');
  assert.match(applied, /-A OUTPUT -j SEXTANT_OUTPUT/);
  sextant(ns, '--clean');
  assert.equal(ruleSet(ns), before);
});

test('root: a second run replaces the first; --dry-run writes nothing', { skip }, () => {
  const ns = topo!.namespace('again');
  const before = ruleSet(ns);
  const dry = sextant(ns, '--include-outbound-ports', '9080', '--dry-run');
  assert.match(dry, /^\*nat$/m);
  assert.equal(ruleSet(ns), before, '--dry-run changed nothing');
  sextant(ns, ...FULL);
  sextant(ns, '--include-outbound-ports', '7070');
  const save = nsSh(ns, 'iptables-save', []);
  assert.match(save, /--dport 7070 -j DNAT --to-destination 127\.1\.27\.158:15001/);
  assert.doesNotMatch(save, /9080|SEXTANT_INBOUND|15053/, 'nothing of the first run is left');
  sextant(ns, '--clean');
  assert.equal(ruleSet(ns), before);
});

test('root: VM mode captures only the app uid\'s connections, never the proxy\'s', { skip }, async () => {
  const vm = topo!.namespace('vm');
  const peer = topo!.namespace('peer');
  topo!.link(vm, '10.212.0.1/24', peer, '10.212.0.2/24');
  nsSh(vm, 'ip', ['route', 'add', 'default', 'via', '10.212.0.2']);
  const remote = topo!.spawn(peer, 'remote', [NODE, path.join(FIXTURES, 'app.ts'), 'tcp', '8080'], { uid: 1000 });
  // A stand-in for the sidecar's capture port: it answers with its own port.
  const sidecar = topo!.spawn(vm, 'sidecar', [NODE, path.join(FIXTURES, 'app.ts'), 'tcp', '15001'], { uid: 1337 });
  await eventually(async () => (remote.output().includes('ready') && sidecar.output().includes('ready') ? true : undefined), 15_000, 'the listeners');
  sextant(vm, '--include-outbound-ports', '8080', '--app-uid', '1000');
  const dial = async (uid: number): Promise<string> => {
    const out = await topo!.run(vm, [NODE, path.join(FIXTURES, 'probe.ts'), 'tcp', '10.212.0.2', '8080'], { uid });
    return (JSON.parse(out.trim()) as { reply: string }).reply;
  };
  assert.equal(await dial(1000), '15001 ping', 'the app is captured');
  assert.equal(await dial(2000), '8080 ping', 'another user of the VM is not');
  assert.equal(await dial(1337), '8080 ping', 'the proxy is not');
  sextant(vm, '--clean');
  assert.equal(await dial(1000), '8080 ping');
});

// `sextant iptables` without a kernel: the rules for a set of flags (golden), the address
// contract with the proxy, flag errors, and apply/clean as transactions (through a recorded
// command runner). The real kernel is test/root/iptables-root.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  DEFAULT_OPTIONS, IptablesApplyError, IptablesOptionError, applyRules, buildRules, captureAddress, capturedDestination, cleanRules,
  mappedSource, parsePortList, planClean, restoreText, sourceMap,
} from '../../src/inject/iptables/index.ts';
import type { CommandResult, IptablesOptions, IptablesTools } from '../../src/inject/iptables/index.ts';

const ENTRY = path.resolve(import.meta.dirname, '../../bin/sextant.mjs');
const GOLDEN = path.join(import.meta.dirname, 'golden');

function sextant(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [ENTRY, 'iptables', ...args], { encoding: 'utf8', env: { ...process.env, SEXTANT_PRESERVE_SOURCE_RANGES: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function golden(name: string, text: string): void {
  const file = path.join(GOLDEN, name);
  if (process.env['UPDATE_GOLDEN'] === '1') writeFileSync(file, text);
  assert.ok(existsSync(file), `${file} is missing; run with UPDATE_GOLDEN=1`);
  assert.equal(text, readFileSync(file, 'utf8'));
}

test('--dry-run prints the rules of a pod: declared ports only, with why each rule exists', () => {
  const r = sextant('--dry-run', '-q', '9080,8080', '-b', '9080,9443', '-x', '10.96.0.0/12', '--dns', '--preserve-source-ranges', '10.244.0.0/16');
  assert.equal(r.code, 0, r.stderr);
  golden('iptables-pod.txt', r.stdout);
});

test('--dry-run of a VM: only the app uid is captured outbound', () => {
  const r = sextant('-n', '-q', '9080', '--app-uid', '1000', '-i', '10.0.0.0/8,172.16.0.0/12');
  assert.equal(r.code, 0, r.stderr);
  golden('iptables-vm.txt', r.stdout);
});

test('each captured port gets its own capture address; the proxy reads the port back from it', () => {
  assert.equal(captureAddress('outbound', 9080), '127.1.35.120');
  assert.equal(captureAddress('inbound', 9080), '240.241.35.120');
  assert.equal(captureAddress('outbound', 65535), '127.1.255.255');
  for (const port of [1, 80, 443, 3306, 9080, 15010, 65535]) {
    assert.deepEqual(capturedDestination(captureAddress('outbound', port)), { direction: 'outbound', port });
    assert.deepEqual(capturedDestination(`::ffff:${captureAddress('inbound', port)}`), { direction: 'inbound', port });
  }
  for (const other of ['127.0.0.1', '10.0.0.1', '127.1.0.0', '240.240.0.5', '::1', '']) assert.equal(capturedDestination(other), undefined);
});

test('preserved source ranges map onto 127.128.0.0/9, largest first, whatever their order', () => {
  const a = sourceMap(['192.168.0.0/16', '10.244.0.0/14']);
  const b = sourceMap(['10.244.0.0/14', '192.168.0.0/16']);
  assert.deepEqual(a, b);
  assert.deepEqual(a.map((e) => [`${e.from.address}/${e.from.prefixLen}`, `${e.to.address}/${e.to.prefixLen}`]), [
    ['127.128.0.0/14', '10.244.0.0/14'],
    ['127.132.0.0/16', '192.168.0.0/16'],
  ]);
  assert.equal(mappedSource(a, '10.245.3.4'), '127.129.3.4');
  assert.equal(mappedSource(a, '192.168.7.9'), '127.132.7.9');
  assert.equal(mappedSource(a, '::ffff:192.168.7.9'), '127.132.7.9');
  assert.equal(mappedSource(a, '172.16.0.1'), undefined);
  assert.throws(() => sourceMap(['10.0.0.0/8']), /wider than \/9/);
  assert.throws(() => sourceMap(['10.0.0.0/9', '11.0.0.0/9']), /do not fit/);
});

test('flag errors name the flag and exit 2', () => {
  const cases: [string[], RegExp][] = [
    [[], /nothing to capture: give --include-outbound-ports, --include-inbound-ports or --dns/],
    [['-q', '*'], /invalid --include-outbound-ports "\*": list the ports/],
    [['-b', '80,x'], /invalid --include-inbound-ports "80,x": expected ports 1-65535/],
    [['-q', '80', '-x', '10.0.0.0/33'], /invalid --exclude-outbound-ip-ranges "10\.0\.0\.0\/33"/],
    [['-b', '15006'], /--include-inbound-ports 15006 is a capture port of the proxy/],
    [['-q', '80', '--app-uid', '1337'], /--app-uid 1337 is the proxy's uid/],
    [['-q', '80', '-u', 'proxy'], /invalid --proxy-uid "proxy": expected a numeric id/],
    [['-b', '80', '--preserve-source-ranges', '10.0.0.0/8'], /invalid --preserve-source-ranges: .*wider than \/9/],
  ];
  for (const [args, message] of cases) {
    const r = sextant('--dry-run', ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(r.stdout, '');
  }
  assert.throws(() => parsePortList('0', '--x'), IptablesOptionError);
});

/** A fake iptables: iptables-save prints `save`, each restore is recorded (and may fail). */
function fakeTools(state: { save: string; route: boolean; failRestore?: boolean }, calls: string[]): IptablesTools {
  return {
    save: 'iptables-save', restore: 'iptables-restore', ip: 'ip',
    run: (cmd, args, input): CommandResult => {
      calls.push(`${cmd} ${args.join(' ')}${input !== undefined ? `\n${input}` : ''}`);
      if (cmd === 'iptables-save') return { code: 0, stdout: state.save, stderr: '' };
      if (cmd === 'iptables-restore') return state.failRestore ? { code: 2, stdout: '', stderr: 'iptables-restore: line 3 failed' } : { code: 0, stdout: '', stderr: '' };
      if (args.includes('show')) return { code: 0, stdout: state.route ? 'local 240.241.0.0/16 dev lo\n' : '', stderr: '' };
      if (args.includes('add')) state.route = true;
      if (args.includes('del')) state.route = false;
      return { code: 0, stdout: '', stderr: '' };
    },
  };
}

const OPTIONS: IptablesOptions = { ...DEFAULT_OPTIONS, includeOutboundPorts: [9080], includeInboundPorts: [9080] };

test('apply writes every table in one iptables-restore --noflush, marking tables it creates', () => {
  const calls: string[] = [];
  const state = { save: '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n', route: false };
  applyRules(buildRules(OPTIONS), fakeTools(state, calls));
  const restores = calls.filter((c) => c.startsWith('iptables-restore'));
  assert.equal(restores.length, 1);
  assert.match(restores[0]!, /^iptables-restore --noflush --wait\n\*nat\n:SEXTANT_CREATED - \[0:0\]\n:SEXTANT_INBOUND/);
  assert.match(restores[0]!, /\*filter\n:SEXTANT_INPUT - \[0:0\]\n-A INPUT -p tcp -j SEXTANT_INPUT/, 'filter existed: not marked');
  assert.doesNotMatch(restores[0]!, /^#/m, 'comments are for --dry-run only');
  assert.ok(calls.indexOf('ip route add local 240.241.0.0/16 dev lo table local') < calls.indexOf(restores[0]!), 'the route before the rules that need it');
});

test('a failed restore changes nothing: the route it added is taken back', () => {
  const calls: string[] = [];
  const state = { save: '', route: false, failRestore: true };
  assert.throws(() => applyRules(buildRules(OPTIONS), fakeTools(state, calls)), (err: Error) => err instanceof IptablesApplyError && /nothing was changed: iptables-restore: line 3 failed/.test(err.message));
  assert.equal(state.route, false);
});

test('clean deletes the jumps, then flushes and deletes the chains, in one transaction per call', () => {
  const rules = buildRules({ ...OPTIONS, dns: true });
  const save = restoreText(rules, true).replace('*nat\n', '*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -p tcp --dport 8000 -j REDIRECT --to-ports 8001\n');
  const plan = planClean(save);
  assert.deepEqual(plan.created, []);
  assert.equal(plan.input, [
    '*nat',
    '-D PREROUTING -p tcp -j SEXTANT_INBOUND',
    '-D OUTPUT -j SEXTANT_OUTPUT',
    '-F SEXTANT_INBOUND', '-F SEXTANT_OUTPUT', '-F SEXTANT_REDIRECT',
    '-X SEXTANT_INBOUND', '-X SEXTANT_OUTPUT', '-X SEXTANT_REDIRECT',
    'COMMIT',
    '*filter', '-D INPUT -p tcp -j SEXTANT_INPUT', '-F SEXTANT_INPUT', '-X SEXTANT_INPUT', 'COMMIT', '',
  ].join('\n'));
  const calls: string[] = [];
  assert.equal(cleanRules(fakeTools({ save: '*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n', route: false }, calls)), false, 'nothing of ours: nothing done');
  assert.equal(calls.filter((c) => c.startsWith('iptables-restore')).length, 0);
});

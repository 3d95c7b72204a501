// `sextant` called wrongly: every usage error (unknown command or option, missing or extra
// argument, bad flag value) exits 2 with one line on stderr naming the problem, as
// docs/operations.md promises; --help and --version exit 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const ENTRY = path.resolve(import.meta.dirname, '../../bin/sextant.mjs');

function sextant(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [ENTRY, ...args], { encoding: 'utf8', env: { ...process.env, SEXTANT_CONFIG_DIR: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const ID = 'sidecar~127.0.0.1~a-1.default~default.svc.cluster.local';

const CASES: Array<[string, string[], string]> = [
  ['an unknown command', ['nosuch'], "error: unknown command 'nosuch' (see 'sextant --help')\n"],
  ['help for an unknown command', ['help', 'nosuch'], "error: unknown command 'nosuch' (see 'sextant --help')\n"],
  ['an unknown option of the program', ['--bogus'], "error: unknown option '--bogus' (see 'sextant --help')\n"],
  ['an unknown option of a command', ['get', 'vs', '--bogus'], "error: unknown option '--bogus' (see 'sextant get --help')\n"],
  ['a missing argument', ['get'], "error: missing required argument 'kind' (see 'sextant get --help')\n"],
  ['a missing required option', ['validate'], "error: required option '-f, --filename <path...>' not specified (see 'sextant validate --help')\n"],
  ['an option without its value', ['proxy-status', '--pilot'], "error: option '--pilot <url>' argument missing (see 'sextant proxy-status --help')\n"],
  ['an extra argument', ['proxy-status', 'a', 'b'], "error: too many arguments for 'proxy-status'. Expected 1 argument but got 2. (see 'sextant proxy-status --help')\n"],
  ['a bad duration of the proxy', ['proxy', '--xds', '127.0.0.1:1', '--id', ID, '--drain-duration', '5'], 'error: invalid --drain-duration "5": expected a duration like 100ms, 10s or 1m\n'],
  ['a bad node id', ['proxy', '--xds', '127.0.0.1:1', '--id', 'web'], 'error: --id: expected TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local, got "web"\n'],
  ['a bad --label', ['proxy', '--xds', '127.0.0.1:1', '--id', ID, '--label', 'app'], 'error: invalid --label "app": expected KEY=VALUE\n'],
  ['a bad --xds-protocol', ['proxy', '--xds', '127.0.0.1:1', '--id', ID, '--xds-protocol', 'grpc'], 'error: invalid --xds-protocol "grpc": expected delta or sotw\n'],
  ['a bad xDS server list', ['proxy', '--xds', '127.0.0.1:1,pilot-b', '--id', ID], 'error: invalid --xds "127.0.0.1:1,pilot-b": expected HOST:PORT[,HOST:PORT…], e.g. 127.0.0.1:15010,127.0.0.2:15010\n'],
  ['a bad duration of the pilot', ['pilot', '--debounce-after', '5'], 'error: invalid --debounce-after "5": expected a duration like 100ms, 10s or 1m\n'],
  ['a leader lease that is not whole seconds', ['pilot', '--leader-lease', '1500ms'], 'error: invalid --leader-lease "1500ms": expected whole seconds, at least 2s (e.g. 10s)\n'],
  ['a bad --push-concurrency', ['pilot', '--push-concurrency', '0'], 'error: invalid --push-concurrency "0": expected an integer >= 1\n'],
  ['a bad --log-level', ['pilot', '--log-level', 'loud'], 'error: invalid --log-level "loud": expected fatal, error, warn, info, debug, trace or silent\n'],
  ['a bad listen address', ['pilot', '--http-address', 'localhost'], 'error: invalid --http-address "localhost": expected HOST:PORT, e.g. 127.0.0.1:15010\n'],
  ['a bad --output of proxy-status', ['proxy-status', '-o', 'xml'], 'error: invalid --output "xml": expected table or json\n'],
  ['a bad section of proxy-config', ['proxy-config', 'bogus', '127.0.0.1:15000'], 'error: unknown section "bogus"; expected listeners, routes, clusters, endpoints, secrets, dependencies\n'],
  ['a gateway name that is not a DNS label', ['gateway', '--xds', '127.0.0.1:1', '--name', 'Edge_GW'], 'error: invalid --name "Edge_GW": expected a DNS label (lower-case letters, digits, \'-\')\n'],
  ['a node id given to a gateway', ['gateway', '--xds', '127.0.0.1:1', '--id', ID], 'error: --id: a gateway\'s node id comes from --name, --namespace and --ip\n'],
  ['a bad proxy flag given to a gateway', ['gateway', '--xds', '127.0.0.1:1', '--drain-duration', '5'], 'error: invalid --drain-duration "5": expected a duration like 100ms, 10s or 1m\n'],
  ['an unknown kind', ['get', 'nosuchkind', '--config-dir', '.'], 'error: unknown kind "nosuchkind"; expected one of VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, WorkloadGroup, Sidecar, Gateway, EnvoyFilter, Telemetry, AuthorizationPolicy, PeerAuthentication, RequestAuthentication, Secret, AdaptiveLimit, LaneGroup, WasmPlugin, RouteTemplates, RateLimit, LazyScope, WorkloadScope\n'],
  ['no config store named', ['get', 'vs'], 'error: no config store: pass --config-dir DIR or --etcd-endpoints URL (or set SEXTANT_CONFIG_DIR)\n'],
];

for (const [what, args, stderr] of CASES) {
  test(`${what} exits 2 with one line: sextant ${args.join(' ')}`, () => {
    const r = sextant(...args);
    assert.equal(r.stderr, stderr);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
  });
}

test('`sextant` alone prints its help to stderr and exits 2', () => {
  const r = sextant();
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^Usage: sextant \[options\] \[command\]\n/);
  assert.equal(r.stdout, '');
});

test('--help and --version are not errors: stdout, exit 0', () => {
  const help = sextant('get', '--help');
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: sextant get \[options\] <kind> \[name\]\n/);
  assert.equal(help.stderr, '');
  const version = sextant('--version');
  assert.deepEqual(version, { code: 0, stdout: '0.1.0\n', stderr: '' });
});

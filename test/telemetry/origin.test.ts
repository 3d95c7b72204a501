// The origin rule: who made a response, from Envoy's short response flags.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { codeClassOf, originOf, PROXY_FLAGS } from '../../src/telemetry/index.ts';

test('a response without flags is the application\'s, whatever its status', () => {
  assert.equal(originOf(200, ''), 'app');
  assert.equal(originOf(404, '-'), 'app');
  assert.equal(originOf(503, ''), 'app');
});

test('each proxy-made flag makes the origin proxy', () => {
  const cases: Array<[number, string]> = [[404, 'NR'], [503, 'UH'], [503, 'UF'], [503, 'UO'], [503, 'UF,URX'], [503, 'UC'], [504, 'UT'], [429, 'RL'], [503, 'FI'], [503, 'NC'], [400, 'DPE'], [502, 'UPE'], [504, 'UMSDR']];
  for (const [code, flags] of cases) assert.equal(originOf(code, flags), 'proxy', flags);
  for (const flag of PROXY_FLAGS) assert.equal(originOf(503, flag), 'proxy', flag);
});

test('an unknown flag letter is taken as proxy-made', () => {
  assert.equal(originOf(503, 'XYZ'), 'proxy');
});

test('the client going away wins over any other flag', () => {
  assert.equal(originOf(0, 'DC'), 'client');
  assert.equal(originOf(0, 'DR'), 'client');
  assert.equal(originOf(503, 'UC,DC'), 'client');
  assert.equal(originOf(504, ' UT , DC '), 'client');
});

test('an injected delay alone leaves the response to the application; with an abort it is the proxy\'s', () => {
  assert.equal(originOf(200, 'DI'), 'app');
  assert.equal(originOf(500, 'DI,FI'), 'proxy');
});

test('status classes', () => {
  assert.deepEqual([0, 101, 200, 204, 301, 404, 499, 500, 599, 600].map(codeClassOf), [undefined, undefined, '2xx', '2xx', '3xx', '4xx', '4xx', '5xx', '5xx', undefined]);
});

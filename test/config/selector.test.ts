// Kubernetes label selector syntax and semantics.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidSelectorError, parseLabelSelector } from '../../src/config/index.ts';

describe('label selectors', () => {
  it('parses every operator and prints it back canonically', () => {
    const s = parseLabelSelector(' app = reviews , version!=v1,tier in (web,api), env notin (dev),canary,!legacy, app.kubernetes.io/name==x');
    assert.equal(s.toString(), 'app=reviews,version!=v1,tier in (web,api),env!=dev,canary,!legacy,app.kubernetes.io/name=x');
    assert.equal(s.requirements.length, 7);
  });

  it('matches with Kubernetes semantics', () => {
    const m = (sel: string, labels?: Record<string, string>): boolean => parseLabelSelector(sel).matches(labels);
    assert.equal(m('', undefined), true);
    assert.equal(m('app=a', { app: 'a' }), true);
    assert.equal(m('app=a', {}), false);
    assert.equal(m('app!=a', {}), true);
    assert.equal(m('app notin (a,b)', undefined), true);
    assert.equal(m('app notin (a,b)', { app: 'b' }), false);
    assert.equal(m('app in (a,b)', { app: 'b' }), true);
    assert.equal(m('app', { app: '' }), true);
    assert.equal(m('!app', { app: '' }), false);
    assert.equal(m('a=,b', { a: '', b: 'x' }), true);
  });

  it('names the position and what was expected when a selector does not parse', () => {
    const cases: Array<[string, string]> = [
      ['app in (a,b', 'invalid label selector "app in (a,b" at position 11: expected \',\' or \')\''],
      ['app=a b=c', 'invalid label selector "app=a b=c" at position 6: expected \',\' or the end of the selector'],
      ['=a', 'invalid label selector "=a" at position 0: expected a label key'],
      ['app in ()', 'invalid label selector "app in ()" at position 8: expected at least one value in the set'],
      ['app=a,', 'invalid label selector "app=a," at position 6: expected a label key'],
      ['-bad=x', 'invalid label selector "-bad=x" at position 0: expected a label key (got "-bad")'],
    ];
    for (const [text, message] of cases) {
      assert.throws(() => parseLabelSelector(text), (e: unknown) => e instanceof InvalidSelectorError && e.message === message);
    }
  });
});

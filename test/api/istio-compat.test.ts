// Istio's own CRD validation data: every document of a supported kind in *-invalid.yaml is
// rejected and every one in *-valid.yaml accepted; every bookinfo sample validates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { loadPaths, parseDocuments, validateResource } from '../../src/api/index.ts';

const COMPAT = path.resolve(import.meta.dirname, '../../../shared/istio-compat');
const VALIDATION = path.join(COMPAT, 'validation');
const BOOKINFO = path.join(COMPAT, 'bookinfo');
const absent = existsSync(COMPAT) ? false : `Istio fixtures not found at ${COMPAT}`;

interface FileOutcome {
  file: string;
  expectInvalid: boolean;
  checked: number;
  matched: number;
  unsupported: number;
  misses: string[];
}

function runValidationFile(file: string): FileOutcome {
  const expectInvalid = file.endsWith('-invalid.yaml');
  const loaded = parseDocuments(readFileSync(path.join(VALIDATION, file), 'utf8'), file);
  const out: FileOutcome = { file, expectInvalid, checked: 0, matched: 0, unsupported: 0, misses: [] };
  for (const e of loaded.errors) {
    if (e.detail.startsWith('unsupported kind')) out.unsupported++;
    else out.misses.push(`load error: ${e.toString()}`);
  }
  for (const { resource, origin } of loaded.documents) {
    // `_err` is the fixture's expected message, not part of the resource.
    const raw = resource as unknown as Record<string, unknown>;
    const expected = raw['_err'];
    delete raw['_err'];
    const errors = validateResource(resource, origin);
    out.checked++;
    // A rejection must also carry Istio's message (the fixtures' `_err`, sometimes truncated).
    const text = errors.map(String).join(' | ');
    if (expectInvalid ? errors.length > 0 && typeof expected === 'string' && text.includes(expected) : errors.length === 0) out.matched++;
    else out.misses.push(expectInvalid
      ? `${file}:${origin.index} ${resource.metadata.name}: Istio rejects it with ${JSON.stringify(expected)}, got: ${text || 'accepted'}`
      : `${file}:${origin.index} ${resource.metadata.name}: rejected: ${errors.map(String).join(' | ')}`);
  }
  return out;
}

test('Istio validation fixtures: invalid documents rejected with Istio\'s message, valid ones accepted', { skip: absent }, () => {
  const files = readdirSync(VALIDATION).filter((f) => /-(in)?valid\.yaml$/.test(f)).sort();
  assert.ok(files.length > 0, 'no validation fixtures found');
  const outcomes = files.map(runValidationFile);
  let rejected = 0, invalid = 0, accepted = 0, valid = 0, unsupported = 0;
  for (const o of outcomes) {
    unsupported += o.unsupported;
    if (o.checked === 0) continue;
    if (o.expectInvalid) { rejected += o.matched; invalid += o.checked; } else { accepted += o.matched; valid += o.checked; }
    console.log(`  ${o.file}: ${o.expectInvalid ? 'rejected' : 'accepted'} ${o.matched} of ${o.checked}`);
  }
  console.log(`  rejected ${rejected} of ${invalid} invalid, accepted ${accepted} of ${valid} valid` +
    ` (${unsupported} documents of unsupported kinds reported as such and not counted)`);
  assert.deepEqual(outcomes.flatMap((o) => o.misses), []);
  // Every supported kind with fixtures is exercised.
  assert.ok(invalid >= 60 && valid >= 29, `expected the full fixture set, got ${invalid} invalid and ${valid} valid`);
});

test('WasmPlugin (extensions.istio.io/v1alpha1): every wasm-* fixture is checked, none reported unsupported', { skip: absent }, () => {
  const invalid = runValidationFile('wasm-invalid.yaml');
  const valid = runValidationFile('wasm-valid.yaml');
  assert.deepEqual([...invalid.misses, ...valid.misses], []);
  assert.deepEqual([invalid.unsupported, invalid.checked, invalid.matched], [0, 15, 15]);
  assert.deepEqual([valid.unsupported, valid.checked, valid.matched], [0, 4, 4]);
});

test('documents of kinds Sextant does not serve are reported as unsupported kinds', { skip: absent }, () => {
  const r = parseDocuments(readFileSync(path.join(VALIDATION, 'proxyconfig-valid.yaml'), 'utf8'), 'proxyconfig-valid.yaml');
  assert.equal(r.documents.length, 0);
  assert.ok(r.errors.length > 0);
  for (const e of r.errors) {
    assert.match(e.toString(), /^proxyconfig-valid\.yaml:\d+ ProxyConfig\/[a-z0-9-]+\/[a-z0-9-]+: unsupported kind ProxyConfig \(networking\.istio\.io\/v1beta1\)/);
  }
});

test('every bookinfo sample loads and validates', { skip: absent }, async () => {
  const loaded = await loadPaths([BOOKINFO]);
  assert.deepEqual(loaded.errors.map(String), []);
  assert.equal(loaded.documents.length, 38);
  const files = new Set(loaded.documents.map((d) => path.basename(d.origin.file)));
  assert.equal(files.size, readdirSync(BOOKINFO).filter((f) => f.endsWith('.yaml')).length);
  const errors = loaded.documents.flatMap((d) => validateResource(d.resource, d.origin));
  assert.deepEqual(errors.map(String), []);
});

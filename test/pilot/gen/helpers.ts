// Shared by the generator tests: YAML → resources, a proxy from a node, and the check that
// every generated resource encodes with Envoy's own protos (unknown fields are errors) and
// satisfies their validation rules (protoc-gen-validate, as Envoy enforces them).
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { parseAllDocuments } from 'yaml';
import type { Resource } from '../../../src/api/resource.ts';
import { checkResource, encodeMessage, decodeMessage, formatRuleViolation } from '../../../src/envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import type { Proxy, PushContext } from '../../../src/pilot/model.ts';

export const ISTIO_COMPAT = path.resolve(import.meta.dirname, '../../../../shared/istio-compat');
export const FIXTURES = path.join(import.meta.dirname, 'fixtures');

/** Every document of a YAML text as a resource; a missing namespace means `default`, as kubectl does. */
export function resources(text: string): Resource[] {
  const out: Resource[] = [];
  for (const doc of parseAllDocuments(text)) {
    const r = doc.toJS() as Resource | null;
    if (!r || typeof r !== 'object') continue;
    r.metadata.namespace ??= 'default';
    out.push(r);
  }
  return out;
}

export function readResources(...files: string[]): Resource[] {
  return files.flatMap((f) => resources(readFileSync(f, 'utf8')));
}

export function istioCompatFile(rel: string): string | undefined {
  const f = path.join(ISTIO_COMPAT, rel);
  return existsSync(f) ? f : undefined;
}

/** A sidecar as istio-agent would announce it. */
export function sidecar(ip: string, pod: string, namespace: string, labels: Record<string, string>, extra: Record<string, unknown> = {}): Proxy {
  return generators.proxyFromNode({
    id: `sidecar~${ip}~${pod}.${namespace}~${namespace}.svc.cluster.local`,
    metadata: { NAMESPACE: namespace, LABELS: labels, CLUSTER_ID: 'Kubernetes', ISTIO_VERSION: '1.24.0', ...extra },
  });
}

/**
 * Generates one type and asserts every resource encodes and decodes with Envoy's protos and
 * breaks none of their validation rules.
 */
export function generate(push: PushContext, proxy: Proxy, typeUrl: XdsTypeUrl, names?: ReadonlySet<string>): Map<string, ProtoJson> {
  const out = generators.generate(push, proxy, typeUrl, names);
  for (const [name, r] of out) {
    let bytes: Uint8Array;
    try {
      bytes = encodeMessage(typeUrl, r);
    } catch (e) {
      throw new Error(`${name}: ${(e as Error).message}`, { cause: e });
    }
    assert.ok(decodeMessage(typeUrl, bytes), name);
    assertEnvoyRules(typeUrl, name, r);
  }
  return out;
}

/**
 * Problems Envoy's validation rules find in a resource, one line each: violations, rules the
 * checker does not implement (met on a set value), and Any payloads it could not check.
 */
export function ruleProblems(typeUrl: string, r: ProtoJson): string[] {
  const report = checkResource(typeUrl, r);
  return [
    ...report.violations.map(formatRuleViolation),
    ...report.unimplemented.map((u) => `${u.path}: rule ${u.rule} is not implemented by the checker`),
    ...report.unchecked.map((u) => `${u.path}: not checked: ${u.reason}`),
  ];
}

/** Asserts a resource satisfies the validation rules of Envoy's protos. */
export function assertEnvoyRules(typeUrl: string, name: string, r: ProtoJson): void {
  assert.deepEqual(ruleProblems(typeUrl, r), [], `${name} breaks validation rules of Envoy's protos`);
}

/** Canonical JSON of a resource (encoded then decoded), as Envoy would see it. */
export function canonical(typeUrl: string, r: ProtoJson): ProtoJson {
  return decodeMessage(typeUrl, encodeMessage(typeUrl, r));
}

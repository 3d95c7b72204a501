// Encoding and decoding of Envoy messages. Resources travel inside the pilot and the proxy
// as plain objects in proto3 JSON form (camelCase fields, durations as "1.5s", Any as
// {"@type": url, ...}), the form Envoy's config_dump shows; on the wire they are protobuf.
import protobuf from 'protobufjs';
import { envoyRoot } from './protos.ts';
import { TYPE_PREFIX } from './types.ts';
import { fromJson, toJson } from './json.ts';

/** A message in proto3 JSON form; `@type` marks an Any, as in Envoy's JSON. */
export type ProtoJson = { [field: string]: unknown };

const typeCache = new Map<string, protobuf.Type>();

/** The protobufjs Type for a fully qualified name or type URL; throws for unknown types. */
export function messageType(nameOrUrl: string): protobuf.Type {
  const slash = nameOrUrl.lastIndexOf('/');
  const name = slash >= 0 ? nameOrUrl.slice(slash + 1) : nameOrUrl;
  let t = typeCache.get(name);
  if (!t) {
    t = envoyRoot().lookupType(name);
    typeCache.set(name, t);
  }
  return t;
}

/**
 * Encodes a JSON-form message as protobuf bytes. A field the type does not have is an
 * error naming its path, so a misspelt field fails loudly instead of vanishing.
 */
export function encodeMessage(typeUrl: string, json: ProtoJson): Uint8Array {
  const type = messageType(typeUrl);
  const obj = fromJson(type, json, messageType, type.name);
  return type.encode(type.fromObject(obj)).finish();
}

/**
 * Decodes protobuf bytes into JSON form (Any expanded with `@type`). `lookup` resolves the
 * types Anys name (messageType by default, which throws for a type the protos lack).
 */
export function decodeMessage(typeUrl: string, bytes: Uint8Array, lookup: (url: string) => protobuf.Type = messageType): ProtoJson {
  const type = messageType(typeUrl);
  return toJson(type, type.decode(bytes), lookup) as ProtoJson;
}

/** Wraps a JSON-form message as an Any (`{typeUrl, value}`) for a DiscoveryResponse. */
export function toAny(typeUrl: string, json: ProtoJson): { typeUrl: string; value: Uint8Array } {
  return { typeUrl, value: encodeMessage(typeUrl, json) };
}

export { TYPE_PREFIX };

// Encoded-resource cache: each generated resource object is encoded and hashed once (keyed by
// object identity, so a resource shared by many proxies costs one encoding), and its
// content hash is its version, so versions survive a pilot restart unchanged.
import { createHash } from 'node:crypto';
import { encodeMessage } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import { anyMessage, lengthDelimited, stringField } from './wire.ts';
import { fastEncodeField } from './encode.ts';

/** One encoded resource. */
export interface EncodedResource {
  readonly name: string;
  /** Content hash (16 hex digits): the resource's version in delta xDS and in status. */
  readonly version: string;
  /** The digest as 4 words, xor-combined into a type's version (order-independent). */
  readonly digest: Uint32Array;
  /** `resources` field (2) of a DiscoveryResponse: the resource as an Any. */
  readonly sotwField: Buffer;
  /** Byte size of the encoded resource (for push-size accounting). */
  readonly size: number;
  /** A version a delta client announced in initial_resource_versions; no bytes, zero digest. */
  readonly stub?: boolean;
  /** `resources` field (2) of a DeltaDiscoveryResponse, built on first use. */
  deltaField?: Buffer;
}

/** A resource the generators produced that Envoy's protos refuse: a bug in a generator. */
export class ResourceEncodingError extends Error {
  constructor(typeUrl: string, name: string, cause: unknown) {
    super(`cannot encode ${typeUrl} "${name}": ${cause instanceof Error ? cause.message : String(cause)}`);
    this.name = 'ResourceEncodingError';
  }
}

export class ResourceCache {
  // Bounded by the generators' objects: entries die with the PushContexts that own them.
  private readonly byObject = new WeakMap<object, EncodedResource>();
  encodings = 0;

  /** The encoding of `resource` named `name` of type `typeUrl`. */
  encode(typeUrl: string, name: string, resource: ProtoJson): EncodedResource {
    const cached = this.byObject.get(resource);
    if (cached !== undefined && cached.name === name) return cached;
    let bytes: Uint8Array;
    let sotwField: Buffer;
    try {
      const encoded = fastEncodeField(typeUrl, resource);
      bytes = encoded.message;
      sotwField = encoded.field;
    } catch {
      // Unusual shapes, and errors: the general codec encodes them or says what is wrong.
      try {
        bytes = encodeMessage(typeUrl, resource);
      } catch (err) {
        throw new ResourceEncodingError(typeUrl, name, err);
      }
      sotwField = lengthDelimited(2, anyMessage(typeUrl, bytes));
    }
    this.encodings++;
    const hash = createHash('sha256').update(bytes).digest();
    const digest = new Uint32Array([hash.readUInt32LE(0), hash.readUInt32LE(4), hash.readUInt32LE(8), hash.readUInt32LE(12)]);
    const entry: EncodedResource = {
      name,
      version: hash.subarray(0, 8).toString('hex'),
      digest,
      sotwField,
      size: bytes.length,
    };
    this.byObject.set(resource, entry);
    return entry;
  }

  /** Delta `Resource {version = 1, resource = 2 (Any), name = 3}` as field 2 of the response. */
  deltaField(entry: EncodedResource): Buffer {
    if (entry.deltaField === undefined) {
      // sotwField is already field 2 holding the Any: reuse its bytes as Resource.resource.
      entry.deltaField = lengthDelimited(2, Buffer.concat([stringField(1, entry.version), entry.sotwField, stringField(3, entry.name)]));
    }
    return entry.deltaField;
  }
}

/** What a reconnecting delta client says it holds (initial_resource_versions). */
export function announcedResource(name: string, version: string): EncodedResource {
  return { name, version, digest: new Uint32Array(4), sotwField: Buffer.alloc(0), size: 0, stub: true };
}

/**
 * A type's version: the xor of its resources' digests. Order-independent and updatable one
 * resource at a time, so a partial (EDS-only) push does not rehash the whole set.
 */
export class VersionAccumulator {
  private readonly words = new Uint32Array(4);

  add(digest: Uint32Array): void {
    for (let i = 0; i < 4; i++) this.words[i] = (this.words[i]! ^ digest[i]!) >>> 0;
  }

  /** xor is its own inverse: removing is adding again. */
  remove(digest: Uint32Array): void {
    this.add(digest);
  }

  reset(): void {
    this.words.fill(0);
  }

  get version(): string {
    return Array.from(this.words, (w) => w.toString(16).padStart(8, '0')).join('').slice(0, 16);
  }
}

/**
 * Concatenated `resources` sections of complete responses, by type, protocol and version:
 * proxies with the same scope get byte-identical sets, so the section is assembled once.
 * Bounded by total bytes; least recently used sections go first.
 */
export class ResponseBodyCache {
  private readonly bodies = new Map<string, Buffer>();
  private bytes = 0;
  private readonly maxBytes: number;
  hits = 0;

  constructor(maxBytes = 256 * 1024 * 1024) {
    this.maxBytes = maxBytes;
  }

  get(key: string, build: () => Buffer): Buffer {
    const hit = this.bodies.get(key);
    if (hit !== undefined) {
      this.hits++;
      this.bodies.delete(key); // re-insert: most recently used last
      this.bodies.set(key, hit);
      return hit;
    }
    const body = build();
    if (body.length > this.maxBytes / 4) return body;
    this.bodies.set(key, body);
    this.bytes += body.length;
    for (const [k, b] of this.bodies) {
      if (this.bytes <= this.maxBytes) break;
      this.bodies.delete(k);
      this.bytes -= b.length;
    }
    return body;
  }
}

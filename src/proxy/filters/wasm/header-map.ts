// Header maps and body buffers as plugins see them. A map holds the pseudo-headers Envoy's do
// (`:method`, `:path`, `:authority`, `:scheme`; `:status`) and the fields in order with the
// names' case as they came; plugins see names lower-cased and may add, replace and remove,
// but never a value that could not be sent (no CR, LF or NUL) or a name that is not a token.
import { isFieldValue, isToken } from '../../http/index.ts';
import type { RawHeader } from '../../http/index.ts';

/** Bytes of names and values a map may grow to. */
export const MAX_MAP_BYTES = 256 * 1024;

const PSEUDO = new Set([':method', ':path', ':authority', ':scheme', ':status', ':protocol']);

export class HeaderMap {
  entries: RawHeader[];
  /** False in proxy_on_log and once the fields went on (the ABI allows reading only). */
  writable = true;
  /** Set by any change: the owner rebuilds its head from the map. */
  changed = false;

  constructor(entries: RawHeader[]) {
    this.entries = entries;
  }

  get(key: string): string | undefined {
    const k = key.toLowerCase();
    for (const h of this.entries) if (h.name.length === k.length && h.name.toLowerCase() === k) return h.value;
    return undefined;
  }

  get size(): number {
    return this.entries.length;
  }

  /** Serialized (the ABI's map format): count, then key and value lengths, then NUL-terminated keys and values. */
  serialize(): Uint8Array {
    const keys = this.entries.map((h) => Buffer.from(h.name.toLowerCase(), 'latin1'));
    const values = this.entries.map((h) => Buffer.from(h.value, 'latin1'));
    let size = 4 + 8 * keys.length;
    for (let i = 0; i < keys.length; i++) size += keys[i]!.length + values[i]!.length + 2;
    const out = Buffer.alloc(size);
    out.writeUInt32LE(keys.length, 0);
    let at = 4;
    for (let i = 0; i < keys.length; i++) {
      out.writeUInt32LE(keys[i]!.length, at);
      out.writeUInt32LE(values[i]!.length, at + 4);
      at += 8;
    }
    for (let i = 0; i < keys.length; i++) {
      keys[i]!.copy(out, at);
      at += keys[i]!.length + 1;
      values[i]!.copy(out, at);
      at += values[i]!.length + 1;
    }
    return out;
  }

  /** Bytes the serialized map takes (proxy_get_header_map_size). */
  serializedSize(): number {
    let size = 4 + 8 * this.entries.length;
    for (const h of this.entries) size += Buffer.byteLength(h.name, 'latin1') + Buffer.byteLength(h.value, 'latin1') + 2;
    return size;
  }

  add(key: string, value: string): boolean {
    if (!this.acceptable(key, value, value.length + key.length)) return false;
    this.entries.push({ name: key, value });
    this.changed = true;
    return true;
  }

  /** Envoy's setCopy: the first field of that name takes the value in place, the others go. */
  replace(key: string, value: string): boolean {
    if (!this.acceptable(key, value, value.length)) return false;
    const k = key.toLowerCase();
    let set = false;
    const next: RawHeader[] = [];
    for (const h of this.entries) {
      if (h.name.length === k.length && h.name.toLowerCase() === k) {
        if (!set) next.push({ name: h.name, value });
        set = true;
      } else {
        next.push(h);
      }
    }
    if (!set) next.push({ name: key, value });
    this.entries = next;
    this.changed = true;
    return true;
  }

  remove(key: string): void {
    const k = key.toLowerCase();
    const next = this.entries.filter((h) => !(h.name.length === k.length && h.name.toLowerCase() === k));
    if (next.length !== this.entries.length) this.changed = true;
    this.entries = next;
  }

  /** Replaces every field; false when one is not acceptable (nothing changes then). */
  setAll(pairs: readonly [string, string][]): boolean {
    let bytes = 0;
    for (const [k, v] of pairs) {
      if (!validField(k, v)) return false;
      bytes += k.length + v.length;
    }
    if (bytes > MAX_MAP_BYTES) return false;
    // names the map already had keep their case
    const known = new Map(this.entries.map((h) => [h.name.toLowerCase(), h.name]));
    this.entries = pairs.map(([k, v]) => ({ name: known.get(k.toLowerCase()) ?? k, value: v }));
    this.changed = true;
    return true;
  }

  private acceptable(key: string, value: string, growth: number): boolean {
    if (!validField(key, value)) return false;
    let bytes = growth;
    for (const h of this.entries) bytes += h.name.length + h.value.length;
    return bytes <= MAX_MAP_BYTES;
  }
}

function validField(key: string, value: string): boolean {
  if (key.startsWith(':')) return PSEUDO.has(key.toLowerCase()) && isFieldValue(value) && !/\s/.test(value);
  return isToken(key) && isFieldValue(value);
}

/** Parses the ABI's serialized map; undefined when it is malformed. */
export function parseSerializedMap(b: Uint8Array): [string, string][] | undefined {
  if (b.length === 0 || (b.length === 1 && b[0] === 0)) return [];
  if (b.length < 4) return undefined;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = view.getUint32(0, true);
  if (n > 100_000 || 4 + n * 8 > b.length) return undefined;
  const out: [string, string][] = [];
  let at = 4 + n * 8;
  for (let i = 0; i < n; i++) {
    const kl = view.getUint32(4 + i * 8, true);
    const vl = view.getUint32(8 + i * 8, true);
    if (at + kl + 1 + vl + 1 > b.length) return undefined;
    const k = Buffer.from(b.buffer, b.byteOffset + at, kl).toString('latin1');
    at += kl + 1;
    const v = Buffer.from(b.buffer, b.byteOffset + at, vl).toString('latin1');
    at += vl + 1;
    out.push([k, v]);
  }
  return out;
}

/** A body buffer a callback may read and change (HTTP_REQUEST_BODY, HTTP_RESPONSE_BODY). */
export class BodyBuffer {
  data: Buffer;
  writable = true;
  changed = false;

  constructor(data: Buffer) {
    this.data = data;
  }

  /** Replaces `size` bytes at `start` with `value` (prepend, append, inject, replace). */
  set(start: number, size: number, value: Uint8Array): void {
    const len = this.data.length;
    const s = Math.min(start, len);
    const e = Math.min(s + size, len);
    this.data = Buffer.concat([this.data.subarray(0, s), value, this.data.subarray(e)]);
    this.changed = true;
  }
}

// x-request-id values: random version-4 UUIDs (RFC 9562 §5.4), as Envoy generates them.
// Entropy comes from the system CSPRNG in blocks of 256 ids and each id is formatted in
// place, so an id costs one string and no intermediate ones (crypto.randomUUID builds
// each id from about twenty partial strings, a visible share of a request's allocation).
import { randomFillSync } from 'node:crypto';

const IDS_PER_FILL = 256;
const entropy = Buffer.alloc(16 * IDS_PER_FILL);
let nextId = IDS_PER_FILL;
const text = Buffer.alloc(36);
const HEX = Buffer.from('0123456789abcdef', 'latin1');

/** A new random UUID (version 4, RFC 9562 variant), lower-case hex with dashes. */
export function newRequestId(): string {
  if (nextId === IDS_PER_FILL) {
    randomFillSync(entropy);
    nextId = 0;
  }
  const base = 16 * nextId++;
  let o = 0;
  for (let i = 0; i < 16; i++) {
    let b = entropy[base + i]!;
    if (i === 6) b = (b & 0x0f) | 0x40; // version 4
    else if (i === 8) b = (b & 0x3f) | 0x80; // variant 10xx
    if (i === 4 || i === 6 || i === 8 || i === 10) text[o++] = 45; // '-'
    text[o++] = HEX[b >> 4]!;
    text[o++] = HEX[b & 15]!;
  }
  return text.toString('latin1', 0, 36);
}

// State-of-the-world requests: a request either ACKs/NACKs the last response (by nonce) or
// changes the subscribed names; a stale nonce is ignored, as Envoy's protocol requires.
import type { DiscoveryServer } from './ads.ts';
import { isWildcardType } from './ads.ts';
import { noteApplied, type Connection } from './connection.ts';
import type { SotwRequest } from './wire.ts';

export async function handleSotwRequest(server: DiscoveryServer, con: Connection, req: SotwRequest): Promise<void> {
  const typeUrl = req.typeUrl;
  if (typeUrl === '') throw new Error('DiscoveryRequest.type_url is required on an aggregated stream');
  const isNew = !con.watched.has(typeUrl);
  const w = con.watch(typeUrl);
  if (req.responseNonce !== '') noteApplied(w, req.responseNonce, req.errorDetail);
  if (req.responseNonce !== '' && w.nonceSent !== undefined) {
    if (req.responseNonce !== w.nonceSent) {
      // Superseded by a newer response the proxy has not seen yet: ignore.
      server.logger.debug({ proxy: con.proxy.id, typeUrl, nonce: req.responseNonce, latest: w.nonceSent }, 'stale nonce ignored');
      return;
    }
    const nack = req.errorDetail !== null && req.errorDetail !== undefined && ((req.errorDetail.code ?? 0) !== 0 || (req.errorDetail.message ?? '') !== '');
    server.recordAck(con, w, req.responseNonce, req.versionInfo, req.errorDetail);
    if (nack) return;
  }

  // An ACK repeats the subscription, in the same order (Envoy's full-mesh EDS: 10,000 names):
  // the same bytes as the last request's names are the same list, not decoded at all; else
  // comparing it with the last list is cheaper than hashing every name into a new Set.
  const wire = req.resourceNamesWire;
  const sameWire = wire !== undefined && w.requestedWire !== undefined && wire.equals(w.requestedWire);
  const added = new Set<string>();
  let wildcardChanged = false;
  if (!sameWire && (w.requested === undefined || !sameList(req.resourceNames, w.requested))) {
    const requested = req.resourceNames;
    const names = new Set(requested.filter((n) => n !== '*'));
    // LDS/CDS with no names is the legacy wildcard; `*` is the explicit one, for any type.
    const wildcard = requested.includes('*') || (requested.length === 0 && isWildcardType(typeUrl));
    wildcardChanged = wildcard !== w.wildcard;
    for (const n of names) if (!w.names.has(n)) added.add(n);
    for (const n of w.names) {
      if (names.has(n)) continue;
      const held = w.sent.get(n);
      if (held !== undefined) {
        w.acc.remove(held.digest);
        w.sent.delete(n);
      }
    }
    w.wildcard = wildcard;
    w.names = names;
    w.requested = requested;
  }
  // Kept as a copy: the request's bytes belong to the gRPC message they were read from.
  if (!sameWire) w.requestedWire = wire === undefined ? undefined : Buffer.from(wire);

  if (isNew || w.nonceSent === undefined || wildcardChanged) {
    await server.respond(con, w, { kind: 'request' });
  } else if (added.size > 0) {
    await server.respond(con, w, { kind: 'request', only: added, newlySubscribed: added });
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

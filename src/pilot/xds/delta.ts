// Incremental (delta) requests: subscribe/unsubscribe diffs, initial_resource_versions on
// (re)connect so unchanged resources are not resent, and ACK/NACK by nonce.
import type { DiscoveryServer } from './ads.ts';
import { isWildcardType } from './ads.ts';
import { announcedResource } from './cache.ts';
import { noteApplied, type Connection } from './connection.ts';
import type { DeltaRequest } from './wire.ts';

export async function handleDeltaRequest(server: DiscoveryServer, con: Connection, req: DeltaRequest): Promise<void> {
  const typeUrl = req.typeUrl;
  if (typeUrl === '') throw new Error('DeltaDiscoveryRequest.type_url is required on an aggregated stream');
  const isNew = !con.watched.has(typeUrl);
  const w = con.watch(typeUrl);

  if (isNew) {
    for (const [name, version] of Object.entries(req.initialResourceVersions ?? {})) w.sent.set(name, announcedResource(name, version));
  }
  if (req.responseNonce !== '') {
    noteApplied(w, req.responseNonce, req.errorDetail);
    const nack = req.errorDetail !== null && req.errorDetail !== undefined && ((req.errorDetail.code ?? 0) !== 0 || (req.errorDetail.message ?? '') !== '');
    // Several responses may be in flight; status follows the latest, but every NACK counts.
    if (req.responseNonce === w.nonceSent || nack) server.recordAck(con, w, req.responseNonce, w.versionSent ?? '', req.errorDetail);
  }

  for (const name of req.resourceNamesUnsubscribe) {
    if (name === '*') w.wildcard = false;
    else w.names.delete(name);
    if (!w.wildcard) {
      const held = w.sent.get(name);
      if (held !== undefined) {
        w.acc.remove(held.digest);
        w.sent.delete(name);
      }
    }
  }
  let wildcardAdded = false;
  const newly = new Set<string>();
  for (const name of req.resourceNamesSubscribe) {
    if (name === '*') {
      if (!w.wildcard) wildcardAdded = true;
      w.wildcard = true;
    } else if (!w.names.has(name)) {
      w.names.add(name);
      newly.add(name);
    }
  }
  if (isNew && req.resourceNamesSubscribe.length === 0 && isWildcardType(typeUrl)) w.wildcard = true;

  if (isNew || wildcardAdded) {
    await server.respond(con, w, { kind: 'request', newlySubscribed: newly });
  } else if (newly.size > 0) {
    await server.respond(con, w, { kind: 'request', only: newly, newlySubscribed: newly });
  }
}

// @peculiar/x509 set up for Node: its container needs the reflect polyfill loaded first, and
// its crypto provider is Node's WebCrypto. Everything X.509 in the CA goes through here.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };

/** ECDSA P-256 with SHA-256: what Istio's agent uses with ECC_SIGNATURE_ALGORITHM=ECDSA. */
export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

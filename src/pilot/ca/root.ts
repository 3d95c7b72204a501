// The mesh's signing root: generated on first start and kept in a directory (root-cert.pem,
// root-key.pem), or a platform CA plugged in from files (Istio's cacerts: ca-cert, ca-key,
// root-cert). Loaded once per pilot start.
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
type CryptoKey = webcrypto.CryptoKey;
import { chmodSync, existsSync, linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { x509, EC_P256 } from './x509.ts';

export class CaConfigError extends Error {
  override name = 'CaConfigError';
}

export interface SigningRootOptions {
  /** Where a generated root is kept (created when missing, mode 0700). */
  dir: string;
  /** The mesh's trust domain, written into a generated root's subject (`O=`). */
  trustDomain: string;
  /** A platform CA: its certificate (may be an intermediate) and key, PEM. Both or neither. */
  certFile?: string;
  keyFile?: string;
  /** The root above a plugged intermediate (PEM); default: the plugged certificate itself. */
  rootFile?: string;
  /** Lifetime of a generated root, default 10 years (Istio's). */
  rootTtlMs?: number;
}

/** What the CA signs with. `chain` is every certificate above a leaf, the signer first, the root last. */
export interface SigningRoot {
  cert: x509.X509Certificate;
  /** The signer's private key as WebCrypto needs it. */
  key: CryptoKey;
  /** PEM certificates above a leaf: the signer first, the root last (one entry when they are the same). */
  chain: string[];
  /** The trust anchor's PEM (the last of `chain`). */
  rootPem: string;
  /** Where it came from, for the log. */
  source: 'generated' | 'directory' | 'plugged';
}

export const ROOT_CERT_FILE = 'root-cert.pem';
export const ROOT_KEY_FILE = 'root-key.pem';

const TEN_YEARS_MS = 10 * 365 * 24 * 3600 * 1000;

export async function loadSigningRoot(opts: SigningRootOptions): Promise<SigningRoot> {
  if ((opts.certFile === undefined) !== (opts.keyFile === undefined)) {
    throw new CaConfigError('a plugged CA needs both its certificate and its key (--ca-cert-file and --ca-key-file)');
  }
  if (opts.certFile !== undefined && opts.keyFile !== undefined) {
    const certPem = readPem(opts.certFile, 'CA certificate');
    const rootPem = opts.rootFile !== undefined ? readPem(opts.rootFile, 'root certificate') : certPem;
    return assemble(certPem, readPem(opts.keyFile, 'CA key'), rootPem, 'plugged', opts.certFile);
  }
  const certPath = path.join(opts.dir, ROOT_CERT_FILE);
  const keyPath = path.join(opts.dir, ROOT_KEY_FILE);
  if (existsSync(certPath) || existsSync(keyPath)) return loadKept(certPath, keyPath);
  const { certPem, keyPem } = await generateRoot(opts.trustDomain, opts.rootTtlMs ?? TEN_YEARS_MS);
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  // The key is claimed with an exclusive link: of two pilots starting on one empty directory,
  // one writes its pair and the other loads it (never a key of one with the other's certificate).
  const tmpKey = `${keyPath}.tmp-${process.pid}`;
  const tmpCert = `${certPath}.tmp-${process.pid}`;
  writeFileSync(tmpKey, keyPem, { mode: 0o600 });
  chmodSync(tmpKey, 0o600);
  writeFileSync(tmpCert, certPem, { mode: 0o644 });
  try {
    linkSync(tmpKey, keyPath);
  } catch (err) {
    rmSync(tmpKey, { force: true });
    rmSync(tmpCert, { force: true });
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadKept(certPath, keyPath);
    throw new CaConfigError(`${keyPath}: cannot write the root key: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  rmSync(tmpKey, { force: true });
  renameSync(tmpCert, certPath);
  return assemble(certPem, keyPem, certPem, 'generated', certPath);
}

// A root another start generated: its certificate follows its key within moments.
async function loadKept(certPath: string, keyPath: string): Promise<SigningRoot> {
  for (let i = 0; i < 20 && existsSync(keyPath) && !existsSync(certPath); i++) await new Promise((r) => setTimeout(r, 50));
  const certPem = readPem(certPath, 'root certificate');
  return assemble(certPem, readPem(keyPath, 'root key'), certPem, 'directory', certPath);
}

/** A self-signed ECDSA P-256 CA certificate and its PKCS#8 key, PEM. */
export async function generateRoot(trustDomain: string, ttlMs: number): Promise<{ certPem: string; keyPem: string }> {
  const keys = await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(16).toString('hex').replace(/^[89a-f]/, '1'),
    name: `O=${escapeDn(trustDomain)}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + ttlMs),
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.toString('pem') + '\n', keyPem: toPem(Buffer.from(pkcs8), 'PRIVATE KEY') };
}

async function assemble(certPem: string, keyPem: string, rootPem: string, source: SigningRoot['source'], where: string): Promise<SigningRoot> {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(certPem);
  } catch (err) {
    throw new CaConfigError(`${where}: not a PEM certificate (${(err as Error).message})`);
  }
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (bc?.ca !== true) throw new CaConfigError(`${where}: the certificate is not a CA (basicConstraints CA:TRUE is required)`);
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(keyPem);
  } catch (err) {
    throw new CaConfigError(`${where}: the key does not parse (${(err as Error).message})`);
  }
  const alg = signingAlgorithm(keyObject, where);
  const key = await webcrypto.subtle.importKey('pkcs8', keyObject.export({ type: 'pkcs8', format: 'der' }), alg, false, ['sign']);
  // the key must be the certificate's: sign and verify one message
  const probe = Buffer.from('sextant-ca-key-check');
  const sig = await webcrypto.subtle.sign(alg, key, probe);
  const pub = await cert.publicKey.export(alg, ['verify']);
  if (!await webcrypto.subtle.verify(alg, pub, sig, probe)) throw new CaConfigError(`${where}: the key does not belong to the certificate`);
  const signerPem = cert.toString('pem') + '\n';
  const root = new x509.X509Certificate(rootPem).toString('pem') + '\n';
  const chain = signerPem === root ? [root] : [signerPem, root];
  return { cert, key, chain, rootPem: root, source };
}

function signingAlgorithm(key: KeyObject, where: string): webcrypto.EcKeyImportParams & webcrypto.EcdsaParams | webcrypto.RsaHashedImportParams {
  const t = key.asymmetricKeyType;
  if (t === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const named = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : undefined;
    if (named === undefined) throw new CaConfigError(`${where}: EC key on curve ${curve ?? '?'} is not supported (P-256 or P-384)`);
    return { name: 'ECDSA', namedCurve: named, hash: named === 'P-384' ? 'SHA-384' : 'SHA-256' };
  }
  if (t === 'rsa') return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  throw new CaConfigError(`${where}: ${t ?? 'unknown'} keys are not supported (EC or RSA)`);
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new CaConfigError(`${file}: cannot read the ${what}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export function toPem(der: Buffer, label: string): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

function escapeDn(s: string): string {
  return s.replace(/([,+"\\<>;=])/g, '\\$1');
}

// Fetching a WasmPlugin's module: over HTTP(S), or from an OCI registry as Istio's agent does
// (a Wasm artifact whose layer is the module, or an image whose single layer holds
// `plugin.wasm`), with anonymous token auth. Every read is bounded in bytes and time; blobs
// are checked against their digest, the module against the sha256 the WasmPlugin states.
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';

export interface FetchLimits {
  /** Largest module (and manifest, and compressed layer) accepted. */
  maxBytes: number;
  /** Time for one fetch, all its requests together. */
  timeoutMs: number;
  /** Registries (`host:port`) reached over plain HTTP (a local registry); all others over HTTPS. */
  insecureRegistries: readonly string[];
}

/** A fetch that failed, with why (what the WasmPlugin's plugin then fails to load with). */
export class ModuleFetchError extends Error {
  override name = 'ModuleFetchError';
}

export interface FetchedModule {
  bytes: Buffer;
  sha256: string;
}

const WASM_LAYER = 'application/vnd.module.wasm.content.layer.v1+wasm';
const IMAGE_LAYERS = new Set(['application/vnd.docker.image.rootfs.diff.tar.gzip', 'application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.v1.tar']);
const MANIFEST_TYPES = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'];

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * The module at `url` (`http(s)://…`, `oci://…`, or a registry reference without scheme).
 * `expectedSha256`: for HTTP the module's checksum; for OCI the manifest's digest, as Istio has it.
 */
export async function fetchModule(url: string, expectedSha256: string | undefined, limits: FetchLimits): Promise<FetchedModule> {
  const signal = AbortSignal.timeout(limits.timeoutMs);
  try {
    if (/^https?:\/\//i.test(url)) {
      const bytes = await getBounded(url, {}, limits.maxBytes, signal);
      const sum = sha256(bytes);
      if (expectedSha256 && sum !== expectedSha256) throw new ModuleFetchError(`sha256 ${sum} of ${url} is not the expected ${expectedSha256}`);
      return { bytes, sha256: sum };
    }
    return await fetchOci(url.replace(/^oci:\/\//i, ''), expectedSha256, limits, signal);
  } catch (err) {
    if (err instanceof ModuleFetchError) throw err;
    const e = err as Error & { cause?: Error };
    if (e.name === 'TimeoutError' || e.name === 'AbortError') throw new ModuleFetchError(`fetching ${url} took longer than ${limits.timeoutMs} ms`);
    throw new ModuleFetchError(`fetching ${url} failed: ${e.cause?.message ?? e.message}`);
  }
}

/** GET with a byte bound; throws ModuleFetchError for a non-200 answer or a body over the bound. */
async function getBounded(url: string, headers: Record<string, string>, maxBytes: number, signal: AbortSignal): Promise<Buffer> {
  const res = await fetch(url, { headers, signal, redirect: 'follow' });
  return readBounded(res, url, maxBytes);
}

async function readBounded(res: Response, url: string, maxBytes: number): Promise<Buffer> {
  if (res.status !== 200) {
    await res.body?.cancel();
    throw new ModuleFetchError(`HTTP ${res.status} from ${url}`);
  }
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) {
    await res.body?.cancel();
    throw new ModuleFetchError(`${url} is ${declared} bytes, more than the ${maxBytes} allowed`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of res.body ?? []) {
    total += (c as Uint8Array).length;
    if (total > maxBytes) {
      await res.body?.cancel().catch(() => {});
      throw new ModuleFetchError(`${url} is more than the ${maxBytes} bytes allowed`);
    }
    chunks.push(Buffer.from(c as Uint8Array));
  }
  return Buffer.concat(chunks);
}

interface OciRef {
  registry: string;
  repository: string;
  reference: string;
}

/** `registry/repo[:tag|@sha256:…]` (Docker Hub's short names are not resolved: name the registry). */
export function parseOciReference(ref: string): OciRef {
  const slash = ref.indexOf('/');
  if (slash <= 0) throw new ModuleFetchError(`${ref}: an OCI reference names a registry and a repository (registry/repository:tag)`);
  const registry = ref.slice(0, slash);
  let rest = ref.slice(slash + 1);
  let reference = 'latest';
  const at = rest.indexOf('@');
  if (at >= 0) {
    reference = rest.slice(at + 1);
    rest = rest.slice(0, at);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon > rest.lastIndexOf('/')) {
      reference = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
    }
  }
  if (rest === '' || reference === '') throw new ModuleFetchError(`${ref}: not a registry/repository:tag reference`);
  return { registry, repository: rest, reference };
}

async function fetchOci(ref: string, expectedDigest: string | undefined, limits: FetchLimits, signal: AbortSignal): Promise<FetchedModule> {
  const r = parseOciReference(ref);
  const base = `${limits.insecureRegistries.includes(r.registry) ? 'http' : 'https'}://${r.registry}/v2/${r.repository}`;
  let token: string | undefined;
  // one registry call, with the anonymous bearer token the registry asks for on a 401
  const call = async (url: string, accept?: string): Promise<Response> => {
    const headers: Record<string, string> = {};
    if (accept !== undefined) headers['accept'] = accept;
    if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
    let res = await fetch(url, { headers, signal, redirect: 'follow' });
    if (res.status === 401 && token === undefined) {
      const challenge = res.headers.get('www-authenticate') ?? '';
      await res.body?.cancel();
      token = await anonymousToken(challenge, url, signal, limits.maxBytes);
      headers['authorization'] = `Bearer ${token}`;
      res = await fetch(url, { headers, signal, redirect: 'follow' });
    }
    return res;
  };
  const manifestUrl = `${base}/manifests/${r.reference}`;
  const manifestBytes = await readBounded(await call(manifestUrl, MANIFEST_TYPES.join(', ')), manifestUrl, limits.maxBytes);
  const manifestDigest = sha256(manifestBytes);
  const want = expectedDigest ?? (r.reference.startsWith('sha256:') ? r.reference.slice(7) : undefined);
  if (want !== undefined && want !== manifestDigest) throw new ModuleFetchError(`manifest digest sha256:${manifestDigest} of ${ref} is not the expected sha256:${want}`);
  let manifest: { mediaType?: string; layers?: { mediaType?: string; digest?: string; size?: number }[] };
  try {
    manifest = JSON.parse(manifestBytes.toString('utf8')) as typeof manifest;
  } catch {
    throw new ModuleFetchError(`${ref}: the registry's manifest is not JSON`);
  }
  const layers = manifest.layers ?? [];
  if (layers.length === 0) throw new ModuleFetchError(`${ref}: the manifest has no layers (an image index? name a single-platform manifest)`);
  const wasmLayer = layers.find((l) => l.mediaType === WASM_LAYER);
  const layer = wasmLayer ?? (layers.length === 1 && IMAGE_LAYERS.has(layers[0]!.mediaType ?? '') ? layers[0] : undefined);
  if (layer === undefined || layer.digest === undefined) {
    throw new ModuleFetchError(`${ref}: no ${WASM_LAYER} layer and not a single-layer image (layers: ${layers.map((l) => l.mediaType).join(', ')})`);
  }
  const blobUrl = `${base}/blobs/${layer.digest}`;
  const blob = await readBounded(await call(blobUrl), blobUrl, limits.maxBytes);
  if (`sha256:${sha256(blob)}` !== layer.digest) throw new ModuleFetchError(`${ref}: layer ${layer.digest} does not match its digest`);
  const bytes = wasmLayer !== undefined ? blob : pluginFromTar(layer.mediaType?.endsWith('gzip') ? gunzipBounded(blob, limits.maxBytes, ref) : blob, ref);
  return { bytes, sha256: sha256(bytes) };
}

function gunzipBounded(b: Buffer, maxBytes: number, ref: string): Buffer {
  try {
    // the tar holds the module and little else: bounded like the module, with room for headers
    return gunzipSync(b, { maxOutputLength: maxBytes + 1024 * 1024 });
  } catch (err) {
    throw new ModuleFetchError(`${ref}: the image layer does not decompress within the bound: ${(err as Error).message}`);
  }
}

/** `plugin.wasm` from a tar (Istio's compat image format). */
function pluginFromTar(tar: Buffer, ref: string): Buffer {
  for (let at = 0; at + 512 <= tar.length;) {
    const header = tar.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break;
    const field = (from: number, len: number): string => header.subarray(from, from + len).toString('latin1').replace(/\0.*$/s, '');
    const name = (field(345, 155) ? `${field(345, 155)}/` : '') + field(0, 100);
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const type = field(156, 1);
    const start = at + 512;
    if ((type === '0' || type === '') && name.replace(/^\.\//, '') === 'plugin.wasm') return Buffer.from(tar.subarray(start, start + size));
    at = start + Math.ceil(size / 512) * 512;
  }
  throw new ModuleFetchError(`${ref}: the image has no plugin.wasm`);
}

/** The anonymous token a `WWW-Authenticate: Bearer realm=…,service=…,scope=…` challenge asks for. */
async function anonymousToken(challenge: string, url: string, signal: AbortSignal, maxBytes: number): Promise<string> {
  const params = new Map<string, string>();
  for (const m of challenge.matchAll(/(\w+)="([^"]*)"/g)) params.set(m[1]!.toLowerCase(), m[2]!);
  const realm = params.get('realm');
  if (!/^bearer\s/i.test(challenge) || realm === undefined) throw new ModuleFetchError(`${url}: the registry wants credentials (${challenge || 'no challenge'}); imagePullSecret is not supported, only anonymous pulls`);
  const q = new URL(realm);
  for (const k of ['service', 'scope']) {
    const v = params.get(k);
    if (v !== undefined) q.searchParams.set(k, v);
  }
  const body = await readBounded(await fetch(q, { signal }), q.toString(), Math.min(maxBytes, 1024 * 1024));
  const t = JSON.parse(body.toString('utf8')) as { token?: string; access_token?: string };
  const token = t.token ?? t.access_token;
  if (token === undefined) throw new ModuleFetchError(`${url}: the registry's token endpoint gave no token`);
  return token;
}

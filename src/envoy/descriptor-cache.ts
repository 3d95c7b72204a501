// A JSON descriptor of the loaded Envoy protos, kept on disk so later processes skip the
// .proto parser (faster start-up, less parser garbage in a sidecar). Best effort throughout.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Bumped whenever the cache file's layout or what it must contain changes. */
const DESCRIPTOR_FORMAT = 'sextant-envoy-descriptor/1';

/** A cache file larger than this is not ours (the descriptor is ~250 KB): never read it. */
const MAX_DESCRIPTOR_BYTES = 32 * 1024 * 1024;

/** What the cache holds: the root's JSON form and the proto files it was built from. */
export interface EnvoyDescriptor {
  /** `protobuf.Root#toJSON()` of the loaded root. */
  readonly root: Record<string, unknown>;
  /** Resolved paths of every proto file loaded (`Root#files`), so later loads skip them. */
  readonly files: readonly string[];
}

interface DescriptorFile extends EnvoyDescriptor {
  readonly format: string;
  readonly key: string;
}

export interface DescriptorCacheKeyInputs {
  readonly protobufjsVersion: string;
  readonly xdsVersion: string;
  readonly includeDirs: readonly string[];
  readonly protoFiles: readonly string[];
}

/**
 * The cache key: anything that changes what the parser would produce. Include dirs are
 * part of it because `files` holds absolute paths (a moved checkout must not reuse them).
 */
export function descriptorCacheKey(inputs: DescriptorCacheKeyInputs): string {
  const h = createHash('sha256');
  for (const part of [
    DESCRIPTOR_FORMAT,
    `protobufjs@${inputs.protobufjsVersion}`,
    `@grpc/grpc-js-xds@${inputs.xdsVersion}`,
    ...inputs.includeDirs.map((d) => `include:${d}`),
    ...inputs.protoFiles.map((f) => `proto:${f}`),
  ]) {
    h.update(part);
    h.update('\0');
  }
  return h.digest('hex');
}

export function descriptorFileName(key: string): string {
  return `envoy-descriptor-${key.slice(0, 16)}.json`;
}

/**
 * Directories tried in order. `SEXTANT_PROTO_CACHE` alone when set (so a deployment or a
 * test controls where it lands); else the project's `node_modules/.cache/sextant`, then
 * the OS temp dir when that is not writable.
 */
export function descriptorCacheDirs(nodeModulesDir: string | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  const configured = env['SEXTANT_PROTO_CACHE'];
  if (configured !== undefined && configured !== '') return [path.resolve(configured)];
  const dirs: string[] = [];
  if (nodeModulesDir !== undefined) dirs.push(path.join(nodeModulesDir, '.cache', 'sextant'));
  dirs.push(path.join(os.tmpdir(), 'sextant-cache'));
  return dirs;
}

/**
 * The descriptor stored under key in the first directory that has a valid one, or
 * undefined. A missing, unreadable, truncated or foreign file reads as absent.
 */
export function readDescriptor(dirs: readonly string[], key: string): EnvoyDescriptor | undefined {
  for (const dir of dirs) {
    const text = readBounded(path.join(dir, descriptorFileName(key)));
    if (text === undefined) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      continue; // truncated or corrupt: the next write replaces it
    }
    if (isDescriptorFile(parsed, key)) return { root: parsed.root, files: parsed.files };
  }
  return undefined;
}

/**
 * Stores the descriptor in the first writable directory, atomically (a temp file in the
 * same directory, then rename), so a concurrent reader sees the old file or the new one,
 * never half of one. Returns the path written, or undefined when no directory took it.
 */
export function writeDescriptor(dirs: readonly string[], key: string, descriptor: EnvoyDescriptor): string | undefined {
  const body: DescriptorFile = { format: DESCRIPTOR_FORMAT, key, files: descriptor.files, root: descriptor.root };
  const text = JSON.stringify(body);
  for (const dir of dirs) {
    const target = path.join(dir, descriptorFileName(key));
    const temp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      mkdirSync(dir, { recursive: true });
      writeFileSync(temp, text, { mode: 0o644 });
      renameSync(temp, target);
      return target;
    } catch {
      try {
        unlinkSync(temp);
      } catch {
        // the temp file was never created
      }
    }
  }
  return undefined;
}

/** The file's text, unless it is missing, empty or larger than any descriptor of ours. */
function readBounded(file: string): string | undefined {
  try {
    const size = statSync(file).size;
    if (size === 0 || size > MAX_DESCRIPTOR_BYTES) return undefined;
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function isDescriptorFile(v: unknown, key: string): v is DescriptorFile {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return o['format'] === DESCRIPTOR_FORMAT && o['key'] === key
    && typeof o['root'] === 'object' && o['root'] !== null && !Array.isArray(o['root'])
    && Array.isArray(o['files']) && o['files'].every((f) => typeof f === 'string');
}

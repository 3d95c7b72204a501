// Istio's certificate service (`istio.v1.auth.IstioCertificateService`), loaded from the
// small .proto beside this file: the pilot serves it, the proxy calls it.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export interface IstioCertificateRequest {
  csr: string;
  /** Seconds (int64, as a string or a number on the wire's JS side). */
  validityDuration: string | number;
  /** A google.protobuf.Struct in its JS form (`fields` → `{ stringValue }` …). */
  metadata?: { fields?: Record<string, { stringValue?: string; kind?: string }> } | null;
}

export interface IstioCertificateResponse {
  certChain: string[];
}

export const CERTIFICATE_SERVICE_NAME = 'istio.v1.auth.IstioCertificateService';

let loaded: grpc.ServiceDefinition | undefined;

/** The service definition (CreateCertificate), loaded on first use. */
export function certificateServiceDefinition(): grpc.ServiceDefinition {
  if (loaded !== undefined) return loaded;
  const file = path.join(path.dirname(fileURLToPath(import.meta.url)), 'istio-ca.proto');
  const pkg = protoLoader.loadSync(file, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true });
  loaded = pkg[CERTIFICATE_SERVICE_NAME] as grpc.ServiceDefinition;
  return loaded;
}

/** The metadata Struct for a request from plain string fields. */
export function stringStruct(fields: Readonly<Record<string, string>>): NonNullable<IstioCertificateRequest['metadata']> {
  return { fields: Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, { stringValue: v }])) };
}

/** A string field of a request's metadata Struct. */
export function structString(meta: IstioCertificateRequest['metadata'], key: string): string | undefined {
  const v = meta?.fields?.[key];
  return typeof v?.stringValue === 'string' && v.stringValue !== '' ? v.stringValue : undefined;
}

// The registration API (`/apis/registration/v1` on the pilot's HTTP address): a deployment
// platform registers services and instances, pulls instances in and out of traffic and sets
// release weights; each call becomes Istio resources written in one store transaction. Only
// token holders may call it, each only for its namespaces. See docs/registration.md.
import type http from 'node:http';
import type { Logger } from 'pino';
import type { Resource } from '../../api/index.ts';
import type { ConfigStore } from '../../config/index.ts';
import { RegistrationHandler, type AckSource } from './handlers.ts';
import { TokenFile } from './tokens.ts';

export type { AckSource, InstanceAckQuery, InstanceAcks, ProxyAck } from './handlers.ts';
export { API_PREFIX, openApiDocument } from './openapi.ts';
export { generatedToken, TokenFile, TokenFileError, parseTokenFile, readTokenFile, type Authorization, type GeneratedToken } from './tokens.ts';
export { MANAGED_BY, MANAGED_BY_LABEL, CLUSTER_LABEL } from './resources.ts';

export interface RegistrationApiOptions {
  /** The token file (`--registration-tokens`); read now (TokenFileError when missing or invalid), then on every change. */
  tokensFile: string;
  /** The store to write; undefined while the pilot is still opening it (calls get 503). */
  store: () => ConfigStore | undefined;
  /** Which proxies have ACKed an instance's state (the pilot's xDS server). */
  acks?: AckSource;
  /** The pilot's copy of the store's resources (possibly behind it): pulls plan from it (see RegistrationHandlerOptions). */
  cached?: (kind: string, namespace: string, name: string) => Resource | undefined;
  logger: Logger;
  /** Largest request body (default 1 MiB). */
  maxBodyBytes?: number;
  /** How often the token file is checked for changes a file watch misses (default 2 s). */
  tokensPollMs?: number;
}

export interface RegistrationApi {
  /** Serves a request whose path is under API_PREFIX; never throws. */
  handle(req: http.IncomingMessage, res: http.ServerResponse): void;
  close(): void;
}

export function createRegistrationApi(options: RegistrationApiOptions): RegistrationApi {
  const logger = options.logger.child({ component: 'registration' });
  const tokens = new TokenFile(options.tokensFile, logger, options.tokensPollMs !== undefined ? { pollMs: options.tokensPollMs } : {});
  logger.info({ file: tokens.file, tokens: tokens.size }, 'registration API on');
  const handler = new RegistrationHandler({
    store: options.store,
    authorize: (token, namespace) => tokens.authorize(token, namespace),
    acks: options.acks,
    cached: options.cached,
    logger,
    ...(options.maxBodyBytes !== undefined ? { maxBodyBytes: options.maxBodyBytes } : {}),
  });
  return {
    handle: (req, res) => handler.handle(req, res),
    close: () => tokens.close(),
  };
}

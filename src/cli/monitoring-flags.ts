// The pilot's monitoring flags: `--api-tokens FILE` (who may read /api/v1 and /dashboard),
// `--dashboard-insecure` (anyone may, for a trusted host), `--prometheus URL` (where the alerts
// are read). Checked before the pilot starts, each mistake a usage error naming its flag.
import { readTokenFile, TokenFileError } from '../registry/api/index.ts';
import type { Access } from '../dashboard/index.ts';
import { UsageError } from './flags.ts';

export interface MonitoringFlags {
  apiTokens?: string;
  dashboardInsecure?: boolean;
  prometheus?: string;
}

export interface MonitoringOptions {
  access: Access;
  prometheusUrl?: string;
}

/** The monitoring options, or undefined when the API is off (neither flag given). */
export function monitoringOptions(flags: MonitoringFlags): MonitoringOptions | undefined {
  if (flags.apiTokens !== undefined && flags.dashboardInsecure === true) {
    throw new UsageError('--api-tokens and --dashboard-insecure exclude each other: give tokens, or open the API to every caller');
  }
  let prometheusUrl: string | undefined;
  if (flags.prometheus !== undefined) {
    let url: URL;
    try {
      url = new URL(flags.prometheus);
    } catch {
      throw new UsageError(`invalid --prometheus "${flags.prometheus}": expected Prometheus's address, e.g. http://127.0.0.1:9090`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`invalid --prometheus "${flags.prometheus}": expected an http:// or https:// address`);
    if (url.username !== '' || url.password !== '') throw new UsageError('invalid --prometheus: credentials in the URL would be logged; put Prometheus behind a proxy that adds them');
    prometheusUrl = url.href;
  }
  if (flags.apiTokens !== undefined) {
    try {
      readTokenFile(flags.apiTokens);
    } catch (err) {
      if (err instanceof TokenFileError) throw new UsageError(`--api-tokens: ${err.message}`);
      throw err;
    }
    return { access: { kind: 'tokens', file: flags.apiTokens }, ...(prometheusUrl !== undefined ? { prometheusUrl } : {}) };
  }
  if (flags.dashboardInsecure === true) return { access: { kind: 'insecure' }, ...(prometheusUrl !== undefined ? { prometheusUrl } : {}) };
  if (prometheusUrl !== undefined) throw new UsageError('--prometheus serves the monitoring API\'s alerts: give --api-tokens FILE (or --dashboard-insecure) too');
  return undefined;
}

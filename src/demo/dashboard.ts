// The demo's monitoring: a token for the monitoring API and the dashboard (generated once into
// the working folder, mode 0600, reused on the next run so an open page keeps working), the
// access-log store in the working folder, and the dashboard URL the demo prints.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generatedToken } from '../registry/api/index.ts';

export interface DemoMonitoring {
  /** Flags for `sextant pilot`: the token file and the log store. */
  pilotArgs: string[];
  token: string;
  /** `http://HOST:PORT/dashboard?token=…`: opening it sets the page's cookie. */
  dashboardUrl: string;
  /** The token file, for `sextant logs --token-file`. */
  tokenFile: string;
}

export function demoMonitoring(workDir: string, httpAddress: string): DemoMonitoring {
  const { tokenFile, tokensFile } = generatedToken(workDir, 'api-token', 'the demo\'s monitoring API token, granted on every namespace');
  const token = readFileSync(tokenFile, 'utf8').trim();
  return {
    pilotArgs: ['--api-tokens', tokensFile, '--log-store', `sqlite:${path.join(workDir, 'access-log.sqlite')}`],
    token,
    tokenFile,
    dashboardUrl: `http://${httpAddress}/dashboard?token=${encodeURIComponent(token)}`,
  };
}

/** The demo's Telemetry: every sidecar streams its access logs to the pilot (the built-in `sextant` ALS provider). */
export const DEMO_TELEMETRY_FILE = 'telemetry.yaml';
const DEMO_TELEMETRY = `# Written by sextant demo (when missing): every sidecar streams its access logs over ALS to the
# pilot, whose store feeds the dashboard, /api/v1 and sextant logs / peers.
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: sextant}]
`;

/** Writes the demo's Telemetry into the config directory unless a file of that name is there. */
export function seedTelemetry(configDir: string): void {
  const file = path.join(configDir, DEMO_TELEMETRY_FILE);
  if (!existsSync(file)) writeFileSync(file, DEMO_TELEMETRY);
}

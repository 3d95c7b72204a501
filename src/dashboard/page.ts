// The dashboard page's files (static/: HTML, CSS, plain JS; no build step), read once when the
// pilot starts, served with headers that allow only the page's own scripts and styles.
import { readFileSync } from 'node:fs';
import path from 'node:path';

export const DASHBOARD_PATH = '/dashboard';
const ASSETS = `${DASHBOARD_PATH}/assets/`;
const STATIC_DIR = path.join(import.meta.dirname, 'static');

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The assets the page loads; nothing else under /dashboard/assets/ is served. */
const ASSET_FILES = ['dashboard.css', 'dashboard.js', 'graph.js'] as const;

export interface StaticFile {
  type: string;
  body: Buffer;
}

export interface PageSettings {
  /** The API is open to all (`--dashboard-insecure`): the page says so. */
  insecure: boolean;
  /** The pilot has `--prometheus`: the alerts panel reads /api/v1/alerts. */
  prometheus: boolean;
}

export class StaticPage {
  private readonly files = new Map<string, StaticFile>();

  constructor(settings: PageSettings) {
    const html = readFileSync(path.join(STATIC_DIR, 'index.html'), 'utf8')
      .replace('data-insecure=""', `data-insecure="${settings.insecure}"`)
      .replace('data-prometheus=""', `data-prometheus="${settings.prometheus}"`);
    const index = { type: TYPES['.html']!, body: Buffer.from(html) };
    this.files.set(DASHBOARD_PATH, index);
    this.files.set(`${DASHBOARD_PATH}/`, index);
    for (const name of ASSET_FILES) {
      this.files.set(`${ASSETS}${name}`, { type: TYPES[path.extname(name)]!, body: readFileSync(path.join(STATIC_DIR, name)) });
    }
  }

  file(pathname: string): StaticFile | undefined {
    return this.files.get(pathname);
  }

  /** The page runs only its own files: no inline script, no other origin, never framed. */
  securityHeaders(): Record<string, string> {
    return {
      'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    };
  }

  /** A small page for 401/403/404/405 on /dashboard, saying what to do. */
  errorPage(status: number, message: string): string {
    const hint = status === 401 ? '<p>Open <code>/dashboard?token=TOKEN</code> with a token from the pilot\'s <code>--api-tokens</code> file.</p>' : '';
    return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sextant dashboard: ${status}</title></head><body><h1>${status}</h1><p>${escapeHtml(message)}</p>${hint}</body></html>\n`;
  }
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

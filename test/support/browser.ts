// Debian's Chromium driven by playwright-core for the dashboard's browser tests: headless,
// without a sandbox (tests may run as root) or background networking; every console error and
// uncaught page error collected; screenshots written under test-artifacts/ (gitignored).
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM_BIN = '/usr/bin/chromium';
export const ARTIFACTS_DIR = path.join(import.meta.dirname, '..', '..', 'test-artifacts');

/** A reason to skip when Chromium is not installed, else false. */
export function chromiumSkip(): string | false {
  return existsSync(CHROMIUM_BIN) ? false : `${CHROMIUM_BIN} is not installed (Debian package chromium)`;
}

export interface BrowserSession {
  browser: Browser;
  page: Page;
  /** Console errors and uncaught exceptions of the page, in order. */
  errors: string[];
  /** Writes a PNG of the page under test-artifacts/<group>/<name>.png; returns its path. */
  screenshot(name: string): Promise<string>;
  close(): Promise<void>;
}

export async function openBrowser(group: string): Promise<BrowserSession> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM_BIN,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'],
    timeout: 60_000,
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);
    const errors: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    const dir = path.join(ARTIFACTS_DIR, group);
    return {
      browser,
      page,
      errors,
      async screenshot(name) {
        mkdirSync(dir, { recursive: true });
        const file = path.join(dir, `${name}.png`);
        await page.screenshot({ path: file, fullPage: true });
        return file;
      },
      close: () => browser.close(),
    };
  } catch (err) {
    await browser.close();
    throw err;
  }
}

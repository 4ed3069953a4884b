// The browser of the interop suites: Debian's Chromium (never a downloaded one),
// driven by playwright-core, with a fresh profile in a temporary directory each time.
//
//   import { launchBrowser } from './browser.mjs';
//   const browser = await launchBrowser('rp');   // { context, page, profile, close }
//   ...
//   await browser.close();                       // closes it and removes the profile
//
// CHROMIUM overrides the executable (default /usr/bin/chromium).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** How long one browser step (a click, a navigation, a wait) may take by default. */
export const STEP_TIMEOUT_MS = 20_000;

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * Launches headless Chromium with a new, empty profile (a persistent context, as a
 * person's browser is) and resolves to { context, page, profile, close }: `page` is its
 * first tab, `profile` the profile directory (scratch space that goes with it), and
 * close() closes the browser and removes the directory (resolving even if the browser
 * is gone already).
 */
export async function launchBrowser(name = 'interop') {
  const profile = mkdtempSync(join(tmpdir(), `gatehouse-${name}-`));
  const remove = () => rmSync(profile, { recursive: true, force: true });
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1000, height: 800 },
    });
  } catch (e) {
    remove();
    throw e;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  let closing;
  const close = () => (closing ??= context.close().catch(() => {}).finally(remove));
  return { context, page, profile, close };
}

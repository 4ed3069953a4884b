// What the browser suites (rp.mjs, upstream_selftest.mjs, federation.mjs) share:
// run.sh-style reporting, one line per check ("ok   ..." or "FAIL ..."), small
// assertions, and the relying party's redirect target, a loopback server (RFC 8252)
// that captures what the browser is sent back with.

import http from 'node:http';

import * as client from 'openid-client';

import { STEP_TIMEOUT_MS } from './browser.mjs';

// --- reporting ----------------------------------------------------------------------

let passed = 0;
let failed = 0;

/** Runs one check: `fn` throws (or rejects) to fail it; its message says why. Resolves to whether it passed. */
export async function check(name, fn) {
  try {
    await fn();
    passed += 1;
    console.log(`ok   ${name}`);
    return true;
  } catch (e) {
    fail(name, e);
    return false;
  }
}

/** Counts and prints a failure outside a check (a suite that stopped). */
export function fail(name, e) {
  failed += 1;
  console.log(`FAIL ${name}: ${describe(e)}`);
}

/** The counts so far. */
export function counts() {
  return { passed, failed };
}

/** Prints "<label>: N passed, M failed" and resolves to the exit status. */
export function summary(label) {
  console.log(`${label}: ${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

/** An error in one line, with what an OAuth error response said. */
export function describe(e) {
  if (!(e instanceof Error)) return String(e);
  const parts = [`${e.name}: ${e.message}`];
  if (e.code) parts.push(`code=${e.code}`);
  if (e.error) parts.push(`error=${e.error}`);
  if (e.error_description) parts.push(`error_description=${JSON.stringify(e.error_description)}`);
  if (e.status) parts.push(`status=${e.status}`);
  if (e.cause instanceof URLSearchParams) {
    parts.push(`response=${e.cause}`);
  } else if (e.cause instanceof Error) {
    parts.push(`cause=${e.cause.name}: ${e.cause.message}`);
  } else if (e.cause !== undefined) {
    let cause;
    try {
      cause = JSON.stringify(e.cause);
    } catch {
      cause = String(e.cause);
    }
    parts.push(`cause=${cause.slice(0, 600)}`);
  }
  return parts.join(' ');
}

// --- assertions ---------------------------------------------------------------------

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

/** Requires the value an earlier check produced. */
export function need(value, what) {
  if (value === undefined || value === null) throw new Error(`not run: needs ${what} from an earlier check`);
  return value;
}

/** Expects `promise` to reject with OAuth error `code`. */
export async function rejectsWith(promise, code) {
  let result;
  try {
    result = await promise;
  } catch (e) {
    if (e?.error === code) return e;
    throw new Error(`expected error ${code}, got ${describe(e)}`);
  }
  throw new Error(`expected error ${code}, but it succeeded: ${JSON.stringify(result).slice(0, 300)}`);
}

export function withTimeout(promise, what, ms = STEP_TIMEOUT_MS) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Part `i` of a JWT (0 header, 1 claims), decoded, not verified. */
export function jwtPart(jwt, i) {
  return JSON.parse(Buffer.from(jwt.split('.')[i], 'base64url').toString('utf8'));
}

export const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/** Where the browser is, with the page's alert or heading: for a failure message. */
export async function whereIs(page) {
  try {
    for (const sel of ['[role=alert]', 'h1']) {
      const el = page.locator(sel);
      if (await el.count()) return ` (the browser is at ${page.url()} showing ${JSON.stringify((await el.first().textContent()).trim())})`;
    }
    return ` (the browser is at ${page.url()})`;
  } catch {
    return '';
  }
}

// --- the relying party's two steps -------------------------------------------------

/**
 * A fresh authorization request to the provider `config` describes (code flow, PKCE
 * S256, state, nonce): { url, verifier, state, nonce }; `extra` adds or overrides
 * parameters.
 */
export async function authorizationRequest(config, redirectUri, scope, extra = {}) {
  const verifier = client.randomPKCECodeVerifier();
  const req = { verifier, state: client.randomState(), nonce: client.randomNonce() };
  req.url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state: req.state,
    nonce: req.nonce,
    ...extra,
  });
  return req;
}

/** The code grant for the response at `url` to `req`, with every check openid-client makes. */
export function redeemCode(config, url, req) {
  return client.authorizationCodeGrant(config, url, {
    pkceCodeVerifier: req.verifier,
    expectedState: req.state,
    expectedNonce: req.nonce,
    idTokenExpected: true,
  });
}

// --- the redirect target ------------------------------------------------------------

/**
 * Starts the relying party's loopback redirect target on a free port; resolves to
 * { redirectUri, expectCallback, arrivals, close }. Every request to /callback is
 * answered with a small page and counted (arrivals()).
 */
export async function startCallbackServer() {
  const waiting = []; // at most one: the resolver of expectCallback's promise
  let arrived = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, `http://127.0.0.1:${server.address().port}`);
    if (url.pathname !== '/callback') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    arrived += 1;
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>callback</title><p>The relying party got the response.</p>');
    waiting.shift()?.(url);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));

  /**
   * Runs `action` (which sends the browser off) and returns the next request the
   * callback server receives (its full URL), once the browser has loaded it. On a
   * timeout the error says where the browser is instead, with the page's alert or
   * heading.
   */
  async function expectCallback(page, what, action) {
    let resolve;
    const arrival = new Promise((r) => (resolve = r));
    waiting.length = 0;
    waiting.push(resolve);
    try {
      await action();
      const url = await withTimeout(arrival, what);
      // let the browser finish loading the callback, so the next navigation is not cut short
      await page.waitForURL((u) => u.href === url.href, { waitUntil: 'load' });
      return url;
    } catch (e) {
      e.message += await whereIs(page);
      throw e;
    } finally {
      waiting.length = 0;
    }
  }

  return {
    redirectUri: `http://127.0.0.1:${server.address().port}/callback`,
    expectCallback,
    arrivals: () => arrived,
    close: () => {
      server.close();
      server.closeAllConnections();
    },
  };
}

// The relying-party interop suite: openid-client (a certified OpenID Connect relying
// party) and a real browser (Debian's Chromium driven by playwright-core) against a
// running gatehouse, as the first-party public client `gatehouse-admin`.
//
//   node tests/interop/rp.mjs <issuer> <email> [password]
//
// The arguments may instead come from INTEROP_ISSUER, INTEROP_EMAIL and
// INTEROP_PASSWORD (the password is better passed that way). INTEROP_CLIENT_ID
// overrides the client (default `gatehouse-admin`), CHROMIUM the browser
// (default /usr/bin/chromium). Prints one line per check, "ok   ..." or "FAIL ...",
// then "rp: N passed, M failed", and exits non-zero on any failure.
//
// The browser is never downloaded: playwright-core only drives the system Chromium,
// with a fresh profile in a temporary directory.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';

import * as client from 'openid-client';

import { launchBrowser } from './browser.mjs';
import { assert, authorizationRequest, check, fail, jwtPart, need, redeemCode, rejectsWith, startCallbackServer, summary } from './harness.mjs';

const issuer = process.argv[2] || process.env.INTEROP_ISSUER;
const email = process.argv[3] || process.env.INTEROP_EMAIL;
const password = process.argv[4] || process.env.INTEROP_PASSWORD;
const clientId = process.env.INTEROP_CLIENT_ID || 'gatehouse-admin';
if (!issuer || !email || !password) {
  console.error('usage: node rp.mjs <issuer> <email> [password]  (or INTEROP_ISSUER, INTEROP_EMAIL, INTEROP_PASSWORD)');
  process.exit(2);
}
const SCOPE = 'openid email profile roles offline_access';
const WRONG_PASSWORD_TEXT = 'The email or password is incorrect.';

// the redirect target: a tiny loopback server (RFC 8252)
const callbacks = await startCallbackServer();
const { redirectUri, expectCallback } = callbacks;

// --- helpers ------------------------------------------------------------------------

/** The `at_hash` of `accessToken` for an ID token signed with `alg` (OIDC Core 3.1.3.6). */
function atHash(accessToken, alg) {
  const hash = { RS256: 'sha256', PS256: 'sha256', ES256: 'sha256', RS384: 'sha384', PS384: 'sha384', ES384: 'sha384', RS512: 'sha512', PS512: 'sha512', ES512: 'sha512', EdDSA: 'sha512', Ed25519: 'sha512' }[alg];
  if (!hash) throw new Error(`no at_hash rule for alg ${alg}`);
  const digest = createHash(hash).update(accessToken, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

/** Distinct colours in an 8-bit, non-interlaced RGB or RGBA PNG (Chromium's screenshots). */
function pngColours(buf) {
  assert(buf.subarray(0, 8).equals(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10])), 'not a PNG');
  let off = 8;
  let width, height, depth, type, interlace;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const kind = buf.toString('ascii', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (kind === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      depth = data[8];
      type = data[9];
      interlace = data[12];
    } else if (kind === 'IDAT') idat.push(data);
    else if (kind === 'IEND') break;
    off += 12 + len;
  }
  assert(depth === 8 && (type === 2 || type === 6) && interlace === 0, `unexpected PNG format (depth ${depth}, colour type ${type}, interlace ${interlace})`);
  const bpp = type === 6 ? 4 : 3;
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * bpp;
  let prev = Buffer.alloc(stride);
  const colours = new Set();
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)));
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? line[x - bpp] : 0;
      const b = prev[x];
      const c = x >= bpp ? prev[x - bpp] : 0;
      let add = 0;
      if (filter === 1) add = a;
      else if (filter === 2) add = b;
      else if (filter === 3) add = (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        add = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      line[x] = (line[x] + add) & 0xff;
    }
    for (let x = 0; x < stride; x += bpp) colours.add(line.readUIntBE(x, 3));
    prev = line;
  }
  return { width, height, colours: colours.size };
}

// --- the run ------------------------------------------------------------------------

let browser;
try {
  let config;
  await check('openid-client discovers the provider', async () => {
    config = await client.discovery(new URL(issuer), clientId, { token_endpoint_auth_method: 'none' }, client.None(), {
      // http on loopback only: the suite's server has no TLS
      execute: [client.allowInsecureRequests, client.enableNonRepudiationChecks],
    });
    const md = config.serverMetadata();
    assert(md.issuer === issuer, `issuer ${md.issuer} is not ${issuer}`);
    assert(md.end_session_endpoint, 'no end_session_endpoint');
    assert(md.code_challenge_methods_supported?.includes('S256'), 'S256 not advertised');
  });

  browser = await launchBrowser('rp');
  const { page, profile } = browser;

  /** A fresh authorization request: its URL and the values the response is checked against. */
  const authorization = (extra = {}) => authorizationRequest(need(config, 'discovery'), redirectUri, SCOPE, extra);

  /** The code grant for the response at `url` to `req`, with every check openid-client makes. */
  const redeem = (url, req) => redeemCode(need(config, 'discovery'), url, req);

  const first = await authorization();
  let loginPage = false;
  await check('the authorization request shows a rendered login page', async () => {
    await page.goto(first.url.href);
    const at = new URL(page.url());
    assert(at.origin === new URL(issuer).origin && at.pathname === '/login', `landed on ${page.url()}`);
    for (const sel of ['input[name=email]', 'input[name=password]']) {
      assert(await page.locator(sel).isVisible(), `${sel} is not visible`);
    }
    assert((await page.locator('input[name=csrf_token]').count()) === 1, 'no csrf_token input');
    assert((await page.locator('input[name=pending]').count()) === 1, 'no pending input');
    const style = await page.locator('button[type=submit]').evaluate((b) => {
      const sheets = [...document.styleSheets].map((s) => ({ href: s.href, rules: s.cssRules.length }));
      return { background: getComputedStyle(b).backgroundColor, sheets };
    });
    const sheet = style.sheets.find((s) => s.href && new URL(s.href).pathname === '/assets/gatehouse.css');
    assert(sheet && sheet.rules > 0, `the stylesheet did not load: ${JSON.stringify(style.sheets)}`);
    assert(!['transparent', 'rgba(0, 0, 0, 0)', 'rgb(239, 239, 239)', 'buttonface'].includes(style.background), `the button's background is ${style.background} (the stylesheet is not applied)`);
    const shot = join(profile, 'login.png');
    await page.screenshot({ path: shot, fullPage: true });
    const png = readFileSync(shot);
    const { width, height, colours } = pngColours(png);
    assert(png.length > 8 * 1024, `the screenshot is ${png.length} bytes, so the page is blank`);
    assert(colours >= 16, `the ${width}x${height} screenshot has ${colours} colours, so the page is blank`);
    loginPage = true;
  });

  await check('a wrong password shows the error and stays on the login page', async () => {
    assert(loginPage, 'not run: needs the login page');
    await page.fill('input[name=email]', email);
    await page.fill('input[name=password]', `${password} but wrong`);
    await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('button[type=submit]')]);
    const at = new URL(page.url());
    assert(at.pathname === '/login', `went on to ${page.url()}`);
    const alert = page.locator('[role=alert]');
    assert(await alert.isVisible(), 'no error is shown');
    const text = (await alert.textContent()).trim();
    assert(text === WRONG_PASSWORD_TEXT, `the error says ${JSON.stringify(text)}`);
    assert(await page.locator('input[name=password]').isVisible(), 'the password input is gone');
  });

  let callback;
  await check('the right password sends the browser to the callback with code, state and iss', async () => {
    assert(loginPage, 'not run: needs the login page');
    await page.fill('input[name=email]', email);
    await page.fill('input[name=password]', password);
    callback = await expectCallback(page, 'the callback', () => page.click('button[type=submit]'));
    const p = callback.searchParams;
    assert(!p.has('error'), `error=${p.get('error')} ${p.get('error_description') ?? ''}`);
    assert(p.get('code'), 'no code');
    assert(p.get('state') === first.state, `state ${p.get('state')} is not the one sent`);
    assert(p.get('iss') === issuer, `iss ${p.get('iss')} is not ${issuer}`);
  });

  let tokens, idClaims;
  await check('authorizationCodeGrant: state, iss, PKCE, ID token signature (JWKS), nonce', async () => {
    tokens = await redeem(need(callback, 'the callback'), first);
    idClaims = tokens.claims();
    assert(idClaims, 'no ID token');
    assert(tokens.token_type.toLowerCase() === 'bearer', `token_type ${tokens.token_type}`);
    assert(tokens.refresh_token, 'no refresh token for offline_access');
    assert(idClaims.nonce === first.nonce, 'nonce');
    assert(idClaims.sub && idClaims.sub !== email, `sub ${idClaims.sub} is not an opaque id`);
    assert(idClaims.aud === clientId || (Array.isArray(idClaims.aud) && idClaims.aud.includes(clientId)), `aud ${JSON.stringify(idClaims.aud)}`);
  });

  await check('the ID token has at_hash matching the access token', async () => {
    const t = need(tokens, 'the tokens');
    const header = jwtPart(t.id_token, 0);
    const claims = jwtPart(t.id_token, 1);
    assert(header.kid, 'no kid in the ID token header');
    assert(claims.at_hash, 'no at_hash claim');
    const want = atHash(t.access_token, header.alg);
    assert(claims.at_hash === want, `at_hash ${claims.at_hash}, expected ${want}`);
  });

  await check('fetchUserInfo: sub matches the ID token, roles present', async () => {
    const t = need(tokens, 'the tokens');
    const info = await client.fetchUserInfo(config, t.access_token, need(idClaims, 'the ID token').sub);
    assert(info.sub === idClaims.sub, 'sub');
    assert(info.email === email, `email ${info.email}`);
    assert(Array.isArray(info.roles) && info.roles.length > 0, `roles ${JSON.stringify(info.roles)}`);
    assert(info.roles.every((r) => typeof r === 'string' && r.includes('@')), `roles ${JSON.stringify(info.roles)}`);
  });

  let rotated;
  await check('refreshTokenGrant rotates the refresh token', async () => {
    const old = need(tokens, 'the tokens').refresh_token;
    rotated = await client.refreshTokenGrant(config, old);
    assert(rotated.access_token, 'no access token');
    assert(rotated.refresh_token, 'no new refresh token');
    assert(rotated.refresh_token !== old, 'the refresh token was not rotated');
  });

  await check('the rotated-out refresh token then fails with invalid_grant', async () => {
    need(rotated, 'a rotation');
    await rejectsWith(client.refreshTokenGrant(config, tokens.refresh_token), 'invalid_grant');
  });

  await check('reusing it revoked the family: the new refresh token fails too', async () => {
    await rejectsWith(client.refreshTokenGrant(config, need(rotated, 'a rotation').refresh_token), 'invalid_grant');
  });

  // A second authorization while signed in: no login page, straight back (prompt=none).
  let second;
  await check('prompt=none while signed in returns a code without the login page', async () => {
    const req = await authorization({ prompt: 'none' });
    const url = await expectCallback(page, 'the callback', () => page.goto(req.url.href));
    second = await redeem(url, req);
    assert(second.refresh_token, 'no refresh token');
    assert(second.claims().sub === need(idClaims, 'the ID token').sub, 'another sub');
  });

  await check('tokenRevocation of a refresh token, then refreshing it fails', async () => {
    const rt = need(second, 'a second grant').refresh_token;
    await client.tokenRevocation(config, rt, { token_type_hint: 'refresh_token' });
    await rejectsWith(client.refreshTokenGrant(config, rt), 'invalid_grant');
  });

  await check('RP-initiated logout (buildEndSessionUrl) lands on the callback with state', async () => {
    const state = client.randomState();
    const url = client.buildEndSessionUrl(config, {
      id_token_hint: need(second ?? tokens, 'an ID token').id_token,
      post_logout_redirect_uri: redirectUri,
      state,
    });
    const back = await expectCallback(page, 'the post-logout redirect', () => page.goto(url.href));
    assert(back.searchParams.get('state') === state, `state ${back.searchParams.get('state')}`);
    assert(new URL(page.url()).pathname === '/callback', `the browser is at ${page.url()}`);
  });

  await check('after logout, prompt=none comes back with error=login_required', async () => {
    need(callback, 'a signed-in browser');
    const req = await authorization({ prompt: 'none' });
    const url = await expectCallback(page, 'the callback', () => page.goto(req.url.href));
    assert(url.searchParams.get('error') === 'login_required', `got ${url.search}`);
    // openid-client checks state and iss of the error response, then reports the error
    await rejectsWith(redeem(url, req), 'login_required');
  });

} catch (e) {
  fail('the relying-party suite stopped', e);
} finally {
  await browser?.close();
  callbacks.close();
}
process.exit(summary('rp'));

// The upstream provider's own check (upstream.mjs), without gatehouse: openid-client
// (a certified relying party) and a real browser (Debian's Chromium driven by
// playwright-core) sign in at it through its login page, code flow with PKCE S256,
// state and nonce, and the ID token must carry email, email_verified, name and groups.
// It also runs upstream.mjs as a command and checks its one line of output.
//
//   node tests/interop/upstream_selftest.mjs
//
// CHROMIUM overrides the browser (default /usr/bin/chromium). Prints one line per
// check, "ok   ..." or "FAIL ...", then "upstream: N passed, M failed", and exits
// non-zero on any failure. The browser is never downloaded: playwright-core only drives
// the system Chromium, with a fresh profile in a temporary directory.

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as client from 'openid-client';

import { launchBrowser } from './browser.mjs';
import { assert, authorizationRequest, check, describe, fail, jwtPart, need, redeemCode, same, startCallbackServer, summary, withTimeout } from './harness.mjs';
import { startUpstream, WRONG_PASSWORD_TEXT } from './upstream.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const SCOPE = 'openid email profile groups';
const CLIENT_ID = 'gatehouse-federation';
const CLIENT_SECRET = 'upstream selftest secret';
const ALICE = { sub: 'alice-0001', username: 'alice', password: 'alice password', email: 'alice@upstream.test', email_verified: true, name: 'Alice Upstream', groups: ['engineering', 'admins'] };
const BOB = { sub: 'bob-0002', username: 'bob', password: 'bob password', email: 'bob@upstream.test', email_verified: false, name: 'Bob Upstream', groups: [] };

// the redirect target: a tiny loopback server that captures code and state
const callbacks = await startCallbackServer();
const { redirectUri, expectCallback } = callbacks;

// --- the flow -----------------------------------------------------------------------

/** openid-client's view of `issuer`, authenticating with `auth` (default: client_secret_post). */
function discover(issuer, auth) {
  // http on loopback only: the upstream has no TLS
  return client.discovery(new URL(issuer), CLIENT_ID, CLIENT_SECRET, auth, { execute: [client.allowInsecureRequests] });
}

/** A fresh authorization request: its URL and the values the response is checked against. */
const authorization = (config, extra = {}) => authorizationRequest(config, redirectUri, SCOPE, extra);
const redeem = redeemCode;

/** Asserts the browser shows the upstream's login form (re-shown at .../login after a failed try). */
async function assertLoginForm(page, issuer) {
  const at = new URL(page.url());
  assert(at.origin === issuer && /^\/interaction\/[^/]+(\/login)?$/.test(at.pathname), `landed on ${page.url()}`);
  for (const sel of ['input[name=username]', 'input[name=password]', '#upstream-login']) {
    assert(await page.locator(sel).isVisible(), `${sel} is not visible`);
  }
  const button = (await page.locator('#upstream-login').textContent()).trim();
  assert(button === 'Sign in', `the button says ${JSON.stringify(button)}`);
}

/** Fills in the form and submits it; resolves to the main-frame response. */
async function signIn(page, username, password) {
  await page.fill('input[name=username]', username);
  await page.fill('input[name=password]', password);
  const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click('#upstream-login')]);
  return response;
}

/** The ID token claims for `account` that the federation relies on. */
function assertAccountClaims(claims, account, { groups = true } = {}) {
  assert(claims.sub === account.sub, `sub ${claims.sub}`);
  assert(claims.email === account.email, `email ${JSON.stringify(claims.email)}`);
  assert(claims.email_verified === account.email_verified, `email_verified ${JSON.stringify(claims.email_verified)} (expected ${account.email_verified})`);
  assert(claims.name === account.name, `name ${JSON.stringify(claims.name)}`);
  if (groups) assert(same(claims.groups, account.groups), `groups ${JSON.stringify(claims.groups)}`);
  else assert(!('groups' in claims), `groups ${JSON.stringify(claims.groups)} with groupsClaim false`);
}

/** Runs upstream.mjs as a command; resolves to { line, stdout(), exited } once it printed a line. */
function runCli(configPath) {
  const child = spawn(process.execPath, [join(here, 'upstream.mjs'), configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const line = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout.includes('\n')) resolve(stdout.slice(0, stdout.indexOf('\n')));
    });
    exited.then(({ code, signal }) => reject(new Error(`exited (${code ?? signal}) before printing: ${stderr.trim().slice(0, 600)}`)));
  });
  return { child, line, exited, output: () => stdout };
}

// --- the run ------------------------------------------------------------------------

const clients = [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [redirectUri] }];
const upstreams = [];
let browser;
try {
  let up;
  await check('startUpstream listens on a free port and serves discovery', async () => {
    up = await startUpstream({ port: 0, clients, accounts: [ALICE, BOB] });
    upstreams.push(up);
    assert(up.issuer === `http://127.0.0.1:${up.port}` && up.port > 0, `issuer ${up.issuer}, port ${up.port}`);
  });

  let config;
  await check('openid-client discovers it: S256 only, RS256 ID tokens, the four scopes', async () => {
    config = await discover(need(up, 'an upstream').issuer);
    const md = config.serverMetadata();
    assert(md.issuer === up.issuer, `issuer ${md.issuer}`);
    assert(same(md.code_challenge_methods_supported, ['S256']), `code_challenge_methods_supported ${JSON.stringify(md.code_challenge_methods_supported)}`);
    assert(same(md.id_token_signing_alg_values_supported, ['RS256']), `id_token_signing_alg_values_supported ${JSON.stringify(md.id_token_signing_alg_values_supported)}`);
    for (const s of SCOPE.split(' ')) assert(md.scopes_supported?.includes(s), `scope ${s} not advertised`);
    for (const m of ['client_secret_basic', 'client_secret_post']) assert(md.token_endpoint_auth_methods_supported?.includes(m), `${m} not advertised`);
  });

  browser = await launchBrowser('upstream');
  const { page, profile } = browser;

  const first = config && (await authorization(config));
  let loginPage = false;
  await check('the authorization request shows the username and password form', async () => {
    await page.goto(need(first, 'discovery').url.href);
    await assertLoginForm(page, up.issuer);
    loginPage = true;
  });

  await check('a wrong password shows "Invalid username or password" (HTTP 200) and the form again', async () => {
    assert(loginPage, 'not run: needs the login page');
    const response = await signIn(page, ALICE.username, `${ALICE.password} but wrong`);
    assert(response?.status() === 200, `HTTP ${response?.status()}`);
    await assertLoginForm(page, up.issuer);
    const text = (await page.locator('[role=alert]').textContent()).trim();
    assert(text === WRONG_PASSWORD_TEXT, `the error says ${JSON.stringify(text)}`);
    assert((await page.inputValue('input[name=username]')) === ALICE.username, 'the username was not kept');
  });

  await check('an unknown username gets the same error', async () => {
    assert(loginPage, 'not run: needs the login page');
    await signIn(page, 'mallory', ALICE.password);
    const text = (await page.locator('[role=alert]').textContent()).trim();
    assert(text === WRONG_PASSWORD_TEXT, `the error says ${JSON.stringify(text)}`);
  });

  let callback;
  await check('the right password (then automatic consent) sends the browser to the callback with code, state and iss', async () => {
    assert(loginPage, 'not run: needs the login page');
    await page.fill('input[name=username]', ALICE.username);
    await page.fill('input[name=password]', ALICE.password);
    callback = await expectCallback(page, 'the callback', () => page.click('#upstream-login'));
    const p = callback.searchParams;
    assert(!p.has('error'), `error=${p.get('error')} ${p.get('error_description') ?? ''}`);
    assert(p.get('code'), 'no code');
    assert(p.get('state') === first.state, `state ${p.get('state')} is not the one sent`);
    assert(p.get('iss') === up.issuer, `iss ${p.get('iss')}`);
  });

  let tokens;
  await check('authorizationCodeGrant (client_secret_post): PKCE, state, nonce, RS256 signature', async () => {
    tokens = await redeem(config, need(callback, 'the callback'), first);
    const header = jwtPart(tokens.id_token, 0);
    assert(header.alg === 'RS256', `alg ${header.alg}`);
    assert(header.kid, 'no kid in the ID token header');
    const jwks = await (await fetch(`${up.issuer}/jwks`)).json();
    assert(jwks.keys.some((k) => k.kid === header.kid && k.kty === 'RSA' && !k.d), `kid ${header.kid} is not in the JWKS (as a public RSA key)`);
    assert(tokens.claims().nonce === first.nonce, 'nonce');
    assert(tokens.claims().aud === CLIENT_ID || tokens.claims().aud?.includes?.(CLIENT_ID), `aud ${JSON.stringify(tokens.claims().aud)}`);
  });

  await check('the ID token carries email, email_verified, name and groups', async () => {
    assertAccountClaims(need(tokens, 'the tokens').claims(), ALICE);
  });

  await check('fetchUserInfo returns the same claims', async () => {
    const info = await client.fetchUserInfo(config, need(tokens, 'the tokens').access_token, ALICE.sub);
    assertAccountClaims(info, ALICE);
  });

  await check('a second sign-in (prompt=login, client_secret_basic) as another account: email_verified false, groups empty', async () => {
    const basic = await discover(up.issuer, client.ClientSecretBasic(CLIENT_SECRET));
    const req = await authorization(basic, { prompt: 'login' });
    await page.goto(req.url.href);
    await assertLoginForm(page, up.issuer);
    await page.fill('input[name=username]', BOB.username);
    await page.fill('input[name=password]', BOB.password);
    const url = await expectCallback(page, 'the callback', () => page.click('#upstream-login'));
    const t = await redeem(basic, url, req);
    assertAccountClaims(t.claims(), BOB);
  });

  await check('while signed in, a new authorization returns a code without any page', async () => {
    const req = await authorization(config);
    const url = await expectCallback(page, 'the callback', () => page.goto(req.url.href));
    const t = await redeem(config, url, req);
    assert(t.claims().sub === BOB.sub, `sub ${t.claims().sub}`);
  });

  await check('setAccounts: the next ID token (same session) says what the new account list says', async () => {
    const changed = { ...BOB, name: 'Bob Renamed', groups: ['new'] };
    up.setAccounts([ALICE, changed]);
    try {
      const req = await authorization(config);
      const url = await expectCallback(page, 'the callback', () => page.goto(req.url.href));
      assertAccountClaims((await redeem(config, url, req)).claims(), changed);
    } finally {
      up.setAccounts([ALICE, BOB]);
    }
  });

  await check('a code is good once: reusing it fails with invalid_grant', async () => {
    const req = await authorization(config);
    const url = await expectCallback(page, 'the callback', () => page.goto(req.url.href));
    await redeem(config, url, req);
    let error;
    await redeem(config, url, req).catch((e) => (error = e));
    assert(error?.error === 'invalid_grant', `got ${error ? describe(error) : 'tokens'}`);
  });

  await check('with groupsClaim false the ID token has no groups claim (same browser, another port)', async () => {
    const other = await startUpstream({ clients, accounts: [ALICE], groupsClaim: false });
    upstreams.push(other);
    const cfg = await discover(other.issuer);
    const req = await authorization(cfg);
    await page.goto(req.url.href);
    // a fresh login form: the first upstream's session cookie is not this one's
    await assertLoginForm(page, other.issuer);
    await page.fill('input[name=username]', ALICE.username);
    await page.fill('input[name=password]', ALICE.password);
    const url = await expectCallback(page, 'the callback', () => page.click('#upstream-login'));
    assertAccountClaims((await redeem(cfg, url, req)).claims(), ALICE, { groups: false });
  });

  await check('as a command it prints one line {"issuer":...}, serves it, and stops on SIGTERM', async () => {
    const configPath = join(profile, 'upstream.json');
    writeFileSync(configPath, JSON.stringify({ port: 0, clients, accounts: [ALICE] }));
    const cli = runCli(configPath);
    try {
      const line = await withTimeout(cli.line, 'the issuer line');
      assert(/^\{"issuer":"http:\/\/127\.0\.0\.1:\d+"\}$/.test(line), `the line is ${JSON.stringify(line)}`);
      const { issuer } = JSON.parse(line);
      const md = await discover(issuer).then((c) => c.serverMetadata());
      assert(md.issuer === issuer, `issuer ${md.issuer}`);
    } finally {
      cli.child.kill('SIGTERM');
    }
    const { code, signal } = await withTimeout(cli.exited, 'the command to exit');
    assert(code === 0, `exit ${code ?? signal}`);
    assert(cli.output().split('\n').filter(Boolean).length === 1, `stdout is ${JSON.stringify(cli.output())}`);
  });
} catch (e) {
  fail('the upstream selftest stopped', e);
} finally {
  await browser?.close();
  await Promise.all(upstreams.map((u) => u.close()));
  callbacks.close();
}
process.exit(summary('upstream'));

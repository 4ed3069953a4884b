// The federation interop suite: people sign in to gatehouse through upstream OpenID
// providers (panva's certified oidc-provider, tests/interop/upstream.mjs), in a real
// browser (Debian's Chromium driven by playwright-core), while openid-client (a
// certified relying party) runs the authorization request as the first-party client
// `gatehouse-admin` and validates what comes back.
//
//   node tests/interop/federation.mjs <gatehouse binary> <owner email> [owner password]
//
// The arguments may instead come from INTEROP_GATEHOUSE, INTEROP_EMAIL and
// INTEROP_PASSWORD (the password is better passed that way). CHROMIUM overrides the
// browser (default /usr/bin/chromium).
//
// It runs everything itself, on free loopback ports, in a temporary directory: two
// upstreams in this process ("Corp SSO": trusted for email, provisions, maps the
// groups claim; "Partner ID": neither trusted nor provisioning) and a third provider
// whose issuer is a port nobody listens on; a gatehouse of its own (`bootstrap`, then
// `serve` with a GATEHOUSE_CONFIG file naming the three providers, every other
// GATEHOUSE_* variable cleared). Prints one line per check, "ok   ..." or "FAIL ...",
// the server's warnings and errors when something failed, then
// "federation: N passed, M failed", and exits non-zero on any failure.

import { execFile, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve as absolute } from 'node:path';

import * as client from 'openid-client';

import { launchBrowser } from './browser.mjs';
import { assert, authorizationRequest, check, counts, fail, need, redeemCode, same, startCallbackServer, summary, whereIs, withTimeout } from './harness.mjs';
import { startUpstream, WRONG_PASSWORD_TEXT as UPSTREAM_WRONG_PASSWORD } from './upstream.mjs';

const binArg = process.argv[2] || process.env.INTEROP_GATEHOUSE;
const ownerEmail = process.argv[3] || process.env.INTEROP_EMAIL;
const ownerPassword = process.argv[4] || process.env.INTEROP_PASSWORD;
if (!binArg || !ownerEmail || !ownerPassword) {
  console.error('usage: node federation.mjs <gatehouse binary> <owner email> [owner password]  (or INTEROP_GATEHOUSE, INTEROP_EMAIL, INTEROP_PASSWORD)');
  process.exit(2);
}
const bin = absolute(binArg); // gatehouse runs in a directory of its own
const CLIENT_ID = 'gatehouse-admin';
const SCOPE = 'openid email profile';
const ORG = 'acme';
const GROUP = `orgs/${ORG}/groups/eng`;

// The providers, as gatehouse's configuration names them.
const CORP = { id: 'corp', name: 'Corp SSO', secret: 'corp client secret' };
const PARTNER = { id: 'partner', name: 'Partner ID', secret: 'partner client secret' };
const LEGACY = { id: 'legacy', name: 'Legacy SSO', secret: 'legacy client secret' };

// People at Corp SSO.
const person = (sub, username, email, extra = {}) => ({ sub, username, password: `${username} upstream password`, email, email_verified: true, name: `${username} at upstream`, groups: [], ...extra });
const ADA = person('corp-ada', 'ada', 'ada@corp.test'); // new: provisioned
const GRACE = person('corp-grace', 'grace', 'grace@acme.test'); // has a gatehouse account made by the admin API
const OWNER = person('corp-owner', 'owner', ownerEmail); // the instance owner
const EVE = person('corp-eve', 'eve', 'eve@corp.test', { email_verified: false });
const LIN = person('corp-lin', 'lin', 'lin@corp.test', { groups: ['eng'] });
const CORP_ACCOUNTS = [ADA, GRACE, OWNER, EVE, LIN];
// People at Partner ID.
const NOBODY = person('partner-nobody', 'nobody', 'nobody@partner.test');
const GRACE_AT_PARTNER = person('partner-grace', 'grace', GRACE.email);

// --- processes ----------------------------------------------------------------------

/** A port that was free a moment ago. */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function run(file, args, options) {
  return new Promise((resolve, reject) => {
    execFile(file, args, options, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')}: ${error.message} ${stderr}`.trim()));
      else resolve(stdout);
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` (resolving to a truthy value when done) for at most `ms`. */
async function until(what, probe, ms = 10_000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (${last.message})` : ''}`);
    await sleep(100);
  }
}

// --- the setup ----------------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), 'gatehouse-federation-'));
const logPath = join(work, 'server.log');
const gatehousePort = await freePort();
const deadPort = await freePort(); // nothing listens there
const issuer = `http://127.0.0.1:${gatehousePort}`;
const callbackOf = (p) => `${issuer}/federation/${p.id}/callback`;
const upstreamClient = (p) => [{ client_id: 'gatehouse', client_secret: p.secret, redirect_uris: [callbackOf(p)] }];

const callbacks = await startCallbackServer();
const { redirectUri, expectCallback } = callbacks;
const upstreams = [];
let server; // the gatehouse process
let serverExit;
const browsers = [];

function configFile(corp, partner) {
  const q = JSON.stringify;
  return `# written by tests/interop/federation.mjs
[[federation.providers]]
id = ${q(CORP.id)}
display_name = ${q(CORP.name)}
issuer = ${q(corp.issuer)}
client_id = "gatehouse"
client_secret = ${q(CORP.secret)}
scopes = ["openid", "email", "profile", "groups"]
trust_email = true
provision = true
groups_claim = "groups"
group_mappings = [{ upstream = "eng", group = ${q(GROUP)} }]

[[federation.providers]]
id = ${q(PARTNER.id)}
display_name = ${q(PARTNER.name)}
issuer = ${q(partner.issuer)}
client_id = "gatehouse"
client_secret = ${q(PARTNER.secret)}
scopes = ["openid", "email", "profile"]
trust_email = false
provision = false

[[federation.providers]]
id = ${q(LEGACY.id)}
display_name = ${q(LEGACY.name)}
issuer = "http://127.0.0.1:${deadPort}"
client_id = "gatehouse"
client_secret = ${q(LEGACY.secret)}
`;
}

/** Starts the upstreams, bootstraps and serves gatehouse; resolves to the Corp upstream. */
async function setUp() {
  const corp = await startUpstream({ clients: upstreamClient(CORP), accounts: CORP_ACCOUNTS });
  upstreams.push(corp);
  const partner = await startUpstream({ clients: upstreamClient(PARTNER), accounts: [NOBODY, GRACE_AT_PARTNER] });
  upstreams.push(partner);
  const configPath = join(work, 'gatehouse.toml');
  writeFileSync(configPath, configFile(corp, partner));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GATEHOUSE_')));
  Object.assign(env, { GATEHOUSE_CONFIG: configPath, GATEHOUSE_LISTEN: `127.0.0.1:${gatehousePort}`, GATEHOUSE_LOG: 'info' });
  await run(bin, ['bootstrap', '--org', ORG, '--owner-email', ownerEmail], { cwd: work, env: { ...env, GATEHOUSE_BOOTSTRAP_PASSWORD: ownerPassword } });
  const log = openSync(logPath, 'a');
  server = spawn(bin, ['serve'], { cwd: work, env, stdio: ['ignore', 'ignore', log] });
  closeSync(log);
  serverExit = new Promise((resolve) => server.once('exit', (code, signal) => resolve(code ?? signal)));
  serverExit.then((how) => {
    if (server) console.error(`federation: gatehouse exited (${how})`);
  });
  await until('/readyz', async () => (await fetch(`${issuer}/readyz`)).ok);
  // both upstreams discovered: their buttons are links
  await until('the upstreams to be discovered', async () => {
    const html = await (await fetch(`${issuer}/login`)).text();
    return [CORP, PARTNER].every((p) => new RegExp(`<a [^>]*data-provider="${p.id}"`).test(html));
  });
  return corp;
}

/** The server's warnings and errors (JSON lines), for a failure report. */
function serverTrouble() {
  let text = '';
  try {
    text = readFileSync(logPath, 'utf8');
  } catch {}
  return text.split('\n').filter((l) => /"level":"(WARN|ERROR)"/i.test(l) || (l && !l.startsWith('{')));
}

// --- the relying party --------------------------------------------------------------

let config;

/** A fresh authorization request as gatehouse-admin: its URL and the values the response is checked against. */
const authorization = (extra = {}) => authorizationRequest(need(config, 'discovery'), redirectUri, SCOPE, extra);

/** The code grant for the response at `url` to `req`, with every check openid-client makes. */
const redeem = (url, req) => redeemCode(need(config, 'discovery'), url, req);

/** RP-initiated logout with `tokens`' ID token; resolves once the browser is back. */
async function logOut(page, tokens) {
  const state = client.randomState();
  const url = client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token, post_logout_redirect_uri: redirectUri, state });
  const back = await expectCallback(page, 'the post-logout redirect', () => page.goto(url.href));
  assert(back.searchParams.get('state') === state, `logout came back with state ${back.searchParams.get('state')}`);
}

// --- the browser's steps ------------------------------------------------------------

/** Opens the authorization request; asserts it shows gatehouse's login page. */
async function openLogin(page, req) {
  await page.goto(req.url.href);
  const at = new URL(page.url());
  assert(at.origin === issuer && at.pathname === '/login', `the authorization request landed on ${page.url()}`);
}

const providerLink = (page, p) => page.locator(`a.provider[data-provider="${p.id}"]`);

/** Clicks "Continue with <provider>" on the login page. */
async function continueWith(page, p) {
  const link = providerLink(page, p);
  assert((await link.count()) === 1, `no link a.provider[data-provider="${p.id}"]${await whereIs(page)}`);
  const text = (await link.textContent()).trim();
  assert(text === `Continue with ${p.name}`, `the link says ${JSON.stringify(text)}`);
  await link.click();
}

/** Waits for the upstream's login form and submits it for `account`. */
async function upstreamSignIn(page, up, account, password = account.password) {
  await page.waitForSelector('#upstream-login');
  const at = new URL(page.url());
  assert(at.origin === up.issuer && at.pathname.startsWith('/interaction/'), `expected the upstream's login form, the browser is at ${page.url()}`);
  await page.fill('input[name=username]', account.username);
  await page.fill('input[name=password]', password);
  await page.click('#upstream-login');
}

/**
 * Runs `action`, which ends with the upstream sending the browser to gatehouse's
 * callback for `p`; resolves to that navigation's response (its URL is the exact one
 * the upstream redirected to). With `land`, also waits until the browser shows it.
 */
async function viaCallback(page, p, action, { land = false } = {}) {
  const prefix = `${callbackOf(p)}?`;
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().startsWith(prefix) && r.request().isNavigationRequest()),
    action(),
  ]);
  if (land) await page.waitForURL((u) => u.href.startsWith(prefix), { waitUntil: 'load' });
  return response;
}

/**
 * Holds back the browser's next request to a URL starting with `prefix`, a redirect
 * hop too (which page.route cannot see: it routes only the first request of a
 * redirect chain), answering it with a placeholder page instead of sending it, by
 * Chromium's Fetch domain. Resolves to { url, release }: `url` resolves to the URL
 * held back; release() lets requests through again.
 */
async function holdBack(page, prefix) {
  const cdp = await page.context().newCDPSession(page);
  let held;
  const url = new Promise((resolve) => (held = resolve));
  cdp.on('Fetch.requestPaused', (e) => {
    const answer = e.request.url.startsWith(prefix)
      ? (held(e.request.url),
        cdp.send('Fetch.fulfillRequest', {
          requestId: e.requestId,
          responseCode: 200,
          responseHeaders: [{ name: 'content-type', value: 'text/html; charset=utf-8' }],
          body: Buffer.from('<!doctype html><title>held back</title><p>held back by the test</p>').toString('base64'),
        }))
      : cdp.send('Fetch.continueRequest', { requestId: e.requestId });
    answer.catch(() => {});
  });
  await cdp.send('Fetch.enable', { patterns: [{ urlPattern: `${prefix}*`, requestStage: 'Request' }] });
  return {
    url,
    release: async () => {
      await cdp.send('Fetch.disable').catch(() => {});
      await cdp.detach().catch(() => {});
    },
  };
}

/** The page's heading and its whole text. */
async function shown(page) {
  const h1 = page.locator('h1');
  return { title: (await h1.count()) ? (await h1.first().textContent()).trim() : '', text: await page.locator('body').innerText() };
}

/** Asserts the browser has no gatehouse session: /account sends it to /login. */
async function assertSignedOut(page) {
  await page.goto(`${issuer}/account`);
  const at = new URL(page.url());
  assert(at.pathname === '/login', `/account shows ${page.url()}, so the browser has a session`);
}

/**
 * Signs `account` in at upstream `up` through provider `p`, starting from a fresh
 * authorization request, and expects to be refused with `title` (403). Asserts no
 * authorization response reached the relying party and no session was made.
 */
async function expectRefusal(page, up, p, account, title) {
  const before = callbacks.arrivals();
  const req = await authorization();
  await openLogin(page, req);
  await continueWith(page, p);
  const response = await viaCallback(page, p, () => upstreamSignIn(page, up, account), { land: true });
  const { title: got, text } = await shown(page);
  assert(response.status() === 403, `HTTP ${response.status()} showing ${JSON.stringify(got)}`);
  assert(got === title, `the page says ${JSON.stringify(got)}: ${JSON.stringify(text.slice(0, 300))}`);
  await sleep(200); // anything on its way to the relying party arrives by now
  assert(callbacks.arrivals() === before, 'the relying party got an authorization response');
  await assertSignedOut(page);
  return text;
}

/**
 * The whole federated login for `account` at `up` through `p`, from a fresh
 * authorization request; `form: false` when the upstream session answers without
 * one. Resolves to { tokens, claims, callback } (callback: the URL the upstream sent
 * the browser to gatehouse with).
 */
async function federatedLogin(page, up, p, account, { form = true } = {}) {
  const req = await authorization();
  await openLogin(page, req);
  let response;
  const url = await expectCallback(page, 'the authorization response', async () => {
    response = await viaCallback(page, p, async () => {
      await continueWith(page, p);
      if (form) await upstreamSignIn(page, up, account);
    });
  });
  assert(response.status() === 303, `gatehouse's callback answered HTTP ${response.status()}`);
  assert(!url.searchParams.has('error'), `error=${url.searchParams.get('error')} ${url.searchParams.get('error_description') ?? ''}`);
  const tokens = await redeem(url, req);
  return { tokens, claims: tokens.claims(), callback: response.url() };
}

/** Signs in with the password on the login page the browser shows. */
async function passwordSignIn(page, email, password) {
  await page.fill('form[action="/login"] input[name=email]', email);
  await page.fill('form[action="/login"] input[name=password]', password);
  await page.click('form[action="/login"] button[type=submit]');
}

// --- the admin API ------------------------------------------------------------------

let adminToken;

async function api(method, path, body) {
  const headers = { authorization: `Bearer ${need(adminToken, 'the owner\'s admin token')}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(`${issuer}/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.status, json, text };
}

async function apiOk(method, path, body, status = 200) {
  const r = await api(method, path, body);
  assert(r.status === status, `${method} /v1${path}: HTTP ${r.status} ${r.text.slice(0, 400)}`);
  return r.json;
}

/** Every audit event, oldest first. */
async function auditEvents() {
  const events = [];
  let cursor;
  do {
    const page = await apiOk('GET', `/audit-events?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    events.push(...page.events);
    cursor = page.next_cursor;
  } while (cursor);
  return events;
}

/** The audit events with `action` whose JSON mentions every one of `words`. */
function findEvents(events, action, ...words) {
  return events.filter((e) => e.action === action && words.every((w) => JSON.stringify(e).includes(w)));
}

/** Whether `email` may read the organization, by POST /v1/check. */
async function canRead(email) {
  const r = await apiOk('POST', '/check', { principal: `user:${email}`, permission: 'resourcemanager.organizations.get', resource: `orgs/${ORG}` });
  return r.allowed;
}

// --- the run ------------------------------------------------------------------------

const started = Date.now();
try {
  let corp;
  const ready = await check('gatehouse serves with three providers from GATEHOUSE_CONFIG and discovers the two upstreams', async () => {
    corp = await setUp();
    config = await client.discovery(new URL(issuer), CLIENT_ID, { token_endpoint_auth_method: 'none' }, client.None(), {
      execute: [client.allowInsecureRequests], // http on loopback only
    });
  });
  if (!ready) throw new Error('no gatehouse to test');
  const partner = upstreams[1];

  const main = await launchBrowser('federation');
  browsers.push(main);
  const { page, context } = main;
  const fresh = () => context.clearCookies(); // a new person at this browser

  // --- 8. an upstream that is down; the owner's password login on that page -------

  const ownerReq = await authorization();
  await check('an unreachable provider: its button is disabled and "is unavailable right now" is shown; the others are links', async () => {
    await openLogin(page, ownerReq);
    const disabled = page.locator(`span.provider.disabled[data-provider="${LEGACY.id}"]`);
    assert((await disabled.count()) === 1, 'no span.provider.disabled for the unreachable provider');
    assert((await page.locator(`a[data-provider="${LEGACY.id}"]`).count()) === 0, 'the unreachable provider also has a link');
    const { text } = await shown(page);
    assert(text.includes(`${LEGACY.name} is unavailable right now`), `the page does not say "${LEGACY.name} is unavailable right now": ${JSON.stringify(text)}`);
    for (const p of [CORP, PARTNER]) assert((await providerLink(page, p).count()) === 1, `no link for ${p.id}`);
  });

  let ownerSub;
  await check('the password form on that page still signs the owner in; the access token is for <issuer>/v1', async () => {
    const url = await expectCallback(page, 'the authorization response', () => passwordSignIn(page, ownerEmail, ownerPassword));
    const tokens = await redeem(url, ownerReq);
    ownerSub = tokens.claims().sub;
    const at = JSON.parse(Buffer.from(tokens.access_token.split('.')[1], 'base64url'));
    const aud = [at.aud].flat();
    assert(aud.includes(`${issuer}/v1`), `the access token's aud is ${JSON.stringify(at.aud)}`);
    assert(!same(tokens.claims().amr, ['fed']), `a password login has amr ${JSON.stringify(tokens.claims().amr)}`);
    adminToken = tokens.access_token;
  });

  await check('GET /federation/<unreachable>/start answers 503 with a page saying it is unavailable', async () => {
    const response = await page.goto(`${issuer}/federation/${LEGACY.id}/start?pending=x`);
    const { title, text } = await shown(page);
    assert(response.status() === 503, `HTTP ${response.status()} showing ${JSON.stringify(title)}`);
    assert(text.includes(`${LEGACY.name} is unavailable right now`), `the page says ${JSON.stringify(text.slice(0, 300))}`);
  });

  // --- what the admin sets up -----------------------------------------------------

  let graceId;
  await check('admin API: a verified user with the address a Corp account has, and a group with a role', async () => {
    const user = await apiOk('POST', '/users', { email: GRACE.email, display_name: 'Grace Local', password: 'grace gatehouse password', email_verified: true }, 201);
    graceId = user.id;
    assert(graceId, `POST /v1/users returned ${JSON.stringify(user)}`);
    await apiOk('POST', `/orgs/${ORG}/groups`, { slug: 'eng', display_name: 'Eng' }, 201);
    const policy = await apiOk('GET', `/orgs/${ORG}/policy`);
    await apiOk('PUT', `/orgs/${ORG}/policy`, { etag: policy.etag, bindings: [...policy.bindings, { role: 'viewer', members: [`group:${GROUP}`] }] });
  });

  // --- 1. provisioning -------------------------------------------------------------

  let ada;
  await fresh();
  await check('the upstream\'s wrong-password page: "Invalid username or password", still at the upstream', async () => {
    await openLogin(page, await authorization());
    await continueWith(page, CORP);
    await Promise.all([page.waitForNavigation(), upstreamSignIn(page, corp, ADA, 'not the password')]);
    const alert = (await page.locator('[role=alert]').textContent()).trim();
    assert(alert === UPSTREAM_WRONG_PASSWORD, `the upstream says ${JSON.stringify(alert)}`);
    assert(new URL(page.url()).origin === corp.issuer, `the browser is at ${page.url()}`);
  });

  await check('provisioning: a new Corp person signs in through "Continue with Corp SSO"; the relying party gets tokens, the ID token validates', async () => {
    ada = await federatedLogin(page, corp, CORP, ADA);
    assert(ada.claims.sub !== ownerSub && !ada.claims.sub.includes('@'), `sub ${ada.claims.sub}`);
    assert(ada.claims.email === ADA.email, `email ${ada.claims.email}`);
  });

  await check('provisioning: the ID token of a federated login has amr ["fed"]', async () => {
    const { claims } = need(ada, 'the provisioned login');
    assert(same(claims.amr, ['fed']), `amr ${JSON.stringify(claims.amr)}`);
  });

  await check('provisioning: userinfo says the upstream\'s email, verified', async () => {
    const t = need(ada, 'the provisioned login');
    const info = await client.fetchUserInfo(config, t.tokens.access_token, t.claims.sub);
    assert(info.email === ADA.email, `email ${info.email}`);
    assert(info.email_verified === true, `email_verified ${info.email_verified}`);
  });

  await check('the account page of a provisioned account: Corp SSO is "your only way to sign in" (no Unlink), "Link Partner ID" offered', async () => {
    need(ada, 'the provisioned login');
    await page.goto(`${issuer}/account`);
    const { text } = await shown(page);
    assert(new URL(page.url()).pathname === '/account', `the browser is at ${page.url()}`);
    assert(text.includes(ADA.email), 'the page does not name the account');
    assert(text.includes('your only way to sign in'), `no "your only way to sign in": ${JSON.stringify(text)}`);
    assert((await page.locator('form[action="/account/unlink"]').count()) === 0, 'an Unlink button is offered');
    const link = page.locator(`form[action="/federation/${PARTNER.id}/start"][method=post] button`);
    assert((await link.count()) === 1 && (await link.textContent()).trim() === `Link ${PARTNER.name}`, 'no "Link Partner ID" button');
  });

  await check('posting the unlink form anyway for that only way to sign in is refused (409), and the identity stays linked', async () => {
    need(ada, 'the provisioned login');
    // the account page has no form then, so take this browser's CSRF token from another page's form
    await page.goto(`${issuer}/login`);
    const csrf = await page.locator('input[name=csrf_token]').first().inputValue();
    const r = await page.request.post(`${issuer}/account/unlink`, { form: { csrf_token: csrf, issuer: corp.issuer, subject: ADA.sub }, maxRedirects: 0 });
    assert(r.status() === 409, `HTTP ${r.status()} ${(await r.text()).slice(0, 200)}`);
    await page.goto(`${issuer}/account`);
    assert((await shown(page)).text.includes('your only way to sign in'), 'the identity is no longer listed');
  });

  await check('after logout, signing in again through Corp SSO (its session answers) gives the same sub', async () => {
    const first = need(ada, 'the provisioned login');
    await logOut(page, first.tokens);
    const again = await federatedLogin(page, corp, CORP, ADA, { form: false });
    assert(again.claims.sub === first.claims.sub, `sub ${again.claims.sub}, first ${first.claims.sub}`);
  });

  await check('in a fresh browser, the same Corp person signs in with the form and gets the same sub', async () => {
    const other = await launchBrowser('federation-2');
    browsers.push(other);
    try {
      const again = await federatedLogin(other.page, corp, CORP, ADA);
      assert(again.claims.sub === need(ada, 'the provisioned login').claims.sub, `sub ${again.claims.sub}`);
    } finally {
      await other.close();
    }
  });

  // --- 2, 4, 6. refusals -----------------------------------------------------------

  await fresh();
  await check('a provider that does not provision, an address without an account: 403 "No account is linked to this identity", no tokens, no session', async () => {
    const text = await expectRefusal(page, partner, PARTNER, NOBODY, 'No account is linked to this identity');
    assert(text.includes(PARTNER.name), 'the page does not name the provider');
  });

  await fresh();
  await check('link by email: a Corp person whose verified address has an account lands on that account\'s sub', async () => {
    const grace = await federatedLogin(page, corp, CORP, GRACE);
    assert(grace.claims.sub === need(graceId, 'the user made by the admin API'), `sub ${grace.claims.sub}, the user is ${graceId}`);
  });

  await fresh();
  await check('a provider not trusted for email, an address with an account: 403 "An account with this address exists"', async () => {
    await expectRefusal(page, partner, PARTNER, GRACE_AT_PARTNER, 'An account with this address exists');
  });

  await fresh();
  await check('an unverified upstream address with provisioning on: 403 "Your email address is not verified"', async () => {
    await expectRefusal(page, corp, CORP, EVE, 'Your email address is not verified');
  });

  // --- 5. the instance owner ---------------------------------------------------------

  await fresh();
  await check('the instance owner\'s address, verified, through the trusted provider: 403 "Sign in with your password to link this account"', async () => {
    await expectRefusal(page, corp, CORP, OWNER, 'Sign in with your password to link this account');
  });

  await fresh();
  let linked = false;
  await check('the owner signs in with the password, clicks "Link Corp SSO" on /account, signs in upstream: "The provider is linked"', async () => {
    await page.goto(`${issuer}/login`);
    await Promise.all([page.waitForNavigation(), passwordSignIn(page, ownerEmail, ownerPassword)]);
    await page.goto(`${issuer}/account`);
    assert(new URL(page.url()).pathname === '/account', `the browser is at ${page.url()}${await whereIs(page)}`);
    const link = page.getByRole('button', { name: `Link ${CORP.name}` });
    assert((await link.count()) === 1, `no "Link ${CORP.name}" button${await whereIs(page)}`);
    await link.click();
    await upstreamSignIn(page, corp, OWNER);
    await page.waitForURL((u) => u.pathname === '/account' && u.origin === issuer, { waitUntil: 'load' });
    const at = new URL(page.url());
    assert(at.searchParams.get('done') === 'linked', `the browser is at ${page.url()}`);
    const notice = (await page.locator('[role=status]').textContent()).trim();
    assert(notice.startsWith('The provider is linked'), `the notice says ${JSON.stringify(notice)}`);
    linked = true;
  });

  await fresh();
  await check('afterwards the owner signs in through Corp SSO and gets the owner\'s sub', async () => {
    assert(linked, 'not run: needs the linked provider');
    const owner = await federatedLogin(page, corp, CORP, OWNER);
    assert(owner.claims.sub === need(ownerSub, 'the owner\'s password login'), `sub ${owner.claims.sub}, the owner is ${ownerSub}`);
  });

  await check('"Unlink" (the owner has a password) goes to /account?done=unlinked, and "Link Corp SSO" is offered again', async () => {
    assert(linked, 'not run: needs the linked provider');
    await page.goto(`${issuer}/account`);
    const unlink = page.locator('form[action="/account/unlink"] button[type=submit]');
    assert((await unlink.count()) === 1, `expected one Unlink button, found ${await unlink.count()}${await whereIs(page)}`);
    await Promise.all([page.waitForNavigation(), unlink.click()]);
    const at = new URL(page.url());
    assert(at.pathname === '/account' && at.searchParams.get('done') === 'unlinked', `the browser is at ${page.url()}`);
    const notice = (await page.locator('[role=status]').textContent()).trim();
    assert(notice.startsWith('The provider is unlinked'), `the notice says ${JSON.stringify(notice)}`);
    assert((await page.getByRole('button', { name: `Link ${CORP.name}` }).count()) === 1, 'no "Link Corp SSO" button');
  });

  await check('linking a Corp identity that belongs to another account is refused: 409 "This identity belongs to another account"', async () => {
    assert(linked, 'not run: needs the owner signed in');
    await context.clearCookies({ name: /^upstream\d+_/ }); // sign in at Corp afresh, as somebody else
    await page.goto(`${issuer}/account`);
    await page.getByRole('button', { name: `Link ${CORP.name}` }).click();
    const response = await viaCallback(page, CORP, () => upstreamSignIn(page, corp, ADA), { land: true });
    const { title } = await shown(page);
    assert(response.status() === 409, `HTTP ${response.status()} showing ${JSON.stringify(title)}`);
    assert(title === 'This identity belongs to another account', `the page says ${JSON.stringify(title)}`);
    await page.goto(`${issuer}/account`);
    assert((await page.locator('form[action="/account/unlink"]').count()) === 0, 'the account page lists a linked identity now');
  });

  await fresh();
  await check('once unlinked, the owner through Corp SSO is refused again ("Sign in with your password to link this account")', async () => {
    assert(linked, 'not run: needs the linked provider');
    await expectRefusal(page, corp, CORP, OWNER, 'Sign in with your password to link this account');
  });

  // --- 7. group mapping ------------------------------------------------------------

  await fresh();
  await check('group mapping: a Corp person with groups ["eng"] becomes a member of orgs/acme/groups/eng (and holds its role)', async () => {
    assert(!(await canRead(LIN.email).catch(() => false)), 'the person could read the organization before signing in');
    await federatedLogin(page, corp, CORP, LIN);
    await until('the membership to take effect', () => canRead(LIN.email), 3000);
    const added = findEvents(await auditEvents(), 'group.member.add', GROUP, LIN.email);
    assert(added.length === 1, `group.member.add events for the person: ${JSON.stringify(added)}`);
  });

  await fresh();
  await check('group mapping: after the upstream lists no groups for the person and they sign in again, the membership is gone', async () => {
    corp.setAccounts(CORP_ACCOUNTS.map((a) => (a === LIN ? { ...LIN, groups: [] } : a)));
    await federatedLogin(page, corp, CORP, LIN);
    await until('the membership to end', async () => !(await canRead(LIN.email)), 3000);
    const removed = findEvents(await auditEvents(), 'group.member.remove', GROUP, LIN.email);
    assert(removed.length === 1, `group.member.remove events for the person: ${JSON.stringify(removed)}`);
  });

  // --- 9. the state binding --------------------------------------------------------

  await fresh();
  let captured;
  await check('state binding: replaying the exact callback URL the upstream sent gives 400 and no session', async () => {
    const first = await federatedLogin(page, corp, CORP, ADA);
    captured = first.callback;
    const flowCookie = (await context.cookies(issuer)).some((c) => c.name.endsWith('gatehouse_federation'));
    await logOut(page, first.tokens);
    const before = callbacks.arrivals();
    const response = await page.goto(captured);
    const { title } = await shown(page);
    assert(response.status() === 400, `HTTP ${response.status()} showing ${JSON.stringify(title)}`);
    assert(title === 'This sign-in link does not work', `the page says ${JSON.stringify(title)}${flowCookie ? '' : ' (the flow cookie was gone)'}`);
    assert(callbacks.arrivals() === before, 'the relying party got an authorization response');
    await assertSignedOut(page);
  });

  await check('state binding: a callback with a tampered state gives 400 and no session; the untampered one then completes', async () => {
    // Corp's session is open, so the upstream answers at once; hold its redirect back.
    await context.clearCookies({ name: 'gatehouse_session' });
    const req = await authorization();
    await openLogin(page, req);
    const hold = await holdBack(page, `${callbackOf(CORP)}?`);
    let held;
    try {
      await continueWith(page, CORP);
      held = await withTimeout(hold.url, 'the upstream to redirect back');
    } finally {
      await hold.release();
    }
    const url = new URL(held);
    const state = url.searchParams.get('state');
    const flipped = state.slice(0, -1) + (state.endsWith('A') ? 'B' : 'A');
    url.searchParams.set('state', flipped);
    const before = callbacks.arrivals();
    const response = await page.goto(url.href);
    const { title } = await shown(page);
    assert(response.status() === 400, `HTTP ${response.status()} showing ${JSON.stringify(title)}`);
    assert(title === 'This sign-in link does not work', `the page says ${JSON.stringify(title)}`);
    assert(callbacks.arrivals() === before, 'the relying party got an authorization response');
    await assertSignedOut(page);
    const back = await expectCallback(page, 'the authorization response', () => page.goto(held));
    const tokens = await redeem(back, req);
    assert(tokens.claims().sub === need(ada, 'the provisioned login').claims.sub, `sub ${tokens.claims().sub}`);
  });

  // --- the audit log ---------------------------------------------------------------

  await check('the audit log: federation.provision, federation.link (by email, by account), federation.unlink, federation.refused, login.success with the provider', async () => {
    const events = await auditEvents();
    const missing = [];
    const expect = (what, found) => found.length > 0 || missing.push(what);
    expect('federation.provision of the new Corp person', findEvents(events, 'federation.provision', ADA.email, CORP.id));
    expect('federation.provision of the grouped Corp person', findEvents(events, 'federation.provision', LIN.email, CORP.id));
    expect('federation.link by email', findEvents(events, 'federation.link', GRACE.email, '"email"'));
    expect('federation.link from the account page', findEvents(events, 'federation.link', ownerEmail, '"account"'));
    expect('federation.unlink', findEvents(events, 'federation.unlink', ownerEmail, CORP.id));
    for (const reason of ['NoAccount', 'AddressTaken', 'EmailNotVerified', 'NeedsPassword']) {
      expect(`federation.refused (${reason})`, findEvents(events, 'federation.refused', reason));
    }
    expect('login.success with provider corp and amr ["fed"]', findEvents(events, 'login.success', `"provider":"${CORP.id}"`, '"amr":["fed"]'));
    const none = findEvents(events, 'federation.provision', EVE.email).concat(findEvents(events, 'federation.provision', NOBODY.email));
    assert(none.length === 0, `refused people were provisioned: ${JSON.stringify(none)}`);
    const actions = [...new Set(events.map((e) => e.action))].join(', ');
    assert(missing.length === 0, `missing: ${missing.join('; ')} (actions seen: ${actions})`);
  });
} catch (e) {
  fail('the federation suite stopped', e);
} finally {
  for (const b of browsers) await b.close();
  callbacks.close();
  if (server) {
    const s = server;
    server = undefined;
    s.kill('SIGTERM');
    await withTimeout(serverExit, 'gatehouse to stop', 10_000).catch(() => s.kill('SIGKILL'));
  }
  await Promise.all(upstreams.map((u) => u.close()));
  if (counts().failed > 0) {
    for (const line of serverTrouble().slice(-40)) console.log(`  server: ${line}`);
  }
  rmSync(work, { recursive: true, force: true });
}
console.log(`  (${((Date.now() - started) / 1000).toFixed(1)} s)`);
process.exit(summary('federation'));

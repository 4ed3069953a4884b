// An upstream OpenID provider for the federation tests: panva's certified
// `oidc-provider` with a real (if minimal) sign-in page instead of its devInteractions,
// so a browser signs in with a username and password, consent is granted on its own,
// and the client gets an ID token (RS256) carrying email, email_verified, name and
// groups. Everything lives in memory and ends with the process.
//
// As a module:
//
//   import { startUpstream } from './upstream.mjs';
//   const { issuer, port, close, setAccounts } = await startUpstream({ port: 0, clients, accounts });
//
// As a command:
//
//   node tests/interop/upstream.mjs config.json
//
// where config.json is { "port": 0, "clients": [...], "accounts": [...] } (and
// optionally "groupsClaim": false). It prints exactly one line to stdout,
// {"issuer":"http://127.0.0.1:PORT"}, once it is listening, and runs until SIGTERM or
// SIGINT. oidc-provider's own notices go to stderr.
//
// clients:  [{ client_id, client_secret, redirect_uris }] — confidential clients that
//           authenticate at the token endpoint with client_secret_basic or
//           client_secret_post (oidc-provider takes either for a client registered
//           with one of them).
// accounts: [{ sub, username, password, email, email_verified, name, groups }]
//           setAccounts(accounts) replaces them while it runs: the next sign-in, and
//           every ID token and userinfo answer from then on, use the new list (a
//           session already open there stays open, for a `sub` still listed).

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

import Provider, { errors } from 'oidc-provider';

export const WRONG_PASSWORD_TEXT = 'Invalid username or password';
const SCOPES = ['openid', 'email', 'profile', 'groups'];
const MAX_FORM_BYTES = 64 * 1024;

/**
 * Starts an upstream provider on http://127.0.0.1:<port> (0 picks a free port) and
 * resolves once it is listening, to { issuer, port, close, setAccounts }; close()
 * resolves when the server has stopped, setAccounts(accounts) replaces the accounts.
 */
export async function startUpstream({ port = 0, clients, accounts, groupsClaim = true } = {}) {
  if (!Array.isArray(clients) || clients.length === 0) throw new TypeError('startUpstream: clients must be a non-empty array');
  if (!Array.isArray(accounts)) throw new TypeError('startUpstream: accounts must be an array');
  let current = accounts;
  const directory = { list: () => current, bySub: (sub) => current.find((a) => a.sub === sub) };

  // The issuer must be known to build the provider, so listen first; nothing can
  // reach the server before its port is told to anyone.
  let provider;
  let handler; // oidc-provider's own request handler (it is a Koa app)
  const server = http.createServer((req, res) => route(provider, (handler ??= provider.callback()), directory, req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actualPort = server.address().port;
  const issuer = `http://127.0.0.1:${actualPort}`;

  try {
    provider = new Provider(issuer, configuration({ port: actualPort, clients, directory, groupsClaim }));
  } catch (e) {
    server.close();
    throw e;
  }

  let closing;
  const close = () => {
    closing ??= new Promise((resolve) => {
      server.close(() => resolve());
      // the browser keeps connections alive; don't wait for it to let go
      server.closeAllConnections();
    });
    return closing;
  };
  const setAccounts = (next) => {
    if (!Array.isArray(next)) throw new TypeError('setAccounts: accounts must be an array');
    current = next;
  };
  return { issuer, port: actualPort, close, setAccounts };
}

// --- the provider's configuration ---------------------------------------------------

function configuration({ port, clients, directory, groupsClaim }) {
  // A fresh RS256 signing key per start, so oidc-provider does not fall back to (and
  // warn about) its development keys.
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: `upstream-${randomUUID()}`, alg: 'RS256', use: 'sig' };

  const minutes = (n) => n * 60;

  return {
    clients: clients.map(({ client_id, client_secret, redirect_uris }) => ({
      client_id,
      client_secret,
      redirect_uris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      // client_secret_post works too: oidc-provider accepts either of the two secret
      // methods from a client registered with one of them.
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    })),
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    jwks: { keys: [jwk] },
    adapter: memoryAdapter(),
    cookies: {
      // Cookies on 127.0.0.1 are shared by every port (RFC 6265 ignores ports), so the
      // names carry this provider's port: gatehouse, or a second upstream, on another
      // port of the same host never sees (or overwrites) them. Over plain http
      // oidc-provider sets them without the Secure flag (it follows ctx.secure), and
      // SameSite=Lax (its default) lets the top-level redirects carry them.
      names: { session: `upstream${port}_session`, interaction: `upstream${port}_interaction`, resume: `upstream${port}_resume` },
      keys: [randomBytes(32).toString('base64url')],
    },
    scopes: SCOPES,
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    // By default claims requested by scope go to userinfo only, once an access token is
    // issued for it; this puts them in the ID token too, which is what federation reads.
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { required: () => true }, // oidc-provider 9 supports S256 only, and advertises just that
    features: {
      devInteractions: { enabled: false },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, sub) {
      const account = directory.bySub(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          // all of them; oidc-provider keeps those the granted scopes and claims cover
          const claims = { sub, email: account.email, email_verified: account.email_verified, name: account.name };
          if (groupsClaim) claims.groups = [...(account.groups ?? [])];
          return claims;
        },
      };
    },
    clientBasedCORS: () => false,
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', `<p id="upstream-error" role="alert">${esc(out.error)}: ${esc(out.error_description ?? '')}</p>`);
    },
    // Short lives; set explicitly, which also keeps oidc-provider from noting defaults.
    ttl: {
      AccessToken: minutes(10),
      AuthorizationCode: 60,
      IdToken: minutes(10),
      Interaction: minutes(10),
      Session: minutes(60),
      Grant: minutes(60),
      RefreshToken: minutes(60),
    },
  };
}

/**
 * A per-provider in-memory adapter (oidc-provider's own is a development one that warns
 * on every start). Each model gets a view on one Map; entries expire on their own.
 */
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

function memoryAdapter() {
  const store = new Map(); // `${model}:${id}` -> { payload, expiresAt }
  const live = (key) => {
    const entry = store.get(key);
    if (entry && entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry?.payload;
  };
  const findWhere = (model, test) => {
    for (const key of store.keys()) {
      if (!key.startsWith(`${model}:`)) continue;
      const payload = live(key);
      if (payload && test(payload)) return payload;
    }
    return undefined;
  };
  return class MemoryAdapter {
    constructor(model) {
      this.model = model;
    }

    async upsert(id, payload, expiresIn) {
      const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
      store.set(`${this.model}:${id}`, { payload, expiresAt });
    }

    async find(id) {
      return live(`${this.model}:${id}`);
    }

    async findByUid(uid) {
      return findWhere(this.model, (p) => p.uid === uid);
    }

    async findByUserCode(userCode) {
      return findWhere(this.model, (p) => p.userCode === userCode);
    }

    async consume(id) {
      const payload = live(`${this.model}:${id}`);
      if (payload) payload.consumed = Math.floor(Date.now() / 1000);
    }

    async destroy(id) {
      store.delete(`${this.model}:${id}`);
    }

    async revokeByGrantId(grantId) {
      for (const [key, { payload }] of store) {
        if (payload.grantId === grantId && GRANTABLE.has(key.slice(0, key.indexOf(':')))) store.delete(key);
      }
    }
  };
}

// --- the sign-in page: /interaction/:uid --------------------------------------------

/** Serves the interaction routes itself and hands everything else to oidc-provider. */
async function route(provider, handler, directory, req, res) {
  const { pathname } = new URL(req.url, 'http://127.0.0.1');
  const m = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/.exec(pathname);
  if (!m) {
    handler(req, res);
    return;
  }
  const [, uid, login] = m;
  try {
    if (!login && req.method === 'GET') {
      await showInteraction(provider, req, res, uid);
    } else if (login && req.method === 'POST') {
      await submitLogin(provider, directory.list(), req, res, uid);
    } else {
      send(res, 405, page('Method not allowed', '<p role="alert">method not allowed</p>'));
    }
  } catch (e) {
    const status = e instanceof errors.SessionNotFound ? 400 : 500;
    if (status === 500) console.error('upstream: interaction failed:', e);
    if (!res.headersSent) send(res, status, page('Error', `<p id="upstream-error" role="alert">${esc(e.error ?? e.name)}: ${esc(e.error_description ?? e.message)}</p>`));
    else res.end();
  }
}

/** GET /interaction/:uid — the login form, or (prompt consent) an automatic grant. */
async function showInteraction(provider, req, res, uid) {
  const interaction = await provider.interactionDetails(req, res);
  if (interaction.uid !== uid) throw new errors.SessionNotFound('interaction mismatch');
  const { prompt } = interaction;
  if (prompt.name === 'login') {
    send(res, 200, loginForm(uid, interaction.params.client_id));
  } else if (prompt.name === 'consent') {
    await grantConsent(provider, req, res, interaction);
  } else {
    send(res, 501, page('Not implemented', `<p role="alert">prompt ${esc(prompt.name)} is not implemented</p>`));
  }
}

/** POST /interaction/:uid/login — checks the password, then finishes the login prompt. */
async function submitLogin(provider, accounts, req, res, uid) {
  const interaction = await provider.interactionDetails(req, res);
  if (interaction.uid !== uid) throw new errors.SessionNotFound('interaction mismatch');
  const form = new URLSearchParams(await readBody(req));
  const username = form.get('username') ?? '';
  const account = accounts.find((a) => a.username === username);
  if (!account || account.password !== (form.get('password') ?? '')) {
    send(res, 200, loginForm(uid, interaction.params.client_id, { username, error: WRONG_PASSWORD_TEXT }));
    return;
  }
  await provider.interactionFinished(req, res, { login: { accountId: account.sub } }, { mergeWithLastSubmission: false });
}

/** Grants whatever the consent prompt says is missing, without asking anyone. */
async function grantConsent(provider, req, res, interaction) {
  const { prompt: { details }, params, session, grantId } = interaction;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
}

function loginForm(uid, clientId, { username = '', error } = {}) {
  return page(
    'Sign in',
    `<h1>Sign in to the upstream provider</h1>
<p>for <code>${esc(clientId)}</code></p>
${error ? `<p id="upstream-error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label>Username <input name="username" autocomplete="username" required autofocus value="${esc(username)}"></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit" id="upstream-login">Sign in</button>
</form>`,
  );
}

// --- small helpers ------------------------------------------------------------------

function page(title, body) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;max-width:24rem;margin:3rem auto}label{display:block;margin:.6rem 0}input{display:block;width:100%}[role=alert]{color:#a00}</style>
</head><body>
${body}
</body></html>`;
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_FORM_BYTES) {
        reject(new Error('form too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// --- the command --------------------------------------------------------------------

async function main() {
  const path = process.argv[2];
  if (!path) {
    console.error('usage: node upstream.mjs <config.json>   ({ "port": 0, "clients": [...], "accounts": [...] })');
    process.exit(2);
  }
  // stdout carries the one issuer line; oidc-provider's notices (console.info) go to stderr
  console.log = console.info = console.error;
  const config = JSON.parse(readFileSync(path, 'utf8'));
  const { issuer, close } = await startUpstream(config);
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
  const stop = () => close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  main().catch((e) => {
    console.error(`upstream: ${e?.stack ?? e}`);
    process.exit(1);
  });
}

// Human login with openid-client (v6) as the relying party: the authorization code grant with PKCE,
// state and nonce, ID token and UserInfo, refresh rotation, RFC 7009 revocation and RFC 7662
// introspection, for a confidential client and for the public `flytectl` client. The person's part
// (the login page, its CSRF token and the cookies) is played with fetch and manual redirects.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import * as client from 'openid-client';
import * as jose from 'jose';
import { randomSecret, startServer } from '../flyteauth-server.mjs';

const WEB_ID = 'node-web';
const WEB_SECRET = randomSecret();
const WEB_REDIRECT = 'https://rp.example.test/oidc/callback';
const CLI_ID = 'flytectl';
const CLI_REDIRECT = 'http://localhost:53593/callback';
const ALICE = {
  name: 'alice',
  password: randomSecret(),
  email: 'alice@example.com',
  displayName: 'Alice Example',
};

const HTTP_TIMEOUT_MS = 10_000;
const TEST_TIMEOUT_MS = 60_000;
const MAX_HOPS = 10;

/** A cookie jar for one browser: name → { value, path, secure }, per host name (cookies ignore ports). */
class CookieJar {
  #hosts = new Map();

  store(url, response) {
    const cookies = this.#cookiesOf(url.hostname);
    const set = [];
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      const cookie = { value, path: '/', secure: false, httpOnly: false, sameSite: undefined, expired: false };
      for (const attr of attrs) {
        const [k, v = ''] = attr.split('=');
        switch (k.toLowerCase()) {
          case 'path': cookie.path = v || '/'; break;
          case 'secure': cookie.secure = true; break;
          case 'httponly': cookie.httpOnly = true; break;
          case 'samesite': cookie.sameSite = v; break;
          case 'max-age': if (Number(v) <= 0) cookie.expired = true; break;
          case 'expires': if (Date.parse(v) <= Date.now()) cookie.expired = true; break;
          default: break;
        }
      }
      set.push({ name, ...cookie });
      if (cookie.expired) cookies.delete(name);
      else cookies.set(name, cookie);
    }
    return set;
  }

  header(url) {
    const pairs = [];
    for (const [name, c] of this.#cookiesOf(url.hostname)) {
      if (c.secure && url.protocol !== 'https:') continue;
      if (!url.pathname.startsWith(c.path)) continue;
      pairs.push(`${name}=${c.value}`);
    }
    return pairs.join('; ');
  }

  has(hostname, name) {
    return this.#cookiesOf(hostname).has(name);
  }

  #cookiesOf(hostname) {
    if (!this.#hosts.has(hostname)) this.#hosts.set(hostname, new Map());
    return this.#hosts.get(hostname);
  }
}

function decodeEntities(s) {
  return s.replace(/&(#x[0-9a-f]+|#[0-9]+|amp|lt|gt|quot|apos|#39);/gi, (_, e) => {
    const lower = e.toLowerCase();
    if (lower.startsWith('#x')) return String.fromCodePoint(parseInt(lower.slice(2), 16));
    if (lower.startsWith('#')) return String.fromCodePoint(parseInt(lower.slice(1), 10));
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[lower];
  });
}

function attributes(tag) {
  const attrs = {};
  for (const m of tag.matchAll(/([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*(?:=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g)) {
    attrs[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

/** The login form of a page: its action, method and input fields. */
function parseForm(html) {
  const form = html.match(/<form\b([^>]*)>([\s\S]*?)<\/form>/i);
  if (!form) return undefined;
  const formAttrs = attributes(form[1]);
  const inputs = {};
  for (const m of form[2].matchAll(/<input\b([^>]*)>/gi)) {
    const a = attributes(m[1]);
    if (a.name) inputs[a.name] = { type: (a.type || 'text').toLowerCase(), value: a.value ?? '' };
  }
  return { action: formAttrs.action, method: (formAttrs.method || 'get').toLowerCase(), inputs };
}

/** A person with a browser: follows redirects by hand, keeps cookies, fills in the login form. */
class Person {
  jar = new CookieJar();
  hops = [];

  constructor({ username, password, origin }) {
    this.username = username;
    this.password = password;
    this.origin = origin;
  }

  async #request(url, init = {}) {
    const headers = new Headers(init.headers);
    const cookie = this.jar.header(url);
    if (cookie) headers.set('cookie', cookie);
    const response = await fetch(url, {
      ...init,
      headers,
      redirect: 'manual',
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    const setCookies = this.jar.store(url, response);
    const body = await response.text();
    const location = response.headers.get('location');
    const hop = {
      method: init.method ?? 'GET',
      url,
      status: response.status,
      location: location === null ? undefined : new URL(location, url),
      setCookies,
      contentType: response.headers.get('content-type') ?? '',
      body,
    };
    this.hops.push(hop);
    return hop;
  }

  /**
   * Opens `authorizationUrl` and carries on until the server redirects to `redirectUri`; resolves
   * to that URL (what a browser would hand to the relying party's callback).
   */
  async authorize(authorizationUrl, redirectUri) {
    const target = new URL(redirectUri);
    let url = new URL(authorizationUrl);
    let init = {};
    let loginsSubmitted = 0;
    for (let i = 0; i < MAX_HOPS; i++) {
      const hop = await this.#request(url, init);
      init = {};
      if ([301, 302, 303, 307, 308].includes(hop.status)) {
        assert.ok(hop.location, `${hop.status} without Location from ${hop.url}`);
        if (hop.location.origin === target.origin && hop.location.pathname === target.pathname) {
          return hop.location;
        }
        url = hop.location;
        continue;
      }
      assert.equal(hop.status, 200, `${hop.method} ${hop.url} answered ${hop.status}: ${hop.body.slice(0, 500)}`);
      assert.match(hop.contentType, /^text\/html/, `${hop.url}`);
      const form = parseForm(hop.body);
      assert.ok(form && 'password' in form.inputs, `no login form at ${hop.url}:\n${hop.body.slice(0, 500)}`);
      assert.equal(form.method, 'post');
      assert.ok(++loginsSubmitted <= 1, 'the login form came back after signing in');
      const fields = new URLSearchParams();
      for (const [name, { type, value }] of Object.entries(form.inputs)) {
        if (type === 'hidden') fields.set(name, value);
      }
      fields.set('username', this.username);
      fields.set('password', this.password);
      url = new URL(form.action || url.href, url);
      init = {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: this.origin },
        body: fields.toString(),
      };
    }
    throw new Error(`no redirect to ${redirectUri} within ${MAX_HOPS} hops: ${this.hops.map((h) => `${h.method} ${h.url} ${h.status}`).join(' → ')}`);
  }
}

function atHash(accessToken) {
  const digest = createHash('sha256').update(accessToken, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

async function rejectsWithOAuthError(promise, error) {
  let caught;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught, `expected the server to answer ${error}`);
  assert.ok(caught instanceof client.ResponseBodyError, `${caught?.name}: ${caught?.message}`);
  assert.equal(caught.error, error, `${caught.error}: ${caught.error_description}`);
  assert.equal(caught.status, 400);
  return caught;
}

describe('human login with openid-client as the relying party', { timeout: 5 * TEST_TIMEOUT_MS }, () => {
  let server;

  before(async () => {
    server = await startServer({
      staticClients: {
        [WEB_ID]: {
          secret: WEB_SECRET,
          grantTypes: ['authorization_code', 'refresh_token'],
          responseTypes: ['code'],
          redirectUris: [WEB_REDIRECT],
          scopes: ['all', 'offline', 'openid', 'profile', 'email'],
        },
      },
      users: [ALICE],
    });
  });

  after(async () => {
    if (server) await server.stop();
  });

  async function withLog(fn) {
    try {
      return await fn();
    } catch (err) {
      err.message += `\n--- flyteauth server log (${server.logPath}) ---\n${await server.log()}`;
      throw err;
    }
  }

  // openid-client v6 refuses plain http unless told otherwise; the server here is http://localhost.
  const discoverWeb = () => client.discovery(
    new URL(server.baseUrl),
    WEB_ID,
    WEB_SECRET,
    client.ClientSecretBasic(WEB_SECRET),
    { execute: [client.allowInsecureRequests] },
  );
  const discoverCli = () => client.discovery(
    new URL(server.baseUrl),
    CLI_ID,
    undefined,
    client.None(),
    { execute: [client.allowInsecureRequests] },
  );

  const person = () => new Person({ username: ALICE.name, password: ALICE.password, origin: server.baseUrl });

  /** buildAuthorizationUrl with PKCE (S256), state and nonce; what the callback must be checked against. */
  async function authorizationRequest(config, { redirectUri, scope }) {
    const pkceCodeVerifier = client.randomPKCECodeVerifier();
    const expectedState = client.randomState();
    const expectedNonce = client.randomNonce();
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope,
      state: expectedState,
      nonce: expectedNonce,
      code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
      code_challenge_method: 'S256',
    });
    return { url, checks: { pkceCodeVerifier, expectedState, expectedNonce } };
  }

  /** Verifies the ID token's signature with jose (openid-client trusts the token endpoint's TLS). */
  async function verifyIdToken(config, tokens, clientId) {
    const meta = config.serverMetadata();
    const header = jose.decodeProtectedHeader(tokens.id_token);
    assert.equal(header.typ, 'JWT');
    assert.equal(header.alg, 'RS256');
    const { payload } = await jose.jwtVerify(tokens.id_token, jose.createRemoteJWKSet(new URL(meta.jwks_uri)), {
      issuer: meta.issuer,
      audience: clientId,
      algorithms: ['RS256'],
    });
    assert.deepEqual(payload.aud, [clientId]);
    assert.equal(payload.at_hash, atHash(tokens.access_token));
    assert.equal(typeof payload.auth_time, 'number');
    assert.ok(payload.auth_time <= payload.iat + 5, `auth_time=${payload.auth_time} iat=${payload.iat}`);
    return payload;
  }

  test('discovery advertises what the code flow needs', { timeout: TEST_TIMEOUT_MS }, () => withLog(async () => {
    for (const config of [await discoverWeb(), await discoverCli()]) {
      const meta = config.serverMetadata();
      assert.equal(meta.issuer, server.baseUrl);
      assert.equal(meta.authorization_endpoint, `${server.baseUrl}/oauth2/authorize`);
      assert.equal(meta.userinfo_endpoint, `${server.baseUrl}/oauth2/userinfo`);
      assert.equal(meta.revocation_endpoint, `${server.baseUrl}/oauth2/revoke`);
      assert.equal(meta.introspection_endpoint, `${server.baseUrl}/oauth2/introspect`);
      assert.ok(meta.code_challenge_methods_supported.includes('S256'));
      assert.ok(meta.grant_types_supported.includes('authorization_code'));
      assert.ok(meta.grant_types_supported.includes('refresh_token'));
      assert.ok(meta.token_endpoint_auth_methods_supported.includes('none'));
      assert.ok(meta.response_types_supported.includes('code'));
    }
  }));

  test('confidential client: login, ID token, userinfo, refresh rotation, revocation, introspection', { timeout: TEST_TIMEOUT_MS }, () => withLog(async () => {
    const config = await discoverWeb();
    const { url, checks } = await authorizationRequest(config, {
      redirectUri: WEB_REDIRECT,
      scope: 'openid profile email offline',
    });

    const alice = person();
    const callback = await alice.authorize(url, WEB_REDIRECT);

    // The path the person took: authorize → /login → POST /login → authorize → redirect_uri.
    const [first, loginPage, loginPost, back] = alice.hops;
    assert.equal(alice.hops.length, 4, alice.hops.map((h) => `${h.method} ${h.url} ${h.status}`).join('\n'));
    assert.equal(first.status, 303);
    assert.equal(first.location.pathname, '/login');
    assert.equal(first.location.searchParams.has('return_to'), true);
    assert.equal(loginPage.status, 200);
    const csrfCookie = loginPage.setCookies.find((c) => c.name === 'flyteauth_csrf');
    assert.ok(csrfCookie, 'GET /login sets the CSRF cookie');
    assert.equal(csrfCookie.httpOnly, true);
    assert.equal(loginPost.method, 'POST');
    assert.equal(loginPost.status, 303);
    assert.equal(loginPost.location.pathname, '/oauth2/authorize');
    const session = loginPost.setCookies.find((c) => c.name === 'flyteauth_session');
    assert.ok(session, 'POST /login sets the session cookie');
    assert.equal(session.httpOnly, true);
    assert.equal(session.secure, false, 'no Secure cookie on a plain-http public URL');
    assert.equal(back.status, 303);

    assert.equal(callback.searchParams.get('state'), checks.expectedState);
    assert.equal(callback.searchParams.get('iss'), config.serverMetadata().issuer);
    assert.ok(callback.searchParams.get('code'));

    const tokens = await client.authorizationCodeGrant(config, callback, checks);
    assert.equal(tokens.token_type.toLowerCase(), 'bearer');
    assert.ok(tokens.expires_in > 0);
    assert.equal(typeof tokens.refresh_token, 'string', 'offline was granted');
    const granted = tokens.scope.split(' ');
    for (const s of ['openid', 'profile', 'email', 'offline']) assert.ok(granted.includes(s), `scope=${tokens.scope}`);

    const claims = tokens.claims();
    assert.ok(claims, 'an ID token');
    assert.equal(typeof claims.sub, 'string');
    assert.notEqual(claims.sub, WEB_ID);
    assert.notEqual(claims.sub, ALICE.name, 'sub is the account subject, not the user name');
    assert.equal(claims.email, ALICE.email);
    assert.equal(claims.name, ALICE.displayName);
    assert.equal(claims.preferred_username, ALICE.name);
    assert.equal(claims.nonce, checks.expectedNonce);
    const verified = await verifyIdToken(config, tokens, WEB_ID);
    assert.equal(verified.sub, claims.sub);

    const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    assert.equal(info.sub, claims.sub);
    assert.equal(info.email, ALICE.email);
    assert.equal(info.name, ALICE.displayName);
    assert.equal(info.preferred_username, ALICE.name);

    const before = await client.tokenIntrospection(config, tokens.refresh_token, { token_type_hint: 'refresh_token' });
    assert.equal(before.active, true, JSON.stringify(before));
    assert.equal(before.client_id, WEB_ID);
    assert.equal(before.sub, claims.sub);

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    assert.equal(typeof refreshed.access_token, 'string');
    assert.equal(typeof refreshed.refresh_token, 'string');
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'the refresh token rotates');
    if (refreshed.id_token) assert.equal(refreshed.claims().sub, claims.sub);
    const spent = await client.tokenIntrospection(config, tokens.refresh_token, { token_type_hint: 'refresh_token' });
    assert.equal(spent.active, false, `a used refresh token is no longer active: ${JSON.stringify(spent)}`);
    const fresh = await client.tokenIntrospection(config, refreshed.access_token);
    assert.equal(fresh.active, true, JSON.stringify(fresh));
    assert.equal(fresh.sub, claims.sub);

    await client.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
    const revoked = await client.tokenIntrospection(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
    assert.deepEqual(revoked, { active: false });
    const revokedAccess = await client.tokenIntrospection(config, refreshed.access_token);
    assert.equal(revokedAccess.active, false, 'revoking the refresh token ends the login\'s access tokens');
    await rejectsWithOAuthError(client.refreshTokenGrant(config, refreshed.refresh_token), 'invalid_grant');
  }));

  test('a tampered state is refused by openid-client; a wrong PKCE verifier by the server', { timeout: TEST_TIMEOUT_MS }, () => withLog(async () => {
    const config = await discoverWeb();
    const alice = person();

    const first = await authorizationRequest(config, { redirectUri: WEB_REDIRECT, scope: 'openid email' });
    const callback = await alice.authorize(first.url, WEB_REDIRECT);
    const tampered = new URL(callback);
    tampered.searchParams.set('state', `${first.checks.expectedState}x`);
    let caught;
    try {
      await client.authorizationCodeGrant(config, tampered, first.checks);
    } catch (err) {
      caught = err;
    }
    assert.ok(caught, 'a state mismatch must fail');
    assert.ok(caught instanceof client.ClientError, `${caught.name}: ${caught.message}`);
    assert.equal(caught.code, 'OAUTH_INVALID_RESPONSE', `refused before the token endpoint: ${caught.message}`);
    assert.match(caught.cause?.message ?? '', /"state"/, `${caught.message}: ${caught.cause?.message}`);
    // The code was never sent, so the untouched callback still works: the failure was the state.
    const tokens = await client.authorizationCodeGrant(config, callback, first.checks);
    assert.equal(tokens.claims().nonce, first.checks.expectedNonce);

    // The session cookie carries the second login straight to the redirect URI.
    const second = await authorizationRequest(config, { redirectUri: WEB_REDIRECT, scope: 'openid email' });
    const hopsBefore = alice.hops.length;
    const callback2 = await alice.authorize(second.url, WEB_REDIRECT);
    assert.equal(alice.hops.length - hopsBefore, 1, 'no login page with a session');
    await rejectsWithOAuthError(
      client.authorizationCodeGrant(config, callback2, {
        ...second.checks,
        pkceCodeVerifier: client.randomPKCECodeVerifier(),
      }),
      'invalid_grant',
    );
    // A code is good for one attempt: the right verifier now fails too.
    await rejectsWithOAuthError(client.authorizationCodeGrant(config, callback2, second.checks), 'invalid_grant');
  }));

  test('public flytectl client: the code flow with client authentication none', { timeout: TEST_TIMEOUT_MS }, () => withLog(async () => {
    const config = await discoverCli();
    const { url, checks } = await authorizationRequest(config, {
      redirectUri: CLI_REDIRECT,
      scope: 'openid profile email all offline',
    });
    const alice = person();
    const callback = await alice.authorize(url, CLI_REDIRECT);
    assert.equal(`${callback.origin}${callback.pathname}`, CLI_REDIRECT);
    assert.equal(callback.searchParams.get('iss'), config.serverMetadata().issuer);

    const tokens = await client.authorizationCodeGrant(config, callback, checks);
    const claims = tokens.claims();
    assert.equal(claims.nonce, checks.expectedNonce);
    assert.equal(claims.email, ALICE.email);
    assert.equal(claims.preferred_username, ALICE.name);
    await verifyIdToken(config, tokens, CLI_ID);
    assert.equal(typeof tokens.refresh_token, 'string');

    // The access token is for the platform: a person's token, scope `all`.
    const access = jose.decodeJwt(tokens.access_token);
    assert.equal(access.sub, claims.sub);
    assert.equal(access.identity_type, 'user');
    assert.ok(access.scp.includes('all'), `scp=${JSON.stringify(access.scp)}`);

    const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    assert.equal(info.email, ALICE.email);

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
    assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
    await client.tokenRevocation(config, refreshed.refresh_token);
    await rejectsWithOAuthError(client.refreshTokenGrant(config, refreshed.refresh_token), 'invalid_grant');
  }));

  test('a redirect URI that is not registered never leaves the server', { timeout: TEST_TIMEOUT_MS }, () => withLog(async () => {
    const config = await discoverWeb();
    const { url } = await authorizationRequest(config, {
      redirectUri: 'https://attacker.example.test/oidc/callback',
      scope: 'openid',
    });
    const response = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    await response.arrayBuffer();
    assert.equal(response.headers.get('location'), null, `status ${response.status}`);
    assert.equal(response.status, 400);
  }));
});

#!/usr/bin/env node
// An external authorization server (oidc-provider) for the External-mode tests: flyteauth with
// `auth.appAuth.authServerType: External` advertises this server's endpoints and accepts the JWT access tokens
// it issues, as it would with Okta, Entra ID or Keycloak.
//
//   node external-as.mjs [--port N] [--mint-port N] [--keys-file FILE]
//
//   --port N          listen on 127.0.0.1:N (default 0: a free port); the issuer is http://127.0.0.1:<port>, so
//                     a test that stops the server can start it again at the same issuer
//   --keys-file FILE  the signing key (a private JWK): read from FILE when it exists, else generated and written
//                     there (mode 0600), so that a restarted server signs with the key it had, as a real one does;
//                     without it a fresh key is generated at every start
//   --mint-port N     also serve, on 127.0.0.1:N (0: a free port), a test-only endpoint that mints tokens with
//                     chosen header and claims (below); off unless given
//
// Configured by the environment (secrets are not put on the command line, which every user can read):
//   EXT_AUDIENCE             the one resource server (its indicator and the access tokens' `aud`): flyteauth's
//                            public URL (required)
//   EXT_APP_CLIENT_ID, EXT_APP_CLIENT_SECRET
//                            the confidential client (client_secret_basic or _post, grant client_credentials)
//   EXT_DEVICE_CLIENT_ID     the public client of the device flow (default flytectl): grants device_code and
//                            refresh_token, no client authentication
//   EXT_ACCOUNTS             JSON {"<login>": {"email": ..., "name": ...}, ...}; the login is also the `sub`
//   EXT_ACCESS_TOKEN_TTL     access-token lifetime in seconds (default 300)
//   EXT_DEVICE_INTERVAL      the `interval` added to device authorization answers (default 1; see below)
//
// Access tokens are JWTs (RFC 9068, `typ: at+jwt`) because resource indicators are on with a default resource:
// RS256 with the key's `kid`, `aud` = EXT_AUDIENCE, `scope` = the granted scopes the resource server knows
// (`all`). A person's tokens also carry `name`, `email` and `preferred_username`, as an identity provider
// configured to put profile claims into access tokens does. The person signs in through oidc-provider's
// development interactions (a login form that takes any password for a known login, then a consent button).
//
// oidc-provider leaves the optional `interval` out of its device authorization answer; flytekit requires it
// (Okta and Keycloak send one), so it is added here.
//
// The mint endpoint: POST /mint with JSON {"alg": "RS256"|"none"|"HS256"|"HS384"|"HS512", "hmac_key":
// "public-pem"|"public-der"|"public-jwk", "header": {...}, "claims": {...}} answers {"token": "..."}. RS256 signs
// with this server's real private key; HS* "sign" with the named form of its PUBLIC key (the algorithm-confusion
// attack); none leaves the signature empty. The header defaults to {"alg", "typ": "at+jwt", "kid"}; members of
// "header" replace those, and a member set to null is removed. GET /mint/info answers {"kid", "issuer",
// "audience"}. It listens on its own port so that nothing about it is visible at the issuer.
//
// stdout carries one JSON object per line: first {"event":"listening","port":N,"issuer":...,"kid":...,
// "mint_port":N|null}; then {"event":"request",...} for every request (method, path without query, status),
// {"event":"jwks","count":N} for every request to the JWKS endpoint (N counts them since start),
// {"event":"token",...} for every token issuance or refusal, {"event":"device_authorization",...} and
// {"event":"device_approved",...}. Tokens and secrets are never printed. Exits on SIGTERM or SIGINT.

import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

function fail(message) {
  process.stderr.write(`external-as: ${message}\n`);
  process.exit(2);
}

function required(name) {
  const value = process.env[name];
  if (!value) {
    fail(`${name} is not set`);
  }
  return value;
}

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function port(value, name) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    fail(`${name} must be a port number, not ${JSON.stringify(value)}`);
  }
  return n;
}

let args;
try {
  ({ values: args } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      'mint-port': { type: 'string' },
      'keys-file': { type: 'string' },
    },
  }));
} catch (err) {
  fail(err.message);
}
const listenPort = port(args.port, '--port');
const mintPort = args['mint-port'] === undefined ? null : port(args['mint-port'], '--mint-port');

const audience = required('EXT_AUDIENCE');
const appClientId = required('EXT_APP_CLIENT_ID');
const appClientSecret = required('EXT_APP_CLIENT_SECRET');
const deviceClientId = process.env.EXT_DEVICE_CLIENT_ID || 'flytectl';
const accounts = JSON.parse(process.env.EXT_ACCOUNTS || '{}');
const accessTokenTtl = Number(process.env.EXT_ACCESS_TOKEN_TTL || 300);
const deviceInterval = Number(process.env.EXT_DEVICE_INTERVAL || 1);
const RESOURCE_SCOPE = 'all';

// The signing key, kept across restarts when a file is named.
function signingKey() {
  const file = args['keys-file'];
  if (file && existsSync(file)) {
    return JSON.parse(readFileSync(file, 'utf8'));
  }
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = {
    ...privateKey.export({ format: 'jwk' }),
    kid: `ext-${randomBytes(6).toString('hex')}`,
    alg: 'RS256',
    use: 'sig',
  };
  if (file) {
    writeFileSync(file, JSON.stringify(jwk), { mode: 0o600 });
  }
  return jwk;
}

const jwk = signingKey();
const privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
const publicKey = createPublicKey(privateKey);

const server = createServer();
let mintServer = null;
let jwksRequests = 0;

function accountClaims(sub) {
  const account = Object.hasOwn(accounts, sub) ? accounts[sub] : undefined;
  if (!account) {
    return undefined;
  }
  return { sub, email: account.email, email_verified: true, name: account.name, preferred_username: sub };
}

server.on('error', (err) => fail(`cannot listen on 127.0.0.1:${listenPort}: ${err.message}`));

server.listen(listenPort, '127.0.0.1', () => {
  const { port: boundPort } = server.address();
  const issuer = `http://127.0.0.1:${boundPort}`;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: appClientId,
        client_secret: appClientSecret,
        client_name: 'interop app',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: deviceClientId,
        client_name: deviceClientId,
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    jwks: { keys: [jwk] },
    scopes: ['openid', 'offline_access', 'profile', 'email'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
    },
    async findAccount(ctx, sub) {
      const claims = accountClaims(sub);
      if (!claims) {
        return undefined;
      }
      return { accountId: sub, async claims() { return claims; } };
    },
    async extraTokenClaims(ctx, token) {
      if (token.kind !== 'AccessToken' || !token.accountId) {
        return undefined;
      }
      const claims = accountClaims(token.accountId);
      return claims ? { name: claims.name, email: claims.email, preferred_username: claims.preferred_username } : undefined;
    },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    ttl: {
      AccessToken: accessTokenTtl,
      ClientCredentials: accessTokenTtl,
      DeviceCode: 600,
      IdToken: 300,
      RefreshToken: 3600,
      Grant: 3600,
      Interaction: 600,
      Session: 3600,
    },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      deviceFlow: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, resourceIndicator) {
          if (resourceIndicator !== audience) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: RESOURCE_SCOPE,
            audience,
            accessTokenTTL: accessTokenTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // The tests' pages load nothing from the Internet (the default error page imports a web font).
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>IdP error</title><h1>${out.error}</h1><p>${out.error_description ?? ''}</p>`;
    },
  });

  provider.use(async (ctx, next) => {
    const jwks = ctx.path === '/jwks';
    if (jwks) {
      jwksRequests += 1;
    }
    try {
      await next();
    } finally {
      emit({ event: 'request', method: ctx.method, path: ctx.path, status: ctx.status });
      if (jwks) {
        emit({ event: 'jwks', count: jwksRequests, status: ctx.status });
      }
    }
    if (ctx.path === '/device/auth' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object'
        && ctx.body.device_code && ctx.body.interval === undefined) {
      ctx.body = { ...ctx.body, interval: deviceInterval };
    }
  });

  provider.on('grant.success', (ctx) => {
    emit({
      event: 'token',
      ok: true,
      grant_type: ctx.oidc.params?.grant_type ?? null,
      client_id: ctx.oidc.client?.clientId ?? null,
      account: ctx.oidc.entities?.Account?.accountId ?? null,
    });
  });
  provider.on('grant.error', (ctx, err) => {
    emit({
      event: 'token',
      ok: false,
      grant_type: ctx.oidc.params?.grant_type ?? null,
      client_id: ctx.oidc.client?.clientId ?? null,
      error: err?.error ?? String(err),
      error_description: err?.error_description ?? null,
    });
  });
  provider.on('device_authorization.success', (ctx) => {
    emit({ event: 'device_authorization', client_id: ctx.oidc.client?.clientId ?? null, scope: ctx.oidc.params?.scope ?? null });
  });
  provider.on('device_authorization.error', (ctx, err) => {
    emit({ event: 'device_authorization', ok: false, error: err?.error ?? String(err), error_description: err?.error_description ?? null });
  });
  provider.on('authorization.success', (ctx) => {
    if (ctx.oidc.route === 'code_verification' || ctx.oidc.route === 'device_resume') {
      emit({ event: 'device_approved', client_id: ctx.oidc.client?.clientId ?? null, account: ctx.oidc.session?.accountId ?? null });
    }
  });
  provider.on('server_error', (ctx, err) => emit({ event: 'server_error', error: String(err) }));

  server.on('request', provider.callback());

  const hello = { event: 'listening', port: boundPort, issuer, kid: jwk.kid, mint_port: null };
  if (mintPort === null) {
    emit(hello);
    return;
  }
  mintServer = createServer((req, res) => mint(req, res, issuer));
  mintServer.on('error', (err) => fail(`cannot listen on 127.0.0.1:${mintPort} (mint): ${err.message}`));
  mintServer.listen(mintPort, '127.0.0.1', () => {
    hello.mint_port = mintServer.address().port;
    emit(hello);
  });
});

// --------------------------------------------------------------------------------------------------
// The test-only mint endpoint

const b64url = (data) => Buffer.from(data).toString('base64url');

function hmacKey(form) {
  switch (form ?? 'public-pem') {
    case 'public-pem':
      return Buffer.from(publicKey.export({ format: 'pem', type: 'spki' }));
    case 'public-der':
      return publicKey.export({ format: 'der', type: 'spki' });
    case 'public-jwk': {
      const { kty, n, e } = publicKey.export({ format: 'jwk' });
      return Buffer.from(JSON.stringify({ kty, n, e, kid: jwk.kid, alg: 'RS256', use: 'sig' }));
    }
    default:
      throw new Error(`unknown hmac_key ${JSON.stringify(form)}`);
  }
}

function mintToken(request) {
  const alg = request.alg ?? 'RS256';
  const header = { alg, typ: 'at+jwt', kid: jwk.kid, ...(request.header ?? {}) };
  for (const [key, value] of Object.entries(header)) {
    if (value === null) {
      delete header[key];
    }
  }
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(request.claims ?? {}))}`;
  let signature;
  if (alg === 'RS256') {
    signature = sign('sha256', Buffer.from(input), privateKey);
  } else if (/^HS(256|384|512)$/.test(alg)) {
    signature = createHmac(`sha${alg.slice(2)}`, hmacKey(request.hmac_key)).update(input).digest();
  } else if (alg.toLowerCase() === 'none') {
    signature = Buffer.alloc(0);
  } else {
    throw new Error(`unsupported alg ${JSON.stringify(alg)}`);
  }
  return `${input}.${b64url(signature)}`;
}

function mint(req, res, issuer) {
  const answer = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  if (req.method === 'GET' && req.url === '/mint/info') {
    answer(200, { kid: jwk.kid, issuer, audience });
    return;
  }
  if (req.method !== 'POST' || req.url !== '/mint') {
    answer(404, { error: 'not_found' });
    return;
  }
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    try {
      const token = mintToken(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
      emit({ event: 'minted' });
      answer(200, { token });
    } catch (err) {
      answer(400, { error: String(err.message ?? err) });
    }
  });
}

function stop() {
  const servers = [server, mintServer].filter(Boolean);
  let open = servers.length;
  for (const s of servers) {
    s.close(() => {
      open -= 1;
      if (open === 0) {
        process.exit(0);
      }
    });
    s.closeAllConnections();
  }
  // Open keep-alive connections must not hold the exit back.
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

#!/usr/bin/env node
// An OpenID provider (oidc-provider) for the ingress tests: the organisation's identity provider that
// flyteauth federates to (`auth.userAuth.openId`).
//
//   node idp-server.mjs   listens on 127.0.0.1 (a free port, plain HTTP), issuer http://127.0.0.1:<port>
//
// Configured by the environment (the secret is not put on the command line, which every user can read):
//   IDP_CLIENT_ID, IDP_CLIENT_SECRET     the one client (flyteauth), authenticating with client_secret_basic
//   IDP_REDIRECT_URIS                    its redirect URIs, space-separated (https://<ingress>/callback)
//   IDP_POST_LOGOUT_REDIRECT_URIS        its post-logout redirect URIs, space-separated
//   IDP_ACCOUNTS                         JSON {"<login>": {"email": ..., "name": ..., "groups": [...]}, ...};
//                                        the login is also the account's `sub`
//
// Sign-in uses oidc-provider's development interactions: a login page (any password is accepted for a known
// login) and then a consent page with one button. PKCE is required for every authorization request.
//
// stdout carries one JSON object per line: first {"event":"listening","port":N,"issuer":...}, then one line
// per authorization request (with its code_challenge and code_challenge_method), per token exchange (with
// whether a code_verifier came along and whether it succeeded), per end-session request (with its
// post_logout_redirect_uri) and per completed sign-out, so a test can see what the identity provider was asked. Exits on SIGTERM or SIGINT.

import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    process.stderr.write(`idp-server: ${name} is not set\n`);
    process.exit(2);
  }
  return value;
}

function emit(event) {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

const clientId = required('IDP_CLIENT_ID');
const clientSecret = required('IDP_CLIENT_SECRET');
const redirectUris = required('IDP_REDIRECT_URIS').split(/\s+/).filter(Boolean);
const postLogoutRedirectUris = (process.env.IDP_POST_LOGOUT_REDIRECT_URIS ?? '').split(/\s+/).filter(Boolean);
const accounts = JSON.parse(required('IDP_ACCOUNTS'));

const server = createServer();

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: redirectUris,
        post_logout_redirect_uris: postLogoutRedirectUris,
        token_endpoint_auth_method: 'client_secret_basic',
        response_types: ['code'],
        grant_types: ['authorization_code'],
      },
    ],
    pkce: { required: () => true },
    // Scopes and the claims each one releases (through userinfo; the ID token carries the sub).
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    async findAccount(ctx, sub) {
      const account = Object.hasOwn(accounts, sub) ? accounts[sub] : undefined;
      if (!account) {
        return undefined;
      }
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            email: account.email,
            email_verified: true,
            name: account.name,
            preferred_username: sub,
            groups: account.groups ?? [],
          };
        },
      };
    },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    // The tests' pages load nothing from the Internet (the default pages import a web font).
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>IdP error</title><h1>${out.error}</h1><p>${out.error_description ?? ''}</p>`;
    },
  });

  provider.use(async (ctx, next) => {
    if (ctx.path === '/auth') {
      const q = ctx.query;
      emit({
        event: 'authorization',
        client_id: q.client_id ?? null,
        redirect_uri: q.redirect_uri ?? null,
        response_type: q.response_type ?? null,
        scope: q.scope ?? null,
        code_challenge: q.code_challenge ?? null,
        code_challenge_method: q.code_challenge_method ?? null,
        has_state: Boolean(q.state),
        has_nonce: Boolean(q.nonce),
      });
    }
    if (ctx.path === '/session/end' && ctx.method === 'GET') {
      const q = ctx.query;
      emit({
        event: 'end_session_request',
        client_id: q.client_id ?? null,
        post_logout_redirect_uri: q.post_logout_redirect_uri ?? null,
        has_id_token_hint: Boolean(q.id_token_hint),
      });
    }
    await next();
  });

  provider.on('grant.success', (ctx) => {
    emit({
      event: 'token',
      ok: true,
      grant_type: ctx.oidc.params?.grant_type ?? null,
      has_code_verifier: Boolean(ctx.oidc.params?.code_verifier),
    });
  });
  provider.on('grant.error', (ctx, err) => {
    emit({
      event: 'token',
      ok: false,
      grant_type: ctx.oidc.params?.grant_type ?? null,
      has_code_verifier: Boolean(ctx.oidc.params?.code_verifier),
      error: err?.error ?? String(err),
      error_description: err?.error_description ?? null,
    });
  });
  provider.on('end_session.success', () => emit({ event: 'end_session' }));
  provider.on('server_error', (ctx, err) => emit({ event: 'server_error', error: String(err) }));

  server.on('request', provider.callback());
  emit({ event: 'listening', port, issuer });
});

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  // Open keep-alive connections must not hold the exit back.
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

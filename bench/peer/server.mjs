// The peer of flyteauth's issuance benchmark (bench/src/bin/peer.rs): node oidc-provider configured to do what
// flyteauth's token endpoint does for a machine client, client_credentials answered with a signed JWT access
// token (RS256 by default, ES256 with PEER_ALG=ES256), and nothing else.
//
//   NODE_ENV=production PEER_KEY_FILE=key.pem PEER_CLIENT_ID=id PEER_CLIENT_SECRET=secret \
//     PEER_RESOURCE=https://api.example [PEER_ALG=RS256|ES256] node server.mjs PORT
//
// Listens on 127.0.0.1:PORT only. The signing key is the PEM file flyteauth signs with (RSA-2048 for RS256, EC
// P-256 for ES256), handed to oidc-provider as a JWK, so both servers make the same operation per token.

import { createPrivateKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`server.mjs: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const port = Number.parseInt(process.argv[2] ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node server.mjs PORT');
  process.exit(2);
}
const clientId = required('PEER_CLIENT_ID');
const clientSecret = required('PEER_CLIENT_SECRET');
const resource = required('PEER_RESOURCE');
const jwk = createPrivateKey(readFileSync(required('PEER_KEY_FILE'))).export({ format: 'jwk' });
const alg = process.env.PEER_ALG || 'RS256';
const wanted = { RS256: (k) => k.kty === 'RSA', ES256: (k) => k.kty === 'EC' && k.crv === 'P-256' }[alg];
if (!wanted) {
  console.error(`server.mjs: PEER_ALG must be RS256 or ES256, not ${alg}`);
  process.exit(2);
}
if (!wanted(jwk)) {
  console.error(`server.mjs: PEER_KEY_FILE holds no key for ${alg} (RS256: RSA, ES256: EC P-256)`);
  process.exit(2);
}

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      // oidc-provider checks a client's defaults against the keys it has; it never issues an ID token here.
      id_token_signed_response_alg: alg,
      scope: 'all',
    },
  ],
  jwks: { keys: [{ ...jwk, alg, use: 'sig' }] },
  // Only used by the interactive endpoints, which the benchmark never calls; set so none is made up per start.
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: ['all'],
  ttl: { ClientCredentials: () => 30 * 60 },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    // Resource indicators (RFC 8707) are how oidc-provider issues JWT access tokens: every token request
    // without `resource` gets the default one, whose tokens are JWTs signed with `alg`, with the scope `all`.
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        audience: resource,
        scope: 'all',
        accessTokenFormat: 'jwt',
        accessTokenTTL: 30 * 60,
        jwt: { sign: { alg } },
      }),
    },
  },
});
// Errors still reach the client as OAuth error answers (and fail the benchmark); nothing is logged per request.
provider.on('server_error', (ctx, err) => {
  console.error(`server_error: ${err.message}`);
});

const server = createServer(provider.callback());
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});

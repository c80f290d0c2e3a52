// openid-client (v6) discovers flyteauth and runs client_credentials; jose verifies the token
// against the advertised JWKS.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as client from 'openid-client';
import * as jose from 'jose';
import { randomSecret, startServer } from '../flyteauth-server.mjs';

const CLIENT_ID = 'node-interop';

describe('flyteauth with openid-client and jose', () => {
  let server;

  before(async () => {
    server = await startServer({ clients: { [CLIENT_ID]: randomSecret() } });
  });

  after(async () => {
    if (server) await server.stop();
  });

  // openid-client v6 refuses plain http unless told otherwise; the server here is http://localhost.
  async function discover(clientAuth, secret = server.clients[CLIENT_ID]) {
    return client.discovery(
      new URL(server.baseUrl),
      CLIENT_ID,
      secret,
      clientAuth ? clientAuth(secret) : undefined,
      { execute: [client.allowInsecureRequests] },
    );
  }

  async function withLog(fn) {
    try {
      return await fn();
    } catch (err) {
      err.message += `\n--- flyteauth server log (${server.logPath}) ---\n${await server.log()}`;
      throw err;
    }
  }

  function audiences(meta) {
    const issuer = meta.issuer.replace(/\/$/, '');
    return [issuer, `${issuer}/`, server.baseUrl, `${server.baseUrl}/`];
  }

  test('discovery finds the token endpoint and JWKS', () => withLog(async () => {
    const config = await discover();
    const meta = config.serverMetadata();
    assert.equal(meta.issuer.replace(/\/$/, ''), server.baseUrl);
    assert.equal(meta.token_endpoint, `${server.baseUrl}/oauth2/token`);
    assert.equal(meta.jwks_uri, `${server.baseUrl}/oauth2/jwks`);
    assert.ok(meta.grant_types_supported.includes('client_credentials'));
  }));

  for (const [name, auth] of [['client_secret_basic', client.ClientSecretBasic], ['client_secret_post', client.ClientSecretPost]]) {
    test(`client_credentials (${name}) gives a JWT that jose verifies against /oauth2/jwks`, () => withLog(async () => {
      const config = await discover(auth);
      const tokens = await client.clientCredentialsGrant(config, { scope: 'all' });
      assert.equal(typeof tokens.access_token, 'string');
      assert.equal(tokens.token_type.toLowerCase(), 'bearer');
      assert.ok(tokens.expires_in > 0, `expires_in=${tokens.expires_in}`);

      const meta = config.serverMetadata();
      const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri));
      const { payload, protectedHeader } = await jose.jwtVerify(tokens.access_token, jwks, {
        issuer: meta.issuer,
        audience: audiences(meta),
        algorithms: ['RS256'],
      });
      assert.equal(protectedHeader.alg, 'RS256');
      assert.ok(protectedHeader.kid, 'token header carries a kid');
      assert.equal(payload.sub, CLIENT_ID);
      assert.equal(payload.client_id, CLIENT_ID);
      assert.ok(Array.isArray(payload.scp) && payload.scp.includes('all'), `scp=${JSON.stringify(payload.scp)}`);
      assert.ok(payload.exp > payload.iat, 'exp after iat');
    }));
  }

  test('a tampered token fails jwtVerify', () => withLog(async () => {
    const config = await discover();
    const { access_token: token } = await client.clientCredentialsGrant(config, { scope: 'all' });
    const meta = config.serverMetadata();
    const jwks = jose.createRemoteJWKSet(new URL(meta.jwks_uri));
    const options = { issuer: meta.issuer, audience: audiences(meta), algorithms: ['RS256'] };

    // Sanity: the untouched token verifies, so the failures below are about the tampering.
    await jose.jwtVerify(token, jwks, options);

    const [header, payload, signature] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    const forgedPayload = Buffer.from(JSON.stringify({ ...claims, sub: 'someone-else' })).toString('base64url');
    await assert.rejects(
      jose.jwtVerify(`${header}.${forgedPayload}.${signature}`, jwks, options),
      jose.errors.JWSSignatureVerificationFailed,
    );

    const sigBytes = Buffer.from(signature, 'base64url');
    sigBytes[0] ^= 0x01;
    await assert.rejects(
      jose.jwtVerify(`${header}.${payload}.${sigBytes.toString('base64url')}`, jwks, options),
      jose.errors.JWSSignatureVerificationFailed,
    );
  }));

  test('a wrong client secret is refused with invalid_client', () => withLog(async () => {
    const config = await discover(client.ClientSecretBasic, `${server.clients[CLIENT_ID]}-wrong`);
    let caught;
    try {
      await client.clientCredentialsGrant(config, { scope: 'all' });
    } catch (err) {
      caught = err;
    }
    assert.ok(caught, 'the grant must fail');
    // RFC 6749 §5.2: 401 invalid_client. With a WWW-Authenticate challenge (RFC 6749 wants one when
    // the client used Basic), openid-client surfaces the challenge instead of the parsed body.
    if (caught instanceof client.WWWAuthenticateChallengeError) {
      assert.equal(caught.status, 401);
      const body = await caught.response.json();
      assert.equal(body.error, 'invalid_client');
    } else {
      assert.ok(caught instanceof client.ResponseBodyError, `${caught?.name}: ${caught?.message}`);
      assert.equal(caught.status, 401);
      assert.equal(caught.error, 'invalid_client');
    }
  }));
});

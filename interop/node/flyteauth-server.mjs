// Starts and stops a real `flyteauth serve` for the node interop tests.
//
// Same shape as interop/python/flyteauth_harness.py: fresh secrets from `flyteauth secrets init`,
// confidential static clients with bcrypt-hashed secrets (flyteadmin's base64-wrapped form), a free
// port on 127.0.0.1 and a SQLite database in a temporary directory. Optionally, further static clients
// (public or confidential, with redirect URIs and other grant types) and accounts made with
// `flyteauth users add` before `serve` starts.

import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import bcrypt from 'bcryptjs';

const execFileP = promisify(execFile);
const HEALTH_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const USERS_ADD_TIMEOUT_MS = 30_000;

export function flyteauthBin() {
  const bin = process.env.FLYTEAUTH_BIN;
  if (!bin) {
    throw new Error('FLYTEAUTH_BIN is not set (scripts/test-all sets it to target/debug/flyteauth)');
  }
  accessSync(bin, constants.X_OK);
  return bin;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** flyteadmin's `client_secret`: standard Base64 of a bcrypt hash (cost 6 keeps tests fast). */
function hashedClientSecret(secret) {
  return Buffer.from(bcrypt.hashSync(secret, 6), 'utf8').toString('base64');
}

// JSON strings are valid YAML double-quoted scalars, so this needs no YAML library.
const q = (s) => JSON.stringify(String(s));

function clientYaml(id, { secret, public: isPublic = false, grantTypes, redirectUris = [], responseTypes = [], scopes, audience = [] }) {
  if (!isPublic && !secret) throw new Error(`static client ${id}: a confidential client needs a secret`);
  const list = (xs) => `[${xs.map(q).join(', ')}]`;
  return [
    `        ${q(id)}:`,
    `          id: ${q(id)}`,
    ...(isPublic ? [] : [`          client_secret: ${q(hashedClientSecret(secret))}`]),
    `          redirect_uris: ${list(redirectUris)}`,
    `          grant_types: ${list(grantTypes)}`,
    `          response_types: ${list(responseTypes)}`,
    `          scopes: ${list(scopes)}`,
    `          audience: ${list(audience)}`,
    `          public: ${isPublic ? 'true' : 'false'}`,
  ];
}

function configYaml({ port, dir, clients, staticClients }) {
  const lines = [
    'server:',
    `  httpPort: ${port}`,
    '  security:',
    '    secure: false',
    'auth:',
    '  authorizedUris:',
    `    - ${q(`http://localhost:${port}`)}`,
    `    - ${q(`http://127.0.0.1:${port}`)}`,
    '  appAuth:',
    '    selfAuthServer:',
    '      staticClients:',
  ];
  for (const [id, secret] of Object.entries(clients)) {
    lines.push(...clientYaml(id, { secret, grantTypes: ['client_credentials'], scopes: ['all'] }));
  }
  for (const [id, spec] of Object.entries(staticClients)) {
    if (Object.hasOwn(clients, id)) throw new Error(`static client ${id} is also in clients`);
    lines.push(...clientYaml(id, spec));
  }
  lines.push(
    'database:',
    '  sqlite:',
    `    file: ${q(path.join(dir, 'flyteauth.db'))}`,
    'secrets:',
    `  secrets-prefix: ${q(path.join(dir, 'secrets'))}`,
    'flyteauth:',
    '  listenAddress: "127.0.0.1"',
    `  dataDir: ${q(path.join(dir, 'data'))}`,
  );
  return lines.join('\n') + '\n';
}

async function healthy(port) {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `flyteauth users add`, with the password on standard input (never on the command line). */
function addUser(bin, configPath, dir, { name, password, email, displayName, admin = false }) {
  const args = ['users', 'add', name, '--password-stdin', '--config', configPath];
  if (email !== undefined) args.push('--email', email);
  if (displayName !== undefined) args.push('--display-name', displayName);
  if (admin) args.push('--admin');
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      cwd: dir,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
      timeout: USERS_ADD_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`flyteauth users add ${name} failed (${code ?? signal}):\n${output}`));
    });
    child.stdin.on('error', () => {}); // an early exit is reported by 'close' with its output
    child.stdin.end(`${password}\n`);
  });
}

/**
 * Starts flyteauth.
 *
 * - `clients`: confidential client_credentials clients, `{ id: plaintextSecret }` (scope `all`).
 * - `staticClients`: further static clients, `{ id: { secret?, public?, grantTypes, redirectUris?,
 *   responseTypes?, scopes, audience? } }`; `secret` (plaintext) is required unless `public` is true.
 * - `users`: accounts created before `serve` starts, `[{ name, password, email?, displayName?, admin? }]`.
 *
 * Resolves to { port, baseUrl, clients, staticClients, users, dir, logPath, log(), stop() }.
 */
export async function startServer({ clients = {}, staticClients = {}, users = [] } = {}) {
  const bin = flyteauthBin();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'flyteauth-node-'));
  try {
    await execFileP(bin, ['secrets', 'init', '--dir', path.join(dir, 'secrets')], { cwd: dir, timeout: 60_000 });
  } catch (err) {
    throw new Error(`flyteauth secrets init failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }

  const configPath = path.join(dir, 'flyteauth.yaml');
  let port = await freePort();
  await writeFile(configPath, configYaml({ port, dir, clients, staticClients }));
  // Accounts live in the database, which a retry on another port keeps.
  for (const user of users) await addUser(bin, configPath, dir, user);

  let lastLog = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    if (attempt > 0) {
      port = await freePort();
      await writeFile(configPath, configYaml({ port, dir, clients, staticClients }));
    }
    const logPath = path.join(dir, `server-${attempt}.log`);
    const logStream = createWriteStream(logPath);
    await new Promise((r) => logStream.once('open', r));
    const child = spawn(bin, ['serve', '--config', configPath], {
      cwd: dir,
      stdio: ['ignore', logStream, logStream],
      env: { ...process.env, RUST_BACKTRACE: '1', NO_COLOR: '1' },
    });
    let exitCode = null;
    const exited = new Promise((r) => child.once('exit', (code, signal) => {
      exitCode = code ?? signal;
      r();
    }));
    const log = async () => {
      try {
        return await readFile(logPath, 'utf8');
      } catch (err) {
        return `<cannot read ${logPath}: ${err.message}>`;
      }
    };
    const stop = async () => {
      if (exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      logStream.end();
    };

    const deadline = Date.now() + HEALTH_TIMEOUT_MS;
    while (Date.now() < deadline && exitCode === null) {
      if (await healthy(port)) {
        return {
          port,
          baseUrl: `http://localhost:${port}`,
          clients,
          staticClients,
          users,
          dir,
          logPath,
          log,
          stop: async ({ keepDir = process.env.FLYTEAUTH_KEEP_TEST_DIRS === '1' } = {}) => {
            await stop();
            if (!keepDir) await rm(dir, { recursive: true, force: true });
          },
        };
      }
      await sleep(100);
    }
    const died = exitCode !== null;
    await stop();
    lastLog = await log();
    if (died && /in use/i.test(lastLog)) continue;
    throw new Error(
      `flyteauth serve ${died ? `exited with ${exitCode}` : `gave no 200 on /healthz within ${HEALTH_TIMEOUT_MS} ms`}; log:\n${lastLog}`,
    );
  }
  throw new Error(`flyteauth serve could not bind a free port after 3 tries; last log:\n${lastLog}`);
}

export function randomSecret() {
  return randomBytes(24).toString('base64url');
}

// Starts and stops a real `flyteauth serve` for the node interop tests.
//
// Same shape as interop/python/flyteauth_harness.py: fresh secrets from `flyteauth secrets init`,
// confidential static clients with bcrypt-hashed secrets (flyteadmin's base64-wrapped form), a free
// port on 127.0.0.1 and a SQLite database in a temporary directory.

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

function configYaml({ port, dir, clients }) {
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
    lines.push(
      `        ${q(id)}:`,
      `          id: ${q(id)}`,
      `          client_secret: ${q(hashedClientSecret(secret))}`,
      '          redirect_uris: []',
      '          grant_types: ["client_credentials"]',
      '          response_types: []',
      '          scopes: ["all"]',
      '          audience: []',
      '          public: false',
    );
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

/**
 * Starts flyteauth with the given confidential clients ({ id: plaintextSecret }).
 * Resolves to { port, baseUrl, clients, dir, logPath, log(), stop() }.
 */
export async function startServer({ clients }) {
  const bin = flyteauthBin();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'flyteauth-node-'));
  try {
    await execFileP(bin, ['secrets', 'init', '--dir', path.join(dir, 'secrets')], { cwd: dir, timeout: 60_000 });
  } catch (err) {
    throw new Error(`flyteauth secrets init failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }

  let lastLog = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const configPath = path.join(dir, 'flyteauth.yaml');
    await writeFile(configPath, configYaml({ port, dir, clients }));
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

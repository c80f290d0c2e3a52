"""Helpers for the API key interop test: flyteauth over TLS on port 443 of 127.0.0.1 and the `flyte` CLI
run either as a logged-in person (a configuration file, PKCE with the scripted person as `BROWSER`) or as an
app (only `FLYTE_API_KEY`, no configuration file).

Why port 443: an API key is `base64("host:client_id:client_secret:org")` and the SDK splits it on `:` from the
left, so the key can name no port. The SDK also builds the key's host from its own endpoint, so the person's
configuration says `dns:///127.0.0.1` (no port: https means 443) and the server's public URL is
`https://127.0.0.1` (`auth.authorizedUris[0]`).

Tokens are cached the way a developer's machine caches them: in flyte's plain-text keyring file
(`$HOME/.flyte/keyring.cfg`, forced through `PYTHON_KEYRING_BACKEND`), so the person logs in once and the
app's second `whoami` presents the access token it got before its app was deleted. Every HOME is a private
temporary directory, never a developer's.

TLS trust without a configuration file: the Connect transport (pyqwest, rustls with the platform's roots)
and the token client (httpx with `trust_env`) both read `SSL_CERT_FILE`; with a configuration file the
Connect client also takes `admin.caCertFilePath`.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Sequence

import pytest
import yaml

from flyteauth_harness import (
    APP_CLIENT_ID,
    HEALTH_TIMEOUT_SECONDS,
    LocalUser,
    Server,
    add_user,
    flyteauth_bin,
    run_cli,
    write_config,
)
from login_harness import FOREIGN_ENV_NAMES, FOREIGN_ENV_PREFIXES, ScriptedPerson, strip_ansi

HTTPS_PORT = 443
HOST = "127.0.0.1"
# No port: an API key cannot carry one.
PUBLIC_URL = f"https://{HOST}"
# The endpoint the person's configuration names; the SDK turns it into https://127.0.0.1.
FLYTE_ENDPOINT = f"dns:///{HOST}"
# flyte's own file keyring, selected explicitly (it only volunteers itself inside IPython).
FILE_KEYRING = "flyte._keyring.file.SimplePlainTextKeyring"
FLYTE_CLI = Path(sys.executable).with_name("flyte")
CLI_TIMEOUT_SECONDS = 60.0


@dataclasses.dataclass
class Server443(Server):
    """A flyteauth listening on 127.0.0.1:443 whose public URL is `https://127.0.0.1`."""

    @property
    def public_url(self) -> str:
        return PUBLIC_URL

    @property
    def grpc_target(self) -> str:
        return f"{HOST}:{HTTPS_PORT}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{PUBLIC_URL}/healthz", timeout=2, context=self.ssl_context()) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False


def require_port_443() -> None:
    """Fails (never skips) when 127.0.0.1:443 cannot be bound, saying why."""
    failure: Optional[OSError] = None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, HTTPS_PORT))
        except OSError as err:
            failure = err
    if failure is None:
        return
    if failure.errno == errno.EACCES:
        why = f"permission denied (uid {os.getuid()}; ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    elif failure.errno == errno.EADDRINUSE:
        why = "the port is already in use (`ss -ltnp 'sport = :443'` shows by whom)"
    else:
        why = str(failure)
    pytest.fail(
        f"the API key test needs flyteauth on {HOST}:{HTTPS_PORT} (API keys cannot carry a port) "
        f"but cannot bind it: {why}",
        pytrace=False,
    )


def start_server_on_443(workdir: Path, users: Sequence[LocalUser] = ()) -> Server443:
    """`flyteauth serve --config FILE` over TLS (`flyteauth tls self-signed`, whose leaf names 127.0.0.1) on
    127.0.0.1:443 with `auth.authorizedUris: [https://127.0.0.1]`; `users` are added with
    `flyteauth users add --config FILE` first."""
    require_port_443()
    secrets_dir = workdir / "secrets"
    run_cli("secrets", "init", "--dir", str(secrets_dir), cwd=workdir)
    tls_dir = workdir / "tls"
    run_cli("tls", "self-signed", "--dir", str(tls_dir), cwd=workdir)
    server = Server443(
        workdir=workdir,
        port=HTTPS_PORT,
        tls=True,
        clients={APP_CLIENT_ID: secrets.token_urlsafe(24)},
        log_path=workdir / "server.log",
        ca_file=tls_dir / "ca.pem",
        users={u.name: u for u in users},
    )
    config_path = write_config(server, secrets_dir, tls_dir)
    config = yaml.safe_load(config_path.read_text())
    config["auth"]["authorizedUris"] = [PUBLIC_URL]
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    server.config_path = config_path
    for user in users:
        add_user(user, cwd=workdir, config=config_path)

    args = ["serve", "--config", str(config_path)]
    with open(server.log_path, "wb") as log:
        server.process = subprocess.Popen(
            [str(flyteauth_bin()), *args],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_BACKTRACE": "1", "NO_COLOR": "1"},
        )
    deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        if server.healthy():
            return server
        time.sleep(0.1)
    exited = server.process.poll()
    server.stop()
    if exited is not None:
        reason = f"exited with {exited}"
    else:
        reason = f"no 200 from {PUBLIC_URL}/healthz within {HEALTH_TIMEOUT_SECONDS}s"
    pytest.fail(
        f"flyteauth {' '.join(args)} on {HOST}:{HTTPS_PORT} {reason}; server log:\n{server.log_text()}",
        pytrace=False,
    )


def clean_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """Our environment minus a developer's Flyte, keyring, TLS and browser settings, with a private HOME,
    flyte's file keyring under it, plain output and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV_PREFIXES) and k not in FOREIGN_ENV_NAMES}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        env.pop(name, None)
    env.update(
        {
            "HOME": str(home),
            "PYTHON_KEYRING_BACKEND": FILE_KEYRING,
            "NO_COLOR": "1",
            "TERM": "dumb",
            "COLUMNS": "400",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@dataclasses.dataclass
class FlyteRun:
    """What one `flyte` CLI process did."""

    argv: list[str]
    env_note: str
    returncode: Optional[int]  # None: killed after the timeout
    stdout: str
    stderr: str
    timeout: float

    @property
    def output(self) -> str:
        return self.stdout + "\n" + self.stderr

    def describe(self) -> str:
        status = f"killed after {self.timeout:.0f}s" if self.returncode is None else f"exit {self.returncode}"
        return (
            f"`{' '.join(self.argv)}` ({self.env_note}): {status}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def run_flyte(
    args: Sequence[str], *, cwd: Path, env: dict[str, str], env_note: str, timeout: float = CLI_TIMEOUT_SECONDS
) -> FlyteRun:
    """Runs `flyte ARGS` with a hard timeout (the process is killed when it runs out)."""
    assert FLYTE_CLI.is_file(), f"flyte CLI not found next to {sys.executable}"
    argv = [str(FLYTE_CLI), *args]
    cwd.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        returncode: Optional[int] = proc.returncode
    except subprocess.TimeoutExpired:
        # The whole group: the CLI may have children of its own.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = proc.communicate(timeout=10)
        returncode = None
    return FlyteRun(argv, env_note, returncode, strip_ansi(stdout), strip_ansi(stderr), timeout)


def write_person_config(server: Server, workdir: Path) -> Path:
    """The person's flyte configuration: PKCE against https://127.0.0.1 trusting the test CA."""
    assert server.ca_file is not None and server.ca_file.is_file(), f"no CA file at {server.ca_file}"
    config = {
        "admin": {
            "endpoint": FLYTE_ENDPOINT,
            "insecure": False,
            "authType": "Pkce",
            "caCertFilePath": str(server.ca_file),
        },
    }
    path = workdir / "flyte-config.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def person_env(home: Path, person: ScriptedPerson, server: Server) -> dict[str, str]:
    """The person's environment: the scripted person as BROWSER, the test CA for httpx (token requests)."""
    return clean_env(home, {**person.env(), "SSL_CERT_FILE": str(server.ca_file)})


def app_env(home: Path, server: Server, api_key: str) -> dict[str, str]:
    """An app's environment: only FLYTE_API_KEY and the test CA (SSL_CERT_FILE, for pyqwest and httpx)."""
    return clean_env(home, {"FLYTE_API_KEY": api_key, "SSL_CERT_FILE": str(server.ca_file)})


EXPORT_LINE = re.compile(r'export FLYTE_API_KEY="([A-Za-z0-9+/=]+)"')
# The same line as rich wraps it inside its panel (`TERM=dumb` makes the console 80 columns wide).
WRAPPED_EXPORT = re.compile(r'export\s*FLYTE_API_KEY="([A-Za-z0-9+/=]+)"')
PANEL_BORDERS = "│┃║|"


def printed_api_key(run: FlyteRun) -> Optional[str]:
    """The key of the `export FLYTE_API_KEY="…"` line that `flyte create api-key` prints in a panel."""
    match = EXPORT_LINE.search(run.stdout)
    if match is None:
        # Base64 has no spaces: the panel's lines, without borders and padding, join up to the whole key.
        joined = "".join(line.strip().strip(PANEL_BORDERS).strip() for line in run.stdout.splitlines())
        match = WRAPPED_EXPORT.search(joined)
    return match.group(1) if match else None


def decode_api_key(key: str) -> list[str]:
    """The key's parts as the SDK splits them: `host`, `client_id`, `client_secret`, `org`."""
    return base64.b64decode(key.encode(), validate=True).decode().split(":", 3)


def flyteauth_output(server: Server, *args: str) -> subprocess.CompletedProcess:
    """`flyteauth ARGS --config FILE` on the server's configuration; the caller judges the exit status."""
    assert server.config_path is not None
    return subprocess.run(
        [str(flyteauth_bin()), *args, "--config", str(server.config_path)],
        cwd=server.workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RUST_BACKTRACE": "1", "NO_COLOR": "1"},
    )


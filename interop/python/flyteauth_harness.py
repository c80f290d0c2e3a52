"""Starts and stops a real `flyteauth serve` for the interop tests.

Each test module gets its own server process (module-scoped fixtures): fresh secrets from
`flyteauth secrets init`, confidential static clients with bcrypt-hashed secrets (flyteadmin's
format), a free port on 127.0.0.1 and a SQLite database in a temporary directory. The server log is
attached to the report of every failing test that used the server.

Local accounts (people who log in through the browser flow) are created with `flyteauth users add`
before the server starts, on the same configuration file or data directory the server then uses. A
server is started either from a written configuration file (`start_server`) or as the embedded
default (`start_embedded_server`: `flyteauth serve --data-dir DIR`, no configuration file).
"""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import signal
import socket
import ssl
import string
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import bcrypt
import pytest
import yaml

# The identity flytekit and the flyte SDK authenticate as.
APP_CLIENT_ID = "interop-app"
# A second client whose secret contains characters that `urllib.parse.quote_plus` rewrites
# (flytekit and flyte percent-encode the secret before Base64 in the Basic header).
ODD_CLIENT_ID = "interop-odd-secret"

# The person who logs in through the browser flow in the login tests.
ALICE_NAME = "alice"
ALICE_EMAIL = "alice@example.com"
ALICE_DISPLAY_NAME = "Alice Example"
PASSWORD_LENGTH = 20

HEALTH_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
LOG_TAIL_CHARS = 20_000


def flyteauth_bin() -> Path:
    """The server binary under test; a missing binary is a failure, never a skip."""
    value = os.environ.get("FLYTEAUTH_BIN", "")
    if not value:
        pytest.fail("FLYTEAUTH_BIN is not set (scripts/test-all sets it to target/debug/flyteauth)", pytrace=False)
    path = Path(value)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(f"FLYTEAUTH_BIN={value} is not an executable file", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bcrypt_client_secret(secret: str) -> str:
    """flyteadmin's `client_secret` form: standard Base64 of a bcrypt hash (cost 6 keeps tests fast)."""
    return base64.b64encode(bcrypt.hashpw(secret.encode(), bcrypt.gensalt(6))).decode()


def run_cli(*args: str, cwd: Path, stdin_text: Optional[str] = None) -> subprocess.CompletedProcess:
    """Runs `flyteauth ARGS`; a non-zero exit fails the test. `stdin_text` is fed on stdin and never shown."""
    proc = subprocess.run(
        [str(flyteauth_bin()), *args],
        cwd=cwd,
        input=stdin_text,
        stdin=subprocess.DEVNULL if stdin_text is None else None,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RUST_BACKTRACE": "1", "NO_COLOR": "1"},
    )
    if proc.returncode != 0:
        pytest.fail(
            f"`flyteauth {' '.join(args)}` exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}",
            pytrace=False,
        )
    return proc


def random_password(length: int = PASSWORD_LENGTH) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclasses.dataclass(frozen=True)
class LocalUser:
    """A local account: what `flyteauth users add` is given and what the person types into the login form."""

    name: str
    email: str
    display_name: str
    password: str = dataclasses.field(repr=False)


def alice() -> LocalUser:
    """alice with a fresh random password."""
    return LocalUser(ALICE_NAME, ALICE_EMAIL, ALICE_DISPLAY_NAME, random_password())


def add_user(user: LocalUser, *, cwd: Path, config: Optional[Path] = None, data_dir: Optional[Path] = None) -> None:
    """`flyteauth users add NAME --email E --display-name N --password-stdin (--config FILE | --data-dir DIR)`.

    The password goes through stdin, never the command line (which `ps` shows to everyone).
    """
    if (config is None) == (data_dir is None):
        raise ValueError("add_user needs exactly one of config and data_dir")
    where = ["--config", str(config)] if config is not None else ["--data-dir", str(data_dir)]
    run_cli(
        "users",
        "add",
        user.name,
        "--email",
        user.email,
        "--display-name",
        user.display_name,
        "--password-stdin",
        *where,
        cwd=cwd,
        stdin_text=user.password + "\n",
    )


@dataclasses.dataclass
class Server:
    """A running flyteauth process and what the tests need to talk to it."""

    workdir: Path
    port: int
    tls: bool
    clients: dict[str, str] = dataclasses.field(repr=False)  # client id -> plaintext secret
    log_path: Path
    ca_file: Optional[Path]
    process: Optional[subprocess.Popen] = None
    # Local accounts created before start, by user name.
    users: dict[str, LocalUser] = dataclasses.field(default_factory=dict, repr=False)
    # The configuration file it was started with; None for the embedded default.
    config_path: Optional[Path] = None
    # The embedded default's data directory; None when started from a configuration file.
    data_dir: Optional[Path] = None

    @property
    def public_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://localhost:{self.port}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.public_url}/oauth2/token"

    @property
    def grpc_target(self) -> str:
        return f"localhost:{self.port}"

    @property
    def app_secret(self) -> str:
        return self.clients[APP_CLIENT_ID]

    def log_text(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as err:
            return f"<cannot read {self.log_path}: {err}>"
        if len(text) > LOG_TAIL_CHARS:
            text = "...<truncated>...\n" + text[-LOG_TAIL_CHARS:]
        return text

    def ssl_context(self) -> Optional[ssl.SSLContext]:
        if not self.tls:
            return None
        assert self.ca_file is not None
        return ssl.create_default_context(cafile=str(self.ca_file))

    def healthy(self) -> bool:
        scheme = "https" if self.tls else "http"
        # `localhost` matches the self-signed leaf's names; the server listens on 127.0.0.1 only.
        url = f"{scheme}://localhost:{self.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2, context=self.ssl_context()) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def stop(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_SECONDS)


def write_config(
    server: Server, secrets_dir: Path, tls_dir: Optional[Path], extensions: Optional[dict[str, Any]] = None
) -> Path:
    static_clients = {
        client_id: {
            "id": client_id,
            "client_secret": bcrypt_client_secret(secret),
            "redirect_uris": [],
            "grant_types": ["client_credentials"],
            "response_types": [],
            "scopes": ["all"],
            "audience": [],
            "public": False,
        }
        for client_id, secret in server.clients.items()
    }
    security: dict = {"secure": server.tls}
    if tls_dir is not None:
        security["ssl"] = {
            "certificateFile": str(tls_dir / "server.pem"),
            "keyFile": str(tls_dir / "server.key"),
        }
    scheme = "https" if server.tls else "http"
    config = {
        "server": {"httpPort": server.port, "security": security},
        "auth": {
            "authorizedUris": [f"{scheme}://localhost:{server.port}", f"{scheme}://127.0.0.1:{server.port}"],
            "appAuth": {"selfAuthServer": {"staticClients": static_clients}},
        },
        "database": {"sqlite": {"file": str(server.workdir / "flyteauth.db")}},
        "secrets": {"secrets-prefix": str(secrets_dir)},
        "flyteauth": {
            "listenAddress": "127.0.0.1",
            "dataDir": str(server.workdir / "data"),
            **(extensions or {}),
        },
    }
    path = server.workdir / "flyteauth.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _launch(
    workdir: Path,
    prepare: Callable[[int, int], tuple[Server, list[str]]],
) -> Server:
    """Starts `flyteauth ARGS` until /healthz answers 200; `prepare(attempt, port)` gives the Server and ARGS.

    A free port can be taken between picking and binding, so a bind failure is retried on another port.
    """
    last_log = ""
    for attempt in range(3):
        server, args = prepare(attempt, free_port())
        log = open(server.log_path, "wb")
        server.process = subprocess.Popen(
            [str(flyteauth_bin()), *args],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_BACKTRACE": "1", "NO_COLOR": "1"},
        )
        log.close()
        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                break
            if server.healthy():
                return server
            time.sleep(0.1)
        exited = server.process.poll()
        server.stop()
        last_log = server.log_text()
        if exited is not None and "in use" in last_log.lower():
            continue
        reason = (
            f"exited with {exited}" if exited is not None else f"no 200 from /healthz within {HEALTH_TIMEOUT_SECONDS}s"
        )
        pytest.fail(f"flyteauth {' '.join(args)} {reason}; server log:\n{last_log}", pytrace=False)
    pytest.fail(f"flyteauth serve could not bind a free port after 3 tries; last log:\n{last_log}", pytrace=False)


def start_server(
    workdir: Path,
    tls: bool,
    users: Sequence[LocalUser] = (),
    extensions: Optional[dict[str, Any]] = None,
) -> Server:
    """`flyteauth serve --config FILE` with a written configuration.

    `users` are created with `flyteauth users add --config FILE` before the server starts; `extensions`
    are merged into the file's `flyteauth:` section (e.g. `{"refreshTokenReuseGrace": "1s"}`).
    """
    secrets_dir = workdir / "secrets"
    run_cli("secrets", "init", "--dir", str(secrets_dir), cwd=workdir)
    tls_dir: Optional[Path] = None
    if tls:
        tls_dir = workdir / "tls"
        run_cli("tls", "self-signed", "--dir", str(tls_dir), cwd=workdir)
        for name in ("ca.pem", "server.pem", "server.key"):
            assert (tls_dir / name).is_file(), f"`flyteauth tls self-signed` did not write {name}"
    clients = {
        APP_CLIENT_ID: secrets.token_urlsafe(24),
        ODD_CLIENT_ID: "s3cr+t/=x y&%" + secrets.token_hex(8),
    }
    users_added = False

    def prepare(attempt: int, port: int) -> tuple[Server, list[str]]:
        nonlocal users_added
        server = Server(
            workdir=workdir,
            port=port,
            tls=tls,
            clients=clients,
            log_path=workdir / f"server-{attempt}.log",
            ca_file=(tls_dir / "ca.pem") if tls_dir else None,
            users={u.name: u for u in users},
        )
        config_path = write_config(server, secrets_dir, tls_dir, extensions)
        server.config_path = config_path
        if not users_added:
            # The accounts live in the database the configuration names, which no retry changes.
            for user in users:
                add_user(user, cwd=workdir, config=config_path)
            users_added = True
        return server, ["serve", "--config", str(config_path)]

    return _launch(workdir, prepare)


def start_embedded_server(workdir: Path, tls: bool, users: Sequence[LocalUser] = ()) -> Server:
    """The embedded default: `flyteauth serve --data-dir DIR --listen 127.0.0.1:PORT [--self-signed-tls]`.

    `users` are created with `flyteauth users add --data-dir DIR` first. With `tls`, the server writes
    its own CA to DIR/tls/ca.pem, which `Server.ca_file` names. The embedded default's only client is
    `default-app`, whose secret it writes to DIR/default-app.secret; `Server.clients` is empty.
    """
    data_dir = workdir / "data"
    for user in users:
        add_user(user, cwd=workdir, data_dir=data_dir)

    def prepare(attempt: int, port: int) -> tuple[Server, list[str]]:
        server = Server(
            workdir=workdir,
            port=port,
            tls=tls,
            clients={},
            log_path=workdir / f"server-{attempt}.log",
            ca_file=(data_dir / "tls" / "ca.pem") if tls else None,
            users={u.name: u for u in users},
            data_dir=data_dir,
        )
        args = ["serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"]
        if tls:
            args.append("--self-signed-tls")
        return server, args

    return _launch(workdir, prepare)

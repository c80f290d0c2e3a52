"""The ingress stack of the ingress tests: real nginx with deploy/nginx's configuration in front of flyteauth,
an HTTP echo upstream and a gRPC upstream, optionally with oidc-provider as the federated identity provider,
and headless Chromium driven by Selenium.

    stack = start_ingress(workdir, users=[alice], federation=None)   # or federation=IdpAccount(...)
    ...
    stack.stop()

Everything listens on 127.0.0.1; ports are free ports picked at start (the upstreams and the identity provider
pick their own and print them). nginx runs in the foreground with its own prefix directory (pid, logs, temp
and cache paths under it) from deploy/nginx/flyteauth.conf and flyteauth-http.conf, exactly as shipped with
only their @PLACEHOLDERS@ (ports and paths) replaced; the main nginx.conf around them is written here. A test
CA and a server certificate for 127.0.0.1 are made with `cryptography`. Each start is bounded by a timeout,
and `stop` ends every process it started (by its own id), newest first.

Chromium is Debian's /usr/bin/chromium driven by Debian's /usr/bin/chromedriver; Selenium Manager is kept
offline (SE_OFFLINE=true) and never downloads anything. The browser resolves no host name (every page of the
tests is on 127.0.0.1), so nothing a page links to leaves the machine.

Set FLYTEAUTH_SCREENSHOTS=DIR to have the browser tests save the pictures of docs/deploy-nginx.md into DIR.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import pytest
import requests
import yaml

from flyteauth_harness import (
    APP_CLIENT_ID,
    ODD_CLIENT_ID,
    LocalUser,
    Server,
    _launch,
    add_user,
    flyteauth_bin,
    free_port,
    run_cli,
    write_config,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEPLOY_DIR = ROOT / "deploy" / "nginx"
NODE_DIR = ROOT / "interop" / "node"
IDP_SCRIPT = NODE_DIR / "idp-server.mjs"
ECHO_SCRIPT = HERE / "echo_upstream.py"
GRPC_SCRIPT = HERE / "grpc_upstream.py"

NGINX_BIN = os.environ.get("NGINX", "/usr/sbin/nginx")
NGINX_MODULES_DIR = Path("/usr/lib/nginx/modules")
CHROMIUM_BIN = "/usr/bin/chromium"
CHROMEDRIVER_BIN = "/usr/bin/chromedriver"

START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
PAGE_LOAD_TIMEOUT_SECONDS = 30.0
LOG_TAIL_CHARS = 20_000
# How long nginx keeps a 200 from /me (proxy_cache_valid in flyteauth.conf).
AUTH_CACHE_SECONDS = 5.0

# The client flyteauth is registered as at the identity provider.
IDP_CLIENT_ID = "flyteauth-ingress"
IDP_SCOPES = ["openid", "profile", "email", "groups"]


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "<not written>"
    except OSError as err:
        return f"<cannot read {path}: {err}>"
    if len(text) > LOG_TAIL_CHARS:
        text = "...<truncated>...\n" + text[-LOG_TAIL_CHARS:]
    return text


# --------------------------------------------------------------------------------------------------
# TLS


@dataclasses.dataclass(frozen=True)
class TestPki:
    """A test CA and a server certificate for 127.0.0.1 and localhost, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_pki(directory: Path) -> TestPki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flyteauth ingress test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = TestPki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pki.key_file.chmod(0o600)
    return pki


# --------------------------------------------------------------------------------------------------
# Processes


class Child:
    """A started process: stdout read line by line by a thread (kept in `lines`), stderr to a log file.

    Started in a session of its own, so that stopping it also reaches whatever it started itself.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *, env: Optional[dict[str, str]] = None,
                 cwd: Optional[Path] = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.lines: list[str] = []
        self._changed = threading.Condition()
        log = open(log_path, "wb")
        try:
            self.process = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,
            )
        finally:
            log.close()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, ""):
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_line(self, predicate: Callable[[str], bool], timeout: float) -> Optional[str]:
        """The first stdout line (so far or to come) that `predicate` accepts; None after `timeout` or EOF."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    return None
                self._changed.wait(min(left, 0.2))

    def first_line(self, timeout: float = START_TIMEOUT_SECONDS) -> str:
        line = self.wait_line(lambda _: True, timeout)
        if line is None:
            self.stop()
            pytest.fail(
                f"{self.name} ({' '.join(self.argv)}) printed nothing within {timeout}s "
                f"(exit {self.process.poll()}); its log:\n{_tail(self.log_path)}",
                pytrace=False,
            )
        return line

    def stop(self) -> None:
        proc = self.process
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        self._reader.join(timeout=STOP_TIMEOUT_SECONDS)

    def log_text(self) -> str:
        with self._changed:
            out = "\n".join(self.lines)
        return f"--- stdout ---\n{out}\n--- stderr ({self.log_path}) ---\n{_tail(self.log_path)}"


def _python_child(name: str, script: Path, workdir: Path) -> tuple[Child, int]:
    child = Child(name, [sys.executable, str(script)], workdir / f"{name}.log",
                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = child.first_line()
    try:
        return child, int(line)
    except ValueError:
        child.stop()
        pytest.fail(f"{name} printed {line!r} instead of its port; log:\n{_tail(child.log_path)}", pytrace=False)


# --------------------------------------------------------------------------------------------------
# The identity provider


@dataclasses.dataclass(frozen=True)
class IdpAccount:
    """A person at the identity provider; `login` is what they type and also their `sub`."""

    login: str
    email: str
    name: str
    groups: tuple[str, ...] = ()


class IdentityProvider:
    """oidc-provider from interop/node/idp-server.mjs, with the events it printed."""

    def __init__(self, workdir: Path, ingress_url: str, accounts: Sequence[IdpAccount]) -> None:
        node_modules = NODE_DIR / "node_modules" / "oidc-provider"
        if not node_modules.is_dir():
            pytest.fail(f"{node_modules} is missing: run `npm ci` in {NODE_DIR}", pytrace=False)
        self.client_secret = secrets.token_urlsafe(24)
        env = {
            **os.environ,
            "IDP_CLIENT_ID": IDP_CLIENT_ID,
            "IDP_CLIENT_SECRET": self.client_secret,
            "IDP_REDIRECT_URIS": f"{ingress_url}/callback",
            # flyteauth sends the public URL with or without its trailing slash; both are registered.
            "IDP_POST_LOGOUT_REDIRECT_URIS": f"{ingress_url}/ {ingress_url}",
            "IDP_ACCOUNTS": json.dumps(
                {a.login: {"email": a.email, "name": a.name, "groups": list(a.groups)} for a in accounts}
            ),
            "NO_COLOR": "1",
        }
        self.child = Child("idp", ["node", str(IDP_SCRIPT)], workdir / "idp.log", env=env, cwd=NODE_DIR)
        first = self.child.first_line()
        try:
            hello = json.loads(first)
            self.port = int(hello["port"])
            self.issuer = str(hello["issuer"])
        except (ValueError, KeyError, TypeError):
            self.child.stop()
            pytest.fail(f"idp-server printed {first!r} first; log:\n{_tail(self.child.log_path)}", pytrace=False)

    def events(self, kind: Optional[str] = None) -> list[dict[str, Any]]:
        out = []
        for line in list(self.child.lines):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (kind is None or event.get("event") == kind):
                out.append(event)
        return out

    def wait_event(self, kind: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The events of `kind` once there are at least `count` of them (whatever there is after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(kind)
            if len(found) >= count or time.monotonic() >= deadline:
                return found
            time.sleep(0.1)

    def stop(self) -> None:
        self.child.stop()


# --------------------------------------------------------------------------------------------------
# flyteauth behind the ingress


def start_flyteauth(
    workdir: Path,
    public_url: str,
    users: Sequence[LocalUser],
    idp: Optional[IdentityProvider],
) -> Server:
    """`flyteauth serve --config FILE`, plaintext on 127.0.0.1, whose public URL (`auth.authorizedUris[0]`) is
    the ingress; with `idp`, federated to it (`auth.userAuth.openId`, local accounts off)."""
    secrets_dir = workdir / "secrets"
    run_cli("secrets", "init", "--dir", str(secrets_dir), cwd=workdir)
    if idp is not None:
        (secrets_dir / "oidc_client_secret").write_text(idp.client_secret)
        (secrets_dir / "oidc_client_secret").chmod(0o600)
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
            tls=False,
            clients=clients,
            log_path=workdir / f"server-{attempt}.log",
            ca_file=None,
            users={u.name: u for u in users},
        )
        config_path = write_config(server, secrets_dir, None)
        config = yaml.safe_load(config_path.read_text())
        config["auth"]["authorizedUris"] = [public_url]
        if idp is not None:
            config["auth"]["userAuth"] = {
                "openId": {"baseUrl": idp.issuer, "clientId": IDP_CLIENT_ID, "scopes": IDP_SCOPES},
            }
            config["flyteauth"]["login"] = {"localAccounts": False}
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        server.config_path = config_path
        if not users_added:
            for user in users:
                add_user(user, cwd=workdir, config=config_path)
            users_added = True
        return server, ["serve", "--config", str(config_path)]

    return _launch(workdir, prepare)


def user_subjects(server: Server) -> dict[str, str]:
    """User name -> subject, from the table `flyteauth users list --config FILE` prints (a header line naming
    the `name` and `subject` columns, then one line per account)."""
    assert server.config_path is not None
    proc = run_cli("users", "list", "--config", str(server.config_path), cwd=server.workdir)
    lines = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    header = [h.lower() for h in lines[0]] if lines else []
    if "name" not in header or "subject" not in header:
        pytest.fail(f"`flyteauth users list` printed no name/subject table:\n{proc.stdout}", pytrace=False)
    name_col, subject_col = header.index("name"), header.index("subject")
    return {row[name_col]: row[subject_col] for row in lines[1:] if len(row) > max(name_col, subject_col)}


# --------------------------------------------------------------------------------------------------
# nginx


def render(template: str, values: dict[str, str]) -> str:
    out = template
    for key, value in values.items():
        out = out.replace(key, value)
    left = sorted(set(re.findall(r"@[A-Z][A-Z_]*@", out)))
    assert not left, f"placeholders left unreplaced: {left}"
    return out


class Nginx:
    """nginx in the foreground with prefix DIR, running deploy/nginx's files with the placeholders filled in."""

    def __init__(self, prefix: Path, listen_port: int, flyteauth_port: int, app_port: int, app_grpc_port: int,
                 pki: TestPki) -> None:
        if not Path(NGINX_BIN).is_file():
            pytest.fail(f"{NGINX_BIN} not found: install Debian's nginx package", pytrace=False)
        self.prefix = prefix
        self.port = listen_port
        self.conf_dir = prefix / "conf"
        self.logs_dir = prefix / "logs"
        self.cache_dir = prefix / "cache"
        for d in (self.conf_dir, self.logs_dir, self.cache_dir, prefix / "temp"):
            d.mkdir(parents=True, exist_ok=True)
        self.error_log = self.logs_dir / "error.log"
        self.access_log = self.logs_dir / "access.log"
        values = {
            "@LISTEN@": f"127.0.0.1:{listen_port}",
            "@TLS_CERT@": str(pki.cert_file),
            "@TLS_KEY@": str(pki.key_file),
            "@FLYTEAUTH_PORT@": str(flyteauth_port),
            "@APP_PORT@": str(app_port),
            "@APP_GRPC_PORT@": str(app_grpc_port),
            "@CACHE_DIR@": str(self.cache_dir),
            "@CONF_DIR@": str(self.conf_dir),
        }
        for name in ("flyteauth.conf", "flyteauth-http.conf"):
            (self.conf_dir / name).write_text(render((DEPLOY_DIR / name).read_text(), values))
        shutil.copyfile(DEPLOY_DIR / "flyteauth.js", self.conf_dir / "flyteauth.js")
        self.main_conf = self.conf_dir / "nginx.conf"
        self.main_conf.write_text(self._main_conf())
        test = subprocess.run(
            [NGINX_BIN, "-t", "-q", "-p", str(prefix), "-c", str(self.main_conf), "-e", str(self.error_log)],
            capture_output=True, text=True, timeout=30,
        )
        if test.returncode != 0:
            pytest.fail(f"nginx -t rejected the configuration:\n{test.stderr}\n{_tail(self.error_log)}",
                        pytrace=False)
        self.child = Child(
            "nginx",
            [NGINX_BIN, "-p", str(prefix), "-c", str(self.main_conf), "-e", str(self.error_log)],
            self.logs_dir / "stderr.log",
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.child.process.poll() is not None:
                break
            if self._answers():
                return
            time.sleep(0.1)
        exited = self.child.process.poll()
        self.stop()
        pytest.fail(
            f"nginx {'exited with ' + str(exited) if exited is not None else 'did not answer TLS'} on port "
            f"{listen_port}; error log:\n{_tail(self.error_log)}\n{self.child.log_text()}",
            pytrace=False,
        )

    def _main_conf(self) -> str:
        p = self.prefix
        # As root, workers run as root too: they write the cache under a test directory that other users
        # cannot enter. As anyone else the directive is not written (nginx would ignore it with a warning).
        user = "user root root;\n" if os.geteuid() == 0 else ""
        js_module = NGINX_MODULES_DIR / "ngx_http_js_module.so"
        if not js_module.is_file():
            pytest.fail(f"{js_module} not found: install Debian's libnginx-mod-http-js package", pytrace=False)
        return f"""# Written by interop/python/ingress_harness.py around deploy/nginx's files.
{user}daemon off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {self.error_log} info;
load_module {js_module};
events {{ worker_connections 512; }}
http {{
    default_type application/octet-stream;
    log_format ingress '$remote_addr "$request" $status $body_bytes_sent proto=$server_protocol '
                       'subject="$flyteauth_subject" browser=$flyteauth_is_browser grpc=$flyteauth_is_grpc '
                       'upstream=$upstream_addr upstream_status=$upstream_status rt=$request_time';
    access_log {self.access_log} ingress;
    client_body_temp_path {p}/temp/client_body;
    proxy_temp_path {p}/temp/proxy;
    fastcgi_temp_path {p}/temp/fastcgi;
    uwsgi_temp_path {p}/temp/uwsgi;
    scgi_temp_path {p}/temp/scgi;
    include {self.conf_dir}/flyteauth-http.conf;
    include {self.conf_dir}/flyteauth.conf;
}}
"""

    def _answers(self) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                with ctx.wrap_socket(sock, server_hostname="127.0.0.1"):
                    return True
        except OSError:
            return False

    def cache_entries(self) -> list[Path]:
        return [f for f in (self.cache_dir / "flyteauth-auth").rglob("*") if f.is_file()]

    def stop(self) -> None:
        self.child.stop()

    def log_text(self) -> str:
        return (
            f"--- error log ({self.error_log}) ---\n{_tail(self.error_log)}\n"
            f"--- access log ({self.access_log}) ---\n{_tail(self.access_log)}\n"
            f"{self.child.log_text()}"
        )


# --------------------------------------------------------------------------------------------------
# The whole stack


@dataclasses.dataclass
class Ingress:
    """nginx on https://127.0.0.1:<port> in front of flyteauth, the echo upstream and the gRPC upstream."""

    workdir: Path
    port: int
    pki: TestPki
    flyteauth: Server
    echo: Child
    grpc_app: Child
    nginx: Nginx
    idp: Optional[IdentityProvider] = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_file

    def stop(self) -> None:
        for part in (self.nginx, self.flyteauth, self.idp, self.grpc_app, self.echo):
            if part is not None:
                try:
                    part.stop()
                except Exception as err:  # one part failing to stop must not leave the others running
                    print(f"ingress harness: stopping {part!r} failed: {err}", file=sys.stderr)

    def report_sections(self) -> list[tuple[str, str]]:
        sections = [
            ("nginx", self.nginx.log_text()),
            (f"flyteauth server log ({self.flyteauth.log_path})", self.flyteauth.log_text()),
            ("echo upstream", self.echo.log_text()),
            ("gRPC upstream", self.grpc_app.log_text()),
        ]
        if self.idp is not None:
            sections.append(("identity provider (oidc-provider)", self.idp.child.log_text()))
        return sections


def start_ingress(
    workdir: Path,
    *,
    users: Sequence[LocalUser] = (),
    idp_accounts: Optional[Sequence[IdpAccount]] = None,
) -> Ingress:
    """The stack; with `idp_accounts`, federated to oidc-provider holding those accounts."""
    for binary in (CHROMIUM_BIN, CHROMEDRIVER_BIN, NGINX_BIN):
        if not Path(binary).is_file():
            pytest.fail(f"{binary} not found (scripts/test-all installs nginx, chromium, chromium-driver)",
                        pytrace=False)
    flyteauth_bin()
    started: list[Any] = []

    def stop_started() -> None:
        for part in reversed(started):
            try:
                part.stop()
            except Exception:
                pass

    try:
        pki = make_pki(workdir / "pki")
        listen_port = free_port()
        url = f"https://127.0.0.1:{listen_port}"
        echo, echo_port = _python_child("echo-upstream", ECHO_SCRIPT, workdir)
        started.append(echo)
        grpc_app, grpc_port = _python_child("grpc-upstream", GRPC_SCRIPT, workdir)
        started.append(grpc_app)
        idp = None
        if idp_accounts is not None:
            idp = IdentityProvider(workdir, url, idp_accounts)
            started.append(idp)
        flyteauth_dir = workdir / "flyteauth"
        flyteauth_dir.mkdir()
        server = start_flyteauth(flyteauth_dir, url, users, idp)
        started.append(server)
        nginx = Nginx(workdir / "nginx", listen_port, server.port, echo_port, grpc_port, pki)
        started.append(nginx)
    except BaseException:
        stop_started()
        raise
    return Ingress(workdir, listen_port, pki, server, echo, grpc_app, nginx, idp)


# --------------------------------------------------------------------------------------------------
# The browser


CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--ignore-certificate-errors",
    "--no-proxy-server",
    # Every page of the tests is on 127.0.0.1; a host name (a web font an identity provider's page imports)
    # is never looked up, so nothing leaves the machine and nothing waits for a network that is not there.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1000,820",
    "--hide-scrollbars",
)


class Browser:
    """Headless Debian Chromium through Debian chromedriver, with a fresh profile; `quit` ends both."""

    def __init__(self, workdir: Path) -> None:
        os.environ["SE_OFFLINE"] = "true"
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "chromedriver.log"
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM_BIN
        for arg in CHROMIUM_ARGS:
            options.add_argument(arg)
        options.add_argument(f"--user-data-dir={workdir / 'profile'}")
        self.service = Service(
            executable_path=CHROMEDRIVER_BIN,
            log_output=str(self.log_path),
            service_args=["--log-level=WARNING"],
            env={**os.environ, "SE_OFFLINE": "true"},
            popen_kw={"start_new_session": True},
        )
        self.driver = webdriver.Chrome(service=self.service, options=options)
        self.driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_SECONDS)
        self.driver.set_script_timeout(PAGE_LOAD_TIMEOUT_SECONDS)

    def quit(self) -> None:
        proc = getattr(self.service, "process", None)
        try:
            self.driver.quit()
        except Exception as err:
            print(f"ingress harness: chromedriver quit failed: {err}", file=sys.stderr)
        # chromedriver and the browsers it started share a session of their own: end what is left of it.
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=STOP_TIMEOUT_SECONDS)
            except Exception:
                pass

    def log_text(self) -> str:
        return _tail(self.log_path)

    def state(self) -> str:
        """Where the browser is and what it shows, for a failure message."""
        try:
            from selenium.webdriver.common.by import By

            text = self.driver.find_element(By.TAG_NAME, "body").text
            return f"url={self.driver.current_url!r} title={self.driver.title!r}\n{text[:3000]}"
        except Exception as err:
            return f"<cannot read the page: {err}>"


WAIT_SECONDS = 20.0


def wait_until(browser: Browser, what: str, condition: Callable[[Any], Any], timeout: float = WAIT_SECONDS) -> Any:
    """What `condition(driver)` returns once it is truthy; an AssertionError showing the page after `timeout`."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser.driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(
            f"{what} did not happen within {timeout}s; the browser shows:\n{browser.state()}"
        ) from None


def at(ingress: Ingress, path: str) -> Callable[[Any], bool]:
    """A condition: the browser shows `path` of the ingress (and the page has loaded)."""

    from urllib.parse import urlsplit

    def check(driver: Any) -> bool:
        url = urlsplit(driver.current_url)
        return (
            f"{url.scheme}://{url.netloc}" == ingress.url
            and url.path == path
            and driver.execute_script("return document.readyState") == "complete"
        )

    return check


def echo_seen(browser: Browser) -> dict:
    """What the echo upstream received, from the page the browser shows."""
    from selenium.webdriver.common.by import By

    return json.loads(browser.driver.find_element(By.ID, "echo").text)


def screenshot_dir() -> Optional[Path]:
    """FLYTEAUTH_SCREENSHOTS, when set: where the browser tests save their pictures."""
    value = os.environ.get("FLYTEAUTH_SCREENSHOTS", "")
    if not value:
        return None
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------------
# HTTP clients of the tests


def http_client(ingress: Ingress) -> requests.Session:
    """A `requests` session trusting the test CA, ignoring any proxy settings of the environment."""
    session = requests.Session()
    session.verify = str(ingress.ca_file)
    session.trust_env = False
    return session


def header_values(seen: dict, name: str) -> list[str]:
    """Every value of header `name` (any spelling) that the echo upstream received, in order."""
    return [value for key, value in seen["headers"] if key.lower() == name.lower()]


def identity_headers(seen: dict) -> list[list[str]]:
    return [[key, value] for key, value in seen["headers"] if key.lower().startswith("x-user-")]


def client_credentials_token(ingress: Ingress, client_id: str, secret: str) -> str:
    """An access token from flyteauth's token endpoint, asked for through nginx (client_secret_basic)."""
    from urllib.parse import quote_plus

    session = http_client(ingress)
    resp = session.post(
        f"{ingress.url}/oauth2/token",
        data={"grant_type": "client_credentials", "scope": "all"},
        auth=(quote_plus(client_id), quote_plus(secret)),
        headers={"Accept": "application/json"},
        timeout=30,
        allow_redirects=False,
    )
    assert resp.status_code == 200, f"token endpoint through nginx: {resp.status_code} {resp.text}"
    return resp.json()["access_token"]


class _FormParser:
    """The fields of the first POST form of a page that has a password field."""

    def __init__(self, page: str) -> None:
        from html.parser import HTMLParser

        forms: list[dict[str, Any]] = []

        class Parser(HTMLParser):
            def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
                a = {k: (v or "") for k, v in attrs}
                if tag == "form":
                    forms.append({"action": a.get("action", ""), "method": a.get("method", "get").lower(),
                                  "fields": {}, "password": False})
                elif tag == "input" and forms:
                    if a.get("type", "").lower() == "password":
                        forms[-1]["password"] = True
                    if a.get("name"):
                        forms[-1]["fields"][a["name"]] = a.get("value", "")

        Parser().feed(page)
        chosen = [f for f in forms if f["method"] == "post" and f["password"]]
        assert chosen, f"no POST form with a password field on the page:\n{page[:2000]}"
        self.action: str = chosen[0]["action"]
        self.fields: dict[str, str] = chosen[0]["fields"]


def form_login(ingress: Ingress, user: LocalUser, target: str) -> tuple[requests.Session, requests.Response]:
    """Signs `user` in with the local login form through nginx, as a browser would without JavaScript:
    GET /login?redirect_url=TARGET, then POST the form. Returns the session (holding the cookies) and the
    answer to the POST (not followed)."""
    from urllib.parse import quote, urljoin

    session = http_client(ingress)
    page = session.get(
        f"{ingress.url}/login?redirect_url={quote(target, safe='')}",
        headers={"Accept": "text/html"}, timeout=30, allow_redirects=False,
    )
    assert page.status_code == 200, f"GET /login through nginx: {page.status_code} {page.text[:500]}"
    form = _FormParser(page.text)
    fields = dict(form.fields)
    fields.update({"username": user.name, "password": user.password})
    answer = session.post(
        urljoin(f"{ingress.url}/login", form.action or "/login"),
        data=fields,
        headers={"Accept": "text/html"},
        timeout=30,
        allow_redirects=False,
    )
    return session, answer

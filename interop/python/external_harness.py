"""The External-mode stack: oidc-provider (interop/node/external-as.mjs) as the external authorization server
and identity provider, flyteauth with `auth.appAuth.authServerType: External` pointing at it, and real nginx
with deploy/nginx's configuration in front of flyteauth and the echo upstream (ingress_harness.Nginx).

    stack = start_external(workdir, accounts=[person])
    ...
    stack.stop()

flyteauth's public URL (`auth.authorizedUris[0]`) is nginx's https://127.0.0.1:<port>; the authorization
server issues its access tokens for that audience. flyteauth also accepts `EXTRA_AUDIENCE`
(`externalAuthServer.allowedAudience`). flytekit talks to flyteauth directly (plaintext gRPC on
localhost:<port>) and learns every endpoint of the authorization server from flyteauth's AuthMetadataService.

The authorization server keeps its signing key in a file of the test directory, so `restart()` brings it back
at the same issuer (same port) with the same key, as a real one comes back after an outage. Its JSON event
lines (one per request, per JWKS request, per token issuance) are kept across restarts; `jwks_fetches()`
counts what it was asked for its keys.

`DevicePerson` is the person at the authorization server's device page: no JavaScript, a cookie jar, forms
filled in and buttons pressed as they are on oidc-provider's pages (the auto-submitted form, the user-code
input, the confirmation with Continue and [ Abort ], the login form, the consent button).
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Optional, Sequence

import pytest
import requests
import yaml

from flyteauth_harness import (
    APP_CLIENT_ID,
    ODD_CLIENT_ID,
    Server,
    _launch,
    flyteauth_bin,
    free_port,
    run_cli,
    write_config,
)
from ingress_harness import (
    ECHO_SCRIPT,
    GRPC_SCRIPT,
    NODE_DIR,
    START_TIMEOUT_SECONDS,
    Child,
    Nginx,
    TestPki,
    _python_child,
    _tail,
    make_pki,
)

EXTERNAL_AS_SCRIPT = NODE_DIR / "external-as.mjs"
# The confidential client flytekit's ClientSecret mode authenticates as, at the authorization server.
EXT_APP_CLIENT_ID = "interop-ext-app"
# The public client of the device flow (thirdPartyConfig.flyteClient.clientId).
EXT_DEVICE_CLIENT_ID = "flytectl"
# What clients are told to ask for (thirdPartyConfig.flyteClient.scopes), as one configures it for Okta.
EXT_CLIENT_SCOPES = ["all", "offline_access"]
# A second audience flyteauth accepts (externalAuthServer.allowedAudience); the server issues for the public URL.
EXTRA_AUDIENCE = "urn:flyteauth:interop-external"
ACCESS_TOKEN_TTL_SECONDS = 300
READY_TIMEOUT_SECONDS = 30.0
HTTP_TIMEOUT_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class ExtAccount:
    """A person at the authorization server; `login` is what they type and also their `sub`."""

    login: str
    email: str
    name: str


def _no_proxy_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


# --------------------------------------------------------------------------------------------------
# The authorization server


class ExternalAuthServer:
    """interop/node/external-as.mjs, restartable on the same port with the same signing key."""

    def __init__(self, workdir: Path, audience: str, accounts: Sequence[ExtAccount]) -> None:
        node_modules = NODE_DIR / "node_modules" / "oidc-provider"
        if not node_modules.is_dir():
            pytest.fail(f"{node_modules} is missing: run `npm ci` in {NODE_DIR}", pytrace=False)
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.audience = audience
        self.app_client_id = EXT_APP_CLIENT_ID
        self.app_secret = secrets.token_urlsafe(24)
        self.keys_file = workdir / "signing-key.json"
        self.env = {
            **os.environ,
            "EXT_AUDIENCE": audience,
            "EXT_APP_CLIENT_ID": self.app_client_id,
            "EXT_APP_CLIENT_SECRET": self.app_secret,
            "EXT_DEVICE_CLIENT_ID": EXT_DEVICE_CLIENT_ID,
            "EXT_ACCOUNTS": json.dumps({a.login: {"email": a.email, "name": a.name} for a in accounts}),
            "EXT_ACCESS_TOKEN_TTL": str(ACCESS_TOKEN_TTL_SECONDS),
            "EXT_DEVICE_INTERVAL": "1",
            "NO_COLOR": "1",
        }
        self.children: list[Child] = []
        self.child: Optional[Child] = None
        self.port = 0
        self.mint_port = 0
        self.issuer = ""
        self.kid = ""
        self._start(port=0, mint_port=0)

    def _start(self, port: int, mint_port: int) -> None:
        n = len(self.children)
        argv = [
            "node", str(EXTERNAL_AS_SCRIPT),
            "--port", str(port), "--mint-port", str(mint_port), "--keys-file", str(self.keys_file),
        ]
        child = Child(f"external-as-{n}", argv, self.workdir / f"external-as-{n}.log", env=self.env, cwd=NODE_DIR)
        self.children.append(child)
        self.child = child
        first = child.first_line()
        try:
            hello = json.loads(first)
            assert hello["event"] == "listening"
            self.port, self.issuer, self.kid = int(hello["port"]), str(hello["issuer"]), str(hello["kid"])
            self.mint_port = int(hello["mint_port"])
        except (ValueError, KeyError, TypeError, AssertionError):
            child.stop()
            pytest.fail(f"external-as.mjs printed {first!r} first; log:\n{_tail(child.log_path)}", pytrace=False)

    def running(self) -> bool:
        return self.child is not None and self.child.process.poll() is None

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def restart(self) -> None:
        """Starts it again on the port (and issuer) and with the signing key it had."""
        self.stop()
        port, mint_port, kid = self.port, self.mint_port, self.kid
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                self._start(port=port, mint_port=mint_port)
                break
            except pytest.fail.Exception:
                # The old socket may linger for a moment; a later try binds it.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
        assert self.port == port and self.kid == kid, (self.port, port, self.kid, kid)

    # Events -----------------------------------------------------------------------------------

    def events(self, kind: Optional[str] = None) -> list[dict[str, Any]]:
        out = []
        for child in self.children:
            for line in list(child.lines):
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and (kind is None or event.get("event") == kind):
                    out.append(event)
        return out

    def jwks_fetches(self) -> int:
        """How many requests its JWKS endpoint received, over every run."""
        return len(self.events("jwks"))

    def wait_events(self, kind: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(kind)
            if len(found) >= count or time.monotonic() >= deadline:
                return found
            time.sleep(0.1)

    def log_text(self) -> str:
        return "\n".join(f"=== {c.name} ===\n{c.log_text()}" for c in self.children)

    # Talking to it ----------------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        resp = _no_proxy_session().get(f"{self.issuer}/.well-known/openid-configuration", timeout=HTTP_TIMEOUT_SECONDS)
        assert resp.status_code == 200, f"{resp.status_code} {resp.text[:300]}"
        return resp.json()

    def jwks(self) -> dict[str, Any]:
        resp = _no_proxy_session().get(f"{self.issuer}/jwks", timeout=HTTP_TIMEOUT_SECONDS)
        assert resp.status_code == 200, f"{resp.status_code} {resp.text[:300]}"
        return resp.json()

    def client_credentials_token(self, scope: str = "all") -> str:
        """An access token for the confidential client, asked for as flytekit does (Basic, secret quote_plus'd)."""
        basic = base64.b64encode(
            f"{self.app_client_id}:{urllib.parse.quote_plus(self.app_secret)}".encode()
        ).decode()
        resp = _no_proxy_session().post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "scope": scope},
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        assert resp.status_code == 200, f"token endpoint of the authorization server: {resp.status_code} {resp.text}"
        return resp.json()["access_token"]

    def mint(
        self,
        claims: dict[str, Any],
        *,
        alg: str = "RS256",
        header: Optional[dict[str, Any]] = None,
        hmac_key: Optional[str] = None,
    ) -> str:
        """A token with these claims, signed by the test-only mint endpoint (RS256 with the real key, HS* with
        a form of the public key, or none); `header` members replace the defaults (null removes one)."""
        body: dict[str, Any] = {"alg": alg, "claims": claims, "header": header or {}}
        if hmac_key is not None:
            body["hmac_key"] = hmac_key
        resp = _no_proxy_session().post(
            f"http://127.0.0.1:{self.mint_port}/mint", json=body, timeout=HTTP_TIMEOUT_SECONDS
        )
        assert resp.status_code == 200, f"mint: {resp.status_code} {resp.text}"
        return resp.json()["token"]

    def access_claims(self, sub: str = EXT_APP_CLIENT_ID, **overrides: Any) -> dict[str, Any]:
        """The claims of an access token as the server issues them for the confidential client (now, 5 min)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "sub": sub,
            "iat": now,
            "exp": now + ACCESS_TOKEN_TTL_SECONDS,
            "scope": "all",
            "client_id": EXT_APP_CLIENT_ID,
            "iss": self.issuer,
            "aud": self.audience,
        }
        for key, value in overrides.items():
            if value is None:
                claims.pop(key, None)
            else:
                claims[key] = value
        return claims


# --------------------------------------------------------------------------------------------------
# flyteauth in External mode


def start_external_flyteauth(
    workdir: Path, public_url: str, authority: ExternalAuthServer, extensions: Optional[dict[str, Any]] = None
) -> Server:
    """`flyteauth serve --config FILE` with `authServerType: External` at `authority`, plaintext on 127.0.0.1,
    public URL `public_url`; returns once /readyz says ready (metadata and keys fetched)."""
    workdir.mkdir(parents=True, exist_ok=True)
    secrets_dir = workdir / "secrets"
    run_cli("secrets", "init", "--dir", str(secrets_dir), cwd=workdir)
    # flyteauth's own static clients stay configured (its built-in token endpoint stays mounted, unadvertised).
    clients = {APP_CLIENT_ID: secrets.token_urlsafe(24), ODD_CLIENT_ID: secrets.token_urlsafe(24)}

    def prepare(attempt: int, port: int) -> tuple[Server, list[str]]:
        server = Server(
            workdir=workdir,
            port=port,
            tls=False,
            clients=clients,
            log_path=workdir / f"server-{attempt}.log",
            ca_file=None,
        )
        config_path = write_config(server, secrets_dir, None, extensions)
        config = yaml.safe_load(config_path.read_text())
        config["auth"]["authorizedUris"] = [public_url, f"http://localhost:{port}", f"http://127.0.0.1:{port}"]
        config["auth"]["appAuth"].update(
            {
                "authServerType": "External",
                "externalAuthServer": {
                    "baseUrl": authority.issuer,
                    "allowedAudience": [EXTRA_AUDIENCE],
                    "retryAttempts": 3,
                    "retryDelay": "200ms",
                },
                "thirdPartyConfig": {
                    "flyteClient": {
                        "clientId": EXT_DEVICE_CLIENT_ID,
                        "redirectUri": "http://localhost:53593/callback",
                        "scopes": EXT_CLIENT_SCOPES,
                    }
                },
            }
        )
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        server.config_path = config_path
        return server, ["serve", "--config", str(config_path)]

    server = _launch(workdir, prepare)
    try:
        wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def readyz(server: Server) -> tuple[int, dict[str, Any]]:
    resp = _no_proxy_session().get(f"http://127.0.0.1:{server.port}/readyz", timeout=HTTP_TIMEOUT_SECONDS)
    try:
        body = resp.json()
    except ValueError:
        body = {"<not JSON>": resp.text}
    return resp.status_code, body


def wait_ready(server: Server, timeout: float = READY_TIMEOUT_SECONDS) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status, body = 0, {}
    while time.monotonic() < deadline:
        status, body = readyz(server)
        if status == 200 and body.get("status") == "ready":
            return body
        time.sleep(0.2)
    pytest.fail(
        f"flyteauth /readyz did not say ready within {timeout}s (last: {status} {body}); log:\n{server.log_text()}",
        pytrace=False,
    )


def metric_value(server: Server, name: str, labels: dict[str, str]) -> float:
    """The value of one sample of /metrics (0 when the series does not exist yet)."""
    resp = _no_proxy_session().get(f"http://127.0.0.1:{server.port}/metrics", timeout=HTTP_TIMEOUT_SECONDS)
    assert resp.status_code == 200, f"/metrics: {resp.status_code}"
    for line in resp.text.splitlines():
        if not line.startswith(name + "{"):
            continue
        inside = line[len(name) + 1: line.index("}")]
        found = dict(
            (k, v.strip('"')) for k, v in (pair.split("=", 1) for pair in inside.split(",") if "=" in pair)
        )
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --------------------------------------------------------------------------------------------------
# The stack


@dataclasses.dataclass
class ExternalStack:
    """The authorization server, flyteauth in External mode, and nginx in front of flyteauth and the echo app."""

    workdir: Path
    authority: ExternalAuthServer
    flyteauth: Server
    pki: TestPki
    nginx_port: int
    nginx: Nginx
    echo: Child
    grpc_app: Child

    @property
    def public_url(self) -> str:
        """flyteauth's public URL: nginx."""
        return f"https://127.0.0.1:{self.nginx_port}"

    @property
    def direct_url(self) -> str:
        """flyteauth itself, without nginx."""
        return f"http://127.0.0.1:{self.flyteauth.port}"

    def ingress_session(self) -> requests.Session:
        session = _no_proxy_session()
        session.verify = str(self.pki.ca_file)
        return session

    def me(self, token: str, header: str = "Authorization") -> requests.Response:
        """flyteauth's /me with `token`, directly."""
        return _no_proxy_session().get(
            f"{self.direct_url}/me", headers={header: f"Bearer {token}"}, timeout=HTTP_TIMEOUT_SECONDS
        )

    def connect_user_info(self, token: str) -> requests.Response:
        """IdentityService/UserInfo over Connect (JSON), directly."""
        return _no_proxy_session().post(
            f"{self.direct_url}/flyteidl.service.IdentityService/UserInfo",
            data=b"{}",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    def stop(self) -> None:
        for part in (self.nginx, self.flyteauth, self.authority, self.grpc_app, self.echo):
            try:
                part.stop()
            except Exception as err:  # one part failing to stop must not leave the others running
                print(f"external harness: stopping {part!r} failed: {err}", file=sys.stderr)

    def report_sections(self) -> list[tuple[str, str]]:
        return [
            (f"flyteauth server log ({self.flyteauth.log_path})", self.flyteauth.log_text()),
            ("external authorization server (oidc-provider)", self.authority.log_text()),
            ("nginx", self.nginx.log_text()),
            ("echo upstream", self.echo.log_text()),
        ]


def start_external(
    workdir: Path, accounts: Sequence[ExtAccount] = (), extensions: Optional[dict[str, Any]] = None
) -> ExternalStack:
    flyteauth_bin()
    started: list[Any] = []
    try:
        pki = make_pki(workdir / "pki")
        nginx_port = free_port()
        public_url = f"https://127.0.0.1:{nginx_port}"
        echo, echo_port = _python_child("echo-upstream", ECHO_SCRIPT, workdir)
        started.append(echo)
        grpc_app, grpc_port = _python_child("grpc-upstream", GRPC_SCRIPT, workdir)
        started.append(grpc_app)
        authority = ExternalAuthServer(workdir / "external-as", public_url, accounts)
        started.append(authority)
        server = start_external_flyteauth(workdir / "flyteauth", public_url, authority, extensions)
        started.append(server)
        nginx = Nginx(workdir / "nginx", nginx_port, server.port, echo_port, grpc_port, pki)
        started.append(nginx)
    except BaseException:
        for part in reversed(started):
            try:
                part.stop()
            except Exception:
                pass
        raise
    return ExternalStack(workdir, authority, server, pki, nginx_port, nginx, echo, grpc_app)


# --------------------------------------------------------------------------------------------------
# The person at the authorization server's device page


class _Form:
    def __init__(self, attrs: dict[str, str]) -> None:
        self.id = attrs.get("id", "")
        self.action = attrs.get("action", "")
        self.method = attrs.get("method", "get").lower()
        self.inputs: list[dict[str, str]] = []
        self.buttons: list[dict[str, str]] = []

    def has_password(self) -> bool:
        return any(i.get("type", "").lower() == "password" for i in self.inputs)

    def text_field(self, name: str) -> Optional[dict[str, str]]:
        return next(
            (i for i in self.inputs if i.get("name") == name and i.get("type", "text").lower() == "text"), None
        )


class _Page(HTMLParser):
    """Forms (with buttons placed outside them through `form="id"`) and the title of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self.title = ""
        self._in_title = False
        self._open: Optional[_Form] = None
        self._button: Optional[dict[str, str]] = None
        self._loose_buttons: list[dict[str, str]] = []
        self._hidden_depth = 0
        self.text_parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "title":
            self._in_title = True
        elif tag in ("style", "script"):
            self._hidden_depth += 1
        elif tag == "form":
            self._open = _Form(a)
            self.forms.append(self._open)
        elif tag == "input" and a.get("type", "").lower() in ("submit", "image"):
            self._add_button({**a, "label": a.get("value", "")})
        elif tag == "input":
            owner = self._owner(a)
            if owner is not None:
                owner.inputs.append(a)
        elif tag == "button":
            self._button = {**a, "label": ""}

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in ("style", "script"):
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag == "form":
            self._open = None
        elif tag == "button" and self._button is not None:
            if self._button.get("type", "submit").lower() == "submit":
                self._add_button(self._button)
            self._button = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._button is not None:
            self._button["label"] += data
        if not self._hidden_depth:
            self.text_parts.append(data)

    def _owner(self, attrs: dict[str, str]) -> Optional[_Form]:
        if attrs.get("form"):
            return next((f for f in self.forms if f.id == attrs["form"]), None)
        return self._open

    def _add_button(self, button: dict[str, str]) -> None:
        button["label"] = " ".join(button.get("label", "").split())
        owner = self._owner(button)
        if owner is not None:
            owner.buttons.append(button)
        elif button.get("form"):
            self._loose_buttons.append(button)  # its form comes later in the page

    def close(self) -> None:
        super().close()
        for button in self._loose_buttons:
            owner = next((f for f in self.forms if f.id == button.get("form")), None)
            if owner is not None:
                owner.buttons.append(button)
        self.title = " ".join(self.title.split())

    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())


class DevicePerson:
    """A person who opens the verification link (or the bare page, typing the code), signs in as `login` at
    oidc-provider's development login form (any password), consents, and presses Continue (or [ Abort ])."""

    MAX_STEPS = 20

    def __init__(self, log_path: Path, login: str, *, decision: str = "approve", type_code: Optional[str] = None,
                 timeout: float = 60.0) -> None:
        assert decision in ("approve", "abort"), decision
        self.log_path = log_path
        self.login = login
        self.decision = decision
        self.type_code = type_code
        self.timeout = timeout
        self.outcome: Optional[str] = None  # "ok (title)" or "failed: why"
        self._thread: Optional[threading.Thread] = None

    def log(self, line: str) -> None:
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def start(self, url: str) -> None:
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> Optional[str]:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.outcome

    def _run(self, url: str) -> None:
        try:
            self.outcome = self._visit(url)
        except Exception as err:  # the outcome carries the reason; the test reads it
            self.outcome = f"failed: {type(err).__name__}: {err}"
        self.log(f"RESULT: {self.outcome}")

    def _visit(self, url: str) -> str:
        deadline = time.monotonic() + self.timeout
        session = _no_proxy_session()
        session.headers["User-Agent"] = "device-person/1"
        if self.type_code:
            parts = urllib.parse.urlsplit(url)
            url = urllib.parse.urlunsplit(parts._replace(query=""))
            self.log(f"opens {url} and will type the code {self.type_code!r}")
        else:
            self.log(f"opens {url}")
        method, data = "GET", None
        typed = decided = logged_in = consented = False
        for _ in range(self.MAX_STEPS):
            left = deadline - time.monotonic()
            if left <= 0:
                return "failed: the visit took too long"
            resp = session.request(method, url, data=data, allow_redirects=False, timeout=min(15.0, left))
            self.log(f"{method} {url.split('?')[0]} -> {resp.status_code}")
            if resp.is_redirect:
                url = urllib.parse.urljoin(url, resp.headers["Location"])
                method, data = "GET", None
                continue
            page = _Page()
            page.feed(resp.text)
            page.close()
            self.log(f"  page title={page.title!r} text={page.text()[:300]!r}")
            if page.title == "Sign-in Success":
                return f"ok ({page.title})"
            if decided and self.decision == "abort":
                return f"ok (aborted; the page says: {page.text()[:200]})"
            if resp.status_code != 200:
                return f"failed: {resp.status_code} on {url.split('?')[0]}: {page.text()[:300]}"
            form = next((f for f in page.forms if f.has_password()), None)
            if form is not None:
                if logged_in:
                    return "failed: the login form came back"
                logged_in = True
                fields = self._fields(form, {"login": self.login, "password": secrets.token_urlsafe(8)})
                self.log(f"  signs in as {self.login!r}")
            elif (form := next((f for f in page.forms if f.text_field("user_code") is not None), None)) is not None:
                if not self.type_code or typed:
                    return "failed: asked for a user code"
                typed = True
                fields = self._fields(form, {"user_code": self.type_code})
                self.log(f"  types the user code {self.type_code!r}")
            elif (form := next((f for f in page.forms if self._named(f, "abort")), None)) is not None:
                # The confirmation: Continue, or [ Abort ].
                decided = True
                pressed = self._named(form, "abort") if self.decision == "abort" else self._unnamed(form)
                fields = self._fields(form, {}, pressed)
                self.log(f"  presses {pressed.get('label') if pressed else '<Enter>'!r}")
            elif len(page.forms) == 1 and page.forms[0].method == "post":
                # The auto-submitted form (a browser with JavaScript submits it at once) or the consent button.
                form = page.forms[0]
                if any(i.get("name") == "prompt" and i.get("value") == "consent" for i in form.inputs):
                    consented = True
                    self.log("  consents")
                fields = self._fields(form, {}, self._unnamed(form))
            else:
                return f"failed: unexpected page {page.title!r}: {page.text()[:300]}"
            method, data = "POST", fields
            url = urllib.parse.urljoin(url, form.action or url)
        return f"failed: more than {self.MAX_STEPS} steps (consented={consented})"

    @staticmethod
    def _named(form: _Form, name: str) -> Optional[dict[str, str]]:
        return next((b for b in form.buttons if b.get("name") == name), None)

    @staticmethod
    def _unnamed(form: _Form) -> Optional[dict[str, str]]:
        return next((b for b in form.buttons if not b.get("name")), None)

    @staticmethod
    def _fields(form: _Form, typed: dict[str, str], pressed: Optional[dict[str, str]] = None) -> list[tuple[str, str]]:
        out = []
        for i in form.inputs:
            name = i.get("name")
            if not name:
                continue
            out.append((name, typed.get(name, i.get("value", ""))))
        if pressed is not None and pressed.get("name"):
            out.append((pressed["name"], pressed.get("value", "")))
        return out


# --------------------------------------------------------------------------------------------------
# Many requests at once


def garbage_token(issuer: str, audience: str) -> str:
    """A JWT-shaped token naming a random `kid`, with plausible claims and a random 'signature'."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = {"alg": "RS256", "typ": "at+jwt", "kid": secrets.token_hex(8)}
    now = int(time.time())
    claims = {"sub": secrets.token_hex(6), "iss": issuer, "aud": audience, "iat": now, "exp": now + 300,
              "scope": "all", "jti": secrets.token_hex(8)}
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(os.urandom(256))])


@dataclasses.dataclass
class FloodResult:
    statuses: dict[int, int]
    errors: list[str]
    seconds: float


def flood(port: int, tokens: Sequence[str], concurrency: int = 50, deadline_seconds: float = 300.0) -> FloodResult:
    """Sends every token once to flyteauth on 127.0.0.1:`port`, `concurrency` at a time over keep-alive
    connections, alternating GET /me and Connect IdentityService/UserInfo; counts the statuses."""
    lock = threading.Lock()
    statuses: dict[int, int] = {}
    errors: list[str] = []
    next_index = [0]
    stop_at = time.monotonic() + deadline_seconds

    def take() -> Optional[int]:
        with lock:
            i = next_index[0]
            if i >= len(tokens) or time.monotonic() > stop_at:
                return None
            next_index[0] = i + 1
            return i

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while (i := take()) is not None:
                headers = {"Authorization": f"Bearer {tokens[i]}"}
                try:
                    if i % 2 == 0:
                        conn.request("GET", "/me", headers=headers)
                    else:
                        headers["Content-Type"] = "application/json"
                        conn.request("POST", "/flyteidl.service.IdentityService/UserInfo", body=b"{}",
                                     headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    status = resp.status
                    if resp.getheader("Connection", "").lower() == "close":
                        conn.close()
                except (OSError, http.client.HTTPException) as err:
                    conn.close()
                    with lock:
                        errors.append(f"{type(err).__name__}: {err}")
                    continue
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, stop_at - time.monotonic()) + 35)
    return FloodResult(statuses, errors, time.monotonic() - started)

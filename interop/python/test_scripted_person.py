"""The scripted person on its own: HTML form parsing on static pages, URL handling, and whole visits against a
small in-process login site with a late-starting callback listener (no flyteauth needed)."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Iterator, Optional

import pytest

import scripted_person as sp

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in &middot; flyteauth</title>
<style>.error{color:red}</style><script>var x = "<form>";</script></head>
<body><main>
<h1>Sign in</h1><p class="muted">to continue to <strong>flytectl</strong></p>
<p class="error" role="alert">Wrong user name or password.</p>
<form method="post" action="login">
<input type="hidden" name="csrf_token" value="c5rf&amp;x">
<input type="hidden" name="return_to" value="/oauth2/authorize?client_id=flytectl&amp;state=S1">
<label for="username">User name</label>
<input type="text" id="username" name="username" value="bob" autocomplete="username">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<input type="checkbox" name="remember" value="yes">
<input type="text" name="disabled_one" value="z" disabled>
<button type="submit">Sign in</button>
</form>
<form action="/search"><input name="q" value="hello"/></form>
</main></body></html>
"""


def test_parses_the_login_form() -> None:
    page = sp.parse_page(LOGIN_PAGE)
    assert page.title == "Sign in · flyteauth"
    assert page.alerts == ["Wrong user name or password."]
    assert "to continue to flytectl" in page.text
    assert "var x" not in page.text, "script content is not visible text"
    assert len(page.forms) == 2, page.forms
    form = sp.login_form(page)
    assert form is page.forms[0]
    assert (form.method, form.action) == ("post", "login")
    assert not page.forms[1].has_password()
    assert page.forms[1].method == "get"


def test_fills_in_the_form_as_a_person_would() -> None:
    form = sp.login_form(sp.parse_page(LOGIN_PAGE))
    assert form is not None
    fields = sp.form_fields(form, "alice", "pa ss&word")
    # Hidden fields copied (entities decoded), username replaced, password typed, the unchecked box and the
    # disabled field left out; the button has no name, so it sends nothing.
    assert fields == [
        ("csrf_token", "c5rf&x"),
        ("return_to", "/oauth2/authorize?client_id=flytectl&state=S1"),
        ("username", "alice"),
        ("password", "pa ss&word"),
    ]
    method, url, body = sp.form_request(form, "https://localhost:8443/login?return_to=%2Fx#frag", fields)
    assert (method, url) == ("POST", "https://localhost:8443/login")
    assert body is not None
    assert urllib.parse.parse_qsl(body.decode()) == fields


def test_get_form_and_absolute_action() -> None:
    page = sp.parse_page('<form action="/search?old=1"><input type="hidden" name="q" value="a b"></form>')
    method, url, body = sp.form_request(page.forms[0], "http://h/dir/page", [("q", "a b")])
    assert (method, url, body) == ("GET", "http://h/search?q=a+b", None)
    page = sp.parse_page('<form method="POST" action="https://other.example/x"></form>')
    assert sp.form_request(page.forms[0], "http://h/", [])[:2] == ("POST", "https://other.example/x")
    page = sp.parse_page('<form method="post"><input type="password" name="pw"></form>')
    assert sp.form_request(page.forms[0], "http://h/login?a=1", [])[1] == "http://h/login?a=1"


def test_readable_error_without_alert_markup() -> None:
    assert sp.readable_error(sp.parse_page("<p>Invalid credentials, try again</p>"))
    assert not sp.readable_error(sp.parse_page("<p>Sign in</p><form><input type=password name=p></form>"))


def test_redacts_code_state_and_nested_return_to() -> None:
    assert sp.redact_url("http://localhost:53593/callback?code=SECRET&state=S2") == (
        "http://localhost:53593/callback?code=<redacted>&state=<redacted>"
    )
    nested = "/oauth2/authorize?client_id=flytectl&state=S3&code_challenge=C"
    redacted = sp.redact_url("https://h/login?return_to=" + urllib.parse.quote(nested, safe=""))
    assert "S3" not in redacted and "flytectl" in redacted and "code_challenge" in redacted, redacted
    assert sp.redact_url("https://h/login") == "https://h/login"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://localhost:53593/callback?code=x", True),
        ("http://127.0.0.1:53593/callback", True),
        ("http://[::1]:53593/callback", True),
        ("https://localhost:8443/login", False),  # the server itself
        ("https://127.0.0.1:8443/oauth2/authorize", False),  # the server under its other name
        ("http://localhost:8443/x", True),  # other scheme: not the server
        ("https://idp.example.com/callback", False),  # not loopback
    ],
)
def test_recognizes_the_callback(url: str, expected: bool) -> None:
    assert sp.is_callback(url, "https://localhost:8443/oauth2/authorize?x=1") is expected


# --------------------------------------------------------------------------------------------------
# Whole visits against a small login site


PASSWORD = "correct horse 12345"
CODE = "the-code"


class LoginSite(http.server.BaseHTTPRequestHandler):
    """authorize -> 303 /login -> form (csrf cookie) -> POST -> 303 authorize (session) -> 303 callback."""

    callback_base = ""
    posts: list[dict[str, str]] = []

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def cookies(self) -> dict[str, str]:
        out = {}
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name:
                out[name] = value
        return out

    def send(self, status: int, body: str = "", headers: Optional[dict[str, str]] = None) -> None:
        data = body.encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def form(self, return_to: str, error: str = "") -> str:
        alert = f'<p role="alert">{error}</p>' if error else ""
        return (
            f"<html><head><title>Sign in</title></head><body>{alert}"
            '<form method="post" action="/login">'
            f'<input type="hidden" name="csrf_token" value="{self.cookies().get("csrf", "")}">'
            f'<input type="hidden" name="return_to" value="{return_to}">'
            '<input name="username"><input type="password" name="password"><button>Go</button></form></body></html>'
        )

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/oauth2/authorize":
            if self.cookies().get("session") == "ok":
                target = f"{query['redirect_uri']}?code={CODE}&state={query['state']}"
                self.send(303, headers={"Location": target})
            else:
                location = "/login?return_to=" + urllib.parse.quote(self.path, safe="")
                self.send(303, headers={"Location": location, "Set-Cookie": "csrf=tok123; HttpOnly; Path=/"})
        elif url.path == "/login":
            self.send(200, self.form(query.get("return_to", "/")))
        else:
            self.send(500, "<html><head><title>Boom</title></head><body><h1>Internal error</h1></body></html>")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        fields = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        LoginSite.posts.append(fields)
        if fields.get("csrf_token") != self.cookies().get("csrf"):
            self.send(403, "<html><title>CSRF</title><body>bad csrf</body></html>")
        elif fields.get("username") == "alice" and fields.get("password") == PASSWORD:
            self.send(303, headers={"Location": fields["return_to"], "Set-Cookie": "session=ok; Path=/"})
        else:
            self.send(401, self.form(fields.get("return_to", "/"), "Wrong user name or password."))


class Callback(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        Callback.seen.append(self.path)
        body = b"<html><title>Logged in</title><body>Successfully logged in</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def site() -> Iterator[http.server.ThreadingHTTPServer]:
    LoginSite.posts = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LoginSite)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def start_person(tmp_path: Path, url: str, **extra: str) -> Path:
    """Runs scripted_person.py as webbrowser would; it must return at once. Returns the log path."""
    log = tmp_path / "person.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SCRIPTED_PERSON_")},
        "SCRIPTED_PERSON_LOG": str(log),
        "SCRIPTED_PERSON_USERNAME": "alice",
        "SCRIPTED_PERSON_PASSWORD": PASSWORD,
        "SCRIPTED_PERSON_TIMEOUT": "20",
        **extra,
    }
    started = time.monotonic()
    proc = subprocess.run([sys.executable, sp.__file__, url], env=env, timeout=10, capture_output=True, text=True)
    assert proc.returncode == 0, proc
    assert time.monotonic() - started < 5, "the BROWSER command must return at once"
    return log


def wait_for_result(log: Path, timeout: float = 25) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if "RESULT: " in text:
            return text
        time.sleep(0.1)
    pytest.fail(f"no RESULT within {timeout}s; log:\n{log.read_text() if log.exists() else '<none>'}")


def authorize_url(site: http.server.ThreadingHTTPServer, callback_port: int) -> str:
    query = urllib.parse.urlencode(
        {
            "client_id": "flytectl",
            "response_type": "code",
            "redirect_uri": f"http://localhost:{callback_port}/callback",
            "state": "STATE42",
        }
    )
    return f"http://127.0.0.1:{site.server_address[1]}/oauth2/authorize?{query}"


@pytest.mark.parametrize("wrong_first", [False, True])
def test_whole_visit_reaches_a_late_callback(
    site: http.server.ThreadingHTTPServer, tmp_path: Path, wrong_first: bool
) -> None:
    Callback.seen = []
    callback_port = free_port()
    extra = {"SCRIPTED_PERSON_WRONG_PASSWORD_FIRST": "1"} if wrong_first else {}
    log = start_person(tmp_path, authorize_url(site, callback_port), **extra)
    # The SDK's listener comes up only after $BROWSER has exited, and maybe later still.
    time.sleep(1.0)
    listener = http.server.HTTPServer(("127.0.0.1", callback_port), Callback)
    listener.timeout = 20
    listener.handle_request()
    listener.server_close()
    text = wait_for_result(log)
    assert text.rstrip().endswith("RESULT: ok"), text
    assert Callback.seen == [f"/callback?code={CODE}&state=STATE42"], (Callback.seen, text)
    assert CODE not in text and "STATE42" not in text and PASSWORD not in text, text
    passwords = [p.get("password") for p in LoginSite.posts]
    if wrong_first:
        assert passwords == [PASSWORD + "-not-it", PASSWORD], passwords
        assert "/login -> 401" in text and "wrong password refused as expected (401)" in text, text
        assert "Wrong user name or password." in text, text
    else:
        assert passwords == [PASSWORD], passwords
    assert all(p.get("csrf_token") == "tok123" for p in LoginSite.posts), LoginSite.posts


def test_an_error_page_stops_the_visit_and_is_logged(site: http.server.ThreadingHTTPServer, tmp_path: Path) -> None:
    log = start_person(tmp_path, f"http://127.0.0.1:{site.server_address[1]}/nowhere")
    text = wait_for_result(log)
    assert "RESULT: failed: unexpected page" in text, text
    assert "-> 500" in text and "title='Boom'" in text and "Internal error" in text, text


def test_a_refused_password_stops_the_visit(site: http.server.ThreadingHTTPServer, tmp_path: Path) -> None:
    # The site refuses the password the person believes is right: the visit stops at the second form
    # instead of submitting again and again.
    log = start_person(tmp_path, authorize_url(site, free_port()), SCRIPTED_PERSON_PASSWORD="nope")
    text = wait_for_result(log)
    assert "RESULT: failed: the login form came back after submitting the right password" in text, text


# --------------------------------------------------------------------------------------------------
# Device flow: the user-code form, the confirmation page with several submit buttons


CONFIRM_PAGE = """<!doctype html>
<html><head><title>Connect a device</title></head><body>
<h1>Connect a device?</h1><p>flytectl asks for: all offline</p>
<form method="post" action="/activate">
<input type="hidden" name="csrf_token" value="tok&amp;1">
<input type="hidden" name="user_code" value="BCDF-GHJK">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</form>
</body></html>
"""

CODE_PAGE = """<!doctype html>
<html><head><title>Connect a device</title></head><body>
<form method="get" action="/activate">
<label for="user_code">Code</label>
<input type="text" id="user_code" name="user_code" autocomplete="one-time-code" placeholder="XXXX-XXXX">
<button type="submit">Continue</button>
</form></body></html>
"""


def test_recognizes_a_decision_form() -> None:
    page = sp.parse_page(CONFIRM_PAGE)
    form = sp.decision_form(page)
    assert form is page.forms[0]
    assert [b.get("value") for b in form.submit_buttons()] == ["approve", "deny"]
    assert [b.get("label") for b in form.submit_buttons()] == ["Approve", "Deny"]
    assert sp.login_form(page) is None and sp.user_code_form(page) is None, "a hidden user_code is not typed"
    # A login form is never a decision form, whatever its buttons.
    login = sp.parse_page(
        '<form method="post"><input type="password" name="p"><button name="a" value="1">A</button>'
        '<button name="b" value="2">B</button></form>'
    )
    assert sp.decision_form(login) is None
    # One submit button called `decision` also asks for one; one anonymous button does not.
    assert sp.decision_form(sp.parse_page('<form><button name="decision" value="approve">OK</button></form>'))
    assert sp.decision_form(sp.parse_page("<form><input name=q><button>Go</button></form>")) is None


@pytest.mark.parametrize("decision", ["approve", "deny", "DENY", "Approve"])
def test_presses_the_chosen_button_only(decision: str) -> None:
    form = sp.decision_form(sp.parse_page(CONFIRM_PAGE))
    assert form is not None
    button = sp.decision_button(form, decision)
    assert button is not None and button.get("value") == decision.lower()
    fields = sp.form_fields(form, "alice", "pw", submitter=button)
    # As a browser sends it: the hidden fields, then the pressed button's name=value, not the other's.
    assert fields == [("csrf_token", "tok&1"), ("user_code", "BCDF-GHJK"), ("decision", decision.lower())]
    method, url, body = sp.form_request(form, "http://h/activate?user_code=BCDF-GHJK", fields)
    assert (method, url) == ("POST", "http://h/activate")
    assert urllib.parse.parse_qsl(body.decode()) == fields


def test_button_found_by_label_and_missing_button() -> None:
    page = sp.parse_page(
        '<form method="post"><input type="submit" name="x" value="Allow access">'
        '<button type="submit" name="y" value="0">Refuse</button><button type="button">Help</button></form>'
    )
    form = page.forms[0]
    assert [c.get("name", "") for c in form.submit_buttons()] == ["x", "y"], "type=button does not submit"
    assert sp.decision_button(form, "allow access")["name"] == "x"  # input's value is its label
    assert sp.decision_button(form, "refuse")["name"] == "y"  # button's text
    assert sp.decision_button(form, "approve") is None
    # Without a submitter the first named submit button is the one sent (pressing Enter).
    assert sp.form_fields(form, "u", "p") == [("x", "Allow access")]


def test_types_the_user_code_into_a_get_form() -> None:
    page = sp.parse_page(CODE_PAGE)
    form = sp.user_code_form(page)
    assert form is not None and sp.decision_form(page) is None
    fields = sp.form_fields(form, "alice", "pw", typed={"user_code": "BCDF-GHJK"})
    assert fields == [("user_code", "BCDF-GHJK")]
    method, url, body = sp.form_request(form, "https://localhost:8443/activate", fields)
    assert (method, url, body) == ("GET", "https://localhost:8443/activate?user_code=BCDF-GHJK", None)


def test_drops_the_user_code_from_a_link() -> None:
    assert sp.without_param("https://h/activate?user_code=AB-CD&x=1", "user_code") == "https://h/activate?x=1"
    assert sp.without_param("https://h/activate?user_code=AB-CD", "user_code") == "https://h/activate"


USER_CODE = "BCDF-GHJK"


class DeviceSite(LoginSite):
    """The login site plus /activate: code form, login, confirmation page (CSRF + Approve/Deny), result."""

    decisions: list[dict[str, str]] = []

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path != "/activate":
            return super().do_GET()
        if "user_code" not in query:
            return self.send(200, CODE_PAGE)
        if self.cookies().get("session") != "ok":
            location = "/login?return_to=" + urllib.parse.quote(self.path, safe="")
            return self.send(303, headers={"Location": location, "Set-Cookie": "csrf=tok123; HttpOnly; Path=/"})
        if query["user_code"].replace("-", "").upper() != USER_CODE.replace("-", ""):
            return self.send(200, CODE_PAGE.replace("<form", '<p role="alert">Unknown code</p><form'))
        page = CONFIRM_PAGE.replace("tok&amp;1", self.cookies().get("csrf", ""))
        self.send(200, page.replace("BCDF-GHJK", query["user_code"]))

    def do_POST(self) -> None:
        if urllib.parse.urlsplit(self.path).path != "/activate":
            return super().do_POST()
        length = int(self.headers.get("Content-Length", "0"))
        pairs = urllib.parse.parse_qsl(self.rfile.read(length).decode())
        DeviceSite.decisions.append(dict(pairs))
        fields = dict(pairs)
        if fields.get("csrf_token") != self.cookies().get("csrf") or len(pairs) != len(fields):
            return self.send(403, "<html><title>CSRF</title><body>bad form</body></html>")
        title = {"approve": "Device connected", "deny": "Request denied"}.get(fields.get("decision", ""))
        if title is None:
            return self.send(400, "<html><title>Bad request</title><body>no decision</body></html>")
        self.send(200, f"<html><head><title>{title}</title></head><body>Return to your terminal.</body></html>")


@pytest.fixture
def device_site() -> Iterator[http.server.ThreadingHTTPServer]:
    LoginSite.posts = []
    DeviceSite.decisions = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DeviceSite)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def run_foreground(tmp_path: Path, url: str, **extra: str) -> tuple[int, str]:
    """Runs the person directly on `url` (not as BROWSER); returns its exit status and log."""
    log = tmp_path / "person.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SCRIPTED_PERSON_")},
        "SCRIPTED_PERSON_LOG": str(log),
        "SCRIPTED_PERSON_USERNAME": "alice",
        "SCRIPTED_PERSON_PASSWORD": PASSWORD,
        "SCRIPTED_PERSON_TIMEOUT": "20",
        **extra,
    }
    proc = subprocess.run(
        [sys.executable, sp.__file__, "--foreground", url], env=env, timeout=30, capture_output=True, text=True
    )
    text = log.read_text() if log.exists() else "<no log>"
    return proc.returncode, text + proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("decision", "title"), [("approve", "Device connected"), ("deny", "Request denied")]
)
@pytest.mark.parametrize("type_code", [False, True])
def test_whole_device_visit(
    device_site: http.server.ThreadingHTTPServer, tmp_path: Path, decision: str, title: str, type_code: bool
) -> None:
    url = f"http://127.0.0.1:{device_site.server_address[1]}/activate?user_code={USER_CODE}"
    extra = {"SCRIPTED_PERSON_DECISION": decision}
    if type_code:
        extra["SCRIPTED_PERSON_TYPE_CODE"] = USER_CODE
    status, text = run_foreground(tmp_path, url, **extra)
    assert status == 0, text
    assert text.rstrip().endswith(f"RESULT: ok (page title {title!r})"), text
    assert [p.get("password") for p in LoginSite.posts] == [PASSWORD], LoginSite.posts
    assert DeviceSite.decisions == [{"csrf_token": "tok123", "user_code": USER_CODE, "decision": decision}], text
    if type_code:
        assert "GET /activate -> 200" in text.replace(url.split("/activate")[0], ""), text
        assert f"typing the user code {USER_CODE!r}" in text, text
    else:
        assert "typing the user code" not in text, text


def test_a_decision_page_without_a_decision_fails(
    device_site: http.server.ThreadingHTTPServer, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{device_site.server_address[1]}/activate?user_code={USER_CODE}"
    status, text = run_foreground(tmp_path, url)
    assert status == 1, text
    assert "RESULT: failed: the page asks for a decision" in text and "decision=approve" in text, text
    assert DeviceSite.decisions == [], DeviceSite.decisions


def test_an_unknown_decision_fails(device_site: http.server.ThreadingHTTPServer, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{device_site.server_address[1]}/activate?user_code={USER_CODE}"
    status, text = run_foreground(tmp_path, url, SCRIPTED_PERSON_DECISION="maybe")
    assert status == 1, text
    assert "RESULT: failed: no 'maybe' button on the page" in text, text


def test_a_wrong_typed_code_fails(device_site: http.server.ThreadingHTTPServer, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{device_site.server_address[1]}/activate"
    status, text = run_foreground(
        tmp_path, url, SCRIPTED_PERSON_DECISION="approve", SCRIPTED_PERSON_TYPE_CODE="ZZZZ-ZZZZ"
    )
    assert status == 1, text
    assert "RESULT: failed: the page asks for the user code again" in text, text
    assert "Unknown code" in text, text

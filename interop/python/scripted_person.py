#!/usr/bin/env python3
"""A scripted person with a browser, for use as the `BROWSER` command of Python's `webbrowser`.

`webbrowser` runs `$BROWSER URL` and waits for it to exit; flytekit only starts its callback listener after
that, so this program returns at once: it starts a detached copy of itself (new session, stdio to the log
file) and exits 0. The copy then behaves as a person would: it opens URL, follows redirects by hand
(keeping cookies), fills in and submits the login form it meets, and finally opens the SDK's loopback
callback URL, retrying while that listener is not up yet. Only the standard library is used, so any
Python 3.9+ can run it.

Environment:
  SCRIPTED_PERSON_USERNAME, SCRIPTED_PERSON_PASSWORD  what to type into the login form (required)
  SCRIPTED_PERSON_LOG        log file (appended to); default: a file in the temporary directory
  SCRIPTED_PERSON_CA         CA bundle to trust for https (default: the system's)
  SCRIPTED_PERSON_WRONG_PASSWORD_FIRST=1  submit a wrong password first and expect the form again (401)
                             with a readable error, then the right one
  SCRIPTED_PERSON_TIMEOUT    seconds the whole visit may take (default 60)

The log has one line per request (`METHOD URL -> STATUS`, with the values of `code`, `state` and the
password redacted) and ends with `RESULT: ok` or `RESULT: failed: <why>`; an unexpected page is logged
with its title and text. The detached copy exits 0 on success and 1 otherwise.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from typing import Optional, TextIO

CHILD_FLAG = "--as-person"
DEFAULT_TIMEOUT_SECONDS = 60.0
CALLBACK_RETRY_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 15.0
MAX_STEPS = 30
PAGE_TEXT_CHARS = 2000
# Query parameters whose values never go to the log.
REDACTED_PARAMS = frozenset({"code", "state", "password", "csrf_token", "refresh_token", "access_token"})
# Words an error message on a login page is expected to contain (used only when the page marks no alert).
ERROR_WORDS = re.compile(r"\b(wrong|invalid|incorrect|failed|denied|not match|try again)\b", re.IGNORECASE)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


# --------------------------------------------------------------------------------------------------
# HTML


class Form:
    """One `<form>`: where it goes, how, and its controls in document order."""

    def __init__(self, action: str, method: str) -> None:
        self.action = action
        self.method = method
        # (tag, attributes) of every input/button/select/textarea inside the form.
        self.controls: list[dict[str, str]] = []

    def has_password(self) -> bool:
        return any(c.get("type", "").lower() == "password" for c in self.controls)

    def __repr__(self) -> str:
        return f"Form(action={self.action!r}, method={self.method!r}, controls={self.controls!r})"


class PageParser(HTMLParser):
    """Collects the forms, the title, the visible text and alert/error texts of an HTML page."""

    _SKIP_TEXT = frozenset({"script", "style", "template", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.title = ""
        self._text: list[str] = []
        self.alerts: list[str] = []
        self._form: Optional[Form] = None
        self._in_title = False
        self._skip_depth = 0
        # Stack of (tag, collecting-into-alert-index or None) for elements that are alerts.
        self._alert_stack: list[tuple[str, int]] = []
        self._textarea: Optional[dict[str, str]] = None

    # Attributes as a dict with lower-case names; a value-less attribute maps to "".
    @staticmethod
    def _attrs(attrs: list[tuple[str, Optional[str]]]) -> dict[str, str]:
        return {k.lower(): (v if v is not None else "") for k, v in attrs}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        a = self._attrs(attrs)
        if tag in self._SKIP_TEXT:
            self._skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "form":
            self._form = Form(action=a.get("action", ""), method=(a.get("method") or "get").lower())
            self.forms.append(self._form)
        elif tag in ("input", "button", "select", "textarea") and self._form is not None:
            control = dict(a)
            control["tag"] = tag
            if tag == "input":
                control.setdefault("type", "text")
            elif tag == "button":
                control.setdefault("type", "submit")
            self._form.controls.append(control)
            if tag == "textarea":
                control["value"] = ""
                self._textarea = control
        if tag not in VOID_TAGS:
            classes = a.get("class", "").lower().split()
            if a.get("role", "").lower() == "alert" or "error" in classes or "alert" in classes:
                self.alerts.append("")
                self._alert_stack.append((tag, len(self.alerts) - 1))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        # `<input ... />`: the same as without the slash; never an open element.
        self.handle_starttag(tag, attrs)
        if tag not in VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP_TEXT:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "title":
            self._in_title = False
        elif tag == "form":
            self._form = None
        elif tag == "textarea":
            self._textarea = None
        if self._alert_stack and self._alert_stack[-1][0] == tag:
            self._alert_stack.pop()

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._in_title:
            self.title += data
            return
        if self._textarea is not None:
            self._textarea["value"] += data
        self._text.append(data)
        for _, index in self._alert_stack:
            self.alerts[index] += data

    @property
    def text(self) -> str:
        return collapse(" ".join(self._text))


VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def parse_page(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    parser.title = collapse(parser.title)
    parser.alerts = [collapse(t) for t in parser.alerts if collapse(t)]
    return parser


def login_form(page: PageParser) -> Optional[Form]:
    """The first form with a password field, if any."""
    return next((f for f in page.forms if f.has_password()), None)


def readable_error(page: PageParser) -> str:
    """The error message a login page shows: its alert elements, else its text if it reads like an error."""
    if page.alerts:
        return " ".join(page.alerts)
    return page.text if ERROR_WORDS.search(page.text) else ""


def form_fields(form: Form, username: str, password: str) -> list[tuple[str, str]]:
    """What submitting `form` sends, as a browser would after the person typed username and password.

    Hidden and pre-filled fields are copied, the first named submit button is "clicked", unchecked boxes
    and disabled controls are left out.
    """
    fields: list[tuple[str, str]] = []
    clicked = False
    for control in form.controls:
        name = control.get("name", "")
        if not name or "disabled" in control:
            continue
        kind = control.get("type", "").lower()
        value = control.get("value", "")
        if kind == "password":
            fields.append((name, password))
        elif name == "username" or (kind in ("text", "email") and control.get("autocomplete") == "username"):
            fields.append((name, username))
        elif kind in ("submit", "image"):
            if not clicked:
                fields.append((name, value))
                clicked = True
        elif kind in ("checkbox", "radio"):
            if "checked" in control:
                fields.append((name, value or "on"))
        elif kind in ("button", "reset", "file"):
            continue
        else:
            # hidden, text, email, textarea, select (its first option is not tracked; empty value)
            fields.append((name, value))
    return fields


def form_request(form: Form, page_url: str, fields: list[tuple[str, str]]) -> tuple[str, str, Optional[bytes]]:
    """(method, url, body) of submitting `form` found on `page_url` with `fields`."""
    action = urllib.parse.urljoin(page_url, form.action or page_url)
    body = urllib.parse.urlencode(fields)
    if form.method == "post":
        return "POST", urllib.parse.urldefrag(action)[0], body.encode()
    parts = urllib.parse.urlsplit(action)
    return "GET", urllib.parse.urlunsplit(parts._replace(query=body, fragment="")), None


# --------------------------------------------------------------------------------------------------
# URLs


def redact_url(url: str) -> str:
    """`url` with the values of code, state and other secrets replaced by `<redacted>`, also inside a
    `return_to` that carries a relative URL."""
    parts = urllib.parse.urlsplit(url)
    if not parts.query:
        return url
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    out = []
    for key, value in pairs:
        if key in REDACTED_PARAMS:
            value = "<redacted>"
        elif key in ("return_to", "next", "redirect") and "?" in value:
            value = redact_url(value)
        out.append((key, value))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(out, safe="<>/:")))


def is_loopback(host: Optional[str]) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_port(parts: urllib.parse.SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def is_callback(url: str, server_url: str) -> bool:
    """True for a loopback URL that is not the server itself: the SDK's redirect listener."""
    target, server = urllib.parse.urlsplit(url), urllib.parse.urlsplit(server_url)
    if not is_loopback(target.hostname):
        return False
    same_host = target.hostname == server.hostname or is_loopback(server.hostname)
    same_server = same_host and target.scheme == server.scheme and origin_port(target) == origin_port(server)
    return not same_server


# --------------------------------------------------------------------------------------------------
# The visit


class Stop(Exception):
    """The visit ends here unsuccessfully; the message says why."""


class PassThrough(urllib.request.HTTPErrorProcessor):
    """Hands every response back as it is: 3xx are followed by hand, 4xx/5xx are looked at."""

    def http_response(self, request, response):  # noqa: D102 - urllib hook
        return response

    https_response = http_response


class Person:
    def __init__(self, log: TextIO, env: dict[str, str]) -> None:
        self.log_file = log
        self.username = env.get("SCRIPTED_PERSON_USERNAME", "")
        self.password = env.get("SCRIPTED_PERSON_PASSWORD", "")
        self.wrong_first = env.get("SCRIPTED_PERSON_WRONG_PASSWORD_FIRST", "") == "1"
        self.deadline = time.monotonic() + float(env.get("SCRIPTED_PERSON_TIMEOUT") or DEFAULT_TIMEOUT_SECONDS)
        ca = env.get("SCRIPTED_PERSON_CA") or None
        self.ssl_context = ssl.create_default_context(cafile=ca)
        self.jar = http.cookiejar.CookieJar()
        no_proxy = urllib.request.ProxyHandler({})
        self.browser = urllib.request.build_opener(
            no_proxy,
            urllib.request.HTTPCookieProcessor(self.jar),
            urllib.request.HTTPSHandler(context=self.ssl_context),
            PassThrough(),
        )
        # The SDK's listener gets no cookies of the server (its port differs, but cookies ignore ports).
        self.plain = urllib.request.build_opener(no_proxy, PassThrough())
        self.awaiting_wrong_answer = False
        self.submitted_right = False

    def log(self, line: str) -> None:
        self.log_file.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        self.log_file.flush()

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Stop("gave up: the visit took longer than allowed")
        return left

    def fetch(self, opener, method: str, url: str, body: Optional[bytes]):
        headers = {"User-Agent": "scripted-person/1", "Accept": "text/html,*/*;q=0.5"}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        response = opener.open(request, timeout=min(REQUEST_TIMEOUT_SECONDS, self.remaining()))
        content = response.read(2_000_000)
        response.close()
        charset = response.headers.get_content_charset() or "utf-8"
        return response.status, response.headers, content.decode(charset, errors="replace")

    def describe_page(self, status: int, page: PageParser) -> str:
        text = page.text
        if len(text) > PAGE_TEXT_CHARS:
            text = text[:PAGE_TEXT_CHARS] + "..."
        alerts = f" alerts={page.alerts!r}" if page.alerts else ""
        return f"page (status {status}) title={page.title!r}{alerts} text={text!r}"

    def visit(self, start_url: str) -> None:
        if not self.username or not self.password:
            raise Stop("SCRIPTED_PERSON_USERNAME and SCRIPTED_PERSON_PASSWORD must be set")
        server_url = start_url
        method, url, body = "GET", start_url, None
        for _ in range(MAX_STEPS):
            self.remaining()
            if is_callback(url, server_url):
                self.open_callback(url)
                return
            status, headers, text = self.fetch(self.browser, method, url, body)
            self.log(f"{method} {redact_url(url)} -> {status}")
            if 300 <= status < 400:
                location = headers.get("Location")
                if not location:
                    raise Stop(f"{status} without a Location header")
                url = urllib.parse.urljoin(url, location)
                # 307/308 would repeat the method; the flow only uses 302/303 after forms.
                if status not in (307, 308):
                    method, body = "GET", None
                continue
            content_type = headers.get("Content-Type", "")
            page = parse_page(text) if "html" in content_type.lower() else None
            form = login_form(page) if page is not None else None
            if page is not None:
                self.log("  " + self.describe_page(status, page))
            if form is None or status not in (200, 401):
                if page is None:
                    self.log(f"  body ({content_type or 'no content type'}): {collapse(text)[:PAGE_TEXT_CHARS]!r}")
                raise Stop(f"unexpected page: {method} {redact_url(url)} answered {status}")
            if self.awaiting_wrong_answer:
                # The answer to the wrong password: the form again, 401, with a readable error.
                self.awaiting_wrong_answer = False
                if status != 401:
                    raise Stop(f"a wrong password was answered with {status}, expected 401 and the form again")
                message = readable_error(page)
                if not message:
                    raise Stop("the 401 login page shows no readable error message")
                self.log(f"  wrong password refused as expected (401): {message!r}")
                password = self.password
                self.submitted_right = True
            elif self.submitted_right:
                raise Stop(f"the login form came back after submitting the right password (status {status})")
            elif status == 401:
                raise Stop("the login form came with 401 before any password was submitted")
            elif self.wrong_first:
                self.wrong_first = False
                self.awaiting_wrong_answer = True
                password = self.password + "-not-it"
                self.log("  submitting a wrong password first")
            else:
                password = self.password
                self.submitted_right = True
            fields = form_fields(form, self.username, password)
            method, url, body = form_request(form, url, fields)
            names = ", ".join(name for name, _ in fields)
            self.log(f"  submitting the form as {self.username!r}: {method} {redact_url(url)} fields [{names}]")
        raise Stop(f"more than {MAX_STEPS} steps without reaching the callback")

    def open_callback(self, url: str) -> None:
        started = time.monotonic()
        retry_until = min(self.deadline, started + CALLBACK_RETRY_SECONDS)
        attempts = 0
        while True:
            attempts += 1
            try:
                timeout = min(REQUEST_TIMEOUT_SECONDS, max(0.5, self.deadline - time.monotonic()))
                request = urllib.request.Request(url, headers={"User-Agent": "scripted-person/1"})
                with self.plain.open(request, timeout=timeout) as response:
                    status = response.status
                    text = response.read(200_000).decode("utf-8", errors="replace")
                break
            except (urllib.error.URLError, ConnectionError, socket.timeout) as err:
                reason = getattr(err, "reason", err)
                refused = isinstance(reason, ConnectionRefusedError) or isinstance(err, ConnectionRefusedError)
                waited = time.monotonic() - started
                if not refused:
                    raise Stop(f"callback {redact_url(url)} failed (attempt {attempts}): {reason!r}") from err
                if attempts == 1:
                    self.log(f"GET {redact_url(url)}: connection refused; waiting for the SDK's listener")
                if time.monotonic() >= retry_until:
                    raise Stop(
                        f"the SDK's callback {redact_url(url)} still refused connections after {waited:.0f}s "
                        f"({attempts} attempts)"
                    ) from err
                time.sleep(0.2)
        self.log(f"GET {redact_url(url)} -> {status} (callback, attempt {attempts})")
        page = parse_page(text)
        self.log("  " + self.describe_page(status, page))
        if status != 200:
            raise Stop(f"the SDK's callback answered {status}")


def run_person(url: str) -> int:
    log_path = os.environ.get("SCRIPTED_PERSON_LOG") or default_log_path()
    with open(log_path, "a", encoding="utf-8") as log:
        try:
            person = Person(log, dict(os.environ))
        except (OSError, ValueError, ssl.SSLError) as err:  # e.g. an unreadable SCRIPTED_PERSON_CA
            stamp = time.strftime("%H:%M:%S")
            log.write(f"{stamp} person {os.getpid()} opens {redact_url(url)}\n")
            log.write(f"{stamp} RESULT: failed: cannot start: {err}\n")
            return 1
        person.log(f"person {os.getpid()} opens {redact_url(url)}")
        try:
            person.visit(url)
        except Stop as stop:
            person.log(f"RESULT: failed: {stop}")
            return 1
        except Exception as err:  # a bug or an unexpected network error: say what it was
            person.log(f"RESULT: failed: {type(err).__name__}: {err}")
            return 1
        person.log("RESULT: ok")
        return 0


def default_log_path() -> str:
    return os.path.join(tempfile.gettempdir(), f"scripted-person-{os.getuid()}.log")


def detach(url: str) -> int:
    """Starts the person in its own session and returns without waiting for it."""
    log_path = os.environ.get("SCRIPTED_PERSON_LOG") or default_log_path()
    with open(log_path, "ab") as log:
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), CHILD_FLAG, url],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env={**os.environ, "SCRIPTED_PERSON_LOG": log_path},
        )
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == CHILD_FLAG:
        return run_person(argv[2])
    if len(argv) != 2:
        sys.stderr.write(f"usage: {argv[0]} URL\n")
        return 2
    return detach(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""A scripted person with a browser, for use as the `BROWSER` command of Python's `webbrowser`, or started
directly on a URL (a device-flow verification link).

    scripted_person.py URL               as `$BROWSER`: detach a copy of itself and exit 0 at once
    scripted_person.py --foreground URL  visit URL in this process; exit 0 on success, 1 otherwise

`webbrowser` runs `$BROWSER URL` and waits for it to exit; flytekit only starts its callback listener after
that, so in the first form this program returns at once: it starts a detached copy of itself (new session,
stdio to the log file) and exits 0. The visit then goes as a person's would: it opens URL, follows redirects
by hand (keeping cookies), fills in and submits the login form it meets, and either opens the SDK's loopback
callback URL (authorization-code flow), retrying while that listener is not up yet, or (device flow) types
the user code if asked for it, presses the button of its decision on the confirmation page and reads the
page that follows. Only the standard library is used, so any Python 3.9+ can run it.

Environment:
  SCRIPTED_PERSON_USERNAME, SCRIPTED_PERSON_PASSWORD  what to type into the login form (required)
  SCRIPTED_PERSON_LOG        log file (appended to); default: a file in the temporary directory
  SCRIPTED_PERSON_CA         CA bundle to trust for https (default: the system's)
  SCRIPTED_PERSON_WRONG_PASSWORD_FIRST=1  submit a wrong password first and expect the form again (401)
                             with a readable error, then the right one
  SCRIPTED_PERSON_DECISION   approve|deny: the value (or label) of the submit button to press on a form
                             with several submit buttons, such as a device confirmation page
  SCRIPTED_PERSON_TYPE_CODE  a user code (XXXX-XXXX): open URL without its `user_code` parameter and type the
                             code into the page's `user_code` field instead
  SCRIPTED_PERSON_TIMEOUT    seconds the whole visit may take (default 60)

The log has one line per request (`METHOD URL -> STATUS`, with the values of `code`, `state` and the
password redacted) and ends with `RESULT: ok` (after a callback), `RESULT: ok (page title 'T')` (after a
decision, T being the title of the page it led to) or `RESULT: failed: <why>`; an unexpected page is
logged with its title and text.
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
FOREGROUND_FLAG = "--foreground"
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

    def submit_buttons(self) -> list[dict[str, str]]:
        """The controls that submit the form when pressed, in document order (disabled ones left out)."""
        return [
            c
            for c in self.controls
            if c.get("type", "").lower() in ("submit", "image") and "disabled" not in c
        ]

    def typed_field(self, name: str) -> Optional[dict[str, str]]:
        """The control called `name` that a person types into (text-like input or textarea), if any."""
        for c in self.controls:
            if c.get("name") == name and "disabled" not in c:
                if c["tag"] == "textarea" or c.get("type", "").lower() in ("text", "search", "email", "tel"):
                    return c
        return None

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
        self._button: Optional[dict[str, str]] = None

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
            elif tag == "button":
                control["label"] = ""
                self._button = control
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
        elif tag == "button":
            self._button = None
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
        if self._button is not None:
            self._button["label"] += data
        self._text.append(data)
        for _, index in self._alert_stack:
            self.alerts[index] += data

    @property
    def text(self) -> str:
        return collapse(" ".join(self._text))

    def close(self) -> None:
        super().close()
        for form in self.forms:
            for control in form.controls:
                if "label" in control:
                    control["label"] = collapse(control["label"])


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


def decision_button(form: Form, decision: str) -> Optional[dict[str, str]]:
    """The submit button of `form` a person pressing `decision` clicks: the one whose value, else whose
    label (or `alt`/`title`), equals `decision` ignoring case; None if there is no such button."""
    wanted = decision.strip().lower()
    buttons = form.submit_buttons()
    for key in ("value", "label", "alt", "title"):
        for button in buttons:
            if collapse(button.get(key, "")).lower() == wanted:
                return button
    return None


def is_decision_form(form: Form) -> bool:
    """A form that asks for a choice: several submit buttons, or one named `decision`; never a login form."""
    if form.has_password():
        return False
    buttons = form.submit_buttons()
    return len(buttons) >= 2 or any(b.get("name") == "decision" for b in buttons)


def decision_form(page: PageParser) -> Optional[Form]:
    """The first form of `page` that asks for a decision, if any."""
    return next((f for f in page.forms if is_decision_form(f)), None)


def user_code_form(page: PageParser) -> Optional[Form]:
    """The first form of `page` with a field to type a user code into (`user_code`), if any."""
    return next((f for f in page.forms if f.typed_field("user_code") is not None and not f.has_password()), None)


def form_fields(
    form: Form,
    username: str,
    password: str,
    submitter: Optional[dict[str, str]] = None,
    typed: Optional[dict[str, str]] = None,
) -> list[tuple[str, str]]:
    """What submitting `form` sends, as a browser would after the person typed username and password.

    Hidden and pre-filled fields are copied, the pressed submit button (`submitter`, one of the form's
    controls; by default the first named one, as pressing Enter does) contributes its name=value and the
    others nothing, unchecked boxes and disabled controls are left out. `typed` maps the names of
    text-like fields to what the person types into them (replacing any pre-filled value).
    """
    typed = typed or {}
    fields: list[tuple[str, str]] = []
    clicked = False
    for control in form.controls:
        name = control.get("name", "")
        if not name or "disabled" in control:
            continue
        kind = control.get("type", "").lower()
        value = control.get("value", "")
        if kind in ("submit", "image"):
            pressed = control is submitter if submitter is not None else not clicked
            if pressed:
                fields.append((name, value))
                clicked = True
        elif kind == "password":
            fields.append((name, password))
        elif name in typed and kind not in ("hidden", "checkbox", "radio", "button", "reset", "file"):
            fields.append((name, typed[name]))
        elif name == "username" or (kind in ("text", "email") and control.get("autocomplete") == "username"):
            fields.append((name, username))
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


def without_param(url: str, name: str) -> str:
    """`url` without the query parameter `name` (the other parameters kept in order)."""
    parts = urllib.parse.urlsplit(url)
    pairs = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != name]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(pairs)))


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
        self.decision = (env.get("SCRIPTED_PERSON_DECISION") or "").strip()
        self.type_code = (env.get("SCRIPTED_PERSON_TYPE_CODE") or "").strip()
        self.awaiting_wrong_answer = False
        self.submitted_right = False
        self.typed_code = False
        self.decided = ""
        # The title of the page a decision led to (set when the visit ends there).
        self.result_title: Optional[str] = None

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
        if self.type_code:
            # The person was told the code, not given the link: the plain verification page is opened.
            start_url = without_param(start_url, "user_code")
            self.log(f"  will type the user code {self.type_code!r}; opening {redact_url(start_url)}")
        server_url = start_url
        method, url, body = "GET", start_url, None
        for _ in range(MAX_STEPS):
            self.remaining()
            if is_callback(url, server_url):
                if self.decided:
                    raise Stop(f"redirected to the loopback URL {redact_url(url)} after the decision")
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
            if page is not None:
                self.log("  " + self.describe_page(status, page))
            else:
                self.log(f"  body ({content_type or 'no content type'}): {collapse(text)[:PAGE_TEXT_CHARS]!r}")
            if self.decided:
                self.read_result(method, url, status, page)
                return
            if page is None:
                raise Stop(f"unexpected page: {method} {redact_url(url)} answered {status}")
            form = login_form(page)
            if form is not None and status in (200, 401):
                fields = self.login_fields(form, status, page)
                method, url, body = form_request(form, url, fields)
                names = ", ".join(name for name, _ in fields)
                self.log(f"  submitting the form as {self.username!r}: {method} {redact_url(url)} fields [{names}]")
                continue
            if status == 200 and user_code_form(page) is not None:
                method, url, body = self.type_user_code(user_code_form(page), url)
                continue
            if status == 200 and decision_form(page) is not None:
                method, url, body = self.decide(decision_form(page), url)
                continue
            raise Stop(f"unexpected page: {method} {redact_url(url)} answered {status}")
        raise Stop(f"more than {MAX_STEPS} steps without reaching the callback or a decision's result")

    def login_fields(self, form: Form, status: int, page: PageParser) -> list[tuple[str, str]]:
        """What to submit on a login form that came with `status`; stops the visit if it is out of place."""
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
        return form_fields(form, self.username, password)

    def type_user_code(self, form: Form, url: str) -> tuple[str, str, Optional[bytes]]:
        if not self.type_code:
            raise Stop("the page asks for a user code, but SCRIPTED_PERSON_TYPE_CODE is not set")
        if self.typed_code:
            raise Stop("the page asks for the user code again after it was typed")
        self.typed_code = True
        fields = form_fields(form, self.username, self.password, typed={"user_code": self.type_code})
        method, target, body = form_request(form, url, fields)
        self.log(f"  typing the user code {self.type_code!r}: {method} {redact_url(target)}")
        return method, target, body

    def decide(self, form: Form, url: str) -> tuple[str, str, Optional[bytes]]:
        buttons = [f"{b.get('name', '')}={b.get('value', '')} ({b.get('label', '')!r})" for b in form.submit_buttons()]
        if not self.decision:
            raise Stop(f"the page asks for a decision ({', '.join(buttons)}) but SCRIPTED_PERSON_DECISION is not set")
        if self.type_code and not self.typed_code:
            raise Stop("a decision was asked for before the person typed the user code")
        button = decision_button(form, self.decision)
        if button is None:
            raise Stop(f"no {self.decision!r} button on the page; its buttons: {', '.join(buttons)}")
        fields = form_fields(form, self.username, self.password, submitter=button)
        method, target, body = form_request(form, url, fields)
        names = ", ".join(name for name, _ in fields)
        pressed = f"{button.get('name', '')}={button.get('value', '')}" if button.get("name") else "(unnamed)"
        self.log(f"  pressing {self.decision!r} [{pressed}]: {method} {redact_url(target)} fields [{names}]")
        self.decided = self.decision
        return method, target, body

    def read_result(self, method: str, url: str, status: int, page: Optional[PageParser]) -> None:
        """The page the decision led to: a 200 HTML page without another decision or login form."""
        if status != 200 or page is None:
            raise Stop(f"the {self.decided!r} decision led to {method} {redact_url(url)} answering {status}")
        if login_form(page) is not None:
            raise Stop("the login form came back after the decision")
        if decision_form(page) is not None:
            raise Stop("the page asks for a decision again after the decision was made")
        self.result_title = page.title

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
        if person.result_title is not None:
            person.log(f"RESULT: ok (page title {person.result_title!r})")
        else:
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
    if len(argv) == 3 and argv[1] in (CHILD_FLAG, FOREGROUND_FLAG):
        return run_person(argv[2])
    if len(argv) != 2 or argv[1].startswith("-"):
        sys.stderr.write(f"usage: {argv[0]} [{FOREGROUND_FLAG}] URL\n")
        return 2
    return detach(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv))

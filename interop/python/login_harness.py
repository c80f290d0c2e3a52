"""Helpers for the browser-login interop tests: the scripted person as `BROWSER` or started on a URL, SDK
subprocesses with a hard timeout (also read while they run), token-endpoint calls and unverified JWT claims.

The SDKs open the login page with Python's `webbrowser`, which runs `$BROWSER URL`; the tests point
`BROWSER` at a small wrapper around scripted_person.py. `webbrowser` takes `$BROWSER` as a single
executable (no arguments), hence the wrapper script. In the device flow the SDK only prints a URL; the
test reads it from the SDK's output (`StreamedSdk`) and starts the person on it (`ScriptedPerson.start`).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional, Sequence

from flyteauth_harness import LocalUser, Server

PERSON_SCRIPT = Path(__file__).resolve().with_name("scripted_person.py")
# Keyring disabled for isolation: nothing is read from or written to a developer's keyring.
NULL_KEYRING = "keyring.backends.null.Keyring"
# Environment variables of a developer's own Flyte setup that must not leak into a test run.
FOREIGN_ENV_PREFIXES = ("FLYTE_", "UCTL_", "FLYTECTL_", "_U_", "SCRIPTED_PERSON_")
FOREIGN_ENV_NAMES = ("BROWSER", "PYTHON_KEYRING_BACKEND", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")
PERSON_LOG_TAIL_CHARS = 20_000


@dataclasses.dataclass
class ScriptedPerson:
    """A scripted person for one test: the `BROWSER` wrapper, its log and the environment it needs."""

    workdir: Path
    user: LocalUser
    ca_file: Optional[Path] = None
    wrong_password_first: bool = False
    # approve|deny: the button pressed on a device confirmation page.
    decision: Optional[str] = None
    # Type this user code into the verification page instead of following the link's `user_code`.
    type_code: Optional[str] = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "scripted-person.log"
        self.browser = self.workdir / "scripted-browser"
        # Runs the person with this interpreter; the person detaches and the wrapper exits at once.
        self.browser.write_text(
            f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(PERSON_SCRIPT))} \"$@\"\n"
        )
        self.browser.chmod(0o755)
        assert " " not in str(self.browser), f"webbrowser splits $BROWSER on spaces: {self.browser}"
        self.process: Optional[subprocess.Popen] = None

    def env(self) -> dict[str, str]:
        env = {
            "BROWSER": str(self.browser),
            "SCRIPTED_PERSON_LOG": str(self.log_path),
            "SCRIPTED_PERSON_USERNAME": self.user.name,
            "SCRIPTED_PERSON_PASSWORD": self.user.password,
        }
        if self.ca_file is not None:
            env["SCRIPTED_PERSON_CA"] = str(self.ca_file)
        if self.wrong_password_first:
            env["SCRIPTED_PERSON_WRONG_PASSWORD_FIRST"] = "1"
        if self.decision:
            env["SCRIPTED_PERSON_DECISION"] = self.decision
        if self.type_code:
            env["SCRIPTED_PERSON_TYPE_CODE"] = self.type_code
        return env

    def start(self, url: str) -> None:
        """Starts the person on `url` in the background (`scripted_person.py --foreground URL`), as someone
        who copies a link from the terminal into a browser; `wait` collects the outcome."""
        assert self.process is None, "this person is already visiting a page"
        env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV_PREFIXES)}
        env.update(self.env())
        env.pop("BROWSER", None)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(PERSON_SCRIPT), "--foreground", url],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def wait(self, timeout: float = 30.0) -> Optional[int]:
        """The exit status of the person `start`ed (0: the visit succeeded); None if still running after
        `timeout` seconds, in which case the person is stopped."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_text(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "<no log: the SDK never ran $BROWSER>"
        except OSError as err:
            return f"<cannot read {self.log_path}: {err}>"
        if len(text) > PERSON_LOG_TAIL_CHARS:
            text = "...<truncated>...\n" + text[-PERSON_LOG_TAIL_CHARS:]
        return text

    def results(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if " RESULT: " in line]

    def wait_for_result(self, timeout: float = 10.0) -> list[str]:
        """The RESULT lines once every visit that started has ended (the SDK may exit before the log is final)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            started = text.count(" opens ")
            results = self.results()
            if (started and len(results) >= started) or time.monotonic() >= deadline:
                return results
            time.sleep(0.1)


def sdk_env(workdir: Path, person: ScriptedPerson, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The environment of an SDK subprocess: ours minus a developer's Flyte settings, plus the person,
    the null keyring and a private HOME."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(FOREIGN_ENV_PREFIXES) and k not in FOREIGN_ENV_NAMES
    }
    # No GUI browser may be picked instead of (or before) $BROWSER.
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(name, None)
    env.update(person.env())
    env.update(
        {
            "PYTHON_KEYRING_BACKEND": NULL_KEYRING,
            "HOME": str(workdir),
            "NO_COLOR": "1",
            "TERM": "dumb",
            "COLUMNS": "400",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


@dataclasses.dataclass
class SdkRun:
    """What an SDK subprocess did, with everything needed to understand a failure."""

    argv: Sequence[str]
    returncode: Optional[int]  # None: killed after the timeout
    stdout: str
    stderr: str
    person: ScriptedPerson
    server: Server
    timeout: float

    def describe(self) -> str:
        status = f"killed after {self.timeout:.0f}s" if self.returncode is None else f"exit {self.returncode}"
        return (
            f"`{' '.join(self.argv)}`: {status}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}\n"
            f"--- scripted person log ({self.person.log_path}) ---\n{self.person.log_text()}\n"
            f"--- server log ({self.server.log_path}) ---\n{self.server.log_text()}"
        )


def run_sdk(
    argv: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float, person: ScriptedPerson, server: Server
) -> SdkRun:
    """Runs an SDK command with a hard timeout, so that a login that never completes fails instead of hanging."""
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        returncode: Optional[int] = proc.returncode
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as expired:
        returncode = None
        stdout, stderr = _text(expired.stdout), _text(expired.stderr)
    return SdkRun(list(argv), returncode, stdout, stderr, person, server, timeout)


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def strip_ansi(text: str) -> str:
    """`text` without terminal colour and hyperlink escapes (click and rich add them on a terminal)."""
    return ANSI_ESCAPE.sub("", text)


class StreamedSdk:
    """An SDK subprocess whose stdout and stderr are read while it runs (each by its own thread, so the
    process never blocks on a full pipe), with a hard timeout. Use as a context manager: leaving the
    block kills the process if it still runs.

        with StreamedSdk(argv, cwd=..., env=..., timeout=..., person=..., server=...) as sdk:
            match = sdk.wait_for(PATTERN, timeout=30)
            ...
            run = sdk.finish()
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: dict[str, str],
        timeout: float,
        person: ScriptedPerson,
        server: Server,
    ) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        self.person = person
        self.server = server
        self._chunks: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self._deadline = time.monotonic() + timeout
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, "stderr"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        self._killed = False

    def __enter__(self) -> "StreamedSdk":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def _read(self, stream, name: str) -> None:
        # Lines as they come; a final partial line at EOF too.
        for line in iter(stream.readline, ""):
            with self._changed:
                self._chunks[name].append(line)
                self._changed.notify_all()
        stream.close()
        with self._changed:
            self._changed.notify_all()

    def text(self, name: str) -> str:
        with self._changed:
            return "".join(self._chunks[name])

    def output(self) -> str:
        """stdout and stderr so far, without terminal escapes."""
        return strip_ansi(self.text("stdout") + "\n" + self.text("stderr"))

    def wait_for(self, pattern: "re.Pattern[str]", timeout: float) -> Optional["re.Match[str]"]:
        """The first match of `pattern` in the output, waiting up to `timeout` seconds (and never beyond the
        hard timeout); None if the process ended or the time ran out without it."""
        deadline = min(time.monotonic() + timeout, self._deadline)
        with self._changed:
            while True:
                for name in ("stdout", "stderr"):
                    match = pattern.search(strip_ansi("".join(self._chunks[name])))
                    if match:
                        return match
                if self.proc.poll() is not None and not any(r.is_alive() for r in self._readers):
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(min(left, 0.2))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self._killed = True
            self.proc.kill()
        self.proc.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=10)

    def finish(self) -> SdkRun:
        """Waits for the process until the hard timeout (then kills it); returns what it did."""
        try:
            self.proc.wait(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        self.kill()
        returncode = None if self._killed else self.proc.returncode
        return SdkRun(
            self.argv,
            returncode,
            strip_ansi(self.text("stdout")),
            strip_ansi(self.text("stderr")),
            self.person,
            self.server,
            self.timeout,
        )

    def run_so_far(self) -> SdkRun:
        """What the process did so far (for a failure message while it still runs)."""
        return SdkRun(
            self.argv,
            self.proc.poll(),
            strip_ansi(self.text("stdout")),
            strip_ansi(self.text("stderr")),
            self.person,
            self.server,
            self.timeout,
        )


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def post_token(server: Server, fields: dict[str, str], timeout: float = 30.0) -> tuple[int, dict]:
    """POSTs a form to the token endpoint as a public client would; returns (status, JSON body or {})."""
    return post_form(server, server.token_endpoint, fields, timeout)


def post_form(server: Server, url: str, fields: dict[str, str], timeout: float = 30.0) -> tuple[int, dict]:
    """POSTs a form to `url` of `server` without client authentication; returns (status, JSON body or {})."""
    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(fields).encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    if server.tls:
        opener.add_handler(urllib.request.HTTPSHandler(context=server.ssl_context()))
    try:
        with opener.open(request, timeout=timeout) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    try:
        parsed = json.loads(body) if body else {}
    except ValueError:
        parsed = {"<not JSON>": body.decode(errors="replace")}
    return status, parsed if isinstance(parsed, dict) else {"<not an object>": parsed}


def jwt_claims(token: str) -> dict:
    """The payload of a JWT, unverified (the server's own tests check signatures)."""
    parts = token.split(".")
    assert len(parts) == 3, f"not a JWT (expected 3 dot-separated parts, got {len(parts)})"
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))

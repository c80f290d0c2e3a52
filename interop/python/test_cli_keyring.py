"""One login, two CLIs: a login made by the Rust `flyte login` is used by the Python SDK's `flyte whoami`
without a new login, and the reverse, through a real Secret Service.

Each test runs one driver (`cli_keyring_driver`, below) under scripts/with-secret-service, so both CLIs of the
test share one private D-Bus session with a throwaway, unlocked gnome-keyring (and a temporary HOME): nothing
touches a developer's keyring, and the keyring is gone when the test ends. The driver runs the steps in order
with a hard timeout each and writes what every step printed to a JSON file the test reads.

"Without a new login": the second CLI runs with `BROWSER` pointing at a script that appends to a marker file
and fails; the marker must stay absent and both CLIs must name alice. The Rust CLI is also given a
`FLYTE_TOKEN_CACHE_FILE` that must never appear, so its tokens provably went to the keyring, and the item the
Python side reads back is checked for the SDK's exact layout.

The server is the embedded default over TLS (flyte 2 sends credentials only over TLS); both CLIs read one
configuration file with `authType: Pkce`. Both CLIs' callback listeners use the port of the server's
advertised redirect_uri, so these tests must not run in parallel with other login tests.

Missing dbus-run-session, gnome-keyring-daemon or the Rust binary (FLYTE_RS_BIN, default
<repo>/target/debug/flyte) is a failure, never a skip.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

import pytest
import yaml

from flyteauth_harness import LocalUser, Server
from login_harness import ScriptedPerson, SdkRun, sdk_env
from test_flyte2_pkce import assert_is_alice, whoami_user_info

REPO = Path(__file__).resolve().parents[2]
WITH_SECRET_SERVICE = REPO / "scripts" / "with-secret-service"
PYTHON_FLYTE = Path(sys.executable).with_name("flyte")
STEP_TIMEOUT_SECONDS = 90
# A second CLI that wrongly starts a login calls the failing browser and then waits for a callback that never
# comes; this bounds that wait so the test fails with the marker instead of hanging.
NO_LOGIN_TIMEOUT_SECONDS = 45
SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"

DRIVER = r'''
"""Runs steps (argv, extra env, timeout) in order; writes each one's exit status and output to a JSON file."""
import json, os, subprocess, sys

steps = json.loads(open(sys.argv[1]).read())
results = []
for step in steps:
    env = dict(os.environ)
    env.update(step["env"])
    try:
        proc = subprocess.run(step["argv"], env=env, cwd=step["cwd"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=step["timeout"])
        results.append({"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr})
    except subprocess.TimeoutExpired as e:
        text = lambda v: v.decode(errors="replace") if isinstance(v, bytes) else (v or "")
        results.append({"returncode": None, "stdout": text(e.stdout), "stderr": text(e.stderr)})
    if step.get("stop_on_failure", True) and results[-1]["returncode"] != 0:
        break
with open(sys.argv[2], "w") as out:
    json.dump(results, out)
'''

# Prints what Python's keyring (the SecretService backend, as the SDK uses it) holds for the service.
READ_KEYRING = "import sys, keyring; print(repr(keyring.get_password(sys.argv[1], 'tokens')))"


def rust_flyte() -> Path:
    value = os.environ.get("FLYTE_RS_BIN") or str(REPO / "target" / "debug" / "flyte")
    path = Path(value)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"the Rust flyte CLI is not at {path}: build it with `cargo build -p flyteauth-cli` or set FLYTE_RS_BIN",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def secret_service_tools() -> None:
    """The programs scripts/with-secret-service needs; their absence fails the test."""
    missing = [
        f"{program} (package {package})"
        for program, package in (("dbus-run-session", "dbus"), ("gnome-keyring-daemon", "gnome-keyring"))
        if shutil.which(program) is None
    ]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: apt-get install -y --no-install-recommends dbus gnome-keyring libsecret-tools",
            pytrace=False,
        )
    assert os.access(WITH_SECRET_SERVICE, os.X_OK), f"{WITH_SECRET_SERVICE} is not executable"


class Step:
    def __init__(self, name: str, argv: list[str], env: Optional[dict[str, str]] = None, timeout: float = STEP_TIMEOUT_SECONDS):
        self.name, self.argv, self.env, self.timeout = name, argv, env or {}, timeout


class Outcome:
    """What the driver reported, step by step, with everything needed to understand a failure."""

    def __init__(self, steps: list[Step], results: list[dict], session: subprocess.CompletedProcess, server: Server, person: ScriptedPerson, marker: Path):
        self.steps, self.results, self.session = steps, results, session
        self.server, self.person, self.marker = server, person, marker

    def describe(self) -> str:
        parts = []
        for step, result in zip(self.steps, self.results + [None] * (len(self.steps) - len(self.results))):
            if result is None:
                parts.append(f"--- {step.name}: not run ---")
                continue
            status = "killed after timeout" if result["returncode"] is None else f"exit {result['returncode']}"
            parts.append(f"--- {step.name}: `{' '.join(step.argv)}` {status} ---\nstdout:\n{result['stdout']}\nstderr:\n{result['stderr']}")
        marker = self.marker.read_text() if self.marker.exists() else "(absent)"
        parts.append(f"--- with-secret-service: exit {self.session.returncode} ---\n{self.session.stderr[-5000:]}")
        parts.append(f"--- failing-browser marker ---\n{marker}")
        parts.append(f"--- scripted person log ---\n{self.person.log_text()}")
        parts.append(f"--- server log ---\n{self.server.log_text()}")
        return "\n".join(parts)

    def result(self, index: int) -> dict:
        if index >= len(self.results):
            pytest.fail(f"step {self.steps[index].name!r} did not run\n{self.describe()}", pytrace=False)
        return self.results[index]

    def ok(self, index: int) -> dict:
        result = self.result(index)
        if result["returncode"] != 0:
            pytest.fail(f"step {self.steps[index].name!r} failed\n{self.describe()}", pytrace=False)
        return result

    def sdk_run(self, index: int) -> SdkRun:
        result = self.result(index)
        step = self.steps[index]
        return SdkRun(step.argv, result["returncode"], result["stdout"], result["stderr"], self.person, self.server, step.timeout)


class Scenario:
    """The files of one test: configuration, failing browser, marker, driver."""

    def __init__(self, server: Server, person: ScriptedPerson, workdir: Path):
        assert server.ca_file is not None and server.ca_file.is_file(), f"no CA file at {server.ca_file}"
        self.server, self.person, self.workdir = server, person, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.service = f"localhost:{server.port}"
        self.config = workdir / "flyte-config.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "admin": {
                        "endpoint": f"dns:///{self.service}",
                        "insecure": False,
                        "authType": "Pkce",
                        "caCertFilePath": str(server.ca_file),
                    }
                }
            )
        )
        self.marker = workdir / "failing-browser-called"
        self.failing_browser = workdir / "failing-browser"
        self.failing_browser.write_text(f"#!/bin/sh\necho \"$@\" >> '{self.marker}'\nexit 1\n")
        self.failing_browser.chmod(0o755)
        self.token_file = workdir / "rust-token-cache.json"
        self.rust = str(rust_flyte())
        assert PYTHON_FLYTE.is_file(), f"the Python flyte CLI is not next to {sys.executable}"

    def rust_step(self, name: str, *args: str, no_login: bool = False) -> Step:
        env = {"BROWSER": str(self.failing_browser)} if no_login else {}
        timeout = NO_LOGIN_TIMEOUT_SECONDS if no_login else STEP_TIMEOUT_SECONDS
        return Step(name, [self.rust, "-c", str(self.config), *args], env, timeout)

    def python_whoami(self, name: str, no_login: bool = False) -> Step:
        env = {"BROWSER": str(self.failing_browser)} if no_login else {}
        timeout = NO_LOGIN_TIMEOUT_SECONDS if no_login else STEP_TIMEOUT_SECONDS
        return Step(name, [str(PYTHON_FLYTE), "-c", str(self.config), "whoami"], env, timeout)

    def read_keyring(self) -> Step:
        return Step("Python keyring.get_password", [sys.executable, "-c", READ_KEYRING, self.service])

    def run(self, steps: list[Step]) -> Outcome:
        driver = self.workdir / "cli_keyring_driver.py"
        driver.write_text(DRIVER)
        steps_file, results_file = self.workdir / "steps.json", self.workdir / "results.json"
        steps_file.write_text(
            json.dumps([{"argv": s.argv, "env": s.env, "timeout": s.timeout, "cwd": str(self.workdir)} for s in steps])
        )
        env = sdk_env(
            self.workdir,
            self.person,
            {
                "SSL_CERT_FILE": str(self.server.ca_file),
                "PYTHON_KEYRING_BACKEND": SECRET_SERVICE_BACKEND,
                "FLYTE_TOKEN_CACHE_FILE": str(self.token_file),
            },
        )
        total = sum(s.timeout for s in steps) + 60
        try:
            session = subprocess.run(
                [str(WITH_SECRET_SERVICE), sys.executable, str(driver), str(steps_file), str(results_file)],
                cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=total,
            )
        except subprocess.TimeoutExpired as expired:
            pytest.fail(f"with-secret-service did not end within {total}s: {expired.stderr!r}", pytrace=False)
        results = json.loads(results_file.read_text()) if results_file.exists() else []
        outcome = Outcome(steps, results, session, self.server, self.person, self.marker)
        if session.returncode == 127 or (session.returncode != 0 and not results):
            pytest.fail(f"scripts/with-secret-service could not run the driver\n{outcome.describe()}", pytrace=False)
        return outcome

    def assert_no_new_login(self, outcome: Outcome) -> None:
        assert not self.marker.exists(), f"the second CLI started a new login (it opened a browser)\n{outcome.describe()}"

    def assert_keyring_used(self, outcome: Outcome) -> None:
        assert not self.token_file.exists(), (
            f"the Rust CLI wrote its file cache {self.token_file} instead of the keyring\n{outcome.describe()}"
        )

    def assert_sdk_layout(self, outcome: Outcome, index: int) -> None:
        printed = outcome.ok(index)["stdout"].strip()
        try:
            value = json.loads(ast.literal_eval(printed))  # READ_KEYRING prints repr() of the str
        except Exception as err:  # noqa: BLE001 - any failure here is a layout failure
            pytest.fail(f"the keyring item is not the SDK's JSON ({err}): {printed[:20]}…\n{outcome.describe()}", pytrace=False)
        assert sorted(value) == ["access_token", "refresh_token"], f"members {sorted(value)}\n{outcome.describe()}"
        assert isinstance(value["access_token"], str) and value["access_token"], outcome.describe()


def rust_whoami_info(outcome: Outcome, index: int) -> dict:
    result = outcome.ok(index)
    try:
        return json.loads(result["stdout"])
    except ValueError as err:
        pytest.fail(f"`flyte whoami -o json` printed no JSON object ({err})\n{outcome.describe()}", pytrace=False)


def test_python_whoami_uses_the_rust_login(
    secret_service_tools: None,
    embedded_tls_login_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
) -> None:
    server = embedded_tls_login_server
    person = new_person(alice_user, ca_file=server.ca_file)
    scenario = Scenario(server, person, tmp_path / "rust-then-python")
    steps = [
        scenario.rust_step("Rust flyte login", "login"),
        scenario.read_keyring(),
        scenario.python_whoami("Python flyte whoami", no_login=True),
    ]
    outcome = scenario.run(steps)

    login = outcome.ok(0)
    assert login["stdout"].startswith(f"Signed in to {scenario.service} as alice ("), outcome.describe()
    results = person.wait_for_result()
    assert len(results) == 1 and results[0].endswith("RESULT: ok"), f"one browser login expected: {results!r}\n{outcome.describe()}"
    scenario.assert_keyring_used(outcome)
    scenario.assert_sdk_layout(outcome, 1)

    scenario.assert_no_new_login(outcome)
    run = outcome.sdk_run(2)
    assert_is_alice(whoami_user_info(run), run)
    scenario.assert_no_new_login(outcome)


def test_rust_whoami_uses_the_python_login(
    secret_service_tools: None,
    embedded_tls_login_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
) -> None:
    server = embedded_tls_login_server
    person = new_person(alice_user, ca_file=server.ca_file)
    scenario = Scenario(server, person, tmp_path / "python-then-rust")
    steps = [
        scenario.python_whoami("Python flyte whoami (logs in)"),
        scenario.read_keyring(),
        scenario.rust_step("Rust flyte whoami", "whoami", "-o", "json", no_login=True),
        scenario.rust_step("Rust flyte logout", "logout", no_login=True),
        scenario.read_keyring(),
    ]
    outcome = scenario.run(steps)

    first = outcome.sdk_run(0)
    assert_is_alice(whoami_user_info(first), first)
    results = person.wait_for_result()
    assert len(results) == 1 and results[0].endswith("RESULT: ok"), f"one browser login expected: {results!r}\n{outcome.describe()}"
    scenario.assert_sdk_layout(outcome, 1)

    info = rust_whoami_info(outcome, 2)
    assert_is_alice(info, outcome.sdk_run(2))
    scenario.assert_no_new_login(outcome)
    scenario.assert_keyring_used(outcome)

    # Signing out with the Rust CLI removes the item the Python SDK reads.
    assert outcome.ok(3)["stdout"].strip() == f"Signed out of {scenario.service}", outcome.describe()
    assert outcome.ok(4)["stdout"].strip() == "None", f"the keyring item survived `flyte logout`\n{outcome.describe()}"

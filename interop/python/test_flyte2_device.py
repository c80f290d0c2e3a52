"""`flyte whoami` of the flyte 2.12.1 SDK with `authType: DeviceFlow` against the embedded default over TLS.

The server is `flyteauth serve --data-dir DIR --self-signed-tls` with alice created by
`flyteauth users add --data-dir DIR` (as in test_flyte2_pkce.py: flyte 2 installs no auth interceptors for
`insecure: true`). The Connect client trusts `admin.caCertFilePath`, the device-code and token requests go
through httpx, which only honours `SSL_CERT_FILE`, and the scripted person trusts `SCRIPTED_PERSON_CA`.
flyte prints "To Authenticate, navigate in a browser to the following URL: <url>" and polls the token
endpoint at the server's interval (the embedded default's 5s); the test reads the URL from the CLI's output
while it runs and starts the person on it. The keyring is the null backend and `admin.disableKeyring` is set.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Callable

import pytest
import yaml

from flyteauth_harness import ALICE_DISPLAY_NAME, ALICE_EMAIL, ALICE_NAME, LocalUser, Server
from login_harness import ScriptedPerson, SdkRun, StreamedSdk, sdk_env

CLI_TIMEOUT_SECONDS = 120
PROMPT_TIMEOUT_SECONDS = 60
PERSON_TIMEOUT_SECONDS = 60
FLYTE_CLI = Path(sys.executable).with_name("flyte")
RESULT_TITLE = re.compile(r"RESULT: ok \(page title '(.*)'\)$")
PROMPT = re.compile(r"navigate in a browser to the following URL:\s*(\S+)")
USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


def write_flyte_config(server: Server, workdir: Path) -> Path:
    assert server.ca_file is not None and server.ca_file.is_file(), f"no CA file at {server.ca_file}"
    config = {
        "admin": {
            "endpoint": f"dns:///localhost:{server.port}",
            "insecure": False,
            "authType": "DeviceFlow",
            "caCertFilePath": str(server.ca_file),
            "disableKeyring": True,
        },
    }
    path = workdir / "flyte-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_whoami(server: Server, person: ScriptedPerson, workdir: Path) -> tuple[SdkRun, str]:
    """`flyte -c CONFIG whoami`; the person is started on the URL it prints. Returns the run and the URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_flyte_config(server, workdir)
    assert FLYTE_CLI.is_file(), f"flyte CLI not found next to {sys.executable}"
    with StreamedSdk(
        [str(FLYTE_CLI), "-c", str(config), "whoami"],
        cwd=workdir,
        env=sdk_env(workdir, person, {"SSL_CERT_FILE": str(server.ca_file)}),
        timeout=CLI_TIMEOUT_SECONDS,
        person=person,
        server=server,
    ) as sdk:
        match = sdk.wait_for(PROMPT, timeout=PROMPT_TIMEOUT_SECONDS)
        if match is None:
            sdk.kill()
            pytest.fail(f"flyte printed no device-flow prompt\n{sdk.finish().describe()}", pytrace=False)
        url = match.group(1)
        where = f"prompt URL {url!r}\n{sdk.run_so_far().describe()}"
        parts = urllib.parse.urlsplit(url)
        # flyte prints verification_uri_complete when the server sends it: the public /activate page.
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{server.public_url}/activate", where
        codes = urllib.parse.parse_qs(parts.query).get("user_code", [])
        assert len(codes) == 1 and USER_CODE.match(codes[0]), where
        person.start(url)
        run = sdk.finish()
    return run, url


def assert_person_result(person: ScriptedPerson, run: SdkRun, title: str) -> None:
    """The person's one visit ended on a page whose title begins with `title` (the server may add its name)."""
    status = person.wait(PERSON_TIMEOUT_SECONDS)
    results = person.results()
    match = RESULT_TITLE.search(results[0]) if len(results) == 1 else None
    assert status == 0 and match and match.group(1).startswith(title), (
        f"the person should end on a page titled {title!r}..., exit {status}, results {results!r}\n{run.describe()}"
    )


def whoami_user_info(run: SdkRun) -> dict:
    """The JSON object `flyte whoami` prints (UserInfoResponse as protobuf JSON: camelCase field names)."""
    if run.returncode != 0:
        pytest.fail(f"flyte whoami failed\n{run.describe()}", pytrace=False)
    # The prompt comes first on stdout (it has no braces); the JSON object follows it.
    stdout = run.stdout
    start, end = stdout.find("{"), stdout.rfind("}")
    if start < 0 or end <= start:
        pytest.fail(f"no JSON object in the output of flyte whoami\n{run.describe()}", pytrace=False)
    try:
        return json.loads(stdout[start : end + 1])
    except ValueError as err:
        pytest.fail(f"flyte whoami printed no valid JSON ({err})\n{run.describe()}", pytrace=False)


def test_whoami_after_device_login(
    embedded_tls_login_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
) -> None:
    server = embedded_tls_login_server
    person = new_person(alice_user, ca_file=server.ca_file, decision="approve")
    run, _ = run_whoami(server, person, tmp_path / "whoami")
    assert_person_result(person, run, "Device connected")
    info = whoami_user_info(run)
    where = f"whoami = {info!r}\n{run.describe()}"
    assert info.get("name") == ALICE_DISPLAY_NAME, where
    assert info.get("email") == ALICE_EMAIL, where
    assert info.get("preferredUsername", info.get("preferred_username")) == ALICE_NAME, where
    subject = info.get("subject", "")
    assert subject and subject != ALICE_NAME, where


def test_whoami_after_a_denied_device_login_fails(
    embedded_tls_login_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
) -> None:
    server = embedded_tls_login_server
    person = new_person(alice_user, ca_file=server.ca_file, decision="deny")
    run, _ = run_whoami(server, person, tmp_path / "whoami-denied")
    assert_person_result(person, run, "Request denied")
    assert run.returncode is not None, f"flyte kept polling after the denial\n{run.describe()}"
    assert run.returncode != 0, f"flyte whoami succeeded after the request was denied\n{run.describe()}"
    output = run.stdout + run.stderr
    # flyte's message for the server's access_denied answer.
    assert "The request was denied on the other device." in output, f"no word of the denial\n{run.describe()}"
    assert ALICE_EMAIL not in run.stdout, f"whoami printed alice's user info\n{run.describe()}"


def test_whoami_fails_when_nobody_approves_before_the_code_expires(
    expiring_tls_device_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
) -> None:
    server = expiring_tls_device_server
    # A person who never opens the link: the code expires while flyte polls.
    idle = new_person(alice_user, ca_file=server.ca_file, decision="approve")
    workdir = tmp_path / "whoami-expired"
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_flyte_config(server, workdir)
    with StreamedSdk(
        [str(FLYTE_CLI), "-c", str(config), "whoami"],
        cwd=workdir,
        env=sdk_env(workdir, idle, {"SSL_CERT_FILE": str(server.ca_file)}),
        timeout=CLI_TIMEOUT_SECONDS,
        person=idle,
        server=server,
    ) as sdk:
        if sdk.wait_for(PROMPT, timeout=PROMPT_TIMEOUT_SECONDS) is None:
            sdk.kill()
            pytest.fail(f"flyte printed no device-flow prompt\n{sdk.finish().describe()}", pytrace=False)
        run = sdk.finish()
    assert run.returncode is not None, f"flyte kept polling after the code expired\n{run.describe()}"
    assert run.returncode != 0, f"flyte whoami succeeded without an approval\n{run.describe()}"
    output = run.stdout + run.stderr
    # Either flyte's message for the server's expired_token answer, or its own deadline (expires_in) passing
    # first: the two expire at the same moment, so which one speaks is a race.
    assert (
        "The device code expired" in output
        or "Timed out waiting for the request to be approved" in output
    ), f"no word of the expiry\n{run.describe()}"
    assert ALICE_EMAIL not in run.stdout, f"whoami printed alice's user info\n{run.describe()}"

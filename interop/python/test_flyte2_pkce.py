"""`flyte whoami` of the flyte 2.12.1 SDK with `authType: Pkce` against the embedded default over TLS.

The server is `flyteauth serve --data-dir DIR --self-signed-tls` with alice created by
`flyteauth users add --data-dir DIR`. flyte 2 installs no auth interceptors for `insecure: true`, so this
runs over TLS with the server's own CA: the Connect client trusts `admin.caCertFilePath`, the token request
goes through httpx, which only honours `SSL_CERT_FILE`, and the scripted person (`$BROWSER`) trusts
`SCRIPTED_PERSON_CA`. The keyring is the null backend and `admin.disableKeyring` is set. The CLI runs with a
hard timeout because a login that never reaches the callback would block forever.

flyte's callback listens on the port of the server's advertised redirect_uri (http://localhost:53593/callback
by default), so these tests must not run in parallel with other login tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml

from flyteauth_harness import ALICE_DISPLAY_NAME, ALICE_EMAIL, ALICE_NAME, LocalUser, Server
from login_harness import ScriptedPerson, SdkRun, run_sdk, sdk_env

CLI_TIMEOUT_SECONDS = 90
FLYTE_CLI = Path(sys.executable).with_name("flyte")


def write_flyte_config(server: Server, workdir: Path) -> Path:
    assert server.ca_file is not None and server.ca_file.is_file(), f"no CA file at {server.ca_file}"
    config = {
        "admin": {
            "endpoint": f"dns:///localhost:{server.port}",
            "insecure": False,
            "authType": "Pkce",
            "caCertFilePath": str(server.ca_file),
            "disableKeyring": True,
        },
    }
    path = workdir / "flyte-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_whoami(server: Server, person: ScriptedPerson, workdir: Path) -> SdkRun:
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_flyte_config(server, workdir)
    assert FLYTE_CLI.is_file(), f"flyte CLI not found next to {sys.executable}"
    run = run_sdk(
        [str(FLYTE_CLI), "-c", str(config), "whoami"],
        cwd=workdir,
        env=sdk_env(workdir, person, {"SSL_CERT_FILE": str(server.ca_file)}),
        timeout=CLI_TIMEOUT_SECONDS,
        person=person,
        server=server,
    )
    person.wait_for_result()
    return run


def whoami_user_info(run: SdkRun) -> dict:
    """The JSON object `flyte whoami` prints (UserInfoResponse as protobuf JSON: camelCase field names)."""
    if run.returncode != 0:
        pytest.fail(f"flyte whoami failed\n{run.describe()}", pytrace=False)
    start, end = run.stdout.find("{"), run.stdout.rfind("}")
    if start < 0 or end <= start:
        pytest.fail(f"no JSON object in the output of flyte whoami\n{run.describe()}", pytrace=False)
    try:
        return json.loads(run.stdout[start : end + 1])
    except ValueError as err:
        pytest.fail(f"flyte whoami printed no valid JSON ({err})\n{run.describe()}", pytrace=False)


def assert_is_alice(info: dict, run: SdkRun) -> None:
    where = f"whoami = {info!r}\n{run.describe()}"
    assert info.get("name") == ALICE_DISPLAY_NAME, where
    assert info.get("email") == ALICE_EMAIL, where
    assert info.get("preferredUsername", info.get("preferred_username")) == ALICE_NAME, where
    subject = info.get("subject", "")
    assert subject and subject != ALICE_NAME, where


def test_whoami_after_browser_login(
    embedded_tls_login_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
) -> None:
    server = embedded_tls_login_server
    person = new_person(alice_user, ca_file=server.ca_file)
    run = run_whoami(server, person, tmp_path / "whoami")
    assert_is_alice(whoami_user_info(run), run)
    results = person.results()
    assert len(results) == 1 and results[0].endswith("RESULT: ok"), (
        f"exactly one successful browser visit expected, got {results!r}\n{run.describe()}"
    )


def test_whoami_after_a_wrong_password_first(
    embedded_tls_login_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
) -> None:
    server = embedded_tls_login_server
    person = new_person(alice_user, ca_file=server.ca_file, wrong_password_first=True)
    run = run_whoami(server, person, tmp_path / "whoami-wrong-first")
    assert_is_alice(whoami_user_info(run), run)
    log = person.log_text()
    # The wrong password was answered with the login form again, status 401, and a readable message.
    assert "POST " in log and "/login -> 401" in log, f"no 401 answer to the wrong password\n{run.describe()}"
    assert "wrong password refused as expected (401)" in log, run.describe()
    assert person.results()[-1:] and person.results()[-1].endswith("RESULT: ok"), run.describe()

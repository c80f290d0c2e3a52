"""flytekit 1.16.31's device authorization login (AuthType.DEVICEFLOW) against flyteauth over plaintext gRPC.

flytekit asks the server for a device code, prints "To Authenticate, navigate in a browser to the following
URL: <verification_uri>?user_code=<user_code>" and polls the token endpoint. The test reads that line from the
driver's output while it runs (flytekit_device_driver.py, in a subprocess with a hard timeout), starts the
scripted person on the URL, who logs in as alice and approves (or denies) on the confirmation page, and then
reads the driver's outcome: UserInfo of alice, or an authentication error. The server's polling interval is
1s (`flyteauth.device.interval`) so the tests are quick; the keyring is the null backend.

No loopback listener is involved, so unlike the PKCE tests these do not contend for port 53593.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Callable

import pytest

from flyteauth_harness import ALICE_DISPLAY_NAME, ALICE_EMAIL, ALICE_NAME, LocalUser, Server
from login_harness import ScriptedPerson, SdkRun, StreamedSdk, jwt_claims, post_form, post_token, sdk_env

DRIVER = Path(__file__).resolve().with_name("flytekit_device_driver.py")
LOGIN_TIMEOUT_SECONDS = 120
PROMPT_TIMEOUT_SECONDS = 60
PERSON_TIMEOUT_SECONDS = 60
RESULT_TITLE = re.compile(r"RESULT: ok \(page title '(.*)'\)$")
PROMPT = re.compile(r"navigate in a browser to the following URL:\s*(\S+)")
PUBLIC_CLIENT_ID = "flytectl"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# conftest.SHORT_DEVICE_CODE_LIFETIME (3s) plus a margin.
BEYOND_SHORT_LIFETIME_SECONDS = 4.5
USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


def start_driver(server: Server, person: ScriptedPerson, workdir: Path) -> StreamedSdk:
    """Starts the driver, which writes workdir/result.json on success."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(DRIVER), "--endpoint", server.grpc_target, "--out", str(workdir / "result.json")]
    return StreamedSdk(
        argv,
        cwd=workdir,
        env=sdk_env(workdir, person),
        timeout=LOGIN_TIMEOUT_SECONDS,
        person=person,
        server=server,
    )


def read_prompt(sdk: StreamedSdk, server: Server) -> str:
    """The verification URL flytekit prints; fails the test if it does not come."""
    match = sdk.wait_for(PROMPT, timeout=PROMPT_TIMEOUT_SECONDS)
    if match is None:
        sdk.kill()
        pytest.fail(f"flytekit printed no device-flow prompt\n{sdk.finish().describe()}", pytrace=False)
    url = match.group(1)
    where = f"prompt URL {url!r}\n{sdk.run_so_far().describe()}"
    parts = urllib.parse.urlsplit(url)
    # flytekit appends ?user_code= to verification_uri itself: the server's public /activate page.
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{server.public_url}/activate", where
    codes = urllib.parse.parse_qs(parts.query).get("user_code", [])
    assert len(codes) == 1 and USER_CODE.match(codes[0]), where
    return url


def user_code_of(url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["user_code"][0]


def assert_person_result(person: ScriptedPerson, run: SdkRun, title: str) -> None:
    """The person's one visit ended on a page whose title begins with `title` (the server may add its name)."""
    status = person.wait(PERSON_TIMEOUT_SECONDS)
    results = person.results()
    match = RESULT_TITLE.search(results[0]) if len(results) == 1 else None
    assert status == 0 and match and match.group(1).startswith(title), (
        f"the person should end on a page titled {title!r}..., exit {status}, results {results!r}\n{run.describe()}"
    )


def assert_is_alice(info: dict, run: SdkRun) -> None:
    where = f"UserInfo = {info!r}\n{run.describe()}"
    assert info.get("name") == ALICE_DISPLAY_NAME, where
    assert info.get("email") == ALICE_EMAIL, where
    assert info.get("preferred_username") == ALICE_NAME, where
    subject = info.get("subject", "")
    assert subject and subject != ALICE_NAME, where
    uuid.UUID(subject)


@pytest.mark.parametrize("type_code", [False, True], ids=["follows-link", "types-code"])
def test_device_login_user_info_is_alice(
    device_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
    type_code: bool,
) -> None:
    person = new_person(alice_user, decision="approve")
    out = tmp_path / "flytekit" / "result.json"
    with start_driver(device_server, person, out.parent) as sdk:
        url = read_prompt(sdk, device_server)
        if type_code:
            person.type_code = user_code_of(url)
        person.start(url)
        run = sdk.finish()
    assert_person_result(person, run, "Device connected")
    if run.returncode != 0 or not out.is_file():
        pytest.fail(f"flytekit device login failed\n{run.describe()}", pytrace=False)
    result = json.loads(out.read_text())
    info = result["user_info"]
    assert_is_alice(info, run)
    assert "USER_INFO " in run.stdout, run.describe()
    claims = jwt_claims(result["credentials"]["access_token"])
    where = f"access token claims = {claims!r}\n{run.describe()}"
    assert claims.get("identity_type") == "user", where
    assert claims.get("sub") == info["subject"], where
    assert claims.get("sid"), f"a user token names its login family in `sid`; {where}"
    if type_code:
        assert f"typing the user code {user_code_of(url)!r}" in person.log_text(), run.describe()


def test_denied_device_login_fails(
    device_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
) -> None:
    person = new_person(alice_user, decision="deny")
    out = tmp_path / "flytekit" / "result.json"
    with start_driver(device_server, person, out.parent) as sdk:
        url = read_prompt(sdk, device_server)
        person.start(url)
        run = sdk.finish()
    assert_person_result(person, run, "Request denied")
    assert run.returncode is not None, f"flytekit kept polling after the denial\n{run.describe()}"
    assert run.returncode == 2, f"expected an AuthenticationError (exit 2)\n{run.describe()}"
    assert not out.exists(), f"a denied login produced a result\n{run.describe()}"
    output = run.stdout + run.stderr
    assert "LOGIN FAILED" in output and "access_denied" in output, run.describe()
    assert "USER_INFO" not in run.stdout, run.describe()


def test_expired_device_code_fails(
    expiring_device_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
) -> None:
    # Nobody visits the URL: flytekit polls (pending) until the code's 3s are over, then gives up. It counts
    # expires_in as ticks of the interval, so it usually stops on its own ("Authentication failed!") just
    # before the server would answer `expired_token`; test_server_answers_expired_token checks that answer.
    person = new_person(alice_user)
    out = tmp_path / "flytekit" / "result.json"
    with start_driver(expiring_device_server, person, out.parent) as sdk:
        read_prompt(sdk, expiring_device_server)
        run = sdk.finish()
    assert run.returncode is not None, f"flytekit kept polling after the code expired\n{run.describe()}"
    assert run.returncode == 2, f"expected an AuthenticationError (exit 2)\n{run.describe()}"
    assert not out.exists(), run.describe()
    output = run.stdout + run.stderr
    assert "LOGIN FAILED" in output, run.describe()
    assert "expired_token" in output or "Authentication failed!" in output, run.describe()
    assert "Authentication Pending" in output, f"flytekit never polled while pending\n{run.describe()}"


def test_server_answers_expired_token(expiring_device_server: Server) -> None:
    # The polls flytekit makes, by hand, past the code's lifetime: pending first, expired_token after.
    server = expiring_device_server
    status, body = post_form(
        server, f"{server.public_url}/oauth2/device/code", {"client_id": PUBLIC_CLIENT_ID, "scope": "all offline"}
    )
    assert status == 200 and body.get("device_code") and body.get("expires_in") == 3, (status, body)
    poll = {"grant_type": DEVICE_CODE_GRANT, "client_id": PUBLIC_CLIENT_ID, "device_code": body["device_code"]}
    status, answer = post_token(server, poll)
    assert (status, answer.get("error")) == (400, "authorization_pending"), (status, answer)
    time.sleep(BEYOND_SHORT_LIFETIME_SECONDS)
    status, answer = post_token(server, poll)
    assert (status, answer.get("error")) == (400, "expired_token"), (status, answer)

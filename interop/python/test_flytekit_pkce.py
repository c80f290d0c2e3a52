"""flytekit 1.16.31's PKCE login (AuthType.PKCE, the SDK's default) against flyteauth over plaintext gRPC.

flytekit opens the authorize URL with `webbrowser`; `$BROWSER` is the scripted person, who logs in as
alice on the server's login page and opens flytekit's loopback callback. flytekit then exchanges the code
at the token endpoint and calls IdentityService/UserInfo with the access token. Each login runs in a
subprocess (flytekit_pkce_driver.py) with a hard timeout, because flytekit waits for the callback forever;
the keyring is the null backend, so no token is read from or left in a real keyring.

flytekit's callback listens on the port of the server's advertised redirect_uri (http://localhost:53593/callback
by default), so these tests must not run in parallel with other login tests.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import grpc
import pytest
from flyteidl.service import identity_pb2, identity_pb2_grpc

from flyteauth_harness import ALICE_DISPLAY_NAME, ALICE_EMAIL, ALICE_NAME, LocalUser, Server
from login_harness import ScriptedPerson, SdkRun, jwt_claims, post_token, run_sdk, sdk_env

DRIVER = Path(__file__).resolve().with_name("flytekit_pkce_driver.py")
LOGIN_TIMEOUT_SECONDS = 90
RPC_TIMEOUT_SECONDS = 30
# The login server's flyteauth.refreshTokenReuseGrace is 1s (conftest.LOGIN_REFRESH_REUSE_GRACE).
BEYOND_REUSE_GRACE_SECONDS = 2.0
PUBLIC_CLIENT_ID = "flytectl"


def flytekit_login(
    server: Server, person: ScriptedPerson, workdir: Path, refresh: bool = False
) -> tuple[dict, SdkRun]:
    """Runs the driver; returns its result and the run (for messages). A failed login fails the test."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "result.json"
    argv = [sys.executable, str(DRIVER), "--endpoint", server.grpc_target, "--out", str(out)]
    if refresh:
        argv.append("--refresh")
    run = run_sdk(
        argv,
        cwd=workdir,
        env=sdk_env(workdir, person),
        timeout=LOGIN_TIMEOUT_SECONDS,
        person=person,
        server=server,
    )
    person.wait_for_result()
    if run.returncode != 0 or not out.is_file():
        pytest.fail(f"flytekit PKCE login failed\n{run.describe()}", pytrace=False)
    return json.loads(out.read_text()), run


def assert_is_alice(info: dict, run: SdkRun) -> None:
    where = f"UserInfo = {info!r}\n{run.describe()}"
    assert info.get("name") == ALICE_DISPLAY_NAME, where
    assert info.get("email") == ALICE_EMAIL, where
    assert info.get("preferred_username") == ALICE_NAME, where
    subject = info.get("subject", "")
    # The stable subject is a UUID assigned at account creation, never the user name.
    assert subject and subject != ALICE_NAME, where
    uuid.UUID(subject)


def user_info_with(server: Server, access_token: str) -> identity_pb2.UserInfoResponse:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        return stub.UserInfo(
            identity_pb2.UserInfoRequest(),
            metadata=[("flyte-authorization", f"Bearer {access_token}")],
            timeout=RPC_TIMEOUT_SECONDS,
        )


def test_pkce_login_user_info_is_alice(
    login_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
) -> None:
    person = new_person(alice_user)
    result, run = flytekit_login(login_server, person, tmp_path / "flytekit")
    info = result["user_info"]
    assert_is_alice(info, run)
    results = person.results()
    assert len(results) == 1 and results[0].endswith("RESULT: ok"), (
        f"exactly one successful browser visit expected, got {results!r}\n{run.describe()}"
    )

    creds = result["credentials"]
    claims = jwt_claims(creds["access_token"])
    where = f"access token claims = {claims!r}\n{run.describe()}"
    assert claims.get("identity_type") == "user", where
    assert claims.get("sub") == info["subject"], where
    assert claims.get("sid"), f"a user token names its login family in `sid`; {where}"
    # flytekit asks for the server's scopes, which include `offline`: a refresh token comes back.
    assert creds.get("refresh_token"), f"no refresh token in flytekit's credentials\n{run.describe()}"


def test_refresh_rotates_and_reuse_kills_the_family(
    login_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
) -> None:
    person = new_person(alice_user)
    result, run = flytekit_login(login_server, person, tmp_path / "flytekit", refresh=True)
    first, second = result["credentials"], result["refreshed"]
    assert_is_alice(result["user_info"], run)

    # flytekit's refresh request gave a new access token and a new refresh token (rotation) ...
    assert first["refresh_token"] and second["refresh_token"], run.describe()
    assert second["access_token"] != first["access_token"], "refresh returned the same access token"
    assert second["refresh_token"] != first["refresh_token"], "refresh did not rotate the refresh token"
    # ... and the new access token is alice's, in the same login family.
    assert_is_alice(result["user_info_after_refresh"], run)
    old_claims, new_claims = jwt_claims(first["access_token"]), jwt_claims(second["access_token"])
    assert new_claims.get("identity_type") == "user", new_claims
    assert new_claims.get("sub") == old_claims.get("sub"), (old_claims, new_claims)
    assert new_claims.get("sid") == old_claims.get("sid"), (old_claims, new_claims)

    # The old refresh token again, beyond the reuse grace: refused, and the whole family with it.
    time.sleep(BEYOND_REUSE_GRACE_SECONDS)
    status, body = post_token(
        login_server,
        {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": PUBLIC_CLIENT_ID},
    )
    assert (status, body.get("error")) == (400, "invalid_grant"), f"reused refresh token: {status} {body!r}"
    status, body = post_token(
        login_server,
        {"grant_type": "refresh_token", "refresh_token": second["refresh_token"], "client_id": PUBLIC_CLIENT_ID},
    )
    assert (status, body.get("error")) == (400, "invalid_grant"), (
        f"the rotated refresh token must die with its family once the old one is reused: {status} {body!r}"
    )
    # Revoking the family revokes its access tokens too.
    with pytest.raises(grpc.RpcError) as excinfo:
        user_info_with(login_server, second["access_token"])
    assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED, excinfo.value

"""flytekit 1.16.31 against flyteauth in External mode, with oidc-provider (interop/node/external-as.mjs) as the
external authorization server and identity provider.

flytekit is pointed at flyteauth only (plaintext gRPC). It learns the token endpoint and the device
authorization endpoint from flyteauth's AuthMetadataService, which serves the external server's metadata; it
obtains its tokens there and calls flyteauth's IdentityService with them. The same tokens then go through nginx
(deploy/nginx: auth_request to flyteauth's /me) to the echo upstream, which sees the identity headers.

The device-flow person is `DevicePerson` at oidc-provider's own pages (development interactions): the
verification link, the confirmation (Continue / [ Abort ]), the login form and the consent button.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
from pathlib import Path

import grpc
import pytest
from flyteidl.service import auth_pb2, auth_pb2_grpc, identity_pb2, identity_pb2_grpc
from flytekit.clients.raw import RawSynchronousFlyteClient
from flytekit.configuration import AuthType, PlatformConfig

from external_harness import (
    EXT_CLIENT_SCOPES,
    EXT_DEVICE_CLIENT_ID,
    DevicePerson,
    ExtAccount,
    ExternalStack,
)
from flyteauth_harness import LocalUser
from ingress_harness import header_values, identity_headers
from login_harness import ScriptedPerson, StreamedSdk, jwt_claims, sdk_env

RPC_TIMEOUT_SECONDS = 30
HTTP_TIMEOUT_SECONDS = 30
DRIVER = Path(__file__).resolve().with_name("flytekit_device_driver.py")
LOGIN_TIMEOUT_SECONDS = 120
PROMPT_TIMEOUT_SECONDS = 60
PERSON_TIMEOUT_SECONDS = 60
PROMPT = re.compile(r"navigate in a browser to the following URL:\s*(\S+)")
# oidc-provider's default user codes: 8 consonants, shown as XXXX-XXXX.
USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")
# The metadata members flyteauth must pass on as the external server has them.
METADATA_FIELDS = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "device_authorization_endpoint",
    "grant_types_supported",
    "scopes_supported",
    "response_types_supported",
    "token_endpoint_auth_methods_supported",
    "code_challenge_methods_supported",
)


def grpc_target(stack: ExternalStack) -> str:
    return f"localhost:{stack.flyteauth.port}"


def client_secret_channel(stack: ExternalStack) -> grpc.Channel:
    cfg = PlatformConfig(
        endpoint=grpc_target(stack),
        insecure=True,
        auth_mode=AuthType.CLIENTSECRET,
        client_id=stack.authority.app_client_id,
        client_credentials_secret=stack.authority.app_secret,
        rpc_retries=1,
    )
    # IdentityService rides RawSynchronousFlyteClient's fully intercepted channel.
    return RawSynchronousFlyteClient(cfg)._channel


def through_nginx(stack: ExternalStack, token: str, header: str = "Authorization"):
    return stack.ingress_session().get(
        f"{stack.public_url}/api/v1/projects?limit=2",
        headers={header: f"Bearer {token}", "Accept": "application/json"},
        timeout=HTTP_TIMEOUT_SECONDS,
        allow_redirects=False,
    )


# --------------------------------------------------------------------------------------------------
# What flytekit is told


def test_metadata_is_the_external_servers_over_grpc_connect_and_well_known(external_stack: ExternalStack) -> None:
    stack = external_stack
    external = stack.authority.discovery()
    with grpc.insecure_channel(grpc_target(stack)) as channel:
        stub = auth_pb2_grpc.AuthMetadataServiceStub(channel)
        meta = stub.GetOAuth2Metadata(auth_pb2.OAuth2MetadataRequest(), timeout=RPC_TIMEOUT_SECONDS)
        public = stub.GetPublicClientConfig(auth_pb2.PublicClientAuthConfigRequest(), timeout=RPC_TIMEOUT_SECONDS)
    for field in METADATA_FIELDS:
        got = getattr(meta, field)
        got = list(got) if not isinstance(got, str) else got
        assert got == external[field], f"GetOAuth2Metadata.{field} = {got!r}, the external server says {external[field]!r}"
    # The built-in endpoints stay mounted but are not advertised.
    assert "/oauth2/" not in meta.token_endpoint, meta.token_endpoint
    assert public.client_id == EXT_DEVICE_CLIENT_ID and list(public.scopes) == EXT_CLIENT_SCOPES, public
    assert public.authorization_metadata_key == "flyte-authorization", public

    session = stack.ingress_session()
    for service in ("flyteidl.service", "flyteidl2.auth"):
        resp = session.post(
            f"{stack.direct_url}/{service}.AuthMetadataService/GetOAuth2Metadata",
            data=b"{}", headers={"Content-Type": "application/json"}, timeout=HTTP_TIMEOUT_SECONDS,
        )
        assert resp.status_code == 200, f"{service}: {resp.status_code} {resp.text[:300]}"
        body = resp.json()
        for field in ("issuer", "token_endpoint", "jwks_uri", "device_authorization_endpoint"):
            assert body.get(field) == external[field], f"Connect {service} {field}: {body.get(field)!r}"
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        for base in (stack.direct_url, stack.public_url):
            resp = session.get(f"{base}{path}", timeout=HTTP_TIMEOUT_SECONDS)
            assert resp.status_code == 200, f"{base}{path}: {resp.status_code} {resp.text[:300]}"
            body = resp.json()
            for field in METADATA_FIELDS:
                assert body.get(field) == external[field], f"{base}{path} {field}: {body.get(field)!r}"


# --------------------------------------------------------------------------------------------------
# ClientSecret


def test_client_secret_user_info_is_the_app(external_stack: ExternalStack) -> None:
    stack = external_stack
    issued_before = len([e for e in stack.authority.events("token") if e.get("ok")])
    resp = identity_pb2_grpc.IdentityServiceStub(client_secret_channel(stack)).UserInfo(
        identity_pb2.UserInfoRequest(), timeout=RPC_TIMEOUT_SECONDS
    )
    assert resp.subject == stack.authority.app_client_id, resp
    issued = [e for e in stack.authority.events("token") if e.get("ok")][issued_before:]
    assert [(e["grant_type"], e["client_id"]) for e in issued] == [
        ("client_credentials", stack.authority.app_client_id)
    ], f"flytekit should have got one token from the external server: {issued}"


def test_client_secret_token_through_nginx_and_me(external_stack: ExternalStack) -> None:
    stack = external_stack
    token = stack.authority.client_credentials_token(scope=" ".join(EXT_CLIENT_SCOPES))
    claims = jwt_claims(token)
    assert claims["aud"] == stack.public_url and claims["scope"] == "all", claims
    for header in ("Authorization", "flyte-authorization"):
        resp = through_nginx(stack, token, header)
        assert resp.status_code == 200, f"{header}: {resp.status_code} {resp.text[:300]}"
        seen = resp.json()
        assert seen["path"] == "/api/v1/projects", seen
        assert header_values(seen, "X-User-Subject") == [stack.authority.app_client_id], identity_headers(seen)
        assert header_values(seen, "X-User-Claim-Identitytype") == ['"app"'], identity_headers(seen)
    me = stack.me(token)
    assert me.status_code == 200, f"/me: {me.status_code} {me.text[:300]}"
    assert me.json()["subject"] == stack.authority.app_client_id, me.json()
    # Through nginx, /me itself answers the same.
    me = stack.ingress_session().get(
        f"{stack.public_url}/me", headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT_SECONDS
    )
    assert me.status_code == 200 and me.json()["subject"] == stack.authority.app_client_id, (me.status_code, me.text)


def test_no_token_through_nginx_is_401(external_stack: ExternalStack) -> None:
    resp = external_stack.ingress_session().get(
        f"{external_stack.public_url}/api/v1/projects", headers={"Accept": "application/json"},
        timeout=HTTP_TIMEOUT_SECONDS, allow_redirects=False,
    )
    assert resp.status_code == 401, f"{resp.status_code} {resp.text[:300]}"


# --------------------------------------------------------------------------------------------------
# DeviceFlow


def run_device_login(stack: ExternalStack, person_login: str, tmp_path: Path, *, decision: str, type_code: bool):
    """flytekit's device login with the person at the external server; returns (run, result or None, person)."""
    workdir = tmp_path / "flytekit"
    workdir.mkdir(parents=True, exist_ok=True)
    # The harness's ScriptedPerson only carries the environment and the log path the SDK run reports; the
    # person here is DevicePerson, writing to that same log.
    holder = ScriptedPerson(tmp_path / "person", LocalUser(person_login, "", "", "unused"))
    out = workdir / "result.json"
    argv = [sys.executable, str(DRIVER), "--endpoint", grpc_target(stack), "--out", str(out)]
    with StreamedSdk(argv, cwd=workdir, env=sdk_env(workdir, holder), timeout=LOGIN_TIMEOUT_SECONDS,
                     person=holder, server=stack.flyteauth) as sdk:
        match = sdk.wait_for(PROMPT, timeout=PROMPT_TIMEOUT_SECONDS)
        if match is None:
            sdk.kill()
            pytest.fail(f"flytekit printed no device-flow prompt\n{sdk.finish().describe()}", pytrace=False)
        url = match.group(1)
        where = f"prompt URL {url!r}\n{sdk.run_so_far().describe()}"
        parts = urllib.parse.urlsplit(url)
        device_page = stack.authority.discovery()["device_authorization_endpoint"].rsplit("/auth", 1)[0]
        # The verification page is the external server's, learned through flyteauth's metadata.
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == device_page, where
        codes = urllib.parse.parse_qs(parts.query).get("user_code", [])
        assert len(codes) == 1 and USER_CODE.match(codes[0]), where
        person = DevicePerson(holder.log_path, person_login, decision=decision,
                              type_code=codes[0] if type_code else None, timeout=PERSON_TIMEOUT_SECONDS)
        person.start(url)
        outcome = person.wait(PERSON_TIMEOUT_SECONDS + 5)
        run = sdk.finish()
    assert outcome and outcome.startswith("ok"), f"the person's visit: {outcome}\n{run.describe()}"
    result = json.loads(out.read_text()) if out.is_file() else None
    return run, result, person


@pytest.mark.parametrize("type_code", [False, True], ids=["follows-link", "types-code"])
def test_device_flow_user_info_is_the_person(
    external_stack: ExternalStack, ext_person: ExtAccount, tmp_path: Path, type_code: bool
) -> None:
    stack = external_stack
    run, result, person = run_device_login(stack, ext_person.login, tmp_path, decision="approve", type_code=type_code)
    if run.returncode != 0 or result is None:
        pytest.fail(f"flytekit device login failed\n{run.describe()}", pytrace=False)
    info = result["user_info"]
    where = f"UserInfo = {info!r}\n{run.describe()}"
    assert info.get("subject") == ext_person.login, where
    assert info.get("name") == ext_person.name, where
    assert info.get("email") == ext_person.email, where
    assert info.get("preferred_username") == ext_person.login, where
    assert person.outcome == "ok (Sign-in Success)", where

    token = result["credentials"]["access_token"]
    claims = jwt_claims(token)
    assert claims.get("iss") == stack.authority.issuer and claims.get("client_id") == EXT_DEVICE_CLIENT_ID, claims
    assert result["credentials"].get("refresh_token"), f"offline_access was asked for: {result['credentials'].keys()}"
    device_grants = [e for e in stack.authority.events("token")
                     if e.get("ok") and e.get("grant_type") == "urn:ietf:params:oauth:grant-type:device_code"]
    assert device_grants, stack.authority.events("token")

    # nginx lets the same token through, as the person.
    resp = through_nginx(stack, token)
    assert resp.status_code == 200, f"{resp.status_code} {resp.text[:300]}"
    seen = resp.json()
    assert header_values(seen, "X-User-Subject") == [ext_person.login], identity_headers(seen)
    assert header_values(seen, "X-User-Claim-Identitytype") == ['"user"'], identity_headers(seen)
    assert header_values(seen, "X-User-Claim-Email") == [json.dumps(ext_person.email)], identity_headers(seen)


def test_device_flow_aborted_at_the_idp_fails(
    external_stack: ExternalStack, ext_person: ExtAccount, tmp_path: Path
) -> None:
    run, result, person = run_device_login(external_stack, ext_person.login, tmp_path, decision="abort",
                                           type_code=False)
    assert "interrupted" in (person.outcome or ""), f"the person's visit: {person.outcome}\n{run.describe()}"
    assert run.returncode == 2, f"expected flytekit's AuthenticationError (exit 2)\n{run.describe()}"
    assert result is None, run.describe()
    assert "access_denied" in run.stdout + run.stderr, run.describe()

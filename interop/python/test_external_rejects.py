"""Which tokens flyteauth in External mode accepts and refuses. The tokens are minted by external-as.mjs's
test-only endpoint (with the external server's real private key when a valid signature is needed, with its
public key as an HMAC secret for the algorithm-confusion attack) or in Python (a stranger's RSA key claiming the
real `kid`), and sent to /me, Connect IdentityService/UserInfo and gRPC IdentityService/UserInfo.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import grpc
import pytest
from flyteidl.service import identity_pb2, identity_pb2_grpc

from external_harness import EXT_APP_CLIENT_ID, EXTRA_AUDIENCE, ExternalStack

RPC_TIMEOUT_SECONDS = 30
# flyteauth.tokenLeeway's default.
LEEWAY_SECONDS = 30


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def grpc_user_info(stack: ExternalStack, token: str) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{stack.flyteauth.port}") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        try:
            stub.UserInfo(identity_pb2.UserInfoRequest(), metadata=[("authorization", f"Bearer {token}")],
                          timeout=RPC_TIMEOUT_SECONDS)
        except grpc.RpcError as err:
            return err.code()
    return grpc.StatusCode.OK


def assert_accepted(stack: ExternalStack, token: str, subject: str = EXT_APP_CLIENT_ID) -> None:
    me = stack.me(token)
    assert me.status_code == 200, f"/me: {me.status_code} {me.text[:400]}"
    assert me.json()["subject"] == subject, me.json()
    connect = stack.connect_user_info(token)
    assert connect.status_code == 200, f"Connect UserInfo: {connect.status_code} {connect.text[:400]}"
    assert grpc_user_info(stack, token) == grpc.StatusCode.OK


def assert_refused(stack: ExternalStack, token: str) -> None:
    me = stack.me(token)
    assert me.status_code == 401, f"/me should refuse: {me.status_code} {me.text[:400]}"
    assert "subject" not in me.text, me.text[:400]
    connect = stack.connect_user_info(token)
    assert connect.status_code == 401, f"Connect UserInfo should refuse: {connect.status_code} {connect.text[:400]}"
    assert grpc_user_info(stack, token) == grpc.StatusCode.UNAUTHENTICATED


# --------------------------------------------------------------------------------------------------
# Accepted: the controls, so that each refusal below is about the one thing changed


def test_a_token_issued_by_the_server_is_accepted(external_stack: ExternalStack) -> None:
    assert_accepted(external_stack, external_stack.authority.client_credentials_token())


ACCEPTED: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # name: (claim overrides, header overrides); "@public" stands for the public URL.
    "minted-like-the-server": ({}, {}),
    "allowed-audience": ({"aud": EXTRA_AUDIENCE}, {}),
    "audience-array-containing-ours": ({"aud": ["https://other.example", "@public"]}, {}),
    "audience-with-trailing-slash": ({"aud": "@public/"}, {}),
    "typ-JWT": ({}, {"typ": "JWT"}),
    "typ-absent": ({}, {"typ": None}),
    "no-kid": ({}, {"kid": None}),
    "expired-within-leeway": ({"exp": -(LEEWAY_SECONDS // 3)}, {}),
    "scp-array": ({"scope": None, "scp": ["all"]}, {}),
    "scp-string": ({"scope": None, "scp": "offline all"}, {}),
    "no-jti": ({"jti": None}, {}),
    "no-client-id-no-scope-is-all": ({"client_id": None, "scope": None}, {}),
}


def _claims(stack: ExternalStack, overrides: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    resolved: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, str) and value.startswith("@public"):
            value = stack.public_url + value[len("@public"):]
        elif isinstance(value, list):
            value = [stack.public_url if v == "@public" else v for v in value]
        elif key in ("exp", "nbf", "iat") and isinstance(value, int):
            value = now + value  # relative to now
        resolved[key] = value
    return stack.authority.access_claims(**resolved)


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_accepted(external_stack: ExternalStack, name: str) -> None:
    claims, header = ACCEPTED[name]
    token = external_stack.authority.mint(_claims(external_stack, claims), header=header)
    assert_accepted(external_stack, token)


def test_a_persons_token_names_the_person(external_stack: ExternalStack) -> None:
    claims = _claims(external_stack, {"sub": "someone-7f", "client_id": "flytectl", "email": "someone@example.com",
                                      "name": "Some One"})
    token = external_stack.authority.mint(claims)
    assert_accepted(external_stack, token, subject="someone-7f")
    body = external_stack.me(token).json()
    assert body.get("email") == "someone@example.com" and body.get("name") == "Some One", body


# --------------------------------------------------------------------------------------------------
# Refused


REFUSED_CLAIMS: dict[str, dict[str, Any]] = {
    "wrong-issuer": {"iss": "http://127.0.0.1:1"},
    "issuer-with-a-suffix": {"iss": "@issuer/evil"},
    "wrong-audience": {"aud": "https://evil.example"},
    "audience-array-without-ours": {"aud": ["https://evil.example", "flyteadmin"]},
    "no-audience": {"aud": None},
    "expired": {"exp": -3600},
    "expired-beyond-leeway": {"exp": -(LEEWAY_SECONDS * 4)},
    "no-exp": {"exp": None},
    "not-yet-valid": {"nbf": 3600},
}


@pytest.mark.parametrize("name", list(REFUSED_CLAIMS))
def test_refused_claims(external_stack: ExternalStack, name: str) -> None:
    overrides = dict(REFUSED_CLAIMS[name])
    if overrides.get("iss", "").startswith("@issuer"):
        overrides["iss"] = external_stack.authority.issuer + overrides["iss"][len("@issuer"):]
    token = external_stack.authority.mint(_claims(external_stack, overrides))
    assert_refused(external_stack, token)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(external_stack: ExternalStack, alg: str) -> None:
    token = external_stack.authority.mint(_claims(external_stack, {}), alg=alg)
    assert token.endswith("."), token
    assert_refused(external_stack, token)
    # Also with the signature of a real token left in place.
    real = external_stack.authority.mint(_claims(external_stack, {}))
    assert_refused(external_stack, token + real.rsplit(".", 1)[1])


@pytest.mark.parametrize(
    "alg,key_form",
    [("HS256", "public-pem"), ("HS256", "public-der"), ("HS256", "public-jwk"), ("HS384", "public-pem"),
     ("HS512", "public-pem")],
)
def test_hmac_signed_with_the_public_key_is_refused(external_stack: ExternalStack, alg: str, key_form: str) -> None:
    token = external_stack.authority.mint(_claims(external_stack, {}), alg=alg, hmac_key=key_form)
    assert_refused(external_stack, token)


def test_a_strangers_key_claiming_the_real_kid_is_refused(external_stack: ExternalStack) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header = {"alg": "RS256", "typ": "at+jwt", "kid": external_stack.authority.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(_claims(external_stack, {})).encode())}"
    signature = stranger.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    assert_refused(external_stack, f"{signing_input}.{b64(signature)}")


def test_a_payload_swapped_under_a_real_signature_is_refused(external_stack: ExternalStack) -> None:
    authority = external_stack.authority
    real = authority.mint(_claims(external_stack, {}))
    head, _, signature = real.split(".")
    other = b64(json.dumps(_claims(external_stack, {"sub": "admin"})).encode())
    assert_refused(external_stack, f"{head}.{other}.{signature}")


def test_a_scope_without_all_is_not_let_into_user_info(external_stack: ExternalStack) -> None:
    token = external_stack.authority.mint(_claims(external_stack, {"scope": "read write"}))
    me = external_stack.connect_user_info(token)
    assert me.status_code in (401, 403), f"{me.status_code} {me.text[:300]}"
    assert grpc_user_info(external_stack, token) in (
        grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED
    )

"""Runs flytekit 1.16.31's PKCE login against a flyteauth server, in its own process.

Run by test_flytekit_pkce.py as a subprocess with a hard timeout (a login that never completes would
otherwise block forever: flytekit's callback listener has no timeout). `$BROWSER` must be the scripted
person and the keyring should be the null backend (PYTHON_KEYRING_BACKEND).

    python flytekit_pkce_driver.py --endpoint localhost:PORT --out RESULT.json [--refresh]

The channel is the one `RawSynchronousFlyteClient` builds (DefaultMetadataInterceptor -> AuthUnaryInterceptor
with flytekit's PKCEAuthenticator -> RetryExceptionWrapperInterceptor). IdentityService/UserInfo through it
makes flytekit discover the endpoints, open the browser, take the callback and exchange the code. With
--refresh, flytekit's own refresh request (`AuthorizationClient.refresh_access_token`) is made once and
UserInfo called again with the new access token.

RESULT.json: {"user_info": {...}, "credentials": {...}, "refreshed": {...}, "user_info_after_refresh": {...}}
(tokens of a throwaway test server).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import flytekit.clients.auth_helper as auth_helper
from flyteidl.service import identity_pb2, identity_pb2_grpc
from flytekit.clients.auth.authenticator import PKCEAuthenticator
from flytekit.clients.raw import RawSynchronousFlyteClient
from flytekit.configuration import AuthType, PlatformConfig
from google.protobuf.json_format import MessageToDict

RPC_TIMEOUT_SECONDS = 60

# Every authenticator flytekit builds, so the test can look at the credentials it obtained.
_authenticators: list[Any] = []
_original_get_authenticator = auth_helper.get_authenticator


def _recording_get_authenticator(cfg, cfg_store):
    authenticator = _original_get_authenticator(cfg, cfg_store)
    _authenticators.append(authenticator)
    return authenticator


def user_info(channel) -> dict:
    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    resp = stub.UserInfo(identity_pb2.UserInfoRequest(), timeout=RPC_TIMEOUT_SECONDS)
    return MessageToDict(resp, preserving_proto_field_name=True)


def credentials(creds) -> dict:
    return {
        "access_token": creds.access_token,
        "refresh_token": creds.refresh_token,
        "id_token": creds.id_token,
        "expires_in": creds.expires_in,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True, help="host:port of the server's gRPC (plaintext)")
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    parser.add_argument("--refresh", action="store_true", help="also refresh once through flytekit")
    args = parser.parse_args()

    auth_helper.get_authenticator = _recording_get_authenticator
    cfg = PlatformConfig(endpoint=args.endpoint, insecure=True, auth_mode=AuthType.PKCE, rpc_retries=0)
    client = RawSynchronousFlyteClient(cfg)
    channel = client._channel

    result: dict[str, Any] = {"user_info": user_info(channel)}
    pkce = [a for a in _authenticators if isinstance(a, PKCEAuthenticator)]
    if len(pkce) != 1:
        print(f"expected one PKCEAuthenticator, flytekit built {_authenticators!r}", file=sys.stderr)
        return 3
    authenticator = pkce[0]
    creds = authenticator.get_credentials()
    result["credentials"] = credentials(creds)
    print(f"logged in; refresh token present: {creds.refresh_token is not None}", file=sys.stderr)

    if args.refresh:
        # The request flytekit makes when a call fails UNAUTHENTICATED; called directly so that a refused
        # refresh is an error here instead of flytekit's silent fallback to another browser login.
        new_creds = authenticator._auth_client.refresh_access_token(creds)
        authenticator._set_credentials(new_creds)
        result["refreshed"] = credentials(new_creds)
        result["user_info_after_refresh"] = user_info(channel)

    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(result, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

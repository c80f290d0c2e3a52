"""Runs flytekit 1.16.31's device authorization login (AuthType.DEVICEFLOW) against a flyteauth server, in its
own process.

Run by test_flytekit_device.py as a subprocess with a hard timeout, its stdout and stderr read while it runs:
flytekit prints "To Authenticate, navigate in a browser to the following URL: <url>" and then polls the token
endpoint until the request is approved, denied or expired. The keyring should be the null backend
(PYTHON_KEYRING_BACKEND), so that no cached token skips the device flow.

    python flytekit_device_driver.py --endpoint localhost:PORT --out RESULT.json

The channel is the one `RawSynchronousFlyteClient` builds (DefaultMetadataInterceptor -> AuthUnaryInterceptor
with flytekit's DeviceCodeAuthenticator -> RetryExceptionWrapperInterceptor). IdentityService/UserInfo through
it makes flytekit discover the endpoints, ask for a device code, print the prompt and poll for the token.

On success: exit 0, RESULT.json = {"user_info": {...}, "credentials": {...}} (tokens of a throwaway test
server), and "USER_INFO <json>" on stdout. On failure: no RESULT.json, "LOGIN FAILED: <type>: <message>" on
stderr and exit 2 (an authentication error) or 3 (anything else).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from typing import Any

import flytekit.clients.auth_helper as auth_helper
from flyteidl.service import identity_pb2, identity_pb2_grpc
from flytekit.clients.auth.authenticator import DeviceCodeAuthenticator
from flytekit.clients.auth.exceptions import AuthenticationError
from flytekit.clients.raw import RawSynchronousFlyteClient
from flytekit.configuration import AuthType, PlatformConfig
from google.protobuf.json_format import MessageToDict

RPC_TIMEOUT_SECONDS = 60

# Every authenticator flytekit builds, so the result can carry the credentials it obtained.
_authenticators: list[Any] = []
_original_get_authenticator = auth_helper.get_authenticator


def _recording_get_authenticator(cfg, cfg_store):
    authenticator = _original_get_authenticator(cfg, cfg_store)
    _authenticators.append(authenticator)
    return authenticator


def is_authentication_error(err: BaseException) -> bool:
    """flytekit's AuthenticationError, also when a gRPC interceptor wrapped it (the cause chain is followed)."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, AuthenticationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def login(endpoint: str) -> dict:
    auth_helper.get_authenticator = _recording_get_authenticator
    cfg = PlatformConfig(endpoint=endpoint, insecure=True, auth_mode=AuthType.DEVICEFLOW, rpc_retries=0)
    client = RawSynchronousFlyteClient(cfg)
    stub = identity_pb2_grpc.IdentityServiceStub(client._channel)
    resp = stub.UserInfo(identity_pb2.UserInfoRequest(), timeout=RPC_TIMEOUT_SECONDS)
    result: dict[str, Any] = {"user_info": MessageToDict(resp, preserving_proto_field_name=True)}
    device = [a for a in _authenticators if isinstance(a, DeviceCodeAuthenticator)]
    if len(device) != 1:
        raise RuntimeError(f"expected one DeviceCodeAuthenticator, flytekit built {_authenticators!r}")
    creds = device[0].get_credentials()
    if creds is None or not creds.access_token:
        raise RuntimeError("UserInfo answered but flytekit holds no access token")
    result["credentials"] = {
        "access_token": creds.access_token,
        "refresh_token": creds.refresh_token,
        "expires_in": creds.expires_in,
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True, help="host:port of the server's gRPC (plaintext)")
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    args = parser.parse_args()
    try:
        result = login(args.endpoint)
    except Exception as err:  # the test reads the reason from stderr
        traceback.print_exc()
        print(f"LOGIN FAILED: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        return 2 if is_authentication_error(err) else 3
    print("USER_INFO " + json.dumps(result["user_info"], sort_keys=True), flush=True)
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(result, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""flytekit 1.16.31 (native gRPC) against flyteauth with `ClientSecret` auth over plaintext gRPC.

The authenticated calls go through flytekit's own channel stack, exactly as `RawSynchronousFlyteClient`
builds it: DefaultMetadataInterceptor -> AuthUnaryInterceptor (ClientCredentialsAuthenticator, which
discovers the token endpoint and header name via AuthMetadataService) -> RetryExceptionWrapperInterceptor.
"""

from __future__ import annotations

import grpc
import pytest
from flyteidl.service import identity_pb2, identity_pb2_grpc
from flytekit.clients.auth.exceptions import AuthenticationError
from flytekit.clients.raw import RawSynchronousFlyteClient
from flytekit.configuration import AuthType, PlatformConfig

from flyteauth_harness import APP_CLIENT_ID, ODD_CLIENT_ID, Server

RPC_TIMEOUT_SECONDS = 30


def flytekit_channel(server: Server, client_id: str, secret: str) -> grpc.Channel:
    cfg = PlatformConfig(
        endpoint=server.grpc_target,
        insecure=True,
        auth_mode=AuthType.CLIENTSECRET,
        client_id=client_id,
        client_credentials_secret=secret,
        rpc_retries=1,
    )
    client = RawSynchronousFlyteClient(cfg)
    # RawSynchronousFlyteClient only builds stubs for the admin services; IdentityService rides the same
    # fully intercepted channel.
    return client._channel


def user_info(channel: grpc.Channel) -> identity_pb2.UserInfoResponse:
    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    return stub.UserInfo(identity_pb2.UserInfoRequest(), timeout=RPC_TIMEOUT_SECONDS)


def exception_chain(exc: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def test_user_info_with_client_secret(server: Server) -> None:
    resp = user_info(flytekit_channel(server, APP_CLIENT_ID, server.app_secret))
    assert resp.subject == APP_CLIENT_ID
    assert resp.preferred_username == APP_CLIENT_ID


def test_secret_is_form_url_decoded(server: Server) -> None:
    # flytekit sends Basic base64(client_id + ":" + quote_plus(secret)); "+" means space, "%2B" means "+".
    resp = user_info(flytekit_channel(server, ODD_CLIENT_ID, server.clients[ODD_CLIENT_ID]))
    assert resp.subject == ODD_CLIENT_ID


def test_wrong_secret_is_an_authentication_error(server: Server) -> None:
    channel = flytekit_channel(server, APP_CLIENT_ID, server.app_secret + "-wrong")
    with pytest.raises(Exception) as excinfo:
        user_info(channel)
    # The token endpoint refuses the client; flytekit raises its AuthenticationError from the
    # authenticator (its retry interceptor may wrap it in a FlyteException).
    auth_errors = [e for e in exception_chain(excinfo.value) if isinstance(e, AuthenticationError)]
    assert auth_errors, f"expected flytekit AuthenticationError in the chain, got {exception_chain(excinfo.value)!r}"
    message = str(auth_errors[0])
    assert "401" in message and "invalid_client" in message, message


def test_no_credentials_is_unauthenticated(server: Server) -> None:
    # A bare channel: no flytekit interceptors, so no token and no retry/refresh.
    with grpc.insecure_channel(server.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as excinfo:
            user_info(channel)
    assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED, excinfo.value


@pytest.mark.parametrize("header", ["flyte-authorization", "authorization"])
def test_garbage_token_is_unauthenticated(server: Server, header: str) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        with pytest.raises(grpc.RpcError) as excinfo:
            stub.UserInfo(
                identity_pb2.UserInfoRequest(),
                metadata=[(header, "Bearer not.a.jwt")],
                timeout=RPC_TIMEOUT_SECONDS,
            )
    assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED, excinfo.value

"""Anonymous auth discovery over native gRPC with flyteidl's own stubs (what flytekit calls first)."""

from __future__ import annotations

import grpc
from flyteidl.service import auth_pb2, auth_pb2_grpc

from flyteauth_harness import Server

RPC_TIMEOUT_SECONDS = 30


def test_public_client_config_and_oauth2_metadata_are_anonymous(server: Server) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = auth_pb2_grpc.AuthMetadataServiceStub(channel)
        public = stub.GetPublicClientConfig(auth_pb2.PublicClientAuthConfigRequest(), timeout=RPC_TIMEOUT_SECONDS)
        meta = stub.GetOAuth2Metadata(auth_pb2.OAuth2MetadataRequest(), timeout=RPC_TIMEOUT_SECONDS)

    assert public.authorization_metadata_key == "flyte-authorization"
    assert public.client_id, "public client config must name the public client"
    assert meta.token_endpoint.endswith("/oauth2/token"), meta.token_endpoint
    assert meta.token_endpoint == f"{server.public_url}/oauth2/token"
    assert meta.jwks_uri == f"{server.public_url}/oauth2/jwks"
    assert meta.issuer.rstrip("/") == server.public_url
    assert "client_credentials" in meta.grant_types_supported

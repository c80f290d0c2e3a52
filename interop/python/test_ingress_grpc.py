"""flytekit 1.16.31 with ClientSecret through nginx (deploy/nginx, TLS with the test CA) to the gRPC upstream.

flytekit discovers the token endpoint with AuthMetadataService over gRPC (a public route of the ingress, to
flyteauth), fetches a token from /oauth2/token (public, to flyteauth) and calls AdminService, which nginx
lets through to the gRPC upstream only after /me accepted the token, with X-User-* metadata added. The
upstream answers ListProjects with one project named after the x-user-subject it received.
"""

from __future__ import annotations

import json

import grpc
import pytest
from flyteidl.admin import project_pb2, version_pb2
from flyteidl.service import admin_pb2_grpc, auth_pb2, auth_pb2_grpc
from flytekit.clients.raw import RawSynchronousFlyteClient
from flytekit.configuration import AuthType, PlatformConfig

from flyteauth_harness import APP_CLIENT_ID, ODD_CLIENT_ID
from ingress_harness import Ingress

RPC_TIMEOUT_SECONDS = 30


def flytekit_client(ingress: Ingress, client_id: str, secret: str) -> RawSynchronousFlyteClient:
    cfg = PlatformConfig(
        endpoint=ingress.grpc_target,
        insecure=False,
        ca_cert_file_path=str(ingress.ca_file),
        auth_mode=AuthType.CLIENTSECRET,
        client_id=client_id,
        client_credentials_secret=secret,
        rpc_retries=1,
    )
    return RawSynchronousFlyteClient(cfg)


def bare_channel(ingress: Ingress) -> grpc.Channel:
    """TLS to nginx with the test CA and no flytekit interceptors: no token unless a call adds one."""
    credentials = grpc.ssl_channel_credentials(root_certificates=ingress.ca_file.read_bytes())
    return grpc.secure_channel(ingress.grpc_target, credentials)


def identity_metadata(project: project_pb2.Project) -> list[list[str]]:
    """The x-user-* metadata the upstream received (it puts them into the description)."""
    return json.loads(project.description)


def test_flytekit_client_secret_lists_projects_through_nginx(ingress: Ingress) -> None:
    client = flytekit_client(ingress, APP_CLIENT_ID, ingress.flyteauth.app_secret)
    projects = client.list_projects()
    assert [(p.id, p.name) for p in projects.projects] == [(APP_CLIENT_ID, APP_CLIENT_ID)], projects
    received = dict((k.lower(), v) for k, v in identity_metadata(projects.projects[0]))
    assert received.get("x-user-claim-identitytype") == '"app"', received


def test_flytekit_secret_with_odd_characters_through_nginx(ingress: Ingress) -> None:
    client = flytekit_client(ingress, ODD_CLIENT_ID, ingress.flyteauth.clients[ODD_CLIENT_ID])
    projects = client.list_projects()
    assert [p.id for p in projects.projects] == [ODD_CLIENT_ID], projects


def test_flytekit_get_version_through_nginx(ingress: Ingress) -> None:
    client = flytekit_client(ingress, APP_CLIENT_ID, ingress.flyteauth.app_secret)
    stub = admin_pb2_grpc.AdminServiceStub(client._channel)
    resp = stub.GetVersion(version_pb2.GetVersionRequest(), timeout=RPC_TIMEOUT_SECONDS)
    assert resp.control_plane_version.Build == "echo-upstream", resp


def test_client_sent_identity_metadata_is_replaced(ingress: Ingress) -> None:
    client = flytekit_client(ingress, APP_CLIENT_ID, ingress.flyteauth.app_secret)
    # The channel carries flytekit's interceptors (the token); the forged metadata rides along.
    stub = admin_pb2_grpc.AdminServiceStub(client._channel)
    projects = stub.ListProjects(
        project_pb2.ProjectListRequest(),
        metadata=[
            ("x-user-subject", "forged-subject"),
            ("x-user-claim-identitytype", '"user"'),
            ("x-user-claim-groups", '["admins"]'),
        ],
        timeout=RPC_TIMEOUT_SECONDS,
    )
    assert [p.id for p in projects.projects] == [APP_CLIENT_ID], projects
    received = identity_metadata(projects.projects[0])
    assert [v for k, v in received if k.lower() == "x-user-subject"] == [APP_CLIENT_ID], received
    assert not any("forged" in v or "admins" in v or v == '"user"' for _, v in received), received


def test_no_token_is_unauthenticated(ingress: Ingress) -> None:
    with bare_channel(ingress) as channel:
        with pytest.raises(grpc.RpcError) as excinfo:
            admin_pb2_grpc.AdminServiceStub(channel).ListProjects(
                project_pb2.ProjectListRequest(), timeout=RPC_TIMEOUT_SECONDS
            )
    assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED, excinfo.value


@pytest.mark.parametrize("header", ["authorization", "flyte-authorization"])
def test_bad_token_is_unauthenticated(ingress: Ingress, header: str) -> None:
    with bare_channel(ingress) as channel:
        with pytest.raises(grpc.RpcError) as excinfo:
            admin_pb2_grpc.AdminServiceStub(channel).ListProjects(
                project_pb2.ProjectListRequest(),
                metadata=[(header, "Bearer garbage"), ("x-user-subject", APP_CLIENT_ID)],
                timeout=RPC_TIMEOUT_SECONDS,
            )
    assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED, excinfo.value


def test_auth_metadata_is_public_over_grpc(ingress: Ingress) -> None:
    # What flytekit asks before it has a token: answered by flyteauth, naming the ingress's token endpoint.
    with bare_channel(ingress) as channel:
        stub = auth_pb2_grpc.AuthMetadataServiceStub(channel)
        metadata = stub.GetOAuth2Metadata(auth_pb2.OAuth2MetadataRequest(), timeout=RPC_TIMEOUT_SECONDS)
        client_config = stub.GetPublicClientConfig(
            auth_pb2.PublicClientAuthConfigRequest(), timeout=RPC_TIMEOUT_SECONDS
        )
    assert metadata.token_endpoint == f"{ingress.url}/oauth2/token", metadata
    assert client_config.client_id, client_config

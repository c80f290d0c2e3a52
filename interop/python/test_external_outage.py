"""flyteauth in External mode while the external authorization server is down, and after it comes back.

The stack is this module's own (the tests stop and restart its oidc-provider). flyteauth refreshes the
external metadata and keys every 10 minutes, and that interval has no configuration knob, so the tests do not
wait for a scheduled refresh: the failure is provoked the way the design provides for, with a token naming an
unknown `kid`, which makes flyteauth refetch the keys at once (at most once per 30 s). Its failure is the
"last refresh failed" that /readyz reports as degraded.
"""

from __future__ import annotations

import socket
import time

import pytest

from external_harness import (
    ExternalStack,
    flood,
    garbage_token,
    metric_value,
    readyz,
)

HTTP_TIMEOUT_SECONDS = 30
DEGRADED_TIMEOUT_SECONDS = 15.0
# flyteauth refetches keys for unknown kids at most once per 30 s; recovery is seen after that window.
RECOVERY_TIMEOUT_SECONDS = 50.0
OUTAGE_FLOOD_TOKENS = 2_000
MAX_FETCH_ATTEMPTS_DURING_OUTAGE = 3


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def jwks_errors(stack: ExternalStack) -> float:
    return metric_value(stack.flyteauth, "flyteauth_external_fetches_total", {"document": "jwks", "outcome": "error"})


def test_down_server_tokens_keep_validating_and_readyz_says_degraded(external_stack: ExternalStack) -> None:
    stack = external_stack
    authority = stack.authority
    token = authority.client_credentials_token()
    assert stack.me(token).status_code == 200
    status, body = readyz(stack.flyteauth)
    assert (status, body.get("status")) == (200, "ready"), body
    issuer = authority.issuer

    authority.stop()
    assert not port_open(authority.port), "the authorization server still answers after SIGTERM"

    # Keys are cached: the token already issued keeps working, directly and through nginx.
    me = stack.me(token)
    assert me.status_code == 200, f"/me with the IdP down: {me.status_code} {me.text[:300]}"
    through = stack.ingress_session().get(
        f"{stack.public_url}/api/v1/projects", headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert through.status_code == 200, f"nginx with the IdP down: {through.status_code} {through.text[:300]}"

    # A token naming a key flyteauth does not have makes it refetch the keys now; that fails.
    errors_before = jwks_errors(stack)
    assert stack.me(garbage_token(issuer, stack.public_url)).status_code == 401
    deadline = time.monotonic() + DEGRADED_TIMEOUT_SECONDS
    while True:
        status, body = readyz(stack.flyteauth)
        if body.get("status") == "degraded" or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    assert status == 200 and body.get("status") == "degraded", (
        f"/readyz with the IdP down after a failed key refetch: {status} {body}"
    )
    external = body.get("external", {})
    assert external.get("last_error"), body
    assert "jwks" in external["last_error"], body
    assert isinstance(external.get("metadata_age_secs"), int) and isinstance(external.get("keys_age_secs"), int), body
    assert jwks_errors(stack) - errors_before == 1, "the refetch should have been tried once and failed"

    # The last good metadata is still what clients are told.
    meta = stack.ingress_session().post(
        f"{stack.direct_url}/flyteidl.service.AuthMetadataService/GetOAuth2Metadata",
        data=b"{}", headers={"Content-Type": "application/json"}, timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert meta.status_code == 200 and meta.json().get("issuer") == issuer, (meta.status_code, meta.text[:300])
    well_known = stack.ingress_session().get(f"{stack.direct_url}/.well-known/oauth-authorization-server",
                                             timeout=HTTP_TIMEOUT_SECONDS)
    assert well_known.status_code == 200 and well_known.json().get("issuer") == issuer, well_known.text[:300]

    # Garbage tokens while the server is down do not turn into a stream of fetch attempts.
    errors_before = jwks_errors(stack)
    tokens = [garbage_token(issuer, stack.public_url) for _ in range(OUTAGE_FLOOD_TOKENS)]
    result = flood(stack.flyteauth.port, tokens, concurrency=50)
    assert result.statuses == {401: OUTAGE_FLOOD_TOKENS} and not result.errors, result
    attempts = jwks_errors(stack) - errors_before
    assert attempts <= MAX_FETCH_ATTEMPTS_DURING_OUTAGE, f"{attempts} failed JWKS fetches for {result}"

    assert stack.me(token).status_code == 200, "the already-issued token stopped validating during the outage"
    status, body = readyz(stack.flyteauth)
    assert status == 200 and body.get("status") == "degraded", body

    # Back on the same port, at the same issuer, with the same key.
    authority.restart()
    assert authority.issuer == issuer
    assert authority.discovery()["issuer"] == issuer
    assert stack.me(token).status_code == 200


def test_back_server_readyz_recovers_and_new_tokens_work(external_stack: ExternalStack) -> None:
    stack = external_stack
    authority = stack.authority
    if not authority.running():
        pytest.fail("the authorization server is not running (the outage test did not restart it)", pytrace=False)
    fetched_before = authority.jwks_fetches()
    # Each unknown kid may trigger a refetch; the first one after flyteauth's 30 s window succeeds.
    deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
    status, body = readyz(stack.flyteauth)
    while body.get("status") != "ready" and time.monotonic() < deadline:
        assert stack.me(garbage_token(authority.issuer, stack.public_url)).status_code == 401
        time.sleep(1.0)
        status, body = readyz(stack.flyteauth)
    assert status == 200 and body.get("status") == "ready", (
        f"/readyz did not recover within {RECOVERY_TIMEOUT_SECONDS}s of the server's return: {status} {body}"
    )
    assert "last_error" not in body.get("external", {}), body
    if fetched_before < authority.jwks_fetches():
        assert authority.events("jwks")[-1].get("status") == 200
    token = authority.client_credentials_token()
    me = stack.me(token)
    assert me.status_code == 200, f"{me.status_code} {me.text[:300]}"

"""10,000 garbage tokens naming random `kid`s, 50 at a time, at flyteauth in External mode (alternately /me and
Connect IdentityService/UserInfo): every one is refused, and the external server's JWKS endpoint (counted from
external-as.mjs's log) is asked at most a handful of times, because an unknown `kid` triggers at most one
refetch per interval however many such tokens arrive. A real token keeps working throughout.
"""

from __future__ import annotations

import threading
import time

from external_harness import ExternalStack, flood, garbage_token, metric_value

TOKENS = 10_000
CONCURRENCY = 50
MAX_JWKS_FETCHES = 3
FLOOD_DEADLINE_SECONDS = 300.0
# Long enough for a refetch the flood triggered at its very end to reach the server's log.
SETTLE_SECONDS = 2.0


def test_garbage_kids_cause_at_most_a_handful_of_jwks_fetches(external_stack: ExternalStack) -> None:
    stack = external_stack
    authority = stack.authority
    real = authority.client_credentials_token()
    assert stack.me(real).status_code == 200
    before = authority.jwks_fetches()
    metric_before = metric_value(stack.flyteauth, "flyteauth_external_fetches_total", {"document": "jwks"})
    tokens = [garbage_token(authority.issuer, stack.public_url) for _ in range(TOKENS)]

    # The real token is checked while the flood runs.
    real_statuses: list[int] = []
    done = threading.Event()

    def check_real() -> None:
        while not done.is_set():
            real_statuses.append(stack.me(real).status_code)
            time.sleep(0.2)

    checker = threading.Thread(target=check_real, daemon=True)
    checker.start()
    try:
        result = flood(stack.flyteauth.port, tokens, CONCURRENCY, FLOOD_DEADLINE_SECONDS)
    finally:
        done.set()
        checker.join(35)
    time.sleep(SETTLE_SECONDS)
    fetches = authority.jwks_fetches() - before
    metric_after = metric_value(stack.flyteauth, "flyteauth_external_fetches_total", {"document": "jwks"})
    summary = (
        f"{sum(result.statuses.values())} answers {result.statuses} in {result.seconds:.1f}s, "
        f"{len(result.errors)} transport errors {result.errors[:5]}, {fetches} JWKS fetches at the server, "
        f"flyteauth counted {metric_after - metric_before:g}; real token during the flood: {real_statuses}"
    )
    print(summary)
    assert result.statuses == {401: TOKENS} and not result.errors, summary
    assert fetches <= MAX_JWKS_FETCHES, summary
    # An unknown kid does trigger a refetch (otherwise the count above would prove nothing).
    assert fetches >= 1, summary
    assert metric_after - metric_before == fetches, summary
    assert real_statuses and set(real_statuses) == {200}, summary
    assert stack.me(real).status_code == 200

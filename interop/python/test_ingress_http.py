"""nginx with deploy/nginx's configuration in front of flyteauth and an HTTP upstream that echoes what it
receives: who is let through, who is sent to sign in, who gets a 401, and which identity headers arrive.

No browser here: the requests are made with `requests` so that each header and status can be set and seen
exactly (the browser tests are test_ingress_browser.py and test_ingress_federation.py).
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from flyteauth_harness import ALICE_EMAIL, APP_CLIENT_ID, LocalUser
from ingress_harness import (
    AUTH_CACHE_SECONDS,
    Ingress,
    client_credentials_token,
    form_login,
    header_values,
    http_client,
    identity_headers,
    user_subjects,
)

TIMEOUT = 30
# The names of the identity headers nginx sets; a client-sent header of one of these names must never arrive.
IDENTITY_HEADERS = (
    "X-User-Subject",
    "X-User-Claim-Identitytype",
    "X-User-Claim-Email",
    "X-User-Claim-Name",
    "X-User-Claim-Preferred-Username",
    "X-User-Claim-Groups",
)


@pytest.fixture(scope="module")
def app_token(ingress: Ingress) -> str:
    return client_credentials_token(ingress, APP_CLIENT_ID, ingress.flyteauth.app_secret)


def get(ingress: Ingress, path: str, headers: dict[str, str]):
    return http_client(ingress).get(f"{ingress.url}{path}", headers=headers, timeout=TIMEOUT, allow_redirects=False)


def assert_plain_401(resp) -> None:
    assert resp.status_code == 401, f"expected 401, got {resp.status_code} {resp.headers} {resp.text[:300]}"
    assert "Location" not in resp.headers, f"a 401 must not redirect: {resp.headers}"
    body = resp.json()
    assert body.get("error"), body


def test_browser_without_a_session_is_sent_to_sign_in_with_the_page_encoded(ingress: Ingress) -> None:
    # "&" and "%2B" in the query would be cut or changed by an unencoded redirect_url.
    path = "/app/page?x=1&y=a%2Bb&z=%26"
    resp = get(ingress, path, {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert resp.status_code == 302, f"{resp.status_code} {resp.headers} {resp.text[:300]}"
    location = urlsplit(resp.headers["Location"])
    assert (location.scheme, location.netloc, location.path) == ("", "", "/login"), resp.headers["Location"]
    assert parse_qs(location.query) == {"redirect_url": [f"{ingress.url}{path}"]}, resp.headers["Location"]
    # The login page that redirect leads to is itself public (no redirect loop).
    page = get(ingress, resp.headers["Location"], {"Accept": "text/html"})
    assert page.status_code == 200, f"{page.status_code} {page.text[:300]}"
    assert 'type="password"' in page.text or "type=password" in page.text, page.text[:1000]


@pytest.mark.parametrize("accept", ["application/json", "*/*", "application/grpc-web", ""])
def test_api_client_without_credentials_gets_401(ingress: Ingress, accept: str) -> None:
    headers = {"Accept": accept} if accept else {}
    assert_plain_401(get(ingress, "/api/v1/projects", headers))


@pytest.mark.parametrize("header", ["Authorization", "flyte-authorization"])
def test_bad_bearer_token_gets_401_not_a_redirect(ingress: Ingress, header: str) -> None:
    # Accept: text/html as a browser sends it: a request with a token is an API call all the same.
    resp = get(ingress, "/app/page", {header: "Bearer garbage", "Accept": "text/html"})
    assert_plain_401(resp)


def test_token_with_a_tampered_signature_gets_401(ingress: Ingress, app_token: str) -> None:
    head, payload, signature = app_token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    resp = get(ingress, "/app/page", {"Authorization": f"Bearer {head}.{payload}.{flipped}"})
    assert_plain_401(resp)


@pytest.mark.parametrize("header", ["Authorization", "flyte-authorization"])
def test_bearer_token_reaches_the_upstream_with_the_identity(ingress: Ingress, app_token: str, header: str) -> None:
    resp = get(ingress, "/api/v1/projects?limit=3", {header: f"Bearer {app_token}", "Accept": "application/json"})
    assert resp.status_code == 200, f"{resp.status_code} {resp.text[:300]}"
    seen = resp.json()
    assert seen["path"] == "/api/v1/projects" and seen["query"] == "limit=3", seen
    assert header_values(seen, "X-User-Subject") == [APP_CLIENT_ID], identity_headers(seen)
    assert header_values(seen, "X-User-Claim-Identitytype") == ['"app"'], identity_headers(seen)


def test_client_sent_identity_headers_never_reach_the_upstream(ingress: Ingress, app_token: str) -> None:
    forged = {
        "X-User-Subject": "forged-subject",
        "x-user-claim-identitytype": '"user"',
        "X-User-Claim-Email": '"forged@example.com"',
        "X-USER-CLAIM-NAME": '"Forged"',
        "X-User-Claim-Preferred-Username": '"forged"',
        "X-User-Claim-Groups": '["admins"]',
    }
    resp = get(ingress, "/app/page", {"Authorization": f"Bearer {app_token}", "Accept": "application/json", **forged})
    assert resp.status_code == 200, f"{resp.status_code} {resp.text[:300]}"
    seen = resp.json()
    received = identity_headers(seen)
    assert header_values(seen, "X-User-Subject") == [APP_CLIENT_ID], received
    assert header_values(seen, "X-User-Claim-Identitytype") == ['"app"'], received
    assert not any("forged" in value.lower() or "admins" in value for _, value in received), received
    for name in IDENTITY_HEADERS:
        assert len(header_values(seen, name)) <= 1, f"{name} arrived twice: {received}"


def test_forged_subject_without_credentials_is_refused(ingress: Ingress) -> None:
    assert_plain_401(get(ingress, "/app/page", {"X-User-Subject": APP_CLIENT_ID, "Accept": "application/json"}))


def test_auth_endpoints_are_public(ingress: Ingress) -> None:
    metadata = get(ingress, "/.well-known/oauth-authorization-server", {"Accept": "application/json"})
    assert metadata.status_code == 200, metadata.text[:300]
    assert metadata.json()["token_endpoint"] == f"{ingress.url}/oauth2/token", metadata.json()
    oidc = get(ingress, "/.well-known/openid-configuration", {"Accept": "application/json"})
    assert oidc.status_code == 200, oidc.text[:300]
    client_config = get(ingress, "/config/v1/flyte_client", {"Accept": "application/json"})
    assert client_config.status_code == 200 and client_config.json().get("client_id"), client_config.text[:300]
    jwks = get(ingress, "/oauth2/jwks", {"Accept": "application/json"})
    assert jwks.status_code == 200 and jwks.json().get("keys"), jwks.text[:300]
    # flyteauth's own /me: a 401 from flyteauth itself (JSON), never the ingress's redirect.
    me = get(ingress, "/me", {"Accept": "text/html"})
    assert_plain_401(me)


def test_connect_auth_services_go_to_flyteauth_over_http(ingress: Ingress) -> None:
    # The flyte 2 SDK calls the auth services with Connect (HTTP POST, JSON or proto), without a token.
    for service in ("flyteidl.service.AuthMetadataService", "flyteidl2.auth.AuthMetadataService"):
        resp = http_client(ingress).post(
            f"{ingress.url}/{service}/GetOAuth2Metadata",
            data="{}",
            headers={"Content-Type": "application/json", "Connect-Protocol-Version": "1"},
            timeout=TIMEOUT,
            allow_redirects=False,
        )
        assert resp.status_code == 200, f"{service}: {resp.status_code} {resp.text[:300]}"
        body = resp.json()
        token_endpoint = body.get("tokenEndpoint") or body.get("token_endpoint")
        assert token_endpoint == f"{ingress.url}/oauth2/token", body


def test_local_sign_in_through_the_ingress_reaches_the_page(ingress: Ingress, alice_user: LocalUser) -> None:
    target = f"{ingress.url}/app/after-login?q=%26x"
    session, answer = form_login(ingress, alice_user, target)
    assert answer.status_code in (302, 303), f"{answer.status_code} {answer.text[:500]}"
    assert answer.headers["Location"] in (target, urlsplit(target)._replace(scheme="", netloc="").geturl()), (
        answer.headers["Location"]
    )
    resp = session.get(target, headers={"Accept": "application/json"}, timeout=TIMEOUT, allow_redirects=False)
    assert resp.status_code == 200, f"{resp.status_code} {resp.text[:300]}"
    seen = resp.json()
    assert seen["query"] == "q=%26x", seen
    subject = user_subjects(ingress.flyteauth)[alice_user.name]
    assert header_values(seen, "X-User-Subject") == [subject], identity_headers(seen)
    assert header_values(seen, "X-User-Claim-Identitytype") == ['"user"'], identity_headers(seen)
    assert header_values(seen, "X-User-Claim-Email") == [f'"{ALICE_EMAIL}"'], identity_headers(seen)


@pytest.mark.parametrize(
    "redirect_url",
    [
        "https://evil.example.com/",
        "//evil.example.com/",
        "/\\evil.example.com/",
        "/%2F%2Fevil.example.com/",
        "https:evil.example.com",
        "https://127.0.0.1@evil.example.com/",
    ],
)
def test_sign_in_never_sends_the_browser_elsewhere(ingress: Ingress, alice_user: LocalUser, redirect_url: str) -> None:
    _, answer = form_login(ingress, alice_user, redirect_url)
    if answer.status_code in (301, 302, 303, 307, 308):
        where = urlsplit(answer.headers["Location"])
        assert where.netloc in ("", f"127.0.0.1:{ingress.port}"), answer.headers["Location"]
        assert not where.path.startswith(("//", "/\\")), answer.headers["Location"]
        assert "evil" not in answer.headers["Location"], answer.headers["Location"]
    else:
        assert answer.status_code == 200, f"{answer.status_code} {answer.text[:300]}"


def test_signed_out_session_is_refused_once_the_auth_cache_entry_expires(
    ingress: Ingress, alice_user: LocalUser
) -> None:
    target = f"{ingress.url}/app/cached"
    session, answer = form_login(ingress, alice_user, target)
    assert answer.status_code in (302, 303), f"{answer.status_code} {answer.text[:500]}"
    cookie = session.cookies.get("flyteauth_session")
    assert cookie, f"no flyteauth_session cookie after signing in: {answer.headers}"
    first = session.get(target, headers={"Accept": "application/json"}, timeout=TIMEOUT, allow_redirects=False)
    assert first.status_code == 200, f"{first.status_code} {first.text[:300]}"
    # nginx keeps /me's 200 for this cookie (flyteauth-http.conf: proxy_cache_path, flyteauth.conf: 5 s).
    assert ingress.nginx.cache_entries(), "the /me answer was not cached"

    bye = session.get(f"{ingress.url}/logout", headers={"Accept": "text/html"}, timeout=TIMEOUT,
                      allow_redirects=False)
    assert bye.status_code in (200, 302, 303), f"{bye.status_code} {bye.text[:300]}"
    signed_out = time.monotonic()
    # The same cookie replayed (an attacker who copied it, or a browser tab that kept it): for at most the
    # cache validity it may still pass; after that it is a plain 401 (an API-style request, never a redirect).
    statuses = []
    while True:
        resp = http_client(ingress).get(
            target, headers={"Cookie": f"flyteauth_session={cookie}", "Accept": "application/json"},
            timeout=TIMEOUT, allow_redirects=False,
        )
        statuses.append(resp.status_code)
        if resp.status_code == 401:
            break
        assert resp.status_code == 200, f"unexpected {resp.status_code}: {resp.text[:300]}"
        assert time.monotonic() - signed_out < AUTH_CACHE_SECONDS + 3, (
            f"a signed-out cookie still passes {AUTH_CACHE_SECONDS + 3:.0f}s after logout: {statuses}"
        )
        time.sleep(0.25)
    assert_plain_401(resp)


def test_tampered_session_cookie_is_refused(ingress: Ingress, alice_user: LocalUser) -> None:
    session, answer = form_login(ingress, alice_user, f"{ingress.url}/app/x")
    cookie = session.cookies.get("flyteauth_session")
    assert cookie, f"no flyteauth_session cookie after signing in: {answer.status_code} {answer.headers}"
    # The genuine cookie first, so that nginx has a cached 200 for it: the cache must not answer for
    # anything but exactly this cookie.
    ok = get(ingress, "/app/x", {"Cookie": f"flyteauth_session={cookie}", "Accept": "application/json"})
    assert ok.status_code == 200, f"{ok.status_code} {ok.text[:300]}"
    tampered = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    resp = get(ingress, "/app/x", {"Cookie": f"flyteauth_session={tampered}", "Accept": "text/html"})
    # A browser with a bad cookie is sent to sign in again.
    assert resp.status_code == 302, f"{resp.status_code} {resp.text[:300]}"
    assert urlsplit(resp.headers["Location"]).path == "/login", resp.headers["Location"]
    assert_plain_401(get(ingress, "/app/x", {"Cookie": f"flyteauth_session={tampered}"}))
    assert_plain_401(get(ingress, "/app/x", {"Cookie": f"other=1; flyteauth_session={cookie[:20]}"}))
    assert_plain_401(get(ingress, "/app/x", {}))


@pytest.mark.parametrize("header", ["Authorization", "flyte-authorization"])
def test_a_cached_answer_serves_only_the_same_credential(ingress: Ingress, app_token: str, header: str) -> None:
    ok = get(ingress, "/app/cache", {header: f"Bearer {app_token}", "Accept": "application/json"})
    assert ok.status_code == 200, f"{ok.status_code} {ok.text[:300]}"
    # Within the cache validity of that 200: other credentials, or none, are asked about afresh.
    assert_plain_401(get(ingress, "/app/cache", {}))
    assert_plain_401(get(ingress, "/app/cache", {header: "Bearer garbage"}))
    assert_plain_401(get(ingress, "/app/cache", {header: f"Bearer {app_token[:-4]}"}))
    other = "flyte-authorization" if header == "Authorization" else "Authorization"
    assert_plain_401(get(ingress, "/app/cache", {other: "Bearer garbage"}))
    assert_plain_401(get(ingress, "/app/cache", {"Cookie": "flyteauth_session=garbage"}))


def test_redirect_keeps_the_host_and_port_the_browser_used(ingress: Ingress) -> None:
    resp = get(ingress, "/deep/path/", {"Accept": "text/html", "Host": f"127.0.0.1:{ingress.port}"})
    assert resp.status_code == 302, resp.status_code
    assert resp.headers["Location"] == "/login?redirect_url=" + quote(f"{ingress.url}/deep/path/", safe=""), (
        resp.headers["Location"]
    )


# flyteauth renews a session cookie on /me once its last-seen time is older than this (TOUCH_AFTER_SECS).
SESSION_TOUCH_AFTER_SECONDS = 60


def test_renewed_session_cookie_reaches_the_browser_through_nginx(ingress: Ingress, alice_user: LocalUser) -> None:
    # The idle timer of a session moves only when /me renews its cookie, and /me answers nginx, not the
    # browser: without `add_header Set-Cookie $flyteauth_set_cookie` an active session would still end at
    # its idle timeout. This waits out the renewal interval (a minute).
    target = f"{ingress.url}/app/renew"
    session, answer = form_login(ingress, alice_user, target)
    old = session.cookies.get("flyteauth_session")
    assert old, f"no flyteauth_session cookie after signing in: {answer.status_code} {answer.headers}"
    time.sleep(SESSION_TOUCH_AFTER_SECONDS + 2)
    resp = get(ingress, "/app/renew", {"Cookie": f"flyteauth_session={old}", "Accept": "text/html"})
    assert resp.status_code == 200, f"{resp.status_code} {resp.text[:300]}"
    set_cookie = resp.headers.get("Set-Cookie", "")
    assert set_cookie.startswith("flyteauth_session="), f"no renewed cookie in {resp.headers}"
    attributes = [a.strip().lower() for a in set_cookie.split(";")[1:]]
    assert "httponly" in attributes and "secure" in attributes and "path=/" in attributes, set_cookie
    new = set_cookie.split(";", 1)[0].split("=", 1)[1]
    assert new and new != old, set_cookie
    again = get(ingress, "/app/renew", {"Cookie": f"flyteauth_session={new}", "Accept": "application/json"})
    assert again.status_code == 200, f"{again.status_code} {again.text[:300]}"
    subject = user_subjects(ingress.flyteauth)[alice_user.name]
    assert header_values(again.json(), "X-User-Subject") == [subject], identity_headers(again.json())


def test_the_apps_service_goes_to_flyteauth_which_authenticates_it(ingress: Ingress, app_token: str) -> None:
    # `flyte create api-key` behind the ingress: the Connect call reaches flyteauth, not the application.
    url = f"{ingress.url}/cloudidl.identity.AppsService/List"
    client = http_client(ingress)
    anonymous = client.post(url, json={}, headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert anonymous.status_code == 401, f"{anonymous.status_code} {anonymous.text[:300]}"
    assert anonymous.json().get("code") == "unauthenticated", anonymous.text[:300]
    # An app token is authenticated by flyteauth, which then refuses an app managing apps (a Connect error from
    # flyteauth, never the echo upstream's answer).
    as_app = client.post(
        url,
        json={},
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {app_token}"},
        timeout=TIMEOUT,
    )
    assert as_app.status_code == 403, f"{as_app.status_code} {as_app.text[:300]}"
    assert as_app.json().get("code") == "permission_denied", as_app.text[:300]

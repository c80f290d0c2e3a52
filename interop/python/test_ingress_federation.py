"""Headless Chromium through nginx (deploy/nginx) with flyteauth federated to oidc-provider
(interop/node/idp-server.mjs) and no local accounts: an unauthenticated visit goes through flyteauth's /login
straight to the identity provider's login page, then its consent page, back to /callback (an authorization
code exchanged with PKCE) and on to the upstream, which sees the provider's `sub` as X-User-Subject. Logout
ends the session at flyteauth and at the provider, so the next visit meets the provider's login page again.

With FLYTEAUTH_SCREENSHOTS=DIR the test also saves ingress-idp-login.png and ingress-idp-upstream.png.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from selenium.webdriver.common.by import By

from ingress_harness import (
    IDP_CLIENT_ID,
    Browser,
    IdpAccount,
    Ingress,
    at,
    echo_seen,
    header_values,
    identity_headers,
    screenshot_dir,
    wait_until,
)

# RFC 7636: the S256 challenge is the base64url (no padding) of a SHA-256: 43 characters.
S256_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def at_idp(ingress: Ingress, path_prefix: str):
    assert ingress.idp is not None

    def check(driver) -> bool:
        url = urlsplit(driver.current_url)
        return (
            f"{url.scheme}://{url.netloc}" == ingress.idp.issuer
            and url.path.startswith(path_prefix)
            and driver.execute_script("return document.readyState") == "complete"
        )

    return check


def idp_login_page(browser: Browser, ingress: Ingress) -> None:
    wait_until(browser, "the identity provider's login page", at_idp(ingress, "/interaction/"))
    wait_until(browser, "the login field", lambda d: d.find_elements(By.NAME, "login"))


def test_federated_sign_in_through_nginx_then_logout(
    federated_ingress: Ingress, idp_person: IdpAccount, browser: Browser
) -> None:
    ingress = federated_ingress
    idp = ingress.idp
    assert idp is not None
    driver = browser.driver
    page = f"{ingress.url}/app/federated?from=idp"
    shots = screenshot_dir()

    driver.get(page)
    idp_login_page(browser, ingress)
    [authorization] = idp.wait_event("authorization")
    assert authorization["client_id"] == IDP_CLIENT_ID, authorization
    assert authorization["redirect_uri"] == f"{ingress.url}/callback", authorization
    assert authorization["response_type"] == "code", authorization
    assert authorization["code_challenge_method"] == "S256", authorization
    assert S256_CHALLENGE.match(authorization["code_challenge"] or ""), authorization
    assert authorization["has_state"] and authorization["has_nonce"], authorization
    assert "openid" in (authorization["scope"] or "").split(), authorization
    if shots:
        driver.save_screenshot(str(shots / "ingress-idp-login.png"))

    # The provider's development login page takes any password for a known login.
    driver.find_element(By.NAME, "login").send_keys(idp_person.login)
    driver.find_element(By.NAME, "password").send_keys("any password")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    # Its consent page: one button.
    wait_until(
        browser,
        "the identity provider's consent page",
        lambda d: at_idp(ingress, "/interaction/")(d)
        and not d.find_elements(By.NAME, "login")
        and d.find_elements(By.CSS_SELECTOR, "button[type=submit]"),
    )
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    wait_until(browser, "the upstream page after the callback", at(ingress, "/app/federated"))
    seen = echo_seen(browser)
    assert seen["query"] == "from=idp", seen
    assert header_values(seen, "X-User-Subject") == [idp_person.login], identity_headers(seen)
    assert header_values(seen, "X-User-Claim-Identitytype") == ['"user"'], identity_headers(seen)
    assert header_values(seen, "X-User-Claim-Email") == [json.dumps(idp_person.email)], identity_headers(seen)
    # JSON with non-ASCII escaped (json.dumps' default), so every header value is ASCII.
    assert header_values(seen, "X-User-Claim-Name") == [json.dumps(idp_person.name)], identity_headers(seen)
    assert all(value.isascii() for _, value in identity_headers(seen)), identity_headers(seen)
    groups = header_values(seen, "X-User-Claim-Groups")
    assert len(groups) == 1 and json.loads(groups[0]) == list(idp_person.groups), identity_headers(seen)
    if shots:
        driver.save_screenshot(str(shots / "ingress-idp-upstream.png"))

    # The code was exchanged at the provider's token endpoint with a code_verifier, and the provider (which
    # requires PKCE and checks the verifier against the challenge) accepted it.
    tokens = idp.wait_event("token")
    assert tokens and all(t["ok"] and t["has_code_verifier"] for t in tokens), tokens
    assert [t["grant_type"] for t in tokens] == ["authorization_code"], tokens
    cookies = {c["name"]: c for c in driver.get_cookies()}
    assert cookies.get("flyteauth_session", {}).get("httpOnly"), cookies.keys()
    assert all(len(c["value"]) < 4096 for c in cookies.values()), {n: len(c["value"]) for n, c in cookies.items()}

    # Logout: flyteauth ends its session and sends the browser to the provider's end-session page, which asks
    # for confirmation; after it the provider sends the browser back to the ingress.
    driver.get(f"{ingress.url}/logout")
    wait_until(
        browser,
        "the identity provider's sign-out confirmation",
        lambda d: at_idp(ingress, "/session/end")(d) and d.find_elements(By.CSS_SELECTOR, "button[name=logout]"),
    )
    assert "flyteauth_session" not in {c["name"] for c in driver.get_cookies()}, driver.get_cookies()
    [end_session] = idp.wait_event("end_session_request")
    assert end_session["client_id"] == IDP_CLIENT_ID and end_session["has_id_token_hint"], end_session
    assert end_session["post_logout_redirect_uri"] in (ingress.url, f"{ingress.url}/"), end_session
    driver.find_element(By.CSS_SELECTOR, "button[name=logout]").click()
    assert idp.wait_event("end_session"), idp.events()
    # Back at the ingress's public URL, which is protected: flyteauth's /login, then the provider's login
    # page, because the provider's session has ended too (otherwise it would sign the browser straight in).
    idp_login_page(browser, ingress)

    driver.get(page)
    idp_login_page(browser, ingress)
    assert len(idp.events("authorization")) >= 2, idp.events()

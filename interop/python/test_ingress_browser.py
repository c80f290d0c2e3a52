"""Headless Chromium through nginx (deploy/nginx) with a local account: an unauthenticated visit lands on the
login page, signing in reaches the upstream with the person's identity, logout ends it.

With FLYTEAUTH_SCREENSHOTS=DIR the test saves ingress-login.png and ingress-upstream.png into DIR (the
pictures of docs/deploy-nginx.md).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from selenium.webdriver.common.by import By

from flyteauth_harness import ALICE_DISPLAY_NAME, ALICE_EMAIL, LocalUser
from ingress_harness import (
    Browser,
    Ingress,
    at,
    echo_seen,
    header_values,
    identity_headers,
    screenshot_dir,
    user_subjects,
    wait_until,
)


def assert_login_form(browser: Browser) -> None:
    driver = browser.driver
    forms = driver.find_elements(By.CSS_SELECTOR, "form[method=post], form[method=POST]")
    assert forms, f"no POST form on the login page:\n{browser.state()}"
    form = forms[0]
    assert form.find_elements(By.NAME, "username") and form.find_elements(By.NAME, "password"), browser.state()


def sign_in(browser: Browser, user: LocalUser) -> None:
    form = browser.driver.find_element(By.CSS_SELECTOR, "form[method=post], form[method=POST]")
    form.find_element(By.NAME, "username").send_keys(user.name)
    form.find_element(By.NAME, "password").send_keys(user.password)
    buttons = form.find_elements(By.CSS_SELECTOR, "button[type=submit], input[type=submit], button:not([type])")
    assert buttons, f"no submit button in the login form:\n{browser.state()}"
    buttons[0].click()


def test_local_sign_in_through_nginx_then_logout(ingress: Ingress, alice_user: LocalUser, browser: Browser) -> None:
    driver = browser.driver
    page = f"{ingress.url}/app/page?x=1&y=a%2Bb"
    shots = screenshot_dir()

    driver.get(page)
    wait_until(browser, "the redirect to the login page", at(ingress, "/login"))
    assert parse_qs(urlsplit(driver.current_url).query).get("redirect_url") == [page], driver.current_url
    assert_login_form(browser)
    if shots:
        driver.save_screenshot(str(shots / "ingress-login.png"))

    sign_in(browser, alice_user)
    wait_until(browser, "the upstream page after signing in", at(ingress, "/app/page"))
    seen = echo_seen(browser)
    assert seen["query"] == "x=1&y=a%2Bb", seen
    subject = user_subjects(ingress.flyteauth)[alice_user.name]
    assert header_values(seen, "X-User-Subject") == [subject], identity_headers(seen)
    assert header_values(seen, "X-User-Claim-Identitytype") == ['"user"'], identity_headers(seen)
    assert header_values(seen, "X-User-Claim-Email") == [json.dumps(ALICE_EMAIL)], identity_headers(seen)
    assert header_values(seen, "X-User-Claim-Name") == [json.dumps(ALICE_DISPLAY_NAME)], identity_headers(seen)
    if shots:
        driver.save_screenshot(str(shots / "ingress-upstream.png"))

    session = [c for c in driver.get_cookies() if c["name"] == "flyteauth_session"]
    assert len(session) == 1, driver.get_cookies()
    assert session[0]["httpOnly"] and session[0]["secure"], session[0]
    assert len(session[0]["value"]) < 4096, len(session[0]["value"])

    # Another page of the application: the session carries over, no new sign-in.
    driver.get(f"{ingress.url}/app/other")
    wait_until(browser, "the second upstream page", at(ingress, "/app/other"))
    assert header_values(echo_seen(browser), "X-User-Subject") == [subject]

    driver.get(f"{ingress.url}/logout")
    wait_until(
        browser,
        "the end of the logout",
        lambda d: d.execute_script("return document.readyState") == "complete"
        and "flyteauth_session" not in {c["name"] for c in d.get_cookies()},
    )
    driver.get(page)
    wait_until(browser, "the redirect to the login page after logout", at(ingress, "/login"))
    assert_login_form(browser)


def test_logout_with_redirect_url_lands_on_the_login_page_again(
    ingress: Ingress, alice_user: LocalUser, browser: Browser
) -> None:
    driver = browser.driver
    driver.get(f"{ingress.url}/app/start")
    wait_until(browser, "the redirect to the login page", at(ingress, "/login"))
    sign_in(browser, alice_user)
    wait_until(browser, "the upstream page after signing in", at(ingress, "/app/start"))
    # Logging out with a destination inside the application: the destination is protected again, so the
    # browser ends up on the login page, with the destination as its redirect_url.
    back = f"{ingress.url}/app/goodbye"
    driver.get(f"{ingress.url}/logout?redirect_url={back}")
    wait_until(browser, "the login page after logout", at(ingress, "/login"))
    assert parse_qs(urlsplit(driver.current_url).query).get("redirect_url") == [back], driver.current_url
    assert_login_form(browser)

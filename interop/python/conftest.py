"""pytest fixtures: one flyteauth server per test module (see flyteauth_harness).

A failing test's report carries the log of every server it used and of every scripted person it
registered (`request.node.scripted_persons`, see `new_person`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest

from flyteauth_harness import LocalUser, Server, alice, start_embedded_server, start_server
from login_harness import ScriptedPerson

# Refresh-token reuse grace of the login server: short, so a test can outwait it.
LOGIN_REFRESH_REUSE_GRACE = "1s"
# Device-flow polling interval of the device servers (the default 5s would make each login take longer).
DEVICE_INTERVAL = "1s"
# Device-code lifetime of the server on which codes expire before anyone approves them.
SHORT_DEVICE_CODE_LIFETIME = "3s"


def _serving(workdir: Path, start: Callable[[], Server]) -> Iterator[Server]:
    server = start()
    try:
        yield server
    finally:
        server.stop()
        if os.environ.get("FLYTEAUTH_KEEP_TEST_DIRS") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


def _server_fixture(tmp_path_factory: pytest.TempPathFactory, tls: bool) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("flyteauth-tls" if tls else "flyteauth")
    yield from _serving(workdir, lambda: start_server(workdir, tls=tls))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A plaintext (h2c/HTTP/1.1) flyteauth on 127.0.0.1."""
    yield from _server_fixture(tmp_path_factory, tls=False)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A flyteauth with `server.security.secure: true` and a `flyteauth tls self-signed` certificate."""
    yield from _server_fixture(tmp_path_factory, tls=True)


@pytest.fixture(scope="module")
def alice_user() -> LocalUser:
    """alice (alice@example.com, "Alice Example") with a random 20-character password."""
    return alice()


@pytest.fixture(scope="module")
def login_server(tmp_path_factory: pytest.TempPathFactory, alice_user: LocalUser) -> Iterator[Server]:
    """A plaintext flyteauth from a configuration file, with the local account alice created through
    `flyteauth users add --config FILE` and `flyteauth.refreshTokenReuseGrace` of 1s."""
    workdir = tmp_path_factory.mktemp("flyteauth-login")
    yield from _serving(
        workdir,
        lambda: start_server(
            workdir,
            tls=False,
            users=[alice_user],
            extensions={"refreshTokenReuseGrace": LOGIN_REFRESH_REUSE_GRACE},
        ),
    )


@pytest.fixture(scope="module")
def embedded_tls_login_server(tmp_path_factory: pytest.TempPathFactory, alice_user: LocalUser) -> Iterator[Server]:
    """The embedded default (`serve --data-dir DIR --self-signed-tls`, no configuration file), with alice
    created through `flyteauth users add --data-dir DIR`."""
    workdir = tmp_path_factory.mktemp("flyteauth-embedded-tls")
    yield from _serving(workdir, lambda: start_embedded_server(workdir, tls=True, users=[alice_user]))


@pytest.fixture(scope="module")
def device_server(tmp_path_factory: pytest.TempPathFactory, alice_user: LocalUser) -> Iterator[Server]:
    """A plaintext flyteauth from a configuration file with alice and `flyteauth.device.interval` of 1s."""
    workdir = tmp_path_factory.mktemp("flyteauth-device")
    yield from _serving(
        workdir,
        lambda: start_server(
            workdir, tls=False, users=[alice_user], extensions={"device": {"interval": DEVICE_INTERVAL}}
        ),
    )


@pytest.fixture(scope="module")
def expiring_device_server(tmp_path_factory: pytest.TempPathFactory, alice_user: LocalUser) -> Iterator[Server]:
    """Like `device_server`, but device codes live only 3s (`flyteauth.device.codeLifetime`)."""
    workdir = tmp_path_factory.mktemp("flyteauth-device-expiry")
    yield from _serving(
        workdir,
        lambda: start_server(
            workdir,
            tls=False,
            users=[alice_user],
            extensions={"device": {"codeLifetime": SHORT_DEVICE_CODE_LIFETIME, "interval": DEVICE_INTERVAL}},
        ),
    )


@pytest.fixture(scope="module")
def expiring_tls_device_server(tmp_path_factory: pytest.TempPathFactory, alice_user: LocalUser) -> Iterator[Server]:
    """A TLS flyteauth from a configuration file whose device codes live only 3s, for the `flyte` SDK (which
    sends credentials only over TLS)."""
    workdir = tmp_path_factory.mktemp("flyteauth-device-expiry-tls")
    yield from _serving(
        workdir,
        lambda: start_server(
            workdir,
            tls=True,
            users=[alice_user],
            extensions={"device": {"codeLifetime": SHORT_DEVICE_CODE_LIFETIME, "interval": DEVICE_INTERVAL}},
        ),
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Server):
                report.sections.append((f"flyteauth server log ({value.log_path})", value.log_text()))
        for person in getattr(item, "scripted_persons", []):
            if isinstance(person, ScriptedPerson):
                report.sections.append((f"scripted person log ({person.log_path})", person.log_text()))


@pytest.fixture
def new_person(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., ScriptedPerson]]:
    """Makes a scripted person for this test whose log is attached to the report when the test fails."""
    made: list[ScriptedPerson] = []
    request.node.scripted_persons = made

    def make(
        user: LocalUser,
        *,
        ca_file: Path | None = None,
        wrong_password_first: bool = False,
        decision: str | None = None,
        type_code: str | None = None,
    ) -> ScriptedPerson:
        person = ScriptedPerson(
            tmp_path / f"person-{len(made)}",
            user,
            ca_file=ca_file,
            wrong_password_first=wrong_password_first,
            decision=decision,
            type_code=type_code,
        )
        made.append(person)
        return person

    yield make
    for person in made:
        person.stop()


# --------------------------------------------------------------------------------------------------
# The ingress tests: real nginx (deploy/nginx) in front of flyteauth and two upstreams, headless Chromium.

from ingress_harness import Browser, IdpAccount, Ingress, start_ingress  # noqa: E402

# The person at the federated identity provider (oidc-provider); the login is also the IdP's `sub`.
IDP_PERSON = IdpAccount(
    login="idp-dana-7c41",
    email="dana@idp.example.com",
    name="Dana Fédérée",  # non-ASCII: the claim header carries it JSON-escaped (\u00e9)
    groups=("flyte-admins", "ml"),
)


def _ingress_fixture(workdir: Path, **kwargs) -> Iterator[Ingress]:
    stack = start_ingress(workdir, **kwargs)
    try:
        yield stack
    finally:
        stack.stop()
        if os.environ.get("FLYTEAUTH_KEEP_TEST_DIRS") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory, alice_user: LocalUser) -> Iterator[Ingress]:
    """nginx on https://127.0.0.1:<port> with deploy/nginx's configuration, in front of flyteauth (local
    accounts, with alice), the echo upstream (`app`) and the gRPC upstream (`app_grpc`)."""
    yield from _ingress_fixture(tmp_path_factory.mktemp("ingress"), users=[alice_user])


@pytest.fixture(scope="module")
def federated_ingress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    """Like `ingress`, but flyteauth federates to oidc-provider (holding IDP_PERSON) and has no local accounts."""
    yield from _ingress_fixture(tmp_path_factory.mktemp("ingress-federated"), idp_accounts=[IDP_PERSON])


@pytest.fixture
def idp_person() -> IdpAccount:
    return IDP_PERSON


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """Headless Chromium (Debian's) through chromedriver with a fresh profile, ended after the test."""
    made = Browser(tmp_path / "browser")
    try:
        yield made
    finally:
        made.quit()


class _IngressReports:
    """Attaches the logs of the ingress stack and the browser's state to the report of a failing test."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        if not report.failed:
            return
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Ingress):
                report.sections.extend(value.report_sections())
            elif isinstance(value, Browser):
                report.sections.append(("browser", value.state()))
                report.sections.append((f"chromedriver log ({value.log_path})", value.log_text()))


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_IngressReports(), "flyteauth-ingress-reports")


# --------------------------------------------------------------------------------------------------
# The API key test: flyteauth on 127.0.0.1:443, because an API key cannot carry a port.

from api_key_harness import Server443, start_server_on_443  # noqa: E402


@pytest.fixture(scope="module")
def api_key_server(tmp_path_factory: pytest.TempPathFactory, alice_user: LocalUser) -> Iterator[Server443]:
    """flyteauth from a configuration file over TLS (`flyteauth tls self-signed`) on 127.0.0.1:443 with
    `auth.authorizedUris: [https://127.0.0.1]` and alice; fails (never skips) when 443 cannot be bound."""
    workdir = tmp_path_factory.mktemp("flyteauth-api-key")
    yield from _serving(workdir, lambda: start_server_on_443(workdir, users=[alice_user]))


# --------------------------------------------------------------------------------------------------
# External mode: oidc-provider as the external authorization server (interop/node/external-as.mjs), flyteauth
# with `auth.appAuth.authServerType: External` pointing at it, nginx (deploy/nginx) in front of flyteauth.

from external_harness import ExtAccount, ExternalStack, start_external  # noqa: E402

# The person at the external authorization server; the login is also the `sub` of their tokens.
EXT_PERSON = ExtAccount(login="ext-erin-52d0", email="erin@idp.example.com", name="Erin Extérieure")


@pytest.fixture(scope="module")
def external_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalStack]:
    """A fresh stack per test module (the outage tests stop and restart its authorization server): oidc-provider
    holding EXT_PERSON and the confidential client, flyteauth in External mode, nginx in front of flyteauth."""
    workdir = tmp_path_factory.mktemp("external")
    stack = start_external(workdir, accounts=[EXT_PERSON])
    try:
        yield stack
    finally:
        stack.stop()
        if os.environ.get("FLYTEAUTH_KEEP_TEST_DIRS") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def ext_person() -> ExtAccount:
    return EXT_PERSON


class _ExternalReports:
    """Attaches the logs of the External-mode stack to the report of a failing test."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        if not report.failed:
            return
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, ExternalStack):
                report.sections.extend(value.report_sections())


def pytest_sessionstart(session: pytest.Session) -> None:
    # pytest_configure above registers the ingress reports; this hook name is still free in this file.
    session.config.pluginmanager.register(_ExternalReports(), "flyteauth-external-reports")

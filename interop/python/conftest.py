"""pytest fixtures: one flyteauth server per test module (see flyteauth_harness)."""

from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from flyteauth_harness import Server, start_server


def _server_fixture(tmp_path_factory: pytest.TempPathFactory, tls: bool) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("flyteauth-tls" if tls else "flyteauth")
    server = start_server(workdir, tls=tls)
    try:
        yield server
    finally:
        server.stop()
        if os.environ.get("FLYTEAUTH_KEEP_TEST_DIRS") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A plaintext (h2c/HTTP/1.1) flyteauth on 127.0.0.1."""
    yield from _server_fixture(tmp_path_factory, tls=False)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A flyteauth with `server.security.secure: true` and a `flyteauth tls self-signed` certificate."""
    yield from _server_fixture(tmp_path_factory, tls=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Server):
                report.sections.append((f"flyteauth server log ({value.log_path})", value.log_text()))

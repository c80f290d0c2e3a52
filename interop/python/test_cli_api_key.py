"""API keys end to end with the Rust `flyte` CLI (crates/cli, docs/cli.md) against a real flyteauth on
127.0.0.1:443 over TLS, mirroring test_flyte2_api_key.py (which does the same with the Python `flyte` 2.x CLI).

alice signs in once with the Rust CLI's PKCE login (the scripted person as `BROWSER`); her tokens go to a file
cache in a temporary directory (`FLYTE_TOKEN_CACHE_FILE`, `FLYTE_ADMIN_DISABLEKEYRING=true`), never to a real
keyring. Then, as her, with a configuration file naming `dns:///127.0.0.1` and the test CA:

    flyte login                              Signed in to 127.0.0.1 as alice (SUBJECT)
    flyte create api-key --name ci-bot-rs    Client ID: ci-bot-rs / export FLYTE_API_KEY="…"
    flyte get api-key                        lists ci-bot-rs
    flyte get api-key ci-bot-rs -o json      shows it, without its secret

and as the app, with no configuration file and only `FLYTE_API_KEY` (and the CA in `SSL_CERT_FILE`) in an empty
HOME and directory, both CLIs answer with the app's identity:

    Rust   flyte whoami -o json              subject ci-bot-rs, additional_claims.identity_type app
    Python flyte whoami                      the same (the key the Rust CLI made works with the SDK)

then alice runs `flyte delete api-key ci-bot-rs --yes`, after which the Rust `flyte whoami` with the key fails
with exit 3 (authentication) and exactly one line on stderr. The secret (and the key that encodes it) appears in
no output but the creation's stdout: not with `-v` on any Rust command, not in the Python CLI's output, not in
the server log.

The server is conftest's module-scoped `api_key_server`, the fixture test_flyte2_api_key.py uses: each module gets
its own server, and pytest ends one module's before the next module's starts, so the two never hold port 443 at
once. The app's name (ci-bot-rs) differs from that test's (ci-bot) all the same. Both CLIs' PKCE callbacks listen
on the server's advertised redirect_uri port, so this must not run in parallel with other login tests.

The Rust binary is `$FLYTE_RS_BIN`, default <repo>/target/debug/flyte; a missing one is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Callable, Optional, Sequence

import pytest

from api_key_harness import (
    FLYTE_CLI,
    HOST,
    FlyteRun,
    app_env,
    clean_env,
    decode_api_key,
    person_env,
    run_flyte,
    write_person_config,
)
from flyteauth_harness import ALICE_NAME, LocalUser, Server
from login_harness import ScriptedPerson, strip_ansi

REPO = Path(__file__).resolve().parents[2]
APP_NAME = "ci-bot-rs"
# 256 random bits in base64 take at least 43 characters.
MIN_SECRET_CHARS = 43
CLI_TIMEOUT_SECONDS = 60.0
# docs/cli.md, "Exit codes": 3 is an authentication failure (credentials missing, refused or expired).
EXIT_AUTH = 3
# What the Rust CLI prints on creation (crates/cli/src/commands/api_key.rs, docs/cli.md).
EXPORT_LINE = re.compile(r'^export FLYTE_API_KEY="([A-Za-z0-9+/=]+)"$', re.MULTILINE)
# Variables that could reach a real keyring; no Rust run gets them.
KEYRING_ENV_NAMES = ("DBUS_SESSION_BUS_ADDRESS", "DBUS_SYSTEM_BUS_ADDRESS", "XDG_RUNTIME_DIR")


def rust_flyte() -> Path:
    value = os.environ.get("FLYTE_RS_BIN") or str(REPO / "target" / "debug" / "flyte")
    path = Path(value)
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"the Rust flyte CLI is not at {path}: build it with "
            "`cargo build -p flyteauth-cli --bin flyte` or set FLYTE_RS_BIN",
            pytrace=False,
        )
    return path


def run_program(
    argv: Sequence[str], *, cwd: Path, env: dict[str, str], env_note: str, timeout: float = CLI_TIMEOUT_SECONDS
) -> FlyteRun:
    """Runs `argv` with a hard timeout (its whole process group is killed when it runs out)."""
    cwd.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        returncode: Optional[int] = proc.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = proc.communicate(timeout=10)
        returncode = None
    return FlyteRun(list(argv), env_note, returncode, strip_ansi(stdout), strip_ansi(stderr), timeout)


def without_keyring(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in KEYRING_ENV_NAMES}


def unwrapped(text: str) -> str:
    """`text` without whitespace and box-drawing characters, so that a value rich wrapped is whole again."""
    return re.sub(r"[\s\u2500-\u257f|]+", "", text)


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


class Context:
    """Where alice and the app run the CLIs, what must stay secret, and the failure messages."""

    def __init__(self, server: Server, person: ScriptedPerson, tmp_path: Path) -> None:
        self.server = server
        self.person = person
        self.tmp_path = tmp_path
        self.rust = rust_flyte()
        self.person_home = tmp_path / "alice-home"
        self.person_home.mkdir()
        self.person_config = write_person_config(server, tmp_path / "alice-config")
        self.token_cache = tmp_path / "rust-token-cache" / "tokens.json"
        # Values that may appear in the creation's stdout only: the secret and the key that encodes it.
        self.secrets: list[str] = []
        self.app_homes = 0

    def as_person(self, *args: str) -> FlyteRun:
        env = person_env(self.person_home, self.person, self.server)
        env.update({"FLYTE_TOKEN_CACHE_FILE": str(self.token_cache), "FLYTE_ADMIN_DISABLEKEYRING": "true"})
        return run_program(
            [str(self.rust), "-c", str(self.person_config), *args],
            cwd=self.person_home,
            env=without_keyring(env),
            env_note=(
                f"Rust CLI as {ALICE_NAME}, PKCE, config {self.person_config}, "
                f"FLYTE_TOKEN_CACHE_FILE={self.token_cache}, FLYTE_ADMIN_DISABLEKEYRING=true"
            ),
        )

    def new_app_home(self) -> Path:
        self.app_homes += 1
        home = self.tmp_path / f"app-home-{self.app_homes}"
        home.mkdir()
        return home

    def rust_as_app(self, api_key: str, *args: str) -> tuple[FlyteRun, Path]:
        """The Rust CLI with nothing but FLYTE_API_KEY and SSL_CERT_FILE, in a new empty HOME and directory."""
        home = self.new_app_home()
        env = clean_env(home, {"FLYTE_API_KEY": api_key, "SSL_CERT_FILE": str(self.server.ca_file)})
        run = run_program(
            [str(self.rust), *args],
            cwd=home,
            env=without_keyring(env),
            env_note=f"Rust CLI as the app: FLYTE_API_KEY, SSL_CERT_FILE, empty HOME={home}, no config file",
        )
        return run, home

    def python_as_app(self, api_key: str) -> FlyteRun:
        """The Python SDK's `flyte whoami` as test_flyte2_api_key.py runs it, in a new empty HOME."""
        home = self.new_app_home()
        return run_flyte(
            ["whoami"],
            cwd=home,
            env=app_env(home, self.server, api_key),
            env_note=f"Python CLI {FLYTE_CLI} as the app: FLYTE_API_KEY, SSL_CERT_FILE, HOME={home}, no config file",
        )

    def why(self, run: FlyteRun, what: str) -> str:
        # The server's and the person's logs are attached to the report by conftest.
        return f"{what}\n{run.describe()}"

    def ok(self, run: FlyteRun, what: str) -> FlyteRun:
        if run.returncode != 0:
            pytest.fail(self.why(run, f"{what}: expected exit 0"), pytrace=False)
        self.no_secret(run, what)
        return run

    def no_secret(self, run: FlyteRun, what: str) -> None:
        for value in self.secrets:
            if value in run.output or value in unwrapped(run.output):
                pytest.fail(self.why(run, f"{what}: the app's secret (or its API key) appears in the output"), pytrace=False)

    def json_stdout(self, run: FlyteRun, what: str) -> dict:
        """The Rust CLI's `-o json`: stdout is exactly one JSON object."""
        try:
            value = json.loads(run.stdout)
        except ValueError as err:
            pytest.fail(self.why(run, f"{what}: stdout is not JSON ({err})"), pytrace=False)
        if not isinstance(value, dict):
            pytest.fail(self.why(run, f"{what}: stdout is JSON but not an object"), pytrace=False)
        return value

    def json_object_in(self, run: FlyteRun, what: str) -> dict:
        """The Python CLI's whoami: a JSON object somewhere in stdout."""
        start, end = run.stdout.find("{"), run.stdout.rfind("}")
        if start < 0 or end <= start:
            pytest.fail(self.why(run, f"{what}: no JSON object in the output"), pytrace=False)
        try:
            return json.loads(run.stdout[start : end + 1])
        except ValueError as err:
            pytest.fail(self.why(run, f"{what}: invalid JSON ({err})"), pytrace=False)


def listed(run: FlyteRun, client_id: str) -> bool:
    """Whether the table of `flyte get api-key` has a row whose CLIENT ID is `client_id`."""
    return any(line.split()[:1] == [client_id] for line in run.stdout.splitlines())


def test_rust_cli_api_key_create_list_get_use_delete(
    api_key_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
) -> None:
    server = api_key_server
    ctx = Context(server, new_person(alice_user, ca_file=server.ca_file), tmp_path)

    # alice signs in with the Rust CLI's PKCE login; the tokens go to the file cache, not a keyring.
    run = ctx.ok(ctx.as_person("login"), f"Rust `flyte login` over TLS on {HOST}:443")
    signed_in = re.fullmatch(rf"Signed in to {re.escape(HOST)} as {re.escape(ALICE_NAME)} \((\S+)\)\n?", run.stdout)
    assert signed_in, ctx.why(run, f"expected `Signed in to {HOST} as {ALICE_NAME} (SUBJECT)`")
    assert ctx.token_cache.is_file(), ctx.why(run, f"the login cached no tokens in {ctx.token_cache}")
    results = ctx.person.wait_for_result()
    assert len(results) == 1 and results[0].endswith("RESULT: ok"), (
        f"one successful browser login expected, got {results!r}\n{ctx.person.log_text()}"
    )

    # Create (with -v: the logs must not hold the secret either): the key from the endpoint and the server's
    # id and secret, printed on stdout only.
    what = f"Rust `flyte -v create api-key --name {APP_NAME}`"
    run = ctx.as_person("-v", "create", "api-key", "--name", APP_NAME)
    if run.returncode != 0:
        pytest.fail(ctx.why(run, f"{what}: expected exit 0"), pytrace=False)
    assert re.search(rf"^Client ID: {re.escape(APP_NAME)}$", run.stdout, re.MULTILINE), ctx.why(
        run, f"{what}: no `Client ID: {APP_NAME}` line"
    )
    exports = EXPORT_LINE.findall(run.stdout)
    assert len(exports) == 1, ctx.why(run, f'{what}: expected one `export FLYTE_API_KEY="…"` line, got {len(exports)}')
    api_key = exports[0]
    try:
        parts = decode_api_key(api_key)
    except ValueError as err:
        pytest.fail(ctx.why(run, f"{what}: the printed key is not standard base64 of UTF-8 ({err})"), pytrace=False)
    assert len(parts) == 4, ctx.why(run, f"{what}: the key decodes to {len(parts)} ':'-separated parts, not 4")
    host, client_id, secret, org = parts
    assert (host, client_id, org) == (HOST, APP_NAME, "None"), ctx.why(
        run, f"{what}: key parts host={host!r} client_id={client_id!r} org={org!r}"
    )
    assert len(secret) >= MIN_SECRET_CHARS, ctx.why(run, f"{what}: a secret of {len(secret)} characters")
    ctx.secrets = [secret, api_key]
    for value in ctx.secrets:
        assert value not in run.stderr and value not in unwrapped(run.stderr), ctx.why(
            run, f"{what}: the secret (or the key) appears on stderr (the -v logs)"
        )

    # List and get, plain and with -v: alice sees her app, never its secret.
    for verbose in ((), ("-v",)):
        what = f"Rust `flyte {' '.join((*verbose, 'get', 'api-key'))}`"
        run = ctx.ok(ctx.as_person(*verbose, "get", "api-key"), what)
        assert listed(run, APP_NAME), ctx.why(run, f"{what}: {APP_NAME} is not listed")

        what = f"Rust `flyte {' '.join((*verbose, 'get', 'api-key', APP_NAME, '-o', 'json'))}`"
        run = ctx.ok(ctx.as_person(*verbose, "get", "api-key", APP_NAME, "-o", "json"), what)
        app = ctx.json_stdout(run, what)
        assert app.get("client_id") == APP_NAME, ctx.why(run, f"{what}: client_id {app.get('client_id')!r}")
        assert not app.get("client_secret"), ctx.why(run, f"{what}: the app's JSON holds a client secret")

    # The app, with nothing but the key (and the CA): the Rust CLI, plain and with -v.
    for verbose in ((), ("-v",)):
        what = f"the app's Rust `flyte {' '.join((*verbose, 'whoami', '-o', 'json'))}`"
        run, home = ctx.rust_as_app(api_key, *verbose, "whoami", "-o", "json")
        info = ctx.json_stdout(ctx.ok(run, what), what)
        claims = info.get("additional_claims") or {}
        assert info.get("subject") == APP_NAME, ctx.why(run, f"{what}: subject {info.get('subject')!r}")
        assert claims.get("identity_type") == "app", ctx.why(run, f"{what}: identity_type {claims.get('identity_type')!r}")
        # docs/cli.md: API-key tokens are kept in memory only.
        assert files_under(home) == [], ctx.why(run, f"{what}: wrote {files_under(home)} under its HOME {home}")

    # The same key with the Python SDK's CLI.
    what = f"the app's Python `{FLYTE_CLI} whoami`"
    run = ctx.ok(ctx.python_as_app(api_key), what)
    info = ctx.json_object_in(run, what)
    claims = info.get("additionalClaims", {})
    assert info.get("subject") == APP_NAME, ctx.why(run, f"{what}: subject {info.get('subject')!r}")
    assert claims.get("client_id") == APP_NAME, ctx.why(run, f"{what}: client_id claim {claims.get('client_id')!r}")
    assert claims.get("identity_type") == "app", ctx.why(run, f"{what}: identity_type {claims.get('identity_type')!r}")

    # Delete (with -v), then the app is locked out.
    what = f"Rust `flyte -v delete api-key {APP_NAME} --yes`"
    ctx.ok(ctx.as_person("-v", "delete", "api-key", APP_NAME, "--yes"), what)

    what = f"the app's Rust `flyte whoami -o json` after the deletion"
    run, _ = ctx.rust_as_app(api_key, "whoami", "-o", "json")
    ctx.no_secret(run, what)
    assert run.returncode == EXIT_AUTH, ctx.why(run, f"{what}: expected exit {EXIT_AUTH} (authentication)")
    stderr_lines = run.stderr.splitlines()
    assert len(stderr_lines) == 1 and stderr_lines[0].startswith("error: "), ctx.why(
        run, f"{what}: expected exactly one stderr line `error: …`, got {len(stderr_lines)}"
    )
    assert "invalid_client" in run.stderr, ctx.why(run, f"{what}: the token endpoint did not refuse the deleted app")
    assert APP_NAME not in run.stdout, ctx.why(run, f"{what}: still answered as the app")

    what = f"the app's Rust `flyte -v whoami -o json` after the deletion"
    run, _ = ctx.rust_as_app(api_key, "-v", "whoami", "-o", "json")
    ctx.no_secret(run, what)
    assert run.returncode == EXIT_AUTH, ctx.why(run, f"{what}: expected exit {EXIT_AUTH} (authentication)")

    what = "Rust `flyte get api-key` after the deletion"
    run = ctx.ok(ctx.as_person("get", "api-key"), what)
    assert not listed(run, APP_NAME), ctx.why(run, f"{what}: {APP_NAME} is still listed")

    log = server.log_path.read_text(errors="replace")
    assert secret not in log and api_key not in log, f"the app's secret (or its key) is in {server.log_path}"
    assert secret not in ctx.token_cache.read_text(), f"the app's secret is in alice's token cache {ctx.token_cache}"

    # alice signed in once; every later command used the tokens in her file cache.
    results = ctx.person.wait_for_result()
    assert len(results) == 1 and results[0].endswith("RESULT: ok"), (
        f"one successful browser login expected, got {results!r}\n{ctx.person.log_text()}"
    )

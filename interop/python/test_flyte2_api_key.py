"""API keys end to end with the real `flyte` 2.12.1 CLI and flyteplugins-union 0.19.1 (issue 8).

flyteauth serves TLS on 127.0.0.1:443 with the test CA and `auth.authorizedUris: [https://127.0.0.1]`: the
SDK writes its own endpoint's host into the key and splits keys on `:`, so a key can name no port. alice logs
in with the CLI's PKCE login (the scripted person as `BROWSER`) and her tokens stay in flyte's file keyring
in her private HOME, so she logs in once; then, as her:

    flyte create api-key --name ci-bot     prints `export FLYTE_API_KEY="…"`
    flyte get api-key                      lists ci-bot
    flyte get api-key ci-bot               shows it, without its secret

and as the app, with only `FLYTE_API_KEY` (and the CA in `SSL_CERT_FILE`) in an empty HOME and directory:

    flyte whoami                           the app's identity (client id ci-bot)

then alice runs `flyte delete api-key ci-bot --yes`, after which the app's `flyte whoami` fails with an
authentication error both with the access token it cached before the deletion (revoked) and from scratch
(the token endpoint no longer knows the app). `flyteauth audit list` on the server's configuration shows
app.created and app.deleted by alice's subject. The secret appears in no output but the creation's, nor in
the server log or the audit list.

flyte's PKCE callback listens on the port of the server's advertised redirect_uri
(http://localhost:53593/callback), so this must not run in parallel with other login tests.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Callable, Optional

import pytest

from api_key_harness import (
    HOST,
    FlyteRun,
    app_env,
    decode_api_key,
    flyteauth_output,
    person_env,
    printed_api_key,
    run_flyte,
    write_person_config,
)
from flyteauth_harness import ALICE_NAME, LocalUser, Server
from login_harness import ScriptedPerson

APP_NAME = "ci-bot"
# 256 random bits in base64 take at least 43 characters.
MIN_SECRET_CHARS = 43
AUTH_FAILURE = re.compile(r"unauthenticated|unauthori[sz]ed|authentication|invalid_client|\b401\b", re.IGNORECASE)
AUDIT_COLUMNS = ("time", "kind", "outcome", "client_id", "subject", "remote_addr", "detail")


class Context:
    """Where alice and the app run the CLI, and the failure messages."""

    def __init__(self, server: Server, person: ScriptedPerson, tmp_path: Path) -> None:
        self.server = server
        self.person = person
        self.person_home = tmp_path / "alice-home"
        self.person_home.mkdir()
        self.person_config = write_person_config(server, tmp_path / "alice-config")
        self.secret: Optional[str] = None

    def as_person(self, *args: str) -> FlyteRun:
        return run_flyte(
            ["-c", str(self.person_config), *args],
            cwd=self.person_home,
            env=person_env(self.person_home, self.person, self.server),
            env_note=f"as {ALICE_NAME}, PKCE, config {self.person_config}",
        )

    def as_app(self, home: Path, api_key: str) -> FlyteRun:
        home.mkdir(parents=True, exist_ok=True)
        return run_flyte(
            ["whoami"],
            cwd=home,
            env=app_env(home, self.server, api_key),
            env_note=f"as the app: FLYTE_API_KEY, SSL_CERT_FILE, HOME={home}, no config file",
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
        if self.secret and self.secret in unwrapped(run.output):
            pytest.fail(self.why(run, f"{what}: the app's secret appears in the output"), pytrace=False)


def unwrapped(text: str) -> str:
    """`text` without whitespace and box-drawing characters, so that a value rich wrapped is whole again."""
    return re.sub(r"[\s\u2500-\u257f|]+", "", text)


def json_object(run: FlyteRun, ctx: Context, what: str) -> dict:
    start, end = run.stdout.find("{"), run.stdout.rfind("}")
    if start < 0 or end <= start:
        pytest.fail(ctx.why(run, f"{what}: no JSON object in the output"), pytrace=False)
    try:
        return json.loads(run.stdout[start : end + 1])
    except ValueError as err:
        pytest.fail(ctx.why(run, f"{what}: invalid JSON ({err})"), pytrace=False)


def printed_apps(run: FlyteRun, ctx: Context) -> list[dict]:
    """`flyte get api-key ID` prints its "json" format: rich's pretty repr of a list of protobuf-JSON dicts."""
    start, end = run.stdout.find("["), run.stdout.rfind("]")
    try:
        value = ast.literal_eval(run.stdout[start : end + 1]) if 0 <= start < end else None
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        pytest.fail(ctx.why(run, "`flyte get api-key ci-bot`: no list of apps in the output"), pytrace=False)
    return value


def audit_rows(ctx: Context) -> tuple[str, list[dict[str, str]]]:
    proc = flyteauth_output(ctx.server, "audit", "list")
    text = f"`flyteauth audit list --config {ctx.server.config_path}`: exit {proc.returncode}\n"
    text += f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    if proc.returncode != 0:
        pytest.fail(text, pytrace=False)
    rows = []
    for line in proc.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) >= len(AUDIT_COLUMNS) - 1:
            rows.append(dict(zip(AUDIT_COLUMNS, fields)))
    return text, rows


def test_api_key_create_list_get_use_delete(
    api_key_server: Server,
    alice_user: LocalUser,
    new_person: Callable[..., ScriptedPerson],
    tmp_path: Path,
) -> None:
    server = api_key_server
    ctx = Context(server, new_person(alice_user, ca_file=server.ca_file), tmp_path)

    # alice logs in (PKCE through the scripted person); her subject is what the audit records name.
    run = ctx.ok(ctx.as_person("whoami"), f"alice's `flyte whoami` over TLS on {HOST}:443")
    alice_info = json_object(run, ctx, "alice's whoami")
    alice_subject = alice_info.get("subject", "")
    assert alice_info.get("preferredUsername") == ALICE_NAME and alice_subject, ctx.why(run, "not alice")

    # Create: the CLI prints the key it encodes from its endpoint and the server's id and secret.
    run = ctx.ok(ctx.as_person("create", "api-key", "--name", APP_NAME), "`flyte create api-key --name ci-bot`")
    api_key = printed_api_key(run)
    assert api_key, ctx.why(run, 'no `export FLYTE_API_KEY="…"` line')
    assert f"Client ID: {APP_NAME}" in run.stdout, ctx.why(run, "no `Client ID: ci-bot` line")
    try:
        parts = decode_api_key(api_key)
    except ValueError as err:
        pytest.fail(ctx.why(run, f"the printed key is not standard base64 of UTF-8 ({err})"), pytrace=False)
    assert len(parts) == 4, ctx.why(run, f"the key decodes to {len(parts)} ':'-separated parts, not 4")
    host, client_id, secret, org = parts
    assert (host, client_id, org) == (HOST, APP_NAME, "None"), ctx.why(run, f"key parts {host!r} {client_id!r} {org!r}")
    assert len(secret) >= MIN_SECRET_CHARS, ctx.why(run, f"secret of {len(secret)} characters")
    ctx.secret = secret

    # List: alice sees her app.
    run = ctx.ok(ctx.as_person("get", "api-key"), "`flyte get api-key`")
    assert re.search(rf"(?<![\w-]){re.escape(APP_NAME)}(?![\w-])", run.stdout), ctx.why(run, "ci-bot is not listed")

    # Get: the app without its secret.
    run = ctx.ok(ctx.as_person("get", "api-key", APP_NAME), "`flyte get api-key ci-bot`")
    apps = printed_apps(run, ctx)
    assert [a.get("clientId") for a in apps] == [APP_NAME], ctx.why(run, f"apps {apps!r}")
    assert not apps[0].get("clientSecret"), ctx.why(run, "Get returned a client secret")

    # The app, with nothing but the key (and the CA): its own identity.
    app_home = tmp_path / "app-home"
    run = ctx.ok(ctx.as_app(app_home, api_key), "the app's `flyte whoami`")
    app_info = json_object(run, ctx, "the app's whoami")
    claims = app_info.get("additionalClaims", {})
    assert app_info.get("subject") == APP_NAME, ctx.why(run, f"whoami subject {app_info.get('subject')!r}")
    assert claims.get("client_id") == APP_NAME, ctx.why(run, f"client_id claim {claims.get('client_id')!r}")
    assert claims.get("identity_type") == "app", ctx.why(run, f"identity_type {claims.get('identity_type')!r}")
    keyring = app_home / ".flyte" / "keyring.cfg"
    assert keyring.is_file() and f"[{HOST}]" in keyring.read_text(), ctx.why(
        run, f"the SDK cached no token in {keyring}, so the revocation check below would prove nothing"
    )

    # Delete, then the app is locked out: its cached token is revoked and it cannot get another.
    run = ctx.ok(ctx.as_person("delete", "api-key", APP_NAME, "--yes"), "`flyte delete api-key ci-bot --yes`")
    attempts = ((app_home, "with the token cached before the deletion"), (tmp_path / "app-home-2", "from scratch"))
    for home, which in attempts:
        run = ctx.as_app(home, api_key)
        what = f"the app's `flyte whoami` after `flyte delete api-key` ({which})"
        ctx.no_secret(run, what)
        assert run.returncode not in (0, None), ctx.why(run, f"{what}: expected a failure exit")
        assert f'"subject": "{APP_NAME}"' not in run.stdout, ctx.why(run, f"{what}: still answered as the app")
        assert AUTH_FAILURE.search(run.output), ctx.why(run, f"{what}: no authentication error in the output")
    assert "invalid_client" in run.output, ctx.why(run, "the token endpoint did not refuse the deleted app")

    run = ctx.ok(ctx.as_person("get", "api-key"), "`flyte get api-key` after the deletion")
    assert not re.search(rf"(?<![\w-]){re.escape(APP_NAME)}(?![\w-])", run.stdout), ctx.why(run, "ci-bot still listed")

    # The audit trail: who created and deleted the app, never its secret.
    text, rows = audit_rows(ctx)
    for kind in ("app.created", "app.deleted"):
        mine = [r for r in rows if r.get("kind") == kind and r.get("client_id") == APP_NAME]
        assert mine, f"no {kind} record for {APP_NAME}\n{text}"
        assert all(r.get("subject") == alice_subject for r in mine), f"{kind} not by alice ({alice_subject})\n{text}"
    assert secret not in text, f"the app's secret appears in the audit list\n{text}"
    assert secret not in server.log_path.read_text(errors="replace"), f"the app's secret is in {server.log_path}"

    # alice logged in once; every later command used the tokens cached in her keyring.
    results = ctx.person.wait_for_result()
    assert len(results) == 1 and results[0].endswith("RESULT: ok"), (
        f"one successful browser login expected, got {results!r}\n{ctx.person.log_text()}"
    )

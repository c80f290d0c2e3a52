"""The `flyte` 2.12.1 CLI (Connect protocol) against flyteauth over TLS with the test CA.

flyte 2 installs no auth interceptors for `insecure: true`, so this runs over TLS: the Connect client
trusts `admin.caCertFilePath`, while the token request goes through httpx, which only honours
`SSL_CERT_FILE` (research/flyte-clients.md §1.8, §3.6).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from flyteauth_harness import APP_CLIENT_ID, Server

CLI_TIMEOUT_SECONDS = 180
FLYTE_CLI = Path(sys.executable).with_name("flyte")


def write_flyte_config(server: Server, secret: str, workdir: Path) -> Path:
    secret_file = workdir / "client_secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    config = {
        "admin": {
            "endpoint": f"dns:///localhost:{server.port}",
            "insecure": False,
            "authType": "ClientSecret",
            "clientId": APP_CLIENT_ID,
            "clientSecretLocation": str(secret_file),
            "caCertFilePath": str(server.ca_file),
            "disableKeyring": True,
        },
    }
    path = workdir / "flyte-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_whoami(server: Server, secret: str, workdir: Path) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_flyte_config(server, secret, workdir)
    env = {
        k: v
        for k, v in os.environ.items()
        # Keep a developer's own Flyte settings out of the run.
        if not k.startswith(("FLYTE_", "UCTL_", "FLYTECTL_", "_U_"))
    }
    env.update(
        {
            "SSL_CERT_FILE": str(server.ca_file),
            "HOME": str(workdir),
            "NO_COLOR": "1",
            "TERM": "dumb",
            "COLUMNS": "400",
        }
    )
    assert FLYTE_CLI.is_file(), f"flyte CLI not found next to {sys.executable}"
    return subprocess.run(
        [str(FLYTE_CLI), "-c", str(config), "whoami"],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
    )


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def parse_user_info(stdout: str) -> dict:
    start, end = stdout.find("{"), stdout.rfind("}")
    assert start >= 0 and end > start, f"no JSON object in output:\n{stdout}"
    return json.loads(stdout[start : end + 1])


def test_whoami_with_client_credentials(tls_server: Server, tmp_path: Path) -> None:
    proc = run_whoami(tls_server, tls_server.app_secret, tmp_path / "ok")
    assert proc.returncode == 0, describe(proc)
    info = parse_user_info(proc.stdout)
    assert info.get("subject") == APP_CLIENT_ID, describe(proc)


def test_whoami_with_wrong_secret_fails(tls_server: Server, tmp_path: Path) -> None:
    proc = run_whoami(tls_server, tls_server.app_secret + "-wrong", tmp_path / "wrong")
    assert proc.returncode != 0, describe(proc)
    assert f'"subject": "{APP_CLIENT_ID}"' not in proc.stdout, describe(proc)
    # flyte reports the token endpoint's refusal (RFC 6749 invalid_client).
    assert "invalid_client" in proc.stdout + proc.stderr, describe(proc)

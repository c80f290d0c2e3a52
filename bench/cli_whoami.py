#!/usr/bin/env python3
"""`flyte whoami` with a cached token: the Rust `flyte` against the Python `flyte` 2.x SDK, side by side.

Both CLIs read one config file and one keyring item: the Rust `flyte login` signs alice in once (a scripted
person fills the real login page), then the rounds alternate Rust and Python `whoami` against the same server, so
both use the cached token and neither opens a browser ($BROWSER is set to a command that fails). Wall time comes
from a monotonic clock around each process; peak RSS from GNU time in three more runs of each.

Run inside a Secret Service session (the keyring both share), from the repository root:

    scripts/with-secret-service interop/python/.venv/bin/python bench/cli_whoami.py \
        --flyte-rs target/release/flyte --flyteauth target/release/flyteauth

Prints `RESULT <key> <value>` lines for scripts/bench. Everything listens on 127.0.0.1; the server is stopped at
the end; every child has a timeout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "interop" / "python"))

from flyteauth_harness import alice, start_embedded_server  # noqa: E402
from login_harness import FOREIGN_ENV_NAMES, FOREIGN_ENV_PREFIXES, ScriptedPerson  # noqa: E402

CHILD_TIMEOUT_SECONDS = 60
GNU_TIME = "/usr/bin/time"


def run_timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """(wall seconds, stdout) of one run; exits the benchmark if the run fails or hangs."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=CHILD_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{argv[0]} did not finish within {CHILD_TIMEOUT_SECONDS}s")
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed with {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}")
    return wall, proc.stdout.decode(errors="replace")


def peak_rss_mib(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """The peak RSS of one run, as GNU time reports it. A child forked from this Python process would count the
    parent's pages until its exec, so the measuring parent is GNU time, a small C program."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as out:
        subprocess.run([GNU_TIME, "-f", "%M", "-o", out.name, *argv], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=CHILD_TIMEOUT_SECONDS, check=True)
        return int(out.read().strip().splitlines()[-1]) / 1024.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flyte-rs", type=Path, default=ROOT / "target" / "release" / "flyte")
    parser.add_argument("--flyteauth", type=Path, default=ROOT / "target" / "release" / "flyteauth")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    args.flyte_rs, args.flyteauth = args.flyte_rs.resolve(), args.flyteauth.resolve()

    python_flyte = Path(sys.executable).with_name("flyte")
    for binary in (args.flyte_rs, args.flyteauth, python_flyte):
        if not binary.is_file():
            raise SystemExit(f"missing {binary}")
    if not Path(GNU_TIME).is_file():
        raise SystemExit(f"{GNU_TIME} is missing (apt-get install time): it measures the peak RSS")
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        raise SystemExit("no D-Bus session: run this under scripts/with-secret-service")
    os.environ["FLYTEAUTH_BIN"] = str(args.flyteauth)

    with tempfile.TemporaryDirectory(prefix="flyte-cli-bench-") as tmp:
        work = Path(tmp)
        user = alice()
        (work / "server").mkdir()
        server = start_embedded_server(work / "server", tls=True, users=[user])
        try:
            assert server.ca_file is not None
            config = work / "config.yaml"
            config.write_text(
                "admin:\n"
                f"  endpoint: dns:///localhost:{server.port}\n"
                "  authType: Pkce\n"
                f"  caCertFilePath: {server.ca_file}\n"
            )
            person = ScriptedPerson(workdir=work / "person", user=user, ca_file=server.ca_file)
            base = {k: v for k, v in os.environ.items()
                    if not k.startswith(FOREIGN_ENV_PREFIXES) and k not in FOREIGN_ENV_NAMES}
            base.update({"SSL_CERT_FILE": str(server.ca_file), "NO_COLOR": "1", "TERM": "dumb"})
            login_env = dict(base, **person.env())
            subprocess.run([str(args.flyte_rs), "-c", str(config), "login"], env=login_env, cwd=work,
                           stdin=subprocess.DEVNULL, check=True, timeout=120, capture_output=True)
            # From here on a browser must not be needed: a login attempt fails the run.
            cached_env = dict(base, BROWSER="false")
            rust = [str(args.flyte_rs), "-c", str(config), "whoami", "-o", "json"]
            python = [str(python_flyte), "-c", str(config), "whoami"]
            for argv in (rust, python):  # warm-up, and proof both see alice without a login
                _, out = run_timed(argv, cached_env, work)
                if user.name not in out:
                    raise SystemExit(f"{argv[0]} whoami does not show {user.name}: {out[:500]}")
            walls: dict[str, list[float]] = {"rust": [], "python": []}
            for _ in range(args.rounds):
                for name, argv in (("rust", rust), ("python", python)):
                    walls[name].append(run_timed(argv, cached_env, work)[0])
            rss = {name: max(peak_rss_mib(argv, cached_env, work) for _ in range(3))
                   for name, argv in (("rust", rust), ("python", python))}
        finally:
            server.stop()

    rust_ms = statistics.median(walls["rust"]) * 1000
    python_ms = statistics.median(walls["python"]) * 1000
    rust_rss, python_rss = rss["rust"], rss["python"]
    print(f"rounds: {args.rounds} (interleaved); median wall: rust {rust_ms:.1f} ms, python {python_ms:.1f} ms")
    ratio = python_ms / rust_ms
    print(f"RESULT cli.rounds {args.rounds}")
    print(f"RESULT cli.rust_ms {rust_ms:.1f}")
    print(f"RESULT cli.python_ms {python_ms:.1f}")
    print(f"RESULT cli.ratio {ratio:.1f}")
    print(f"RESULT cli.rust_rss_mb {rust_rss:.1f}")
    print(f"RESULT cli.python_rss_mb {python_rss:.1f}")
    print(f"RESULT cli.verdict {'PASS' if ratio >= 20 else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

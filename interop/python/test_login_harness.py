"""The login harness on its own: the streaming SDK runner (no flyteauth or SDK needed)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from login_harness import StreamedSdk, strip_ansi


def streamed(tmp_path: Path, script: str, timeout: float) -> StreamedSdk:
    dummy = SimpleNamespace(log_text=lambda: "", log_path=tmp_path / "none")
    return StreamedSdk(
        [sys.executable, "-u", "-c", script],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        timeout=timeout,
        person=dummy,  # type: ignore[arg-type]
        server=dummy,  # type: ignore[arg-type]
    )


def test_reads_a_prompt_on_stderr_while_the_process_runs(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "sys.stdout.write('x' * 300000 + '\\n')\n"  # more than a pipe holds: must be read concurrently
        "sys.stderr.write('To Authenticate, navigate in a browser to the following URL: "
        "\\x1b[34mhttp://h/activate?user_code=BCDF-GHJK\\x1b[0m\\n')\n"
        "sys.stdin.close()\n"
        "time.sleep(1.0)\n"
        "print('done')\n"
    )
    with streamed(tmp_path, script, timeout=20) as sdk:
        started = time.monotonic()
        match = sdk.wait_for(re.compile(r"following URL:\s*(\S+)"), timeout=10)
        assert match is not None, sdk.output()
        assert match.group(1) == "http://h/activate?user_code=BCDF-GHJK"
        assert sdk.proc.poll() is None, "the prompt was seen while the process still ran"
        assert time.monotonic() - started < 5
        run = sdk.finish()
    assert run.returncode == 0 and run.stdout.endswith("done\n"), run.stderr


def test_hard_timeout_kills(tmp_path: Path) -> None:
    with streamed(tmp_path, "import time; print('waiting', flush=True); time.sleep(60)", timeout=2) as sdk:
        assert sdk.wait_for(re.compile("never"), timeout=30) is None
        run = sdk.finish()
    assert run.returncode is None and "killed after 2s" in run.describe()
    assert "waiting" in run.stdout


def test_strip_ansi() -> None:
    assert strip_ansi("\x1b[4m\x1b[34mu\x1b[0m \x1b]8;id=1;http://x\x1b\\t\x1b]8;;\x1b\\") == "u t"

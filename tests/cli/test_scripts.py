"""The set-up scripts say what they are doing: stage headings, and progress during long steps."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from cli._support import REPO

PROGRESS = REPO / "scripts" / "_progress.sh"


def _bash(script: str, *, interval: str = "1") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; . {PROGRESS}; {script}"],
        env={**os.environ, "AGENTWATCH_PROGRESS_INTERVAL": interval},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_long_step_says_it_is_still_running_and_how_long_it_took() -> None:
    result = _bash('with_progress "building things" bash -c "sleep 2.5; echo built"')
    assert result.returncode == 0
    assert result.stdout == "built\n"  # the step's own output is untouched
    lines = result.stderr.splitlines()
    assert lines[:2] == [
        "    building things: still running (1 s)",
        "    building things: still running (2 s)",
    ]
    assert lines[-1].startswith("    building things: done in ")


def test_a_failing_step_fails_the_script_and_leaves_nothing_running(tmp_path: Path) -> None:
    marker = tmp_path / "after"
    result = _bash(f'with_progress "step" bash -c "exit 3"; touch {marker}', interval="7")
    assert result.returncode == 3
    assert not marker.exists()  # set -e stopped the script
    assert "    step: FAILED (exit 3) after 0 s" in result.stderr
    time.sleep(0.2)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert "sleep 7" not in ps.splitlines()  # the ticker and its sleep are gone


def test_stages_are_named_with_the_time_the_previous_one_took() -> None:
    result = _bash('stage "first"; stage "second"')
    assert result.stderr.splitlines() == ["==> first", "    (first: 0 s)", "==> second"]


def test_the_scripts_announce_their_stages() -> None:
    """demo.sh and test.sh name each stage; each compatibility run names the SDK versions it tests."""
    demo = (REPO / "scripts" / "demo.sh").read_text(encoding="utf-8")
    assert 'stage "Python environment (.venv)"' in demo and 'stage "agentwatch demo${*:+ $*}"' in demo
    test = (REPO / "scripts" / "test.sh").read_text(encoding="utf-8")
    for name in ("Python environment", "observability stack", "lint", "types", "tests (pytest)"):
        assert f'stage "{name}' in test, name
    compat_runs = [line for line in test.splitlines() if line.startswith("compat ")]
    assert len(compat_runs) >= 3
    assert 'stage "SDK compatibility: $title (${pins[*]})"' in test
    assert "testing " in test  # the versions the environment really holds

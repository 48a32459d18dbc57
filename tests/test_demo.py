"""`mlpoc demo` as a user runs it: the whole loop on the digits, under the deployed policies.

In a file of its own so the test runners can run it beside the `local up` tests."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import ARTIFACTS, mlpoc

pytestmark = pytest.mark.integration


def test_the_demo_runs_the_whole_loop_and_summarizes(tmp_path: Path, local_assembly: Path) -> None:
    # the session's synthesis (`make demo` synthesizes first: benchmarks/demo_time.py times both)
    started = time.monotonic()
    done = mlpoc("demo", "--assembly", str(local_assembly), state_dir=tmp_path, timeout=280)
    seconds = time.monotonic() - started
    (ARTIFACTS / "demo-output.txt").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    # the three jobs, the two versions with metrics, the realtime answers, the summary line
    assert out.count("SUCCEEDED") >= 3
    assert "397 predictions" in out
    assert "Model versions" in out
    assert "│ v1 " in out
    assert "│ v2 " in out
    assert "Corrections fed back: 5; v2 promoted" in out
    assert "Predictions stored: 397" in out
    assert "Realtime API" in out
    # the monitor job ran under the predict worker's role: v1's 397-row sample judged against
    # its training reference, and the five corrections as v1's realized accuracy
    assert "demo-monitor-" in out and "397 recent rows; no drift; 0 alert(s)" in out
    assert "realized (reviewed)" in out and "(5)" in out
    assert "Is it still good? The plots" in out and "/ui/models/digits" in out
    # it cleaned up after itself
    assert not (tmp_path / "local.json").exists()
    sys.stderr.write(f"\nmlpoc demo took {seconds:.1f} s (goal: 90 s)\n")

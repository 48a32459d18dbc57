"""How long `mlpoc demo` takes, against the 90-second goal and against synthesis alone.

    make bench        (or: .venv/bin/python benchmarks/demo_time.py)

Runs the demo as a user would (`python -m mlpoc.cli demo`, a fresh state directory), and, as the
baseline measured in the same run, the synthesis it starts with (`python -m mlpoc.local.synth`).
Prints both, the ratio of the demo to its synthesis, and the share of the 90-s budget used; exits
1 when the demo fails or takes longer than the budget.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlpoc.paths import CHECKOUT

ROOT = CHECKOUT
BUDGET_SECONDS = 90.0


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)  # noqa: S603
    return time.perf_counter() - started, done


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        synth_s, synth = timed(
            [sys.executable, "-m", "mlpoc.local.synth", str(ROOT), str(Path(tmp) / "cdk.out")]
        )
        demo_s, demo = timed(
            [sys.executable, "-m", "mlpoc.cli", "demo", "--state-dir", str(Path(tmp) / "state")]
        )
    if synth.returncode != 0 or demo.returncode != 0:
        print((synth.stderr + demo.stdout + demo.stderr)[-3000:])
        print("demo: FAILED")
        return 1
    print(f"synthesis alone (baseline): {synth_s:6.1f} s")
    print(f"mlpoc demo, end to end:     {demo_s:6.1f} s  ({demo_s / synth_s:.1f}x the synthesis)")
    print(f"share of the {BUDGET_SECONDS:.0f}-s budget:    {demo_s / BUDGET_SECONDS:6.0%}")
    return 0 if demo_s <= BUDGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())

"""The state file of a running local mode (``<state dir>/local.json``), and stopping it.

Separate from the supervisor so that ``mlpoc local status|down`` and the operator commands
read it without importing moto or the CDK.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlpoc.errors import LocalError
from mlpoc.local.safety import FAKE, Credentials, check_endpoint

STATE_FILE = "local.json"


@dataclass
class ProcessState:
    name: str
    kind: str
    pid: int
    log: str
    restarts: int = 0


@dataclass
class LocalState:
    pid: int
    project: str
    endpoint: str
    region: str
    api_url: str
    api_key: str
    outputs: dict[str, str]
    processes: list[ProcessState]
    started_at: float
    left_out: list[dict[str, str]] = field(default_factory=list)
    wired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    env_left_out: dict[str, dict[str, str]] = field(default_factory=dict)
    # IAM enforcement: on unless `local up --no-iam`; the operator's keys (moto issued them);
    # each process's role; what of the roles' policies could not be carried over; denials
    iam: bool = False
    operator: dict[str, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    iam_left_out: dict[str, list[str]] = field(default_factory=dict)
    denials: list[dict[str, Any]] = field(default_factory=list)
    # the service template's schedules (local mode sends their jobs when due)
    schedules: list[dict[str, Any]] = field(default_factory=list)

    def credentials(self) -> Credentials:
        """The operator's credentials (the fixed fake pair when IAM is not enforced)."""
        if not self.operator:
            return FAKE
        return Credentials(self.operator["access_key_id"], self.operator["secret_access_key"])

    def save(self, state_dir: Path) -> None:
        path = state_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        # private from the first byte: it holds the (local) API key
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, state_dir: Path) -> LocalState:
        path = state_dir / STATE_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise LocalError(
                f"local mode is not running (no {path}); start it with `mlpoc local up`"
            ) from None
        except ValueError as error:
            raise LocalError(f"{path} is not valid JSON ({error}); delete it") from None
        raw["processes"] = [ProcessState(**p) for p in raw["processes"]]
        state = cls(**raw)
        check_endpoint(state.endpoint)  # an edited state file cannot point local mode at AWS
        return state


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_ours(pid: int) -> bool:
    """A live process that runs mlpoc code (a pid from the state file may have been reused)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid_alive(pid)  # no /proc (macOS): trust the pid
    return b"mlpoc" in command


def down(state_dir: Path, *, timeout: float = 30.0) -> LocalState:
    """Stop the local mode that runs from ``state_dir`` (from another terminal)."""
    state = LocalState.load(state_dir)
    clean = False
    if pid_alive(state.pid):
        os.kill(state.pid, signal.SIGTERM)  # local mode stops its processes, then itself
        deadline = time.monotonic() + timeout
        while pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        clean = not pid_alive(state.pid)
    if not clean:  # killed or stuck: its processes may be left over
        for pid in (state.pid, *(entry.pid for entry in state.processes)):
            if pid_alive(pid) and is_ours(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return state

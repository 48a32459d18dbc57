"""Local mode's commands: `mlpoc local up|down|status` and `mlpoc demo`."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlpoc.cli import render
from mlpoc.cli.common import (
    DEFAULT_STATE_DIR,
    Assembly,
    StateDir,
    app,
    console,
    deployment,
    fail,
    friendly,
    local_app,
)
from mlpoc.errors import MlpocError
from mlpoc.local.safety import check_endpoint
from mlpoc.local.state import LocalState, down, pid_alive

if TYPE_CHECKING:
    from mlpoc.local.supervisor import LocalMode


# -- local mode ------------------------------------------------------------------------------
def _start(
    state_dir: Path,
    project_dir: Path | None,
    endpoint_check: str | None,
    *,
    iam: bool = True,
    assembly: Path | None = None,
) -> LocalMode:
    if endpoint_check is not None:
        check_endpoint(endpoint_check)
    # moto and the CDK load only for local mode: `--target aws` needs just the cli extra
    from mlpoc.local.supervisor import LocalMode  # noqa: PLC0415

    mode = LocalMode(
        state_dir,
        project_path=project_dir,
        progress=lambda m: console.print(f"[dim]·[/] {m}"),
        iam=iam,
        assembly=assembly,
    )
    mode.start()
    return mode


@local_app.command("up")
def local_up(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    project_dir: Annotated[Path | None, typer.Option(help="The mlpoc checkout (cdk.json).")] = None,
    endpoint: Annotated[
        str | None, typer.Option(hidden=True, help="Only for the safety test: an endpoint to vet.")
    ] = None,
    iam: Annotated[
        bool,
        typer.Option(
            help="Run each process as its own role from the service template, with moto's IAM "
            "access control on (--no-iam: everything allowed, as before)."
        ),
    ] = True,
    assembly: Assembly = None,
) -> None:
    """Start everything and run until Ctrl-C (or `mlpoc local down`)."""
    with friendly():
        mode = _start(state_dir, project_dir, endpoint, iam=iam, assembly=assembly)
    assert mode.state is not None  # noqa: S101 - start() sets it
    render.print_up(mode.state, state_dir)
    console.print("[green]local stack is up[/]; Ctrl-C or `mlpoc local down` stops it")
    try:
        mode.wait()
    finally:
        console.print("stopping…")
        mode.stop()
        console.print("stopped")


@local_app.command("down")
def local_down(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Stop the local stack started by `mlpoc local up` (from any terminal)."""
    with friendly():
        state = down(state_dir)
    console.print(f"stopped local mode (pid {state.pid}); its data was in memory and is gone")


@local_app.command("status")
def local_status(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Is local mode running, and are its processes alive?"""
    with friendly():
        state = LocalState.load(state_dir)
    if not pid_alive(state.pid):
        raise fail(
            f"local mode (pid {state.pid}) is not running any more; `mlpoc local down` cleans up"
        )
    table = Table("process", "pid", "alive", "restarts", "log")
    table.add_row("local mode + moto", str(state.pid), "yes", "-", state.endpoint)
    for p in state.processes:
        table.add_row(
            p.name, str(p.pid), "yes" if pid_alive(p.pid) else "[red]no[/]", str(p.restarts), p.log
        )
    console.print(table)
    up = dt.timedelta(seconds=int(time.time() - state.started_at))
    console.print(f"API {state.api_url} · up {up}")
    if not state.iam:
        console.print("IAM: not enforced (started with --no-iam)")
        return
    console.print(f"IAM: enforced; {len(state.denials)} request(s) denied")
    if state.denials:
        render.print_denials(state.denials)


@app.command()
def demo(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    keep: Annotated[bool, typer.Option(help="Leave the stack running afterwards.")] = False,
    assembly: Assembly = None,
) -> None:
    """Bring the local stack up and run the whole loop on scikit-learn's digits."""
    from mlpoc.cli import demo as demo_flow  # noqa: PLC0415 - scikit-learn's digits

    started = time.monotonic()
    with friendly():
        mode = _start(state_dir, None, None, assembly=assembly)
    try:
        assert mode.state is not None  # noqa: S101
        dep = deployment("local", state_dir, mode.state.project, None)
        api = demo_flow.Api(mode.state.api_url, mode.state.api_key)
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("[dim]{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            tasks: dict[str, Any] = {}

            def step(name: str, status: str) -> None:
                for other, task in tasks.items():
                    if other != name:
                        progress.update(task, completed=1, total=1)
                if name not in tasks:
                    tasks[name] = progress.add_task(name, total=None, status=status)
                progress.update(tasks[name], status=status)

            try:
                result = demo_flow.run(dep, api, step)
            except MlpocError as error:
                denials = _denials(mode)
                if denials:
                    render.print_denials(denials)
                raise fail(f"the demo stopped: {error} (logs: {state_dir / 'logs'})") from None
            for task in tasks.values():
                progress.update(task, completed=1, total=1)
        render.print_demo(result, mode.state, time.monotonic() - started)
        denials = _denials(mode)
        if denials:
            render.print_denials(denials)
            raise fail(f"{len(denials)} request(s) were denied by IAM during the demo")
        if mode.state.iam:
            console.print(
                f"IAM enforced: {len(mode.state.roles)} processes ran as their own roles from "
                "the service template; nothing was denied"
            )
        if keep:
            render.print_up(mode.state, state_dir)
            console.print("[green]the stack stays up[/]; Ctrl-C or `mlpoc local down` stops it")
            mode.wait()
    finally:
        mode.stop()


def _denials(mode: LocalMode) -> list[dict[str, Any]]:
    mode.record_denials()
    return mode.state.denials if mode.state is not None else []

"""``mlpoc``: run the PoC locally, run the demo, and operate the stacks (local or AWS)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlpoc import layout
from mlpoc.cli import ops
from mlpoc.cli.target import Deployment, TargetError, TargetName, resolve
from mlpoc.cost import CostError
from mlpoc.local.safety import LocalModeRefused, check_endpoint
from mlpoc.local.state import LocalError, LocalState, down, pid_alive
from mlpoc.local.synth import CHECKOUT, SynthError
from mlpoc.registry import RegistryError

if TYPE_CHECKING:
    from mlpoc.cli.demo import DemoResult
    from mlpoc.cli.preflight import Check
    from mlpoc.local.supervisor import LocalMode

app = typer.Typer(
    name="mlpoc",
    help="Run an ML proof of concept as a service: locally on moto, or on AWS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
local_app = typer.Typer(help="The whole stack on this machine (moto, workers, functions, API).")
dlq_app = typer.Typer(help="Dead-letter queues: what failed for good, and a redrive after a fix.")
app.add_typer(local_app, name="local")
app.add_typer(dlq_app, name="dlq")
console = Console()
errors = Console(stderr=True)

DEFAULT_STATE_DIR = CHECKOUT / ".mlpoc"
StateDir = Annotated[
    Path,
    typer.Option(envvar="MLPOC_STATE_DIR", help="Where local mode keeps its state file and logs."),
]
Target = Annotated[
    str,
    typer.Option("--target", "-t", envvar="MLPOC_TARGET", help="local (the default) or aws."),
]
Project = Annotated[
    str, typer.Option(envvar="MLPOC_PROJECT", help="The project name (cdk.json mlpoc:project).")
]
Region = Annotated[str | None, typer.Option(help="AWS region (default: your AWS config).")]


def _known_queue(value: str) -> str:
    if value not in ops.QUEUES:
        raise typer.BadParameter(f"must be one of {', '.join(ops.QUEUES)}")
    return value


Queue = Annotated[
    str,
    typer.Option("--queue", "-q", help="train, predict or events.", callback=_known_queue),
]

# a check or step: passed, failed, or does not apply to this target
MARKS = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[dim]-[/]"}
EXPECTED = (TargetError, LocalError, LocalModeRefused, SynthError, RegistryError, CostError)


def fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@contextmanager
def friendly() -> Iterator[None]:
    """Known failures become one red line and exit 1, not a traceback."""
    try:
        yield
    except EXPECTED as error:
        raise fail(str(error)) from None


def deployment(target: str, state_dir: Path, project: str, region: str | None) -> Deployment:
    if target not in ("local", "aws"):
        raise fail(f"--target must be local or aws, not {target!r}", 2)
    name: TargetName = "local" if target == "local" else "aws"
    return resolve(name, state_dir=state_dir, project=project, region=region)


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


def _print_up(state: LocalState, state_dir: Path) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("API", state.api_url)
    table.add_row("API key", state.api_key)
    table.add_row("Review page", f"{state.api_url}/ui/annotate/digits")
    table.add_row("Models, jobs", f"{state.api_url}/ui/models/digits   {state.api_url}/ui/jobs")
    table.add_row(
        "AWS endpoint",
        f"{state.endpoint}  (moto; "
        + (
            "IAM enforced: `mlpoc outputs --env` for the operator's keys)"
            if state.iam
            else "no IAM)"
        ),
    )
    table.add_row(
        "Upload here",
        f"s3://{state.outputs['DataBucketName']}/{layout.dataset_key('<model>', '<file>.csv')}",
    )
    table.add_row("Logs", str(state_dir / "logs"))
    console.print(table)
    kinds = Counter(r["type"] for r in state.left_out)
    left = ", ".join(f"{kind} x{n}" for kind, n in sorted(kinds.items()))
    console.print(
        f"[dim]left out of the local stack (not needed or not possible in moto): {left}[/]"
    )
    for line in state.wired:
        console.print(f"[dim]wired locally: {line}[/]")
    for name, variables in state.env_left_out.items():
        console.print(f"[dim]{name}: not set locally: {', '.join(variables)} (AWS only)[/]")
    for role, lines in state.iam_left_out.items():
        for line in lines:
            console.print(f"[dim]role {role}, not enforced locally: {line}[/]")


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
    assembly: Annotated[
        Path | None,
        typer.Option(help="A synthesized cdk.out to run (default: synthesize the app now)."),
    ] = None,
) -> None:
    """Start everything and run until Ctrl-C (or `mlpoc local down`)."""
    with friendly():
        mode = _start(state_dir, project_dir, endpoint, iam=iam, assembly=assembly)
    assert mode.state is not None  # noqa: S101 - start() sets it
    _print_up(mode.state, state_dir)
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
        _print_denials(state.denials)


def _print_denials(denials: list[dict[str, Any]]) -> None:
    """moto refused these: each names the role (its logical id in the service template), the
    action and the resource, so the missing grant in stacks/ can be found."""
    table = Table("role (service template)", "process", "action", "resource", title="Access denied")
    for denial in denials[-20:]:
        table.add_row(denial["role"], denial["session"], denial["action"], denial["resource"])
    errors.print(table)
    errors.print(
        "[red]A role lacks a grant the code needs (or the code reached past its layout). The "
        "grants are in stacks/constructs/access.py; the layout in containers/mlpoc/layout.py.[/]"
    )


@app.command()
def demo(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    keep: Annotated[bool, typer.Option(help="Leave the stack running afterwards.")] = False,
) -> None:
    """Bring the local stack up and run the whole loop on scikit-learn's digits."""
    from mlpoc.cli import demo as demo_flow  # noqa: PLC0415 - scikit-learn's digits

    started = time.monotonic()
    with friendly():
        mode = _start(state_dir, None, None)
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
            except (demo_flow.DemoError, *EXPECTED) as error:
                denials = _denials(mode)
                if denials:
                    _print_denials(denials)
                raise fail(f"the demo stopped: {error} (logs: {state_dir / 'logs'})") from None
            for task in tasks.values():
                progress.update(task, completed=1, total=1)
        _print_demo(result, mode.state, time.monotonic() - started)
        denials = _denials(mode)
        if denials:
            _print_denials(denials)
            raise fail(f"{len(denials)} request(s) were denied by IAM during the demo")
        if mode.state.iam:
            console.print(
                f"IAM enforced: {len(mode.state.roles)} processes ran as their own roles from "
                "the service template; nothing was denied"
            )
        if keep:
            _print_up(mode.state, state_dir)
            console.print("[green]the stack stays up[/]; Ctrl-C or `mlpoc local down` stops it")
            mode.wait()
    finally:
        mode.stop()


def _denials(mode: LocalMode) -> list[dict[str, Any]]:
    mode.record_denials()
    return mode.state.denials if mode.state is not None else []


def _print_demo(result: DemoResult, state: LocalState, seconds: float) -> None:
    jobs = Table("job", "type", "status", "ran (s)", "outcome", title="Jobs")
    for record in result.jobs:
        took = ops.duration(record)
        outcome = record.get("result", {})
        detail = (
            f"v{outcome.get('model_version')} accuracy "
            f"{outcome.get('metrics', {}).get('accuracy', 0):.3f}"
            if record["type"] == "train"
            else f"{outcome.get('rows', 0)} predictions, {outcome.get('for_review', 0)} for review"
        )
        jobs.add_row(
            str(record["job_id"]),
            record["type"],
            record["status"],
            f"{took:.1f}" if took else "-",
            detail,
        )
    console.print(jobs)
    console.print(_models_table(result.summary))
    realtime = Table(
        "truth",
        "predicted",
        "confidence",
        title=f"Realtime API ({result.realtime_ms:.0f} ms for {len(result.realtime)} rows)",
    )
    for p in result.realtime:
        realtime.add_row(p["truth"], p["label"], f"{p['confidence']:.3f}")
    console.print(realtime)
    promoted_by = (
        "the worker (better held-out accuracy) and confirmed through the API"
        if result.auto_promoted
        else "the API"
    )
    console.print(
        f"Corrections fed back: {len(result.corrections)}; "
        f"v{result.promoted} promoted by {promoted_by}"
    )
    console.print(
        f"Predictions stored: {result.predictions_stored}   API: {state.api_url}   "
        f"demo took {seconds:.0f} s"
    )


def _models_table(summaries: list[ops.ModelSummary]) -> Table:
    table = Table(
        "model",
        "version",
        "accuracy",
        "macro F1",
        "train rows",
        "dataset",
        "live",
        title="Model versions",
    )
    for summary in summaries:
        live = summary.pointer.promoted if summary.pointer else None
        for v in summary.versions:
            table.add_row(
                summary.model, f"v{v.version}", f"{v.metrics.get('accuracy', 0):.3f}",
                f"{v.metrics.get('macro_f1', 0):.3f}", str(v.extra.get("train_rows", "")),
                v.dataset.rsplit("/", 1)[-1], "[green]●[/]" if v.version == live else "",
            )  # fmt: skip
    return table


# -- operator commands -----------------------------------------------------------------------
def _params(values: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise fail(f"--param takes key=value, got {item!r}", 2)
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def _submit_and_wait(dep: Deployment, job_type: str, wait: bool, **kwargs: Any) -> None:
    job = ops.submit(dep, job_type="train" if job_type == "train" else "predict", **kwargs)
    console.print(f"queued {job.type} job [bold]{job.job_id}[/] for {job.model} on {job.dataset}")
    if wait:
        with console.status(f"waiting for {job.job_id}"):
            record = ops.wait_for(dep, [job.job_id], timeout=3600)[job.job_id]
        colour = "green" if record["status"] == "SUCCEEDED" else "red"
        console.print(
            f"[{colour}]{record['status']}[/] "
            + json.dumps(record.get("result") or record.get("reason"))
        )
        if record["status"] != "SUCCEEDED":
            raise typer.Exit(1)


@app.command()
def train(
    model: Annotated[str, typer.Argument(help="Model name (lowercase, e.g. digits).")],
    dataset: Annotated[
        str, typer.Argument(help="s3:// URI in the data bucket, or a local CSV to upload.")
    ],
    param: Annotated[list[str], typer.Option(help="Job parameter key=value (repeatable).")] = [],  # noqa: B006
    job_id: Annotated[
        str | None, typer.Option(help="Your own job id (default: generated).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the job to finish.")] = False,
    target: Target = "local",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    project: Project = "mlpoc",
    region: Region = None,
) -> None:
    """Queue a training job (CSV with a `label` column)."""
    with friendly():
        dep = deployment(target, state_dir, project, region)
        _submit_and_wait(
            dep, "train", wait, model=model, dataset=dataset, params=_params(param), job_id=job_id
        )


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="Model name.")],
    dataset: Annotated[
        str, typer.Argument(help="s3:// URI in the data bucket, or a local CSV to upload.")
    ],
    version: Annotated[
        str, typer.Option(help="current (the promoted one) or a version number.")
    ] = "current",
    job_id: Annotated[
        str | None, typer.Option(help="Your own job id (default: generated).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the job to finish.")] = False,
    target: Target = "local",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    project: Project = "mlpoc",
    region: Region = None,
) -> None:
    """Queue a prediction job (CSV with an `id` column and the model's features)."""
    with friendly():
        dep = deployment(target, state_dir, project, region)
        _submit_and_wait(
            dep, "predict", wait, model=model, dataset=dataset, version=version, job_id=job_id
        )


def _jobs_table(records: list[dict[str, Any]]) -> Table:
    table = Table(
        "job", "type", "model", "status", "attempts", "seconds", "created", "result / reason"
    )
    colours = {"SUCCEEDED": "green", "FAILED": "red", "RUNNING": "yellow", "RETRYABLE": "yellow"}
    for r in records:
        took = ops.duration(r)
        created = dt.datetime.fromtimestamp(float(r.get("created_at", 0)), dt.UTC).strftime(
            "%H:%M:%S"
        )
        detail = r.get("reason") or json.dumps(r.get("result", ""))
        status = str(r.get("status", "?"))
        table.add_row(
            str(r["job_id"]), str(r.get("type", "")), str(r.get("model", "")),
            f"[{colours.get(status, 'white')}]{status}[/]", str(r.get("attempts", 0)),
            f"{took:.1f}" if took else "", created, str(detail)[:80],
        )  # fmt: skip
    return table


@app.command("jobs")
def jobs_command(
    limit: Annotated[int, typer.Option(help="How many of the newest jobs.")] = 20,
    watch: Annotated[bool, typer.Option(help="Refresh every 2 s until Ctrl-C.")] = False,
    target: Target = "local",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    project: Project = "mlpoc",
    region: Region = None,
) -> None:
    """The jobs ledger, newest first."""
    with friendly():
        ledger = deployment(target, state_dir, project, region).ledger()
        if not watch:
            console.print(_jobs_table(ledger.recent(limit)))
            return
        with Live(_jobs_table(ledger.recent(limit)), console=console, refresh_per_second=1) as live:
            try:
                while True:
                    time.sleep(2)
                    live.update(_jobs_table(ledger.recent(limit)))
            except KeyboardInterrupt:
                pass


@app.command("models")
def models_command(
    model: Annotated[
        str | None, typer.Argument(help="One model's versions (default: all).")
    ] = None,
    target: Target = "local",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    project: Project = "mlpoc",
    region: Region = None,
) -> None:
    """Model versions with their held-out metrics; ● marks the live one."""
    with friendly():
        dep = deployment(target, state_dir, project, region)
        console.print(_models_table(ops.models(dep, model)))


@app.command()
def promote(
    model: Annotated[str, typer.Argument()],
    version: Annotated[int, typer.Argument(min=1)],
    target: Target = "local",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    project: Project = "mlpoc",
    region: Region = None,
) -> None:
    """Make a version the live one (the API swaps it in within its poll interval)."""
    with friendly():
        pointer = deployment(target, state_dir, project, region).registry().promote(model, version)
    console.print(
        f"{model}: v{pointer.promoted} is live "
        f"(before: {', '.join(f'v{v}' for v in pointer.history) or 'none'})"
    )


@app.command()
def rollback(
    model: Annotated[str, typer.Argument()],
    target: Target = "local",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    project: Project = "mlpoc",
    region: Region = None,
) -> None:
    """Re-promote the version that was live before the current one."""
    with friendly():
        pointer = deployment(target, state_dir, project, region).registry().rollback(model)
    console.print(f"{model}: rolled back, v{pointer.promoted} is live")


@dlq_app.command("show")
def dlq_show(
    queue: Queue = "train",
    target: Target = "local",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    project: Project = "mlpoc",
    region: Region = None,
) -> None:
    """What waits in a dead-letter queue, and why (peeks at up to 10 messages)."""
    with friendly():
        count, letters = ops.dlq_show(deployment(target, state_dir, project, region), queue)
    table = Table("message", "job", "receives", "reason", title=f"{queue} DLQ: {count} message(s)")
    for letter in letters:
        table.add_row(
            letter.message_id[:12], letter.job_id or "-", str(letter.receives), letter.reason[:100]
        )
    console.print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    queue: Queue = "train",
    target: Target = "local",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    project: Project = "mlpoc",
    region: Region = None,
) -> None:
    """Send every dead letter back to its queue (after you fixed the cause)."""
    with friendly():
        moved = ops.dlq_redrive(deployment(target, state_dir, project, region), queue)
    console.print(
        f"redrove {len(moved)} message(s) to the {queue} queue: "
        + ", ".join(m.job_id or m.message_id for m in moved)
    )


@app.command()
def outputs(
    target: Target = "local",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    project: Project = "mlpoc",
    region: Region = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_env: Annotated[
        bool, typer.Option("--env", help="Print `export` lines for the runtime's variables.")
    ] = False,
) -> None:
    """The stack outputs the CLI found (bucket, table and queue names, API URL)."""
    with friendly():
        dep = deployment(target, state_dir, project, region)
    if as_env:
        lines = [f"export {k}={shlex.quote(v)}" for k, v in ops.environment(dep).items()]
        if dep.endpoint is not None:  # nothing of the shell's own AWS identity may mix in
            lines.insert(0, "unset AWS_PROFILE AWS_SESSION_TOKEN")
        typer.echo("\n".join(lines))
        return
    shown = {k: v for k, v in dep.outputs.items() if not k.startswith("ExportsOutput")}
    if dep.endpoint is not None and dep.local_credentials is not None:
        # local: what a plain AWS SDK or CLI needs to join in (the operator's identity)
        shown.update(
            AwsEndpointUrl=dep.endpoint,
            AwsAccessKeyId=dep.local_credentials.access_key_id,
            AwsSecretAccessKey=dep.local_credentials.secret_access_key,
            ApiKey=dep.api_key(),
        )
    if as_json:
        typer.echo(json.dumps(shown, indent=2))
        return
    table = Table("output", "value", title=f"{dep.name} ({dep.region})")
    for key in sorted(shown):
        table.add_row(key, shown[key])
    console.print(table)


@app.command()
def smoke(
    target: Target = "local",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    project: Project = "mlpoc",
    region: Region = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds each job may take (a worker scales from 0 on AWS).")
    ] = 600.0,
) -> None:
    """After a deploy: train, predict, the ledger, the API (with and without the key, and around
    CloudFront), the alert path; then delete what it made. Exit 1 on any failure."""
    from mlpoc.cli.smoke import run_smoke  # noqa: PLC0415

    with friendly():
        dep = deployment(target, state_dir, project, region)
    steps = run_smoke(dep, timeout=timeout, progress=lambda m: console.print(f"[dim]·[/] {m}"))
    table = Table("step", "", "what happened", title=f"smoke test ({dep.name})")
    for step in steps:
        table.add_row(step.name, MARKS[step.ok], step.detail)
    console.print(table)
    failed = [s.name for s in steps if s.ok is False]
    if failed:
        raise fail(f"smoke test failed: {', '.join(failed)}")
    console.print("[green]the deployed loop works[/]")


@app.command()
def preflight(
    target: Target = "local",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    project: Project = "mlpoc",
    region: Region = None,
    assembly: Annotated[
        Path | None,
        typer.Option(help="A synthesized cdk.out to read (default: synthesize the app now)."),
    ] = None,
    refresh_platform: Annotated[
        bool,
        typer.Option(help="Resolve the Beanstalk platform again (for a new environment)."),
    ] = False,
) -> None:
    """Before `cdk deploy`: credentials, bootstrap, Docker, platform, stacks, roles, idle cost."""
    with friendly():
        found = _preflight(target, state_dir, project, region, assembly, refresh_platform)
    for check in found:
        console.print(f"{MARKS[check.ok]} {check.name:<22} {check.detail}")
        if check.ok is False and check.fix:
            console.print(f"  [red]→ {check.fix}[/]")
    failed = [c for c in found if c.ok is False]
    if failed:
        raise fail(f"{len(failed)} check(s) failed: fix them before `make deploy`")
    console.print("[green]ready[/]" + ("" if target == "local" else ": `make deploy`"))


def _preflight(
    target: str,
    state_dir: Path,
    project: str,
    region: str | None,
    assembly: Path | None,
    refresh_platform: bool,
) -> list[Check]:
    import boto3  # noqa: PLC0415

    from mlpoc.cli.preflight import Preflight  # noqa: PLC0415
    from mlpoc.local.safety import local_session  # noqa: PLC0415
    from mlpoc.local.synth import load_context, project_dir  # noqa: PLC0415
    from mlpoc.local.template import Assembly  # noqa: PLC0415

    root = project_dir(None)
    context = load_context(root)
    if target == "local":
        state = LocalState.load(state_dir)
        session, endpoint, region = local_session(state.credentials()), state.endpoint, state.region
    elif target == "aws":
        session, endpoint = boto3.session.Session(region_name=region), None
        region = session.region_name
        if region is None:
            raise TargetError("no AWS region: pass --region or set AWS_REGION")
    else:
        raise fail(f"--target must be local or aws, not {target!r}", 2)
    return Preflight(
        session=session,
        region=str(region),
        project=project,
        assembly=Assembly.from_dir(_synthesized(assembly)),
        context_file=root / "cdk.context.json",
        configured_platform=str(context.get("mlpoc:eb_solution_stack", "auto")),
        budget_usd=float(context.get("mlpoc:budget_usd", 0)),
        local=target == "local",
        endpoint=endpoint,
        refresh_platform=refresh_platform,
    ).checks()


def _synthesized(assembly: Path | None) -> Path:
    """The given cloud assembly, or the app synthesized now into a temporary folder."""
    if assembly is not None:
        return assembly
    import tempfile  # noqa: PLC0415

    from mlpoc.local.synth import project_dir, synthesize  # noqa: PLC0415

    return synthesize(project_dir(None), Path(tempfile.mkdtemp()) / "cdk.out")


@app.command()
def cost(
    region: Annotated[
        str | None,
        typer.Option(help="Region to price (default: the stacks' region, AWS_REGION, us-east-1)."),
    ] = None,
    assembly: Annotated[
        Path | None,
        typer.Option(help="A synthesized cdk.out to read (default: synthesize the app now)."),
    ] = None,
    summary: Annotated[bool, typer.Option(help="One line (what `make synth` prints).")] = False,
) -> None:
    """The idle month and the cost of work, from the synthesized templates and prices.json."""
    from mlpoc import cost as costs  # noqa: PLC0415 - only this command needs it
    from mlpoc.local.template import Assembly  # noqa: PLC0415

    with friendly():
        found = Assembly.from_dir(_synthesized(assembly))
        where = region or found.region or os.environ.get("AWS_REGION") or "us-east-1"
        try:
            result = costs.report(found, where)
        except costs.CostError as error:
            if summary:  # a line in `make synth`: say it, do not fail the synthesis
                typer.echo(f"mlpoc cost: {error}")
                return
            raise fail(str(error)) from None
    if summary:
        typer.echo(
            f"mlpoc cost: idle {result.idle_total:.2f} USD/month in {result.region} "
            f"({result.idle_free_tier:.2f} within AWS's always-free allowances); prices of "
            f"{result.as_of}; `mlpoc cost` for the breakdown"
            + (f"; NOT PRICED: {len(result.unpriced)} item(s)" if result.unpriced else "")
        )
        return
    _print_cost(result)


def _cost_table(title: str, lines: list[Any], total: float | None = None) -> Table:
    table = Table("item", "quantity x price", "USD", title=title, title_justify="left")
    for line in lines:
        table.add_row(line.item, line.detail, "-" if line.usd is None else f"{line.usd:.2f}")
    if total is not None:
        table.add_row("[bold]total[/]", "", f"[bold]{total:.2f}[/]")
    return table


def _print_cost(result: Any) -> None:
    title = f"Idle month in {result.region} (prices of {result.as_of})"
    console.print(_cost_table(title, result.idle, result.idle_total))
    console.print(
        f"With AWS's always-free allowances (10 alarms, 10 metrics, 3 dashboards, 1 M SQS "
        f"requests, 5 GB logs, 25 GB DynamoDB) unused elsewhere in the account: "
        f"[bold]{result.idle_free_tier:.2f} USD[/]"
    )
    usage = ", ".join(f"{kind.split('::', 1)[1]} x{n}" for kind, n in result.usage_only.items())
    console.print(f"Pay per use only, nothing while idle: {usage}")
    for item in result.unpriced:
        console.print(f"[bold yellow]not priced:[/] {item}")
    console.print(_cost_table("Per 1,000 train jobs", result.train, result.total(result.train)))
    predictions = result.total(result.predictions)
    console.print(_cost_table("Per 1,000,000 stored predictions", result.predictions, predictions))
    alt = result.alternative
    priced = "not priced" if alt.usd is None else f"[bold]{alt.usd:.2f} USD[/] a month"
    console.print(f"For comparison: {alt.item}: {alt.detail} = {priced}")
    assumed = result.assumptions
    console.print(
        f"[dim]Assumed (containers/mlpoc/prices.json): {assumed['stored_gb']['s3']} GB in S3, "
        f"{assumed['stored_gb']['dynamodb']} GB in DynamoDB, {assumed['idle_logs_gb_month']} GB "
        f"of logs a month, {assumed['train_task_minutes_per_job']} task-minutes per train job, "
        f"{assumed['predict_rows_per_task_second']:,} predictions per task-second, Fargate Spot "
        f"{assumed['fargate_spot_discount']:.0%} below on-demand. List prices, no tax, no free "
        f"tier unless said.[/]"
    )


def main() -> None:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    app()

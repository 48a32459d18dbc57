"""The operator commands, the same on either target: jobs in, the ledger, the registry, the
dead-letter queues and the stack's outputs. Each takes the stack found by
:func:`~mlpoc.cli.common.operates`."""

from __future__ import annotations

import json
import shlex
import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from mlpoc.cli import ops, render
from mlpoc.cli.common import (
    app,
    console,
    dlq_app,
    fail,
    key_values,
    monitor_app,
    operates,
    schedule_app,
)
from mlpoc.cli.target import Deployment
from mlpoc.runtime.contract import JobType


def _known_queue(value: str) -> str:
    if value not in ops.QUEUES:
        raise typer.BadParameter(f"must be one of {', '.join(ops.QUEUES)}")
    return value


Queue = Annotated[
    str,
    typer.Option("--queue", "-q", help="train, predict or events.", callback=_known_queue),
]
JobId = Annotated[str | None, typer.Option(help="Your own job id (default: generated).")]
Wait = Annotated[bool, typer.Option(help="Wait for the job to finish.")]
Dataset = Annotated[
    str, typer.Argument(help="s3:// URI in the data bucket, or a local CSV to upload.")
]


def submit_and_wait(dep: Deployment, job_type: str, wait: bool, **kwargs: Any) -> None:
    kinds: dict[str, JobType] = {
        "train": "train",
        "predict": "predict",
        "monitor": "monitor",
        "features": "features",
    }
    job = ops.submit(dep, job_type=kinds[job_type], **kwargs)
    console.print(f"queued {job.type} job [bold]{job.job_id}[/] for {job.model} on {job.dataset}")
    if wait:
        _wait_and_show(dep, job.job_id)


def _wait_and_show(dep: Deployment, job_id: str) -> None:
    """Wait for a job to finish, print its result; exit 1 when it failed."""
    with console.status(f"waiting for {job_id}"):
        record = ops.wait_for(dep, [job_id], timeout=3600)[job_id]
    colour = "green" if record["status"] == "SUCCEEDED" else "red"
    console.print(  # one line, never wrapped: the JSON can be copied or parsed
        f"[{colour}]{record['status']}[/] "
        + json.dumps(record.get("result") or record.get("reason")),
        soft_wrap=True,
        markup=True,
        highlight=False,
    )
    if record["status"] != "SUCCEEDED":
        raise typer.Exit(1)


@app.command()
@operates
def train(
    dep: Deployment,
    model: Annotated[str, typer.Argument(help="Model name (lowercase, e.g. digits).")],
    dataset: Dataset,
    param: Annotated[list[str], typer.Option(help="Job parameter key=value (repeatable).")] = [],  # noqa: B006
    job_id: JobId = None,
    wait: Wait = False,
    gpu: Annotated[
        bool, typer.Option(help='On the GPU pool ("resources": "gpu"; needs mlpoc:gpu).')
    ] = False,
) -> None:
    """Queue a training job (CSV with a `label` column)."""
    submit_and_wait(
        dep,
        "train",
        wait,
        model=model,
        dataset=dataset,
        params=key_values(param),
        job_id=job_id,
        gpu=gpu,
    )


@app.command()
@operates
def predict(
    dep: Deployment,
    model: Annotated[str, typer.Argument(help="Model name.")],
    dataset: Dataset,
    version: Annotated[
        str, typer.Option(help="current (the promoted one) or a version number.")
    ] = "current",
    param: Annotated[
        list[str],
        typer.Option(help="Job parameter key=value (repeatable), e.g. review_threshold=0.5."),
    ] = [],  # noqa: B006
    job_id: JobId = None,
    wait: Wait = False,
) -> None:
    """Queue a prediction job (CSV with an `id` column and the model's features)."""
    submit_and_wait(
        dep,
        "predict",
        wait,
        model=model,
        dataset=dataset,
        version=version,
        params=key_values(param),
        job_id=job_id,
    )


@app.command("jobs")
@operates
def jobs_command(
    dep: Deployment,
    limit: Annotated[int, typer.Option(help="How many of the newest jobs.")] = 20,
    watch: Annotated[bool, typer.Option(help="Refresh every 2 s until Ctrl-C.")] = False,
) -> None:
    """The jobs ledger, newest first."""
    ledger = dep.ledger()
    if not watch:
        console.print(render.jobs_table(ledger.recent(limit)))
        return
    with Live(
        render.jobs_table(ledger.recent(limit)), console=console, refresh_per_second=1
    ) as live:
        try:
            while True:
                time.sleep(2)
                live.update(render.jobs_table(ledger.recent(limit)))
        except KeyboardInterrupt:
            pass


@app.command("models")
@operates
def models_command(
    dep: Deployment,
    words: Annotated[
        list[str] | None,
        typer.Argument(
            help="MODEL: one model's versions (default: all). "
            "compare MODEL A B: two versions side by side.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Model versions with their held-out metrics (● marks the live one); `mlpoc models
    compare MODEL A B` puts two versions' run records side by side."""
    match words or []:
        case []:
            console.print(render.models_table(ops.models(dep)))
        case [model]:
            console.print(render.models_table(ops.models(dep, model)))
        case ["compare", model, a, b]:
            first, second = ops.runs(dep, model, [version_number(a), version_number(b)])
            console.print(render.compare_table(model, first, second))
        case _:
            raise fail("usage: mlpoc models [MODEL] | mlpoc models compare MODEL A B", 2)


def version_number(word: str) -> int:
    """``3`` or ``v3``."""
    digits = word.removeprefix("v")
    if not digits.isdigit() or int(digits) < 1:
        raise fail(f"a version is a number such as 3 or v3, not {word!r}", 2)
    return int(digits)


@schedule_app.command("list")
@operates
def schedule_list(dep: Deployment) -> None:
    """The stack's schedules: which model, when, and the job each sends."""
    table = Table("model", "expression", "sends", title="Schedules")
    for schedule in ops.schedules(dep):
        table.add_row(schedule.model, schedule.expression, schedule.input)
    console.print(table)


@schedule_app.command("run")
@operates
def schedule_run(
    dep: Deployment,
    model: Annotated[str, typer.Argument(help="The model whose schedule to fire now.")],
    wait: Wait = False,
) -> None:
    """Fire a model's schedule now (its job, as the scheduler sends it)."""
    job = ops.run_schedule(dep, model)
    console.print(f"queued scheduled train job [bold]{job.job_id}[/] on {job.dataset}")
    if wait:
        _wait_and_show(dep, job.job_id)


@app.command()
@operates
def promote(
    dep: Deployment,
    model: Annotated[str, typer.Argument()],
    version: Annotated[int, typer.Argument(min=1)],
) -> None:
    """Make a version the live one (the API swaps it in within its poll interval)."""
    pointer = dep.registry().promote(model, version)
    console.print(
        f"{model}: v{pointer.promoted} is live "
        f"(before: {', '.join(f'v{v}' for v in pointer.history) or 'none'})"
    )


@app.command()
@operates
def rollback(dep: Deployment, model: Annotated[str, typer.Argument()]) -> None:
    """Re-promote the version that was live before the current one."""
    pointer = dep.registry().rollback(model)
    console.print(f"{model}: rolled back, v{pointer.promoted} is live")


@dlq_app.command("show")
@operates
def dlq_show(dep: Deployment, queue: Queue = "train") -> None:
    """What waits in a dead-letter queue, and why (peeks at up to 10 messages)."""
    count, letters = ops.dlq_show(dep, queue)
    table = Table("message", "job", "receives", "reason", title=f"{queue} DLQ: {count} message(s)")
    for letter in letters:
        table.add_row(
            letter.message_id[:12], letter.job_id or "-", str(letter.receives), letter.reason[:100]
        )
    console.print(table)


@dlq_app.command("redrive")
@operates
def dlq_redrive(dep: Deployment, queue: Queue = "train") -> None:
    """Send every dead letter back to its queue (after you fixed the cause)."""
    moved = ops.dlq_redrive(dep, queue)
    console.print(
        f"redrove {len(moved)} message(s) to the {queue} queue: "
        + ", ".join(m.job_id or m.message_id for m in moved)
    )


@app.command()
@operates
def outputs(
    dep: Deployment,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_env: Annotated[
        bool, typer.Option("--env", help="Print `export` lines for the runtime's variables.")
    ] = False,
) -> None:
    """The stack outputs the CLI found (bucket, table and queue names, API URL)."""
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


@monitor_app.command("run")
@operates
def monitor_run(
    dep: Deployment,
    model: Annotated[str, typer.Argument(help="Model name.")],
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Judge this CSV (or s3:// CSV or folder) against --version instead of the "
            "samples of the last --window-hours."
        ),
    ] = None,
    version: Annotated[
        str, typer.Option(help="With --dataset: current (the promoted one) or a number.")
    ] = "current",
    window_hours: Annotated[float, typer.Option(help="How far back the samples go (hours).")] = 168,
    param: Annotated[
        list[str],
        typer.Option(help="psi=0.2, drift_share=0.3, min_realized_accuracy=0.8 (repeatable)."),
    ] = [],  # noqa: B006
    job_id: JobId = None,
    wait: Wait = False,
) -> None:
    """Queue a monitor job: drift of the recent inputs against each serving version's training
    reference, realized accuracy from the corrections, an alert past the thresholds."""
    submit_and_wait(
        dep,
        "monitor",
        wait,
        model=model,
        dataset=dataset or ops.sample_folder(dep, model),
        version=version,
        params={**({"window_hours": window_hours} if dataset is None else {}), **key_values(param)},
        job_id=job_id,
    )


@monitor_app.command("show")
@operates
def monitor_show(
    dep: Deployment, model: Annotated[str, typer.Argument(help="Model name.")]
) -> None:
    """The latest monitor report: drift per version, realized accuracy, alerts."""
    report = ops.latest_report(dep, model)
    if report is None:
        raise fail(f"no monitor report for {model!r} yet: run `mlpoc monitor run {model} --wait`")
    console.print(render.monitor_report(report))

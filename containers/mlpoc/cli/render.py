"""How the CLI shows things: every table and summary the commands print, in one place."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from mlpoc.aws import bucket_layout
from mlpoc.cli import ops
from mlpoc.cli.common import console, errors
from mlpoc.local.state import LocalState
from mlpoc.models import metrics
from mlpoc.runtime.job_records import shard_progress

if TYPE_CHECKING:
    from mlpoc.cli.demo import DemoResult


def print_up(state: LocalState, state_dir: Path) -> None:
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
        f"s3://{state.outputs['DataBucketName']}/"
        f"{bucket_layout.dataset_key('<model>', '<file>.csv')}",
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


def print_denials(denials: list[dict[str, Any]]) -> None:
    """moto refused these: each names the role (its logical id in the service template), the
    action and the resource, so the missing grant in stacks/ can be found."""
    table = Table("role (service template)", "process", "action", "resource", title="Access denied")
    for denial in denials[-20:]:
        table.add_row(denial["role"], denial["session"], denial["action"], denial["resource"])
    errors.print(table)
    errors.print(
        "[red]A role lacks a grant the code needs (or the code reached past its layout). The "
        "grants are in stacks/constructs/access.py; the layout in "
        "containers/mlpoc/aws/bucket_layout.py.[/]"
    )


def print_demo(result: DemoResult, state: LocalState, seconds: float) -> None:
    jobs = Table("job", "type", "status", "ran (s)", "outcome", title="Jobs")
    for record in result.jobs:
        took = ops.duration(record)
        outcome = record.get("result", {})
        if record["type"] == "train":
            detail = train_outcome(outcome)
        elif record["type"] == "features":
            detail = (
                f"{outcome.get('feature_set')} v{outcome.get('feature_version')}: "
                f"{outcome.get('rows', 0)} keys, {outcome.get('columns', 0)} columns"
                + (", promoted" if outcome.get("promoted") else "")
            )
        elif record["type"] == "monitor":
            drifting = outcome.get("drifting_versions") or []
            detail = (
                f"{outcome.get('rows', 0)} recent rows; "
                + (f"drift in v{', v'.join(map(str, drifting))}" if drifting else "no drift")
                + f"; {outcome.get('alerts', 0)} alert(s)"
            )
        else:
            detail = (
                f"{outcome.get('rows', 0)} predictions, {outcome.get('for_review', 0)} for review"
            )
        jobs.add_row(
            str(record["job_id"]),
            record["type"],
            record["status"],
            f"{took:.1f}" if took else "-",
            detail,
        )
    console.print(jobs)
    console.print(models_table(result.summary))
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
        "the worker (better on the same held-out rows) and confirmed through the API"
        if result.auto_promoted
        else "the API (the worker kept the live one: no better on the same held-out rows)"
    )
    console.print(
        f"Corrections fed back: {len(result.corrections)}; "
        f"v{result.promoted} promoted by {promoted_by}"
    )
    console.print(
        f"Predictions stored: {result.predictions_stored}   API: {state.api_url}   "
        f"demo took {seconds:.0f} s"
    )
    if result.monitor is not None:
        console.print(monitor_report(result.monitor))
    if result.by_key is not None:
        found = result.by_key
        console.print(
            "By key: POST /v1/predict "
            + json.dumps({"model": found["model"], "keys": [found["key"]]})
            + f" -> {found.get('label')} (truth {found['truth']}), "
            f"features read from {found['features']['set']} v{found['features']['version']} "
            f"in {found['ms']:.0f} ms"
        )
    console.print(
        f"Is it still good? The plots (each version's score, confusion matrix, two versions side "
        f"by side, realized accuracy, drift): {state.api_url}/ui/models/digits (key: "
        "`mlpoc outputs`); `mlpoc monitor show digits` in the terminal"
    )


def train_outcome(outcome: dict[str, Any]) -> str:
    """A train job's line: its version and promotion metric, and beside the live version's
    score on the same held-out rows, when it was compared."""
    metric = outcome.get("metric", "accuracy")
    line = (
        f"v{outcome.get('model_version')} {metric} {outcome.get('metrics', {}).get(metric, 0):.3f}"
    )
    compared = outcome.get("compared") or {}
    if "live_score" in compared:
        line += (
            f"; on the same {compared['rows']} held-out rows {compared['candidate']:.3f} vs "
            f"v{compared['live']} {compared['live_score']:.3f}"
        )
    elif "not_compared" in compared:
        line += f"; not compared with v{compared['live']} ({compared['not_compared']})"
    return line + (" → promoted" if outcome.get("promoted") else "")


def _scores(version: Any) -> str:
    """The promotion metric first (accuracy, or RMSE for a regression), the task's others
    after it in brackets."""
    first = version.metric_name
    names = [first, *(n for n in metrics.METRICS.get(version.task, ()) if n != first)]
    shown = [f"{n} {version.metrics[n]:.3f}" for n in names if n in version.metrics]
    if not shown:
        return ""
    return shown[0] + (f" ({', '.join(shown[1:])})" if len(shown) > 1 else "")


def models_table(summaries: list[ops.ModelSummary]) -> Table:
    table = Table(
        "model",
        "version",
        "held-out metrics",
        "train rows",
        "dataset",
        "from",
        "live",
        title="Model versions",
    )
    for summary in summaries:
        live = summary.pointer.promoted if summary.pointer else None
        for v in summary.versions:
            table.add_row(
                summary.model, f"v{v.version}", _scores(v),
                str(v.extra.get("train_rows", "")),
                v.dataset.rsplit("/", 1)[-1], str(v.extra.get("origin", "")),
                "[green]●[/]" if v.version == live else "",
            )  # fmt: skip
    return table


CLASS_CHANGES = 5  # the per-class F1 changes shown: the largest


def compare_table(name: str, first: ops.Run, second: ops.Run) -> Table:
    """Two versions side by side: metrics, rows, data, plugin and parameters, libraries, time;
    the per-class F1 that moved most; and their scores on the same rows when there are some."""
    a, b = first.version, second.version
    table = Table(
        "",
        f"v{a.version}",
        f"v{b.version}",
        "change",
        title=f"{name}: v{a.version} vs v{b.version}",
    )

    def row(label: str, left: Any, right: Any, change: str = "") -> None:
        shown = ("" if left is None else str(left), "" if right is None else str(right))
        table.add_row(label, *shown, change or ("" if shown[0] == shown[1] else "differs"))

    for metric in metrics.METRICS.get(b.task, ()):
        x, y = a.metrics.get(metric), b.metrics.get(metric)
        change = ""
        if x is not None and y is not None:
            change = "same" if x == y else f"{y - x:+.4f}"
            change += " better" if metrics.better(metric, y, x) else ""
        row(f"held-out {metric}", _number(x), _number(y), change)
    row("task", a.task, b.task)
    row("train / test rows", _rows(a), _rows(b))
    row("plugin", a.plugin, b.plugin)
    params_a, params_b = a.extra.get("plugin_params") or {}, b.extra.get("plugin_params") or {}
    for key in sorted({*params_a, *params_b}):
        row(f"  {key}", params_a.get(key), params_b.get(key))
    row("dataset", a.dataset, b.dataset)
    data_a, data_b = (r.record.get("data", {}) if r.record else {} for r in (first, second))
    if data_a or data_b:
        row("data sha256", str(data_a.get("sha256", ""))[:12], str(data_b.get("sha256", ""))[:12])
        row("rows read", data_a.get("rows"), data_b.get("rows"))
    libraries = [first.libraries, second.libraries]
    for library in sorted({*libraries[0], *libraries[1]}):
        row(f"  {library}", libraries[0].get(library), libraries[1].get(library))
    for run in (first, second):
        if run.record is None:
            table.add_row(
                f"v{run.version.version}",
                "no run record: trained before runs were recorded",
                "",
                "",
            )
    for label, x, y in _class_changes(first, second):
        row(f"F1 of class {label}", _number(x), _number(y), f"{(y or 0) - (x or 0):+.3f}")
    compared = b.extra.get("compared") or {}
    if compared.get("live") == a.version and "candidate" in compared:
        row(f"{compared['metric']} on the same {compared['rows']} rows",
            _number(compared["live_score"]), _number(compared["candidate"]),
            "decided the promotion")  # fmt: skip
    return table


def _number(value: Any) -> str | None:
    return None if value is None else f"{float(value):.4f}"


def _rows(version: Any) -> str:
    return f"{version.extra.get('train_rows', '?')} / {version.extra.get('test_rows', '?')}"


def _class_changes(first: ops.Run, second: ops.Run) -> list[tuple[str, float | None, float | None]]:
    """The classes whose held-out F1 moved most between two run records."""
    per = [
        ((r.record or {}).get("evaluation") or {}).get("per_class") or {} for r in (first, second)
    ]
    if not per[0] or not per[1]:
        return []
    changes = [
        (label, per[0].get(label, {}).get("f1"), per[1].get(label, {}).get("f1"))
        for label in sorted({*per[0], *per[1]})
    ]
    changes.sort(key=lambda c: -abs((c[2] or 0) - (c[1] or 0)))
    return [c for c in changes[:CLASS_CHANGES] if c[1] != c[2]]


def jobs_table(records: list[dict[str, Any]]) -> Table:
    table = Table(
        "job", "type", "model", "status", "attempts", "seconds", "created", "result / reason"
    )
    colours = {"SUCCEEDED": "green", "FAILED": "red", "RUNNING": "yellow", "RETRYABLE": "yellow"}
    for r in records:
        took = ops.duration(r)
        created = dt.datetime.fromtimestamp(float(r.get("created_at", 0)), dt.UTC).strftime(
            "%H:%M:%S"
        )
        result = r.get("result")
        detail = str(r.get("reason") or "")[:160] or (
            train_outcome(result)
            if r.get("type") == "train" and isinstance(result, dict) and "metrics" in result
            else json.dumps(result or "")[:80]
        )
        status = str(r.get("status", "?"))
        progress = shard_progress(r)  # a split job: shards done out of total
        shown = f"{status} {progress} shards" if progress else status
        table.add_row(
            str(r["job_id"]), str(r.get("type", "")), str(r.get("model", "")),
            f"[{colours.get(status, 'white')}]{shown}[/]", str(r.get("attempts", 0)),
            f"{took:.1f}" if took else "", created, str(detail),
        )  # fmt: skip
    return table


def cost_table(title: str, lines: list[Any], total: float | None = None) -> Table:
    table = Table("item", "quantity x price", "USD", title=title, title_justify="left")
    for line in lines:
        table.add_row(line.item, line.detail, "-" if line.usd is None else f"{line.usd:.2f}")
    if total is not None:
        table.add_row("[bold]total[/]", "", f"[bold]{total:.2f}[/]")
    return table


def print_cost(result: Any) -> None:
    title = f"Idle month in {result.region} (prices of {result.as_of})"
    console.print(cost_table(title, result.idle, result.idle_total))
    console.print(
        f"With AWS's always-free allowances (10 alarm metrics, 10 metrics, 3 dashboards, 1 M SQS "
        f"requests, 5 GB logs, 25 GB DynamoDB) unused elsewhere in the account: "
        f"[bold]{result.idle_free_tier:.2f} USD[/]"
    )
    usage = ", ".join(f"{kind.split('::', 1)[1]} x{n}" for kind, n in result.usage_only.items())
    console.print(f"Pay per use only, nothing while idle: {usage}")
    for item in result.unpriced:
        console.print(f"[bold yellow]not priced:[/] {item}")
    console.print(cost_table("Per 1,000 train jobs", result.train, result.total(result.train)))
    predictions = result.total(result.predictions)
    console.print(cost_table("Per 1,000,000 stored predictions", result.predictions, predictions))
    if result.monitor:
        console.print(
            cost_table("Monitoring, per month", result.monitor, result.total(result.monitor))
        )
    if result.lookups:
        title = "Features by key (feature sets), per month"
        console.print(cost_table(title, result.lookups, result.total(result.lookups)))
    if result.gpu:
        console.print(cost_table("GPU pool, per instance-hour while a GPU job runs", result.gpu))
    for sentence in result.across_accounts:
        console.print(f"[bold]Across accounts:[/] {sentence}")
    alt = result.alternative
    priced = "not priced" if alt.usd is None else f"[bold]{alt.usd:.2f} USD[/] a month"
    console.print(f"For comparison: {alt.item}: {alt.detail} = {priced}")
    assumed = result.assumptions
    console.print(
        f"[dim]Assumed (containers/mlpoc/cost/prices.json): {assumed['stored_gb']['s3']} GB in S3, "
        f"{assumed['stored_gb']['dynamodb']} GB in DynamoDB, {assumed['idle_logs_gb_month']} GB "
        f"of logs a month, {assumed['train_task_minutes_per_job']} task-minutes per train job, "
        f"{assumed['predict_rows_per_task_second']:,} predictions per task-second, Fargate Spot "
        f"{assumed['fargate_spot_discount']:.0%} below on-demand. List prices, no tax, no free "
        f"tier unless said.[/]"
    )


def monitor_report(report: dict[str, Any]) -> Table:
    """A monitor report: per version, drift (the features over the PSI threshold, the scores'
    PSI) and realized accuracy beside the held-out score; then the alerts."""
    when = dt.datetime.fromtimestamp(float(report["created_at"]), dt.UTC).strftime("%Y-%m-%d %H:%M")
    thresholds = report["thresholds"]
    table = Table(
        "version", "recent rows", "drifting features", "scores' PSI", "realized (reviewed)",
        "held-out",
        title=f"{report['model']}: monitor {report['job_id']} at {when} UTC (drift: PSI > "
        f"{thresholds['psi']:g} in over {thresholds['share']:.0%} of the features)",
        caption="; ".join(report["alerts"]) or "no alerts",
    )  # fmt: skip
    realized = {r["version"]: r for r in report["realized"]}
    versions = {v["version"]: v for v in report["versions"]}
    for number in sorted({*realized, *versions}, reverse=True):
        found, people = versions.get(number), realized.get(number)
        if found is None:
            drift, scores, rows = "-", "-", "0"
        elif not found.get("judged"):
            drift, scores, rows = str(found["why"]), "-", str(found["rows"])
        else:
            names = ", ".join(found["drifting"][:5]) + ("…" if len(found["drifting"]) > 5 else "")  # noqa: PLR2004
            drift = f"{len(found['drifting'])} of {len(found['features'])}" + (
                f" [red](drift)[/]: {names}" if found["drift"] else (f": {names}" if names else "")
            )
            output = found.get("output", {})
            score = output.get("confidence") or output.get("value")
            scores, rows = (f"{score['psi']:.3f}" if score else "-"), str(found["rows"])
        table.add_row(
            f"v{number}", rows, drift, scores,
            f"{people['realized']:.1%} ({people['reviewed']})" if people else "-",
            f"{people['held_out']:.1%}" if people and people["held_out"] is not None else "-",
        )  # fmt: skip
    return table

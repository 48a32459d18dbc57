"""The marginal cost of work: per 1,000 train jobs and per 1,000,000 stored predictions, from the
request pattern the runtime really has and the worker task size and capacity in the template."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlpoc.aws.cloud_assembly import Assembly
from mlpoc.cost.lines import PREDICTIONS, TRAIN_JOBS, Line, usd
from mlpoc.errors import CostError
from mlpoc.runtime.schedules import RATE, UNIT_SECONDS


@dataclass(frozen=True)
class WorkerService:
    vcpu: float
    memory_gb: float
    spot_share: float
    public_ip: bool
    visibility: float


def worker(assembly: Assembly, role: str) -> WorkerService:
    for logical_id, task in assembly.of_type("AWS::ECS::TaskDefinition"):
        command = task["Properties"]["ContainerDefinitions"][0].get("Command", [])
        if command[-1:] != [role]:
            continue
        service = next(
            (
                s
                for _, s in assembly.of_type("AWS::ECS::Service")
                if s["Properties"].get("TaskDefinition") == {"Ref": logical_id}
            ),
            None,
        )
        props = service["Properties"] if service else {}
        strategy = props.get("CapacityProviderStrategy", [])
        weights = {s["CapacityProvider"]: float(s.get("Weight", 0)) for s in strategy}
        total = sum(weights.values())
        network = props.get("NetworkConfiguration", {}).get("AwsvpcConfiguration", {})
        queues = [  # the role's queue, not its dead-letter queue (which has no redrive policy)
            r
            for k, r in assembly.of_type("AWS::SQS::Queue")
            if k.lower().startswith(role) and "RedrivePolicy" in r["Properties"]
        ]
        visibility = float(queues[0]["Properties"].get("VisibilityTimeout", 30)) if queues else 30.0
        return WorkerService(
            vcpu=float(task["Properties"]["Cpu"]) / 1024,
            memory_gb=float(task["Properties"]["Memory"]) / 1024,
            spot_share=weights.get("FARGATE_SPOT", 0.0) / total if total else 0.0,
            public_ip=network.get("AssignPublicIp") == "ENABLED",
            visibility=visibility,
        )
    raise CostError(f"no {role} worker task definition in the templates")


def _task_hour(w: WorkerService, p: Mapping[str, Any], a: Mapping[str, Any]) -> float:
    on_demand = w.vcpu * p["fargate_arm_vcpu_hour"] + w.memory_gb * p["fargate_arm_gb_hour"]
    blended = on_demand * (1 - w.spot_share * float(a["fargate_spot_discount"]))
    ipv4 = float(p["public_ipv4_hour"]) if w.public_ip else 0.0
    return float(blended) + ipv4


def _fargate_line(
    w: WorkerService, hours: float, p: Mapping[str, Any], a: Mapping[str, Any]
) -> Line:
    rate = _task_hour(w, p, a)
    spot = f"{w.spot_share:.0%} Spot at -{float(a['fargate_spot_discount']):.0%}"
    ip = " + public IPv4" if w.public_ip else ""
    return Line(
        f"Fargate ARM64 {w.vcpu:g} vCPU / {w.memory_gb:g} GB ({spot}{ip})",
        f"{hours:.1f} task-h x {rate:.5f} USD",
        usd(hours * rate),
    )


# One train job's calls on the worker's side, as tests/test_cost.py measures them against moto.
# The producer adds one PutItem (the ledger record) and one SendMessage; each heartbeat adds one
# ChangeMessageVisibilityBatch and one UpdateItem (the lease).
TRAIN_JOB_CALLS = {
    "ReceiveMessage": 1, "DeleteMessageBatch": 1,
    "UpdateItem": 3, "GetItem": 1, "TransactWriteItems": 1,
    "HeadObject": 1, "GetObject": 1, "PutObject": 2,
}  # fmt: skip
TRANSACTION_ITEMS = 3  # ledger, version, promotion pointer; a transaction writes each twice


def heartbeats(seconds: float, visibility: float) -> int:
    """Heartbeats of a job that runs ``seconds`` (every third of the visibility timeout)."""
    return math.floor(seconds / (visibility / 3))


def per_train_jobs(assembly: Assembly, p: Mapping[str, Any], a: Mapping[str, Any]) -> list[Line]:
    w, n, calls = worker(assembly, "train"), TRAIN_JOBS, TRAIN_JOB_CALLS
    minutes = float(a["train_task_minutes_per_job"])
    beats = heartbeats(minutes * 60, w.visibility)
    sqs = n * (1 + calls["ReceiveMessage"] + calls["DeleteMessageBatch"] + beats)
    writes = n * (1 + calls["UpdateItem"] + beats + 2 * TRANSACTION_ITEMS)
    reads = n * calls["GetItem"]
    gets, puts = n * (calls["HeadObject"] + calls["GetObject"]), n * calls["PutObject"]
    dynamodb = writes / 1e6 * p["dynamodb_write_million"] + reads / 1e6 * p["dynamodb_read_million"]
    return [
        _fargate_line(w, n * minutes / 60, p, a),
        Line("SQS requests", f"{sqs:,} (send, receive, delete + {beats} heartbeats a job)",
             usd(sqs / 1e6 * p["sqs_million"])),
        Line("DynamoDB writes and reads", f"{writes:,} WRU + {reads:,} RRU", usd(dynamodb)),
        Line("S3 requests", f"{gets:,} HEAD/GET (dataset) + {puts:,} PUT (model, metadata)",
             usd(gets / 1e3 * p["s3_get_thousand"] + puts / 1e3 * p["s3_put_thousand"])),
        Line("CloudWatch Logs", f"{n * a['job_log_kb'] / 1e6:.3f} GB",
             usd(n * a["job_log_kb"] / 1e6 * p["logs_ingest_gb"])),
    ]  # fmt: skip


def per_predictions(assembly: Assembly, p: Mapping[str, Any], a: Mapping[str, Any]) -> list[Line]:
    w, n = worker(assembly, "predict"), PREDICTIONS
    jobs = math.ceil(n / a["predict_rows_per_job"])
    seconds = n / a["predict_rows_per_task_second"] + jobs * a["predict_task_seconds_per_job"]
    beats = heartbeats(a["predict_task_seconds_per_job"], w.visibility)
    review = float(a["review_fraction"])
    # one write unit per prediction, two for those kept with their features for review
    writes = round(n * (1 + review)) + jobs * (1 + 1 + beats + 1)
    gb = n * float(a["prediction_item_kb"]) / 1024 / 1024
    return [
        _fargate_line(w, seconds / 3600, p, a),
        Line(
            "DynamoDB writes (BatchWriteItem) and the jobs' ledger",
            f"{writes:,} WRU ({review:.0%} kept with features for review)",
            usd(writes / 1e6 * p["dynamodb_write_million"]),
        ),
        Line(
            "DynamoDB storage of the predictions, per month kept",
            f"{gb:.2f} GB",
            usd(gb * p["dynamodb_gb_month"]),
        ),
        Line(
            "SQS requests",
            f"{jobs * (3 + beats):,} ({jobs} jobs of {a['predict_rows_per_job']:,} rows)",
            usd(jobs * (3 + beats) / 1e6 * p["sqs_million"]),
        ),
        Line("S3 requests", f"{jobs:,} GET (datasets)", usd(jobs / 1e3 * p["s3_get_thousand"])),
    ]


def per_gpu_hour(assembly: Assembly, p: Mapping[str, Any], a: Mapping[str, Any]) -> list[Line]:
    """Each GPU type of the pool, per instance-hour: the on-demand list price and the Spot
    estimate (an assumed discount: Spot prices move). The pool is all Spot; on-demand is what
    the same hour would cost without it."""
    lines: list[Line] = []
    discount = float(a["gpu_spot_discount"])
    for _, group in assembly.of_type("AWS::AutoScaling::AutoScalingGroup"):
        policy = group["Properties"].get("MixedInstancesPolicy", {})
        for override in policy.get("LaunchTemplate", {}).get("Overrides", []):
            kind = override.get("InstanceType")
            rate = p.get("gpu_hour", {}).get(kind)
            if rate is None:
                lines.append(Line(f"{kind}, one hour", "no price in prices.json", None))
                continue
            lines.append(Line(f"{kind}, one on-demand hour", f"list price {rate} USD", usd(rate)))
            lines.append(
                Line(
                    f"{kind}, one Spot hour (the pool's)",
                    f"{rate} USD x (1 - {discount:.0%}) assumed",
                    usd(rate * (1 - discount)),
                )
            )
    return lines


def _job_type(sent: Any) -> str | None:
    """The ``type`` of the job a schedule sends: its input, a JSON text that the template may
    join from parts (a bucket name is a reference: it stands as ``-`` here)."""
    if isinstance(sent, dict) and "Fn::Join" in sent:
        sent = "".join(p if isinstance(p, str) else "-" for p in sent["Fn::Join"][1])
    try:
        return str(json.loads(sent).get("type"))
    except (TypeError, ValueError):
        return None


def _monitor_runs(assembly: Assembly, hours: float) -> float:
    """Monitor jobs a month: each monitor schedule's runs (a cron counts as daily)."""
    runs = 0.0
    for _, schedule in assembly.of_type("AWS::Scheduler::Schedule"):
        if _job_type(schedule["Properties"]["Target"].get("Input", "{}")) != "monitor":
            continue  # a retrain's schedule: priced per train job
        rate = RATE.match(schedule["Properties"]["ScheduleExpression"])
        period = UNIT_SECONDS[rate["unit"].rstrip("s")] * int(rate["value"]) if rate else 86_400
        runs += hours * 3600 / period
    return runs


def _sample_rate(assembly: Assembly) -> float:
    for _, environment in assembly.of_type("AWS::ElasticBeanstalk::Environment"):
        for option in environment["Properties"].get("OptionSettings", []):
            if option["OptionName"] == "MLPOC_SAMPLE_RATE":
                return float(option["Value"])
    return 0.0


def per_monitor(assembly: Assembly, p: Mapping[str, Any], a: Mapping[str, Any]) -> list[Line]:
    """A month of monitoring: the scheduled monitor jobs (a predict worker task each, the samples
    read, the report written) and the API's sample of realtime requests (one PUT a minute at
    most, kept 30 days), for ``realtime_requests_per_month`` requests."""
    hours = float(a["hours_per_month"])
    runs = _monitor_runs(assembly, hours)
    rate = _sample_rate(assembly)
    if not runs and not rate:
        return []
    w = worker(assembly, "predict")
    seconds = runs * float(a["monitor_task_seconds_per_run"])
    gets = round(runs * (float(a["monitor_objects_per_run"]) + 3))  # + LIST, metadata, latest
    puts = round(runs * 2)
    requests = float(a["realtime_requests_per_month"])
    flushes = min(requests * rate, hours * 60)  # one object per minute with sampled traffic
    stored_gb = requests * rate * float(a["sample_row_kb"]) / 1e6
    return [
        _fargate_line(w, seconds / 3600, p, a),
        Line(
            "S3 requests of the monitor jobs",
            f"{runs:.0f} runs: {gets:,} GET/LIST (samples) + {puts:,} PUT (reports)",
            usd(gets / 1e3 * p["s3_get_thousand"] + puts / 1e3 * p["s3_put_thousand"]),
        ),
        Line(
            f"the API's sample of realtime requests ({rate:.0%} of "
            f"{requests / 1e6:g} M requests a month)",
            f"{flushes:,.0f} PUT + {stored_gb:.2f} GB kept 30 days",
            usd(flushes / 1e3 * p["s3_put_thousand"] + stored_gb * p["s3_gb_month"]),
        ),
    ]


def per_lookups(assembly: Assembly, p: Mapping[str, Any], a: Mapping[str, Any]) -> list[Line]:
    """Features by key (:mod:`mlpoc.data.feature_sets`): the reads of one million realtime
    predictions
    by key (one BatchGetItem each, eventually consistent: half a read unit per item up to
    4 KB), and a month of one feature set of ``feature_entities`` entities published
    ``feature_publishes_per_month`` times (a write unit per item up to 1 KB, and one more when a
    superseded version's item is marked to expire), ``feature_versions_kept`` versions online."""
    if not any(name == "FeaturesTable" for name, _ in assembly.of_type("AWS::DynamoDB::Table")):
        return []
    keys = float(a["feature_keys_per_request"])
    kb = float(a["feature_item_kb"])
    reads = 1e6 * keys * math.ceil(kb / 4) * 0.5
    entities = float(a["feature_entities"])
    publishes = float(a["feature_publishes_per_month"])
    writes = entities * publishes * math.ceil(kb) * 2
    gb = entities * float(a["feature_versions_kept"]) * kb / 1024 / 1024
    return [
        Line(
            "DynamoDB reads per 1 M realtime predictions by key (BatchGetItem)",
            f"{reads:,.0f} RRU ({keys:g} key(s) a request, items up to 4 KB)",
            usd(reads / 1e6 * p["dynamodb_read_million"]),
        ),
        Line(
            f"Publishing {entities:,.0f} entities {publishes:g}x a month (features jobs)",
            f"{writes:,.0f} WRU (the items, then their expiry mark)",
            usd(writes / 1e6 * p["dynamodb_write_million"]),
        ),
        Line(
            f"Online feature storage ({a['feature_versions_kept']} versions kept)",
            f"{gb:.2f} GB",
            usd(gb * p["dynamodb_gb_month"]),
        ),
    ]

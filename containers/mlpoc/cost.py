"""What the PoC costs: the idle month and the marginal cost of work, from the templates.

Reads a synthesized cloud assembly (``cdk.out``) and a dated price table
(``mlpoc/prices.json``). Each resource that costs money while nothing happens becomes a line;
resources that cost only per use are counted; anything the table has no rule or price for is
*named* in the report, never priced at zero. Marginal costs (per 1,000 train jobs, per
1,000,000 stored predictions) come from the request pattern the runtime really has (one ledger
record, a claim, heartbeats every third of the visibility timeout, one commit transaction, one
batched write per prediction) and the worker task size and capacity strategy in the template.
Everything that is an assumption rather than a template fact (data volume, log volume, job
duration) is in the price table's ``assumptions`` and printed with the report.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mlpoc.errors import CostError
from mlpoc.local.template import Assembly, references

TRAIN_JOBS = 1_000
PREDICTIONS = 1_000_000
ALTERNATIVE = "ml.t2.medium"  # SageMaker's smallest real-time endpoint instance

# Charged only per request, per GB or per invocation: nothing while idle.
USAGE_ONLY = frozenset({
    "AWS::Lambda::Function", "AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::Events::Rule",
    "AWS::ECS::Service", "AWS::Logs::LogGroup", "AWS::EC2::FlowLog", "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
})  # fmt: skip
# No charge at all (configuration, permissions, free networking pieces).
FREE = frozenset({
    "AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::InstanceProfile",
    "AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::RouteTable", "AWS::EC2::Route",
    "AWS::EC2::SubnetRouteTableAssociation", "AWS::EC2::InternetGateway",
    "AWS::EC2::VPCGatewayAttachment", "AWS::EC2::SecurityGroup", "AWS::EC2::SecurityGroupIngress",
    "AWS::EC2::SecurityGroupEgress", "AWS::ECS::TaskDefinition",
    "AWS::ECS::ClusterCapacityProviderAssociations", "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy", "AWS::KMS::Alias", "AWS::SQS::QueuePolicy",
    "AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy", "AWS::SNS::Subscription",
    "AWS::Lambda::Permission", "AWS::Lambda::LayerVersion", "AWS::Lambda::EventInvokeConfig",
    "AWS::ElasticBeanstalk::Application",
    "AWS::ElasticBeanstalk::ApplicationVersion", "AWS::CDK::Metadata",
})  # fmt: skip
# Priced by a rule below.
PRICED = frozenset({
    "AWS::ElasticBeanstalk::Environment", "AWS::EC2::NatGateway", "AWS::EC2::EIP",
    "AWS::EC2::VPCEndpoint", "AWS::KMS::Key", "AWS::SecretsManager::Secret",
    "AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard", "AWS::Lambda::EventSourceMapping",
    "AWS::CloudFront::Distribution", "AWS::Budgets::Budget", "AWS::ECS::Cluster",
})  # fmt: skip


@dataclass(frozen=True)
class Line:
    item: str
    detail: str
    usd: float | None  # None: cannot be priced here (named in the report, never counted as 0)
    free: float = 0.0  # the part AWS's always-free allowances would cover


@dataclass
class Report:
    region: str
    as_of: str
    idle: list[Line]
    usage_only: dict[str, int]
    unpriced: list[str]
    train: list[Line]
    predictions: list[Line]
    alternative: Line
    assumptions: dict[str, Any] = field(default_factory=dict)

    @property
    def idle_total(self) -> float:
        return round(sum(line.usd or 0.0 for line in self.idle), 2)

    @property
    def idle_free_tier(self) -> float:
        return round(sum((line.usd or 0.0) - line.free for line in self.idle), 2)

    @staticmethod
    def total(lines: list[Line]) -> float:
        return round(sum(line.usd or 0.0 for line in lines), 2)


# -- inputs ----------------------------------------------------------------------------------
def load_prices(path: Path | None = None) -> dict[str, Any]:
    text = (
        path.read_text()
        if path is not None
        else resources.files("mlpoc").joinpath("prices.json").read_text()
    )
    table: dict[str, Any] = json.loads(text)
    return table


def region_prices(table: Mapping[str, Any], region: str) -> dict[str, Any]:
    if region not in table["regions"]:
        known = ", ".join(sorted(table["regions"]))
        raise CostError(
            f"no prices for region {region} in mlpoc/prices.json (it has {known}); add the "
            "region's figures from the pages its 'sources' list, or pass --region"
        )
    prices: dict[str, Any] = table["regions"][region]
    return prices


# -- the idle month --------------------------------------------------------------------------
def _options(resource: Mapping[str, Any]) -> dict[str, Any]:
    return {
        o["OptionName"]: o.get("Value") for o in resource["Properties"].get("OptionSettings", [])
    }


def _usd(value: float) -> float:
    return round(value, 6)


class _Idle:
    def __init__(self, assembly: Assembly, prices: Mapping[str, Any], table: Mapping[str, Any]):
        self.assembly, self.p = assembly, prices
        self.a: dict[str, Any] = table["assumptions"]
        self.free: dict[str, Any] = table["always_free"]
        self.hours = float(self.a["hours_per_month"])
        self.lines: list[Line] = []
        self.unpriced: list[str] = []

    def run(self) -> None:
        for _, env in self.assembly.of_type("AWS::ElasticBeanstalk::Environment"):
            self.beanstalk(env)
        self.networking()
        self.counted()
        self.logs_and_polling()
        self.storage()
        self.per_use_services()

    def beanstalk(self, env: Mapping[str, Any]) -> None:
        options = _options(env)
        instance = str(options.get("InstanceTypes") or options.get("InstanceType") or "").split(
            ","
        )[0]
        rate = self.p["ec2_hour"].get(instance)
        if rate is None:
            self.unpriced.append(
                f"EC2 instance type {instance!r} of the API (no price in prices.json)"
            )
        else:
            self.lines.append(
                Line(
                    f"API instance {instance} (Elastic Beanstalk)",
                    f"{self.hours:.0f} h x {rate} USD",
                    _usd(rate * self.hours),
                )
            )
        size = float(options.get("RootVolumeSize") or self.a["eb_root_volume_gb"])
        kind = str(options.get("RootVolumeType") or "gp3")
        volume = self.p["ebs_gb_month"].get(kind)
        if volume is None:
            self.unpriced.append(f"EBS volume type {kind!r} of the API")
        else:
            self.lines.append(
                Line(
                    f"its root volume ({size:.0f} GB {kind})",
                    f"{size:.0f} GB x {volume} USD",
                    _usd(size * volume),
                )
            )
        if options.get("EnvironmentType") == "SingleInstance":
            ipv4 = self.p["public_ipv4_hour"]
            self.lines.append(
                Line(
                    "its public IPv4 address (Elastic IP)",
                    f"{self.hours:.0f} h x {ipv4} USD",
                    _usd(ipv4 * self.hours),
                )
            )
        else:
            self.unpriced.append("the API's load balancer (EnvironmentType LoadBalanced)")
        health = json.loads(str(options.get("ConfigDocument") or "{}")).get("CloudWatchMetrics", {})
        metrics = sum(len(v) for v in health.values())
        if metrics:
            rate = self.p["custom_metric_month"]
            self.lines.append(
                Line(
                    f"enhanced-health metrics ({metrics})",
                    f"{metrics} x {rate} USD",
                    _usd(metrics * rate),
                    free=_usd(min(metrics, self.free["custom_metrics"]) * rate),
                )
            )

    def networking(self) -> None:
        nats = self.assembly.of_type("AWS::EC2::NatGateway")
        if nats:
            rate, ipv4 = self.p["nat_gateway_hour"], self.p["public_ipv4_hour"]
            self.lines.append(
                Line(
                    f"NAT gateway x{len(nats)} (+ its public IPv4)",
                    f"{len(nats)} x {self.hours:.0f} h x ({rate} + {ipv4}) USD "
                    f"(+ {self.p['nat_gateway_gb']} USD per GB through it)",
                    _usd(len(nats) * self.hours * (rate + ipv4)),
                )
            )
        used_by_nat = {ref for _, nat in nats for ref in references(nat)}
        eips = [k for k, _ in self.assembly.of_type("AWS::EC2::EIP") if k not in used_by_nat]
        if eips:
            ipv4 = self.p["public_ipv4_hour"]
            self.lines.append(
                Line(
                    f"Elastic IP x{len(eips)}",
                    f"{self.hours:.0f} h x {ipv4} USD",
                    _usd(len(eips) * self.hours * ipv4),
                )
            )
        interface = [
            r
            for _, r in self.assembly.of_type("AWS::EC2::VPCEndpoint")
            if r["Properties"].get("VpcEndpointType") == "Interface"
        ]
        if interface:
            azs = sum(len(r["Properties"].get("SubnetIds", [1])) for r in interface)
            rate = self.p["interface_endpoint_hour"]
            self.lines.append(
                Line(
                    f"interface VPC endpoints x{len(interface)}",
                    f"{azs} endpoint-AZs x {self.hours:.0f} h x {rate} USD",
                    _usd(azs * self.hours * rate),
                )
            )

    def counted(self) -> None:
        def add(kind: str, item: str, rate: float, free_count: int = 0) -> None:
            n = len(self.assembly.of_type(kind))
            if n:
                self.lines.append(
                    Line(
                        f"{item} x{n}",
                        f"{n} x {rate} USD",
                        _usd(n * rate),
                        free=_usd(min(n, free_count) * rate),
                    )
                )

        add("AWS::KMS::Key", "KMS keys", self.p["kms_key_month"])
        add("AWS::SecretsManager::Secret", "Secrets Manager secrets", self.p["secret_month"])
        add(
            "AWS::CloudWatch::Alarm",
            "CloudWatch alarms",
            self.p["alarm_month"],
            self.free["alarms"],
        )
        add(
            "AWS::CloudWatch::Dashboard",
            "CloudWatch dashboards",
            self.p["dashboard_month"],
            self.free["dashboards"],
        )

    def logs_and_polling(self) -> None:
        gb = float(self.a["idle_logs_gb_month"])
        ingest, store = self.p["logs_ingest_gb"], self.p["logs_store_gb_month"]
        self.lines.append(
            Line(
                "CloudWatch Logs (API, VPC flow logs; volume assumed)",
                f"{gb} GB x ({ingest} ingest + {store} stored) USD",
                _usd(gb * (ingest + store)),
                free=_usd(min(gb, self.free["logs_gb"]) * ingest),
            )
        )
        sqs_sources = [
            r
            for _, r in self.assembly.of_type("AWS::Lambda::EventSourceMapping")
            if any(
                w in json.dumps(r["Properties"].get("EventSourceArn", "")).lower()
                for w in ("sqs", "queue")
            )
        ]
        if sqs_sources:
            per_hour = 3600 / float(self.a["long_poll_seconds"])
            requests = len(sqs_sources) * self.a["lambda_sqs_pollers"] * per_hour * self.hours
            rate = self.p["sqs_million"]
            self.lines.append(
                Line(
                    f"SQS polling by Lambda's event source x{len(sqs_sources)}",
                    f"{requests:,.0f} empty long polls x {rate} USD/M",
                    _usd(requests / 1e6 * rate),
                    free=_usd(min(requests, self.free["sqs_requests"]) / 1e6 * rate),
                )
            )

    def storage(self) -> None:
        stored = self.a["stored_gb"]
        tables = self.assembly.of_type("AWS::DynamoDB::Table")
        if tables:
            gb, rate = float(stored["dynamodb"]), self.p["dynamodb_gb_month"]
            self.lines.append(
                Line(
                    f"DynamoDB storage ({len(tables)} tables, {gb} GB assumed)",
                    f"{gb} GB x {rate} USD",
                    _usd(gb * rate),
                    free=_usd(min(gb, self.free["dynamodb_gb"]) * rate),
                )
            )
            pitr = [
                r
                for _, r in tables
                if r["Properties"]
                .get("PointInTimeRecoverySpecification", {})
                .get("PointInTimeRecoveryEnabled")
            ]
            if pitr:
                share = gb * len(pitr) / len(tables)
                prate = self.p["dynamodb_pitr_gb_month"]
                self.lines.append(
                    Line(
                        f"point-in-time recovery ({len(pitr)} tables)",
                        f"{share:.2f} GB x {prate} USD",
                        _usd(share * prate),
                    )
                )
        buckets = self.assembly.of_type("AWS::S3::Bucket")
        if buckets:
            gb, rate = float(stored["s3"]), self.p["s3_gb_month"]
            self.lines.append(
                Line(f"S3 storage ({gb} GB assumed)", f"{gb} GB x {rate} USD", _usd(gb * rate))
            )
        kept = [
            rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
            for _, b in buckets
            if b["Properties"].get("VersioningConfiguration", {}).get("Status") == "Enabled"
            for rule in b["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
            if "NoncurrentVersionExpiration" in rule
        ]
        if kept:
            gb, rate = float(stored["s3_old_versions"]) * len(kept), self.p["s3_gb_month"]
            self.lines.append(
                Line(
                    f"old S3 object versions ({len(kept)} buckets, kept {max(kept)} days, "
                    f"{gb} GB assumed)",
                    f"{gb} GB x {rate} USD",
                    _usd(gb * rate),
                )
            )
        if self.assembly.docker_images:
            gb, rate = (
                self.assembly.docker_images * float(self.a["image_gb"]),
                self.p["ecr_gb_month"],
            )
            self.lines.append(
                Line(
                    "container image in ECR (size assumed)",
                    f"{gb} GB x {rate} USD",
                    _usd(gb * rate),
                )
            )

    def per_use_services(self) -> None:
        if self.assembly.of_type("AWS::CloudFront::Distribution"):
            self.lines.append(Line("CloudFront distribution", "per request and GB only", 0.0))
        budgets = len(self.assembly.of_type("AWS::Budgets::Budget"))
        if budgets:
            self.lines.append(
                Line(f"AWS Budgets x{budgets}", "an account's first two are free", 0.0)
            )
        for _, cluster in self.assembly.of_type("AWS::ECS::Cluster"):
            settings = {
                s["Name"]: s["Value"] for s in cluster["Properties"].get("ClusterSettings", [])
            }
            if settings.get("containerInsights") in ("enabled", "enhanced"):
                self.unpriced.append(
                    "ECS Container Insights: custom metrics billed per hour while worker tasks "
                    "run (none while idle); not priced here"
                )


def unknown_types(assembly: Assembly) -> list[str]:
    counts = Counter(r["Type"] for _, r in assembly.resources())
    return [
        f"{kind} x{n} (no price rule)"
        for kind, n in sorted(counts.items())
        if kind not in USAGE_ONLY | FREE | PRICED and not kind.startswith("Custom::")
    ]


# -- the marginal cost of work ---------------------------------------------------------------
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
        _usd(hours * rate),
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
             _usd(sqs / 1e6 * p["sqs_million"])),
        Line("DynamoDB writes and reads", f"{writes:,} WRU + {reads:,} RRU", _usd(dynamodb)),
        Line("S3 requests", f"{gets:,} HEAD/GET (dataset) + {puts:,} PUT (model, metadata)",
             _usd(gets / 1e3 * p["s3_get_thousand"] + puts / 1e3 * p["s3_put_thousand"])),
        Line("CloudWatch Logs", f"{n * a['job_log_kb'] / 1e6:.3f} GB",
             _usd(n * a["job_log_kb"] / 1e6 * p["logs_ingest_gb"])),
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
            _usd(writes / 1e6 * p["dynamodb_write_million"]),
        ),
        Line(
            "DynamoDB storage of the predictions, per month kept",
            f"{gb:.2f} GB",
            _usd(gb * p["dynamodb_gb_month"]),
        ),
        Line(
            "SQS requests",
            f"{jobs * (3 + beats):,} ({jobs} jobs of {a['predict_rows_per_job']:,} rows)",
            _usd(jobs * (3 + beats) / 1e6 * p["sqs_million"]),
        ),
        Line("S3 requests", f"{jobs:,} GET (datasets)", _usd(jobs / 1e3 * p["s3_get_thousand"])),
    ]


# -- the report ------------------------------------------------------------------------------
def report(assembly: Assembly, region: str, table: Mapping[str, Any] | None = None) -> Report:
    table = table or load_prices()
    prices = region_prices(table, region)
    idle = _Idle(assembly, prices, table)
    idle.run()
    a = table["assumptions"]
    hours = float(a["hours_per_month"])
    rate = prices["sagemaker_hour"].get(ALTERNATIVE)
    alternative = Line(
        f"SageMaker real-time endpoint, one {ALTERNATIVE} (the smallest), always on",
        f"{hours:.0f} h x {rate} USD" if rate is not None else "no price in prices.json",
        _usd(rate * hours) if rate is not None else None,
    )
    usage = Counter(r["Type"] for _, r in assembly.resources() if r["Type"] in USAGE_ONLY)
    return Report(
        region=region,
        as_of=str(table["as_of"]),
        idle=idle.lines,
        usage_only=dict(sorted(usage.items())),
        unpriced=[*idle.unpriced, *unknown_types(assembly)],
        train=per_train_jobs(assembly, prices, a),
        predictions=per_predictions(assembly, prices, a),
        alternative=alternative,
        assumptions=dict(a),
    )

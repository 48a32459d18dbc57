"""The idle month: every resource that costs money while nothing happens, priced by a rule from
the template's own properties; what has no rule or price is named, never priced at zero."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from mlpoc.aws.cloud_assembly import Assembly, references
from mlpoc.cost.lines import FREE, PRICED, USAGE_ONLY, Line, template_options, usd


class Idle:
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
        self.gpu_pool()
        self.per_use_services()

    def beanstalk(self, env: Mapping[str, Any]) -> None:
        options = template_options(env)
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
                    usd(rate * self.hours),
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
                    usd(size * volume),
                )
            )
        if options.get("EnvironmentType") == "SingleInstance":
            ipv4 = self.p["public_ipv4_hour"]
            self.lines.append(
                Line(
                    "its public IPv4 address (Elastic IP)",
                    f"{self.hours:.0f} h x {ipv4} USD",
                    usd(ipv4 * self.hours),
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
                    usd(metrics * rate),
                    free=usd(min(metrics, self.free["custom_metrics"]) * rate),
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
                    usd(len(nats) * self.hours * (rate + ipv4)),
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
                    usd(len(eips) * self.hours * ipv4),
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
                    usd(azs * self.hours * rate),
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
                        usd(n * rate),
                        free=usd(min(n, free_count) * rate),
                    )
                )

        add("AWS::KMS::Key", "KMS keys", self.p["kms_key_month"])
        add("AWS::SecretsManager::Secret", "Secrets Manager secrets", self.p["secret_month"])
        # CloudWatch bills an alarm per metric it evaluates: a metric-math alarm (the scaling
        # alarms on visible + in-flight messages) counts each metric of its expression
        alarms = self.assembly.of_type("AWS::CloudWatch::Alarm")
        if alarms:
            n = sum(alarm_metrics(r) for _, r in alarms)
            rate = self.p["alarm_month"]
            self.lines.append(
                Line(
                    f"CloudWatch alarms x{len(alarms)} ({n} alarm metrics)",
                    f"{n} x {rate} USD",
                    usd(n * rate),
                    free=usd(min(n, self.free["alarms"]) * rate),
                )
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
                usd(gb * (ingest + store)),
                free=usd(min(gb, self.free["logs_gb"]) * ingest),
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
                    usd(requests / 1e6 * rate),
                    free=usd(min(requests, self.free["sqs_requests"]) / 1e6 * rate),
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
                    usd(gb * rate),
                    free=usd(min(gb, self.free["dynamodb_gb"]) * rate),
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
                        usd(share * prate),
                    )
                )
        buckets = self.assembly.of_type("AWS::S3::Bucket")
        if buckets:
            gb, rate = float(stored["s3"]), self.p["s3_gb_month"]
            self.lines.append(
                Line(f"S3 storage ({gb} GB assumed)", f"{gb} GB x {rate} USD", usd(gb * rate))
            )
        kept = [  # per versioned bucket, its longest rule (a prefix's rule may keep less)
            max(
                rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
                for rule in b["Properties"]["LifecycleConfiguration"]["Rules"]
                if "NoncurrentVersionExpiration" in rule
            )
            for _, b in buckets
            if b["Properties"].get("VersioningConfiguration", {}).get("Status") == "Enabled"
            and any(
                "NoncurrentVersionExpiration" in rule
                for rule in b["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
            )
        ]
        if kept:
            gb, rate = float(stored["s3_old_versions"]) * len(kept), self.p["s3_gb_month"]
            self.lines.append(
                Line(
                    f"old S3 object versions ({len(kept)} buckets, kept {max(kept)} days, "
                    f"{gb} GB assumed)",
                    f"{gb} GB x {rate} USD",
                    usd(gb * rate),
                )
            )
        if self.assembly.gpu_images:
            gb = self.assembly.gpu_images * float(self.a["gpu_image_gb"])
            rate = self.p["ecr_gb_month"]
            self.lines.append(
                Line("GPU container image in ECR (size assumed)", f"{gb} GB x {rate} USD",
                     usd(gb * rate))
            )  # fmt: skip
        if self.assembly.docker_images:
            count, each = self.assembly.docker_images, float(self.a["image_gb"])
            gb, rate = round(count * each, 3), self.p["ecr_gb_month"]
            self.lines.append(
                Line(
                    f"container images in ECR ({count} x {each} GB compressed, assumed)",
                    f"{gb} GB x {rate} USD",
                    usd(gb * rate),
                )
            )

    def gpu_pool(self) -> None:
        """The GPU pool's instances: an Auto Scaling group of minimum 0 costs nothing at zero
        (its per-hour prices are the report's GPU section)."""
        for _, group in self.assembly.of_type("AWS::AutoScaling::AutoScalingGroup"):
            props = group["Properties"]
            if str(props.get("MinSize")) != "0":
                self.unpriced.append(
                    f"an Auto Scaling group of minimum {props.get('MinSize')}: its instances "
                    "run all month; not priced here"
                )
                continue
            self.lines.append(
                Line(
                    "GPU pool instances (Auto Scaling group, minimum 0)",
                    "none while no GPU job runs; per hour below",
                    0.0,
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


def alarm_metrics(alarm: Mapping[str, Any]) -> int:
    """How many metrics an alarm evaluates (what CloudWatch bills it by)."""
    metrics = alarm["Properties"].get("Metrics")
    if not metrics:
        return 1
    return sum(1 for m in metrics if "MetricStat" in m) or 1


def unknown_types(assembly: Assembly) -> list[str]:
    counts = Counter(r["Type"] for _, r in assembly.resources())
    return [
        f"{kind} x{n} (no price rule)"
        for kind, n in sorted(counts.items())
        if kind not in USAGE_ONLY | FREE | PRICED and not kind.startswith("Custom::")
    ]

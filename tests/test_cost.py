"""`mlpoc cost`: figures checked against hand-computed values, per config and per region."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mlpoc import cost, plugins
from mlpoc.aws.cloud_assembly import Assembly
from mlpoc.cli.app import app
from mlpoc.data import digits
from mlpoc.errors import CostError
from mlpoc.runtime.environment import Settings
from mlpoc.worker.loop import Worker
from mlpoc.worker.train import handle_train
from tests.support.aws_stack import Stack
from tests.support.cdk_app import Synthesized
from tests.support.counting import CallCounter

H = 730  # hours in the price table's month
# the default config's idle month in us-east-1, line by line (prices.json, 2025-01)
DEFAULT_US_EAST_1 = {
    "API instance t4g.micro (Elastic Beanstalk)": H * 0.0084,
    "its root volume (8 GB gp3)": 8 * 0.08,
    "its public IPv4 address (Elastic IP)": H * 0.005,
    "enhanced-health metrics (2)": 2 * 0.30,
    "KMS keys x1": 1.00,
    "Secrets Manager secrets x2": 2 * 0.40,  # the API key, the CloudFront origin header
    # billed per alarm metric: 9 alarms of one metric (one the schedules' dead letters: the
    # monitor's schedule), the two scale-out alarms on visible + in-flight (2 each), the two idle
    # scale-in alarms on tasks, visible and in-flight (3 each)
    "CloudWatch alarms x13 (19 alarm metrics)": (9 + 2 * 2 + 2 * 3) * 0.10,
    "CloudWatch dashboards x1": 3.00,
    "CloudWatch Logs (API, VPC flow logs; volume assumed)": 0.5 * (0.50 + 0.03),
    "SQS polling by Lambda's event source x1": 5 * (3600 / 20) * H / 1e6 * 0.40,
    "DynamoDB storage (5 tables, 1.0 GB assumed)": 1.0 * 0.25,
    "S3 storage (2.0 GB assumed)": 2.0 * 0.023,
    # data and models are versioned; old versions are kept 30 days
    "old S3 object versions (2 buckets, kept 30 days, 1.0 GB assumed)": 1.0 * 0.023,
    "container images in ECR (2 x 0.3 GB compressed, assumed)": 0.6 * 0.10,  # worker and API
    "CloudFront distribution": 0.0,
    "AWS Budgets x1": 0.0,
}


def lines(report: cost.Report) -> dict[str, float | None]:
    return {line.item: line.usd for line in report.idle}


def assembly_of(synth: Synthesized) -> Assembly:
    return Assembly.from_dir(synth.outdir)


@pytest.fixture(scope="module")
def bigger_api(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return Synthesized(tmp_path_factory.mktemp("cdk-t4g-medium"), api_instance_type="t4g.medium")


def test_the_default_idle_month_in_us_east_1(poc: Synthesized) -> None:
    report = cost.report(assembly_of(poc), "us-east-1")
    assert lines(report) == pytest.approx(DEFAULT_US_EAST_1, abs=1e-6)
    assert report.idle_total == pytest.approx(18.63, abs=0.005)
    # always-free: 10 of the 19 alarm metrics, both metrics, the dashboard, the polls, logs, storage
    free = 10 * 0.10 + 2 * 0.30 + 3.00 + 5 * 180 * H / 1e6 * 0.40 + 0.5 * 0.50 + 0.25
    assert report.idle_free_tier == pytest.approx(sum(DEFAULT_US_EAST_1.values()) - free, abs=0.01)
    assert report.idle_free_tier < 20
    assert report.unpriced == [
        "ECS Container Insights: custom metrics billed per hour while worker tasks run "
        "(none while idle); not priced here"
    ]
    assert report.alternative.usd == pytest.approx(H * 0.056)


def test_a_larger_api_instance_raises_the_idle_month(
    poc: Synthesized, bigger_api: Synthesized
) -> None:
    before = cost.report(assembly_of(poc), "us-east-1")
    after = cost.report(assembly_of(bigger_api), "us-east-1")
    assert lines(after)["API instance t4g.medium (Elastic Beanstalk)"] == pytest.approx(H * 0.0336)
    assert after.idle_total - before.idle_total == pytest.approx(H * (0.0336 - 0.0084), abs=0.01)


def test_retain_adds_point_in_time_recovery_and_drops_spot(
    poc: Synthesized, retain: Synthesized
) -> None:
    # GIVEN stage retain (PITR on every table) with Spot off
    report = cost.report(assembly_of(retain), "us-east-1")
    # THEN PITR is priced on the assumed 1 GB and the rest of the idle month is unchanged
    assert lines(report)["point-in-time recovery (5 tables)"] == pytest.approx(1.0 * 0.20)
    default = cost.report(assembly_of(poc), "us-east-1")
    assert report.idle_total == pytest.approx(default.idle_total + 0.20, abs=0.005)
    # AND a train task-hour is on-demand: 1 vCPU + 2 GB + its public IPv4
    on_demand = 1 * 0.03238 + 2 * 0.00356 + 0.005
    fargate = report.train[0]
    assert fargate.usd == pytest.approx(1000 * 2 / 60 * on_demand, abs=1e-3)
    spot_mix = (1 * 0.03238 + 2 * 0.00356) * (1 - 0.8 * 0.5) + 0.005
    assert default.train[0].usd == pytest.approx(1000 * 2 / 60 * spot_mix, abs=1e-3)


def test_the_marginal_costs_by_hand(poc: Synthesized) -> None:
    report = cost.report(assembly_of(poc), "us-east-1")
    spot_mix = (0.03238 + 2 * 0.00356) * (1 - 0.8 * 0.5) + 0.005
    beats = 3  # a 2-minute job, heartbeats every 40 s (120 s visibility / 3)
    train = {line.item.split(" (")[0]: line.usd for line in report.train}
    assert train == pytest.approx(
        {
            "Fargate ARM64 1 vCPU / 2 GB": 1000 * 2 / 60 * spot_mix,
            "SQS requests": 1000 * (3 + beats) / 1e6 * 0.40,
            "DynamoDB writes and reads": 1000 * ((1 + 3 + beats + 6) * 0.625 + 0.125) / 1e6,
            "S3 requests": 2 * 0.0004 + 2 * 0.005,
            "CloudWatch Logs": 1000 * 20 / 1e6 * 0.50,
        },
        abs=1e-6,
    )
    predictions = {line.item.split(" (")[0]: line.usd for line in report.predictions}
    jobs, predict_beats = 100, 1  # 30-s jobs, a heartbeat every 20 s (60 s visibility / 3)
    assert predictions == pytest.approx(
        {
            "Fargate ARM64 1 vCPU / 2 GB": (1e6 / 2000 + jobs * 30) / 3600 * spot_mix,
            "DynamoDB writes": (1e6 * 1.15 + jobs * (3 + predict_beats)) / 1e6 * 0.625,
            "DynamoDB storage of the predictions, per month kept": 1e6 * 0.3 / 1024**2 * 0.25,
            "SQS requests": jobs * (3 + predict_beats) / 1e6 * 0.40,
            "S3 requests": jobs / 1e3 * 0.0004,
        },
        abs=1e-6,
    )


def test_ap_northeast_1_uses_its_own_prices(poc: Synthesized) -> None:
    report = cost.report(assembly_of(poc), "ap-northeast-1")
    assert lines(report)["API instance t4g.micro (Elastic Beanstalk)"] == pytest.approx(H * 0.0108)
    assert lines(report)["its root volume (8 GB gp3)"] == pytest.approx(8 * 0.096)


def test_an_unknown_region_is_named_not_priced(poc: Synthesized) -> None:
    with pytest.raises(CostError, match=r"no prices for region eu-west-3 .*us-east-1"):
        cost.report(assembly_of(poc), "eu-west-3")


def with_resources(assembly: Assembly, **resources: dict[str, Any]) -> Assembly:
    templates = copy.deepcopy(assembly.templates)
    name = next(n for n in templates if n.endswith("-service"))
    templates[name]["Resources"].update(resources)
    return replace(assembly, templates=templates)


def test_an_unpriced_resource_type_and_instance_type_are_named(poc: Synthesized) -> None:
    # GIVEN a resource type the table has no rule for, and an instance type it has no price for
    base = assembly_of(poc)
    changed = with_resources(base, Search={"Type": "AWS::OpenSearchService::Domain"})
    templates = changed.templates
    service = next(t for n, t in templates.items() if n.endswith("-service"))
    (env,) = [r for r in service["Resources"].values()
              if r["Type"] == "AWS::ElasticBeanstalk::Environment"]  # fmt: skip
    for option in env["Properties"]["OptionSettings"]:
        if option["OptionName"] == "InstanceTypes":
            option["Value"] = "x9g.huge"
    # WHEN priced
    report = cost.report(changed, "us-east-1")
    # THEN both are named, and the instance is not silently counted
    assert "AWS::OpenSearchService::Domain x1 (no price rule)" in report.unpriced
    assert "EC2 instance type 'x9g.huge' of the API (no price in prices.json)" in report.unpriced
    assert not any(item.startswith("API instance") for item in lines(report))


def test_a_nat_gateway_is_priced_with_its_address(poc: Synthesized) -> None:
    base = assembly_of(poc)
    nat = with_resources(
        base,
        NatIp={"Type": "AWS::EC2::EIP", "Properties": {"Domain": "vpc"}},
        Nat={
            "Type": "AWS::EC2::NatGateway",
            "Properties": {"AllocationId": {"Fn::GetAtt": ["NatIp", "AllocationId"]}},
        },
    )
    report = cost.report(nat, "us-east-1")
    assert lines(report)["NAT gateway x1 (+ its public IPv4)"] == pytest.approx(H * (0.045 + 0.005))
    assert not any(item.startswith("Elastic IP") for item in lines(report))  # not counted twice
    base_total = cost.report(base, "us-east-1").idle_total
    assert report.idle_total == pytest.approx(base_total + H * 0.05, abs=0.01)


def test_the_train_job_call_counts_the_model_uses_are_what_a_job_does(stack: Stack) -> None:
    # GIVEN one train job on the queue
    clients = stack.clients()
    plugins.load([])
    key = "datasets/digits/count.csv"
    clients.s3.put_object(
        Bucket=stack.data_bucket, Key=key, Body=digits.training_csv(slice(0, 300)).encode()
    )
    settings = replace(Settings.from_env("train", stack.env()), wait_seconds=0)
    message = {"schema": 1, "job_id": "count-1", "type": "train", "model": "digits",
               "dataset": f"s3://{stack.data_bucket}/{key}"}  # fmt: skip
    clients.sqs.send_message(QueueUrl=settings.queue_url, MessageBody=json.dumps(message))
    worker = Worker(settings=settings, clients=clients, handler=handle_train)
    # WHEN a worker runs it (a fast job: no heartbeat)
    counter = CallCounter(clients)
    assert worker.process_batch().succeeded == 1
    # THEN it made exactly the calls the cost model prices (plus, once per task, the lookup of
    # the queue's visibility timeout)
    once_per_task = {"GetQueueAttributes": 1, "GetQueueUrl": 1}
    assert dict(counter.calls) == {**cost.TRAIN_JOB_CALLS, **once_per_task}


def test_the_cli_prints_the_report_and_a_one_line_summary(poc: Synthesized) -> None:
    runner = CliRunner()
    full = runner.invoke(app, ["cost", "--assembly", str(poc.outdir), "--region", "us-east-1"])
    assert full.exit_code == 0, full.output
    assert "18.63" in full.output
    assert "Monitoring, per month" in full.output
    assert "not priced:" in full.output
    assert "ml.t2.medium" in full.output
    line = runner.invoke(app, ["cost", "--assembly", str(poc.outdir), "--summary"])
    assert line.exit_code == 0
    assert line.output.startswith("mlpoc cost: idle 18.63 USD/month in us-east-1 (13.27")
    unknown = runner.invoke(app, ["cost", "--assembly", str(poc.outdir), "--region", "xx-1"])
    assert unknown.exit_code == 1
    assert "no prices for region xx-1" in unknown.output
    missing = runner.invoke(app, ["cost", "--assembly", str(Path("/nonexistent"))])
    assert missing.exit_code == 1
    assert "make synth" in missing.output


def test_the_monitor_is_priced_per_month(poc: Synthesized) -> None:
    found = {line.item: line for line in cost.report(assembly_of(poc), "us-east-1").monitor}
    # a daily monitor job: 30 runs of a minute of a predict task (1 vCPU, 2 GB, 100% Spot)
    fargate = next(line for item, line in found.items() if item.startswith("Fargate"))
    assert fargate.detail.startswith("0.5 task-h")
    s3 = found["S3 requests of the monitor jobs"]
    assert s3.detail == "30 runs: 6,175 GET/LIST (samples) + 61 PUT (reports)"
    sample = found["the API's sample of realtime requests (10% of 1 M requests a month)"]
    # 100,000 sampled rows: 43,800 one-a-minute PUTs at most, 0.03 GB
    assert sample.detail == "43,800 PUT + 0.03 GB kept 30 days"
    assert sample.usd == pytest.approx(43.8 * 0.005 + 0.03 * 0.023, abs=0.01)


def test_features_by_key_are_priced_per_million_lookups(poc: Synthesized) -> None:
    report = cost.report(assembly_of(poc), "us-east-1")
    found = {line.item: line for line in report.lookups}
    reads = found["DynamoDB reads per 1 M realtime predictions by key (BatchGetItem)"]
    # one eventually consistent read of one item under 4 KB: half a read unit at 0.125 USD/M
    assert reads.detail.startswith("500,000 RRU")
    assert reads.usd == pytest.approx(0.0625, abs=0.001)
    published = found["Publishing 100,000 entities 4x a month (features jobs)"]
    assert published.detail.startswith("800,000 WRU")  # the item, then its expiry mark
    assert published.usd == pytest.approx(0.5, abs=0.001)
    # and more keys a request read more: the price follows the assumption
    table = json.loads(json.dumps(cost.load_prices()))
    table["assumptions"]["feature_keys_per_request"] = 10
    more = cost.report(assembly_of(poc), "us-east-1", table).lookups[0]
    assert more.usd == pytest.approx(0.625, abs=0.001)

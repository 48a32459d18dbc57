"""checkov over every synthesized configuration: nothing fails, and each check it skips carries a
reason in the resource's template metadata (stacks/constructs/nag.py) whose claim a test below
checks against the template, so a reason cannot quietly stop being true."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stacks.constructs.storage import LOG_DAYS
from stacks.constructs.upload import MAX_CONCURRENCY
from tests.support.cdk_app import ROOT, SharedApp, Synthesized

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CONFIGURATIONS = ["poc", "retain", "linked", "share", "gpu"]


def checkov(templates: list[Path], home: Path) -> list[dict[str, Any]]:
    """checkov's CloudFormation report on ``templates``: one entry per check and resource, with
    ``outcome`` (passed, failed, skipped). Offline: no download, proxies that answer nothing."""
    if not CHECKOV.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHECKOV} is missing: make test installs it (make checkov)")
        pytest.skip("checkov is not installed: make checkov")
    offline = "http://127.0.0.1:9"
    command = [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "--compact"]
    offline_env = {"HTTPS_PROXY": offline, "HTTP_PROXY": offline, "NO_PROXY": ""}
    done = subprocess.run(
        [*command, "--output", "json", *(f"--file={t}" for t in templates)],
        env={"PATH": os.environ["PATH"], "HOME": str(home), **offline_env},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: something failed (asserted by callers)
    reports = json.loads(done.stdout)
    found = []
    for report in reports if isinstance(reports, list) else [reports]:
        for outcome in ("passed", "failed", "skipped"):
            for check in report["results"][f"{outcome}_checks"]:
                found.append({**check, "outcome": outcome})
    return found


@pytest.fixture(scope="module", params=CONFIGURATIONS)
def configuration(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[dict[str, Any]], dict[str, dict[str, Any]]]]:
    """A configuration's name, checkov's report and its templates (by stack name)."""
    if request.param == "gpu":
        app: Synthesized | SharedApp = Synthesized(tmp_path_factory.mktemp("cdk-gpu"), gpu=True)
    else:
        app = request.getfixturevalue(request.param)
    paths = sorted(app.outdir.glob("*.template.json"))
    templates = {p.name.removesuffix(".template.json"): json.loads(p.read_text()) for p in paths}
    yield request.param, checkov(paths, tmp_path_factory.mktemp("checkov-home")), templates


# Every check the kit skips somewhere, and the tests below that check its reason's claims.
REVIEWED = {
    "CKV_AWS_18": "test_log_buckets_only_receive_access_logs",
    "CKV_AWS_21": "test_log_buckets_only_receive_access_logs",
    "CKV_AWS_28": "test_point_in_time_recovery_is_off_in_stage_poc_only",
    "CKV_AWS_68": "test_the_distribution_has_no_domain_and_the_api_needs_its_key",
    "CKV_AWS_86": "test_the_distribution_has_no_domain_and_the_api_needs_its_key",
    "CKV_AWS_174": "test_the_distribution_has_no_domain_and_the_api_needs_its_key",
    "CKV_AWS_88": "test_gpu_instances_admit_nothing_inbound",
    "CKV_AWS_111": "test_gpu_instance_policy_leaves_unscoped_only_what_takes_no_resource",
    "CKV_AWS_115": "test_no_function_reserves_concurrency_and_uploads_are_bounded",
    "CKV_AWS_116": "test_each_function_without_a_dead_letter_queue_keeps_its_failures_elsewhere",
    "CKV_AWS_117": "test_functions_outside_the_vpc_reach_only_aws_apis",
    "CKV_AWS_173": "test_function_environments_hold_no_secret",
}


def test_checkov_fails_nothing_and_each_skip_says_why(
    configuration: tuple[str, list[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    name, report, _ = configuration
    failed = [f"{c['check_id']} {c['resource']}" for c in report if c["outcome"] == "failed"]
    assert failed == [], f"{name}: fix these, or skip each with a reason (stacks/constructs/nag.py)"
    assert sum(c["outcome"] == "passed" for c in report) > 25  # it scanned the templates
    for check in (c for c in report if c["outcome"] == "skipped"):
        where = f"{name}: {check['check_id']} on {check['resource']}"
        assert check["check_id"] in REVIEWED, f"{where}: add a test of its reason to REVIEWED"
        reason = check["check_result"]["suppress_comment"]
        assert len(reason) >= 80, f"{where}: give a reviewer a real reason"


def test_each_reviewed_check_names_a_test_here() -> None:
    source = Path(__file__).read_text()
    for check, test in REVIEWED.items():
        assert f"def {test}(" in source, f"{check}: no test {test}"


@pytest.mark.stack  # synthesizes an app of its own
def test_a_new_failure_fails_and_a_skip_needs_the_metadata(tmp_path: Path) -> None:
    # GIVEN a table without point-in-time recovery, once bare and once with a checkov skip
    table = {"Type": "AWS::DynamoDB::Table", "Properties": {
        "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST"}}  # fmt: skip
    skipped = {**table, "Metadata": {"checkov": {"skip": [{"id": "CKV_AWS_28", "comment": "why"}]}}}
    template = tmp_path / "t.template.json"
    template.write_text(json.dumps({"Resources": {"Bare": table, "Skipped": skipped}}))
    # THEN the bare one fails, and the other is skipped with its comment
    report = checkov([template], tmp_path)
    outcomes = {(c["resource"], c["outcome"]) for c in report if c["check_id"] == "CKV_AWS_28"}
    assert outcomes == {
        ("AWS::DynamoDB::Table.Bare", "failed"),
        ("AWS::DynamoDB::Table.Skipped", "skipped"),
    }


# -- each reason's claims -----------------------------------------------------------------------


def resources(templates: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        logical: resource
        for template in templates.values()
        for logical, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


def skips(resource: dict[str, Any]) -> set[str]:
    return {s["id"] for s in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])}


def refs(value: Any) -> set[str]:
    """Every logical id ``value`` refers to (Ref, Fn::GetAtt)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value:
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        for inner in value.values():
            found |= refs(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= refs(inner)
    return found


def test_log_buckets_only_receive_access_logs(
    configuration: tuple[str, list[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    _, _, templates = configuration
    buckets = resources(templates, "AWS::S3::Bucket")
    log_buckets = {k for k, b in buckets.items() if {"CKV_AWS_18", "CKV_AWS_21"} & skips(b)}
    assert log_buckets  # every configuration has one
    for logical in log_buckets:
        # the other buckets' server access logs go here, and they expire
        destinations = {
            d
            for b in buckets.values()
            for d in refs(b["Properties"].get("LoggingConfiguration", {}))
        }
        assert logical in destinations
        rules = buckets[logical]["Properties"]["LifecycleConfiguration"]["Rules"]
        assert [r["ExpirationInDays"] for r in rules] == [LOG_DAYS]
        # and no role of the kit may write to it: only S3's log delivery does
        for policy in resources(templates, "AWS::IAM::Policy").values():
            assert logical not in refs(policy["Properties"]["PolicyDocument"])


def test_point_in_time_recovery_is_off_in_stage_poc_only(
    configuration: tuple[str, list[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    name, _, templates = configuration
    for logical, table in resources(templates, "AWS::DynamoDB::Table").items():
        enabled = table["Properties"]["PointInTimeRecoverySpecification"][
            "PointInTimeRecoveryEnabled"
        ]
        assert enabled is (name == "retain"), logical
        assert ("CKV_AWS_28" in skips(table)) is (not enabled), logical


def test_the_distribution_has_no_domain_and_the_api_needs_its_key(
    configuration: tuple[str, list[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    _, _, templates = configuration
    for logical, distribution in resources(templates, "AWS::CloudFront::Distribution").items():
        config = distribution["Properties"]["DistributionConfig"]
        assert {"CKV_AWS_68", "CKV_AWS_86", "CKV_AWS_174"} <= skips(distribution), logical
        # the default *.cloudfront.net certificate: no domain, no certificate of the kit's own
        assert "Aliases" not in config and "ViewerCertificate" not in config
        assert "WebACLId" not in config and "Logging" not in config
    # the rest of the reasons (the key on every /v1 route, capped bodies, a rate limit, an access
    # log line per request) are the API's and the proxy's behaviour: their tests, named here so
    # that renaming or removing one fails this test
    for file, tests in CLAIMED_BY_RUNNING_TESTS.items():
        source = (ROOT / "tests" / file).read_text()
        for test in tests:
            assert f"def {test}(" in source, f"{file}: {test}"


CLAIMED_BY_RUNNING_TESTS = {
    "test_api_contract.py": [
        "test_without_the_key_every_v1_call_is_401_whatever_its_body_or_method"
    ],
    "test_proxy.py": [
        "test_pages_are_compressed_and_bodies_capped",
        "test_a_client_past_the_rate_gets_429_in_the_apis_error_shape",
        "test_every_request_is_logged_and_the_health_agent_gets_its_lines",
    ],
}


def test_gpu_instances_admit_nothing_inbound(
    configuration: tuple[str, list[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    name, _, templates = configuration
    launch_templates = resources(templates, "AWS::EC2::LaunchTemplate")
    assert bool(launch_templates) is (name == "gpu")
    groups = resources(templates, "AWS::EC2::SecurityGroup")
    ingress = resources(templates, "AWS::EC2::SecurityGroupIngress")
    egress = resources(templates, "AWS::EC2::SecurityGroupEgress")
    assert resources(templates, "AWS::EC2::NatGateway") == {}
    for logical, template in launch_templates.items():
        assert "CKV_AWS_88" in skips(template)
        data = template["Properties"]["LaunchTemplateData"]
        assert data["MetadataOptions"]["HttpTokens"] == "required"
        (interface,) = data["NetworkInterfaces"]
        assert interface["AssociatePublicIpAddress"] is True
        for group_id in refs(interface["Groups"]):
            group = groups[group_id]["Properties"]
            assert "SecurityGroupIngress" not in group, logical
            assert not [i for i in ingress.values() if group_id in refs(i["Properties"])]
            rules = group.get("SecurityGroupEgress", []) + [
                e["Properties"] for e in egress.values() if group_id in refs(e["Properties"])
            ]
            assert rules and {(r["FromPort"], r["ToPort"]) for r in rules} == {(443, 443)}


# actions with no resource-level permissions, or scoped by a condition, or aws-cdk-lib's
# awslogs fallback for tasks without an execution role (the reason on CKV_AWS_111)
UNSCOPED = {
    "cloudwatch:PutMetricData", "ec2:DescribeTags", "ecr:GetAuthorizationToken",
    "ecs:DiscoverPollEndpoint", "ecs:Poll", "ecs:StartTelemetrySession",
    "ecs:UpdateContainerInstancesState", "logs:CreateLogStream", "logs:PutLogEvents",
}  # fmt: skip


def test_gpu_instance_policy_leaves_unscoped_only_what_takes_no_resource(
    configuration: tuple[str, list[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    _, _, templates = configuration
    policies = resources(templates, "AWS::IAM::Policy")
    reviewed = {k: p for k, p in policies.items() if "CKV_AWS_111" in skips(p)}
    for logical, policy in reviewed.items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Resource"] != "*":
                continue
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            assert set(actions) <= UNSCOPED, logical
            if "cloudwatch:PutMetricData" in actions:
                assert statement["Condition"] == {
                    "StringEquals": {"cloudwatch:namespace": "CWAgent"}
                }
    if reviewed:  # the GPU tasks log with their execution role, into their own group only
        (task,) = [
            t
            for t in resources(templates, "AWS::ECS::TaskDefinition").values()
            if "Gpu" in json.dumps(t["Properties"].get("ExecutionRoleArn"))
        ]
        (container,) = task["Properties"]["ContainerDefinitions"]
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"


def kit_functions(templates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The kit's own functions (declared with their log group), not aws-cdk-lib's helpers."""
    return {
        k: f
        for k, f in resources(templates, "AWS::Lambda::Function").items()
        if "LoggingConfig" in f["Properties"]
    }


def test_no_function_reserves_concurrency_and_uploads_are_bounded(
    configuration: tuple[str, list[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    _, _, templates = configuration
    for logical, function in resources(templates, "AWS::Lambda::Function").items():
        assert "ReservedConcurrentExecutions" not in function["Properties"], logical
        assert "CKV_AWS_115" in skips(function), logical
    for mapping in resources(templates, "AWS::Lambda::EventSourceMapping").values():
        assert mapping["Properties"]["ScalingConfig"] == {"MaximumConcurrency": MAX_CONCURRENCY}


def test_each_function_without_a_dead_letter_queue_keeps_its_failures_elsewhere(
    configuration: tuple[str, list[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    _, _, templates = configuration
    functions = resources(templates, "AWS::Lambda::Function")
    mappings = resources(templates, "AWS::Lambda::EventSourceMapping")
    invoke_configs = resources(templates, "AWS::Lambda::EventInvokeConfig")
    queues = resources(templates, "AWS::SQS::Queue")
    alarmed = {
        d["Value"]["Fn::GetAtt"][0]
        for a in resources(templates, "AWS::CloudWatch::Alarm").values()
        for d in a["Properties"].get("Dimensions", [])
        if isinstance(d["Value"], dict) and "Fn::GetAtt" in d["Value"]
    }
    kit = kit_functions(templates)
    for logical, function in functions.items():
        assert "DeadLetterConfig" not in function["Properties"]
        assert "CKV_AWS_116" in skips(function), logical
        used_by = [
            r for t in templates.values() for k, r in t["Resources"].items()
            if k != logical and logical in refs(r.get("Properties", {}))
        ]  # fmt: skip
        if logical not in kit:  # a helper: CloudFormation's custom resources call it
            for user in used_by:
                properties = user["Properties"]
                assert logical in refs(properties.get("ServiceToken", {})) or user["Type"] in (
                    "AWS::Logs::LogGroup",
                    "AWS::IAM::Policy",
                ), user["Type"]
            continue
        mapping = [m for m in mappings.values() if logical in refs(m["Properties"])]
        on_failure = [c for c in invoke_configs.values() if logical in refs(c["Properties"])]
        if mapping:  # the upload function: its queue's redrive policy keeps what fails
            (m,) = mapping
            assert m["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
            source = json.dumps(m["Properties"]["EventSourceArn"])
            events = [q for k, q in queues.items() if k in source]
            if events:  # the events queue is in the data stack: by export name
                assert "RedrivePolicy" in events[0]["Properties"]
            else:
                (queue,) = [q for k, q in queues.items() if k.startswith("EventsQueue")]
                assert "RedrivePolicy" in queue["Properties"]
        else:  # the notifier: an on-failure destination, a queue that is alarmed on
            (config,) = on_failure
            (destination,) = refs(config["Properties"]["DestinationConfig"]["OnFailure"])
            assert queues[destination] and destination in alarmed


def test_functions_outside_the_vpc_reach_only_aws_apis(
    configuration: tuple[str, list[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    _, _, templates = configuration
    assert resources(templates, "AWS::EC2::NatGateway") == {}
    for logical, function in resources(templates, "AWS::Lambda::Function").items():
        assert "VpcConfig" not in function["Properties"], logical
        assert "CKV_AWS_117" in skips(function), logical


SECRET_NAME = re.compile(r"PASSWORD|TOKEN|WEBHOOK|API_KEY|SECRET(?!_ARN$)", re.IGNORECASE)


def test_function_environments_hold_no_secret(
    configuration: tuple[str, list[dict[str, Any]], dict[str, dict[str, Any]]],
) -> None:
    _, _, templates = configuration
    for logical, function in kit_functions(templates).items():
        assert "CKV_AWS_173" in skips(function), logical
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        for name, value in variables.items():
            assert not SECRET_NAME.search(name), f"{logical}: {name}"
            if isinstance(value, str):  # a literal: a name or a setting, never a credential
                assert re.fullmatch(r"[A-Za-z0-9_.:/-]{0,40}", value), f"{logical}: {name}"

"""The templates an AWS reviewer signs off: cdk-nag AwsSolutions clean (every acknowledgment
narrow and explained) and cfn-lint clean, in both stages, with two accounts and schedules, and
the share stack a business account deploys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk import aws_sqs as sqs

from tests.support.cdk_app import ROOT, SharedApp, Synthesized, make_app
from tests.support.cli import uncovered_env

STAGES = ["poc", "retain", "linked", "share"]


@pytest.fixture(params=STAGES)
def synth(request: pytest.FixtureRequest) -> Synthesized | SharedApp:
    fixture: Synthesized | SharedApp = request.getfixturevalue(request.param)
    return fixture


def acknowledgments(outdir: Path) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for metadata_file in outdir.glob("*.metadata.json"):
        for path, entries in json.loads(metadata_file.read_text()).items():
            for entry in entries:
                if entry["type"] == "aws:cdk:acknowledged-rules":
                    found[path] = entry["data"]
    return found


def test_cdk_nag_reports_nothing_unacknowledged(synth: Synthesized | SharedApp) -> None:
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    violations = [v for plugin in report["pluginReports"] for v in plugin.get("violations", [])]
    assert violations == []


def test_every_acknowledgment_is_narrow_and_explained(synth: Synthesized | SharedApp) -> None:
    stack_paths = {f"/{name}" for name in ("mlpoc-data", "mlpoc-service", "mlpoc-share")}
    for path, rules in acknowledgments(synth.outdir).items():
        for rule, reason in rules.items():
            if not rule.startswith("Annotation::AwsSolutions-"):
                continue  # aws-cdk-lib's own (e.g. CloudFormation-Validate W3010 on the AZs)
            assert path not in stack_paths, f"stack-wide acknowledgment of {rule} at {path}"
            if "IAM5" in rule or "IAM4" in rule:
                assert "[" in rule, f"{rule} at {path} must name the exact finding"
            assert len(reason) >= 60, f"{rule} at {path}: give a reviewer a real reason"


@pytest.mark.stack  # synthesizes an app of its own
def test_a_new_finding_fails_synthesis(tmp_path: Path) -> None:
    # GIVEN the app plus one queue that breaks the rules (no encryption, no DLQ, plain HTTP)
    app, stacks = make_app(tmp_path)
    sqs.Queue(stacks.data, "CarelessQueue", encryption=sqs.QueueEncryption.UNENCRYPTED)
    # THEN synthesis fails, naming the rule
    with pytest.raises(RuntimeError, match="ValidationFailed") as failure:
        app.synth()
    where = "mlpoc-data/CarelessQueue/Resource aws-cdk-lib.aws_sqs.CfnQueue"
    for rule in ("AwsSolutions-SQS2", "AwsSolutions-SQS3", "AwsSolutions-SQS4"):
        assert f"{where}\n   Acknowledge with 'AwsSolutions::{rule}'" in str(failure.value)


def test_cfn_lint_reports_no_error_and_no_warning(synth: Synthesized | SharedApp) -> None:
    templates = [str(t) for t in sorted(synth.outdir.glob("*.template.json"))]
    assert templates
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), *templates],
        cwd=ROOT,  # reads .cfnlintrc.yaml: the ignored rules are named there, with reasons
        env=uncovered_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""

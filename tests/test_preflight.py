"""`mlpoc preflight` against AWS, on moto (and botocore's Stubber where moto has no such state)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from mlpoc.aws import beanstalk_platform
from mlpoc.aws.cloud_assembly import Assembly
from mlpoc.cli.preflight import BOOTSTRAP_PARAMETER, Check, Preflight
from tests.support.cdk_app import Synthesized

MOTO_DOCKER = "64bit Amazon Linux 2023 v4.6.0 running Docker"  # what moto's Beanstalk offers
ACCOUNT = "123456789012"


def docker_with(output: str, code: int = 0) -> Any:
    def runner(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        assert list(command) == ["docker", "buildx", "ls"]
        return subprocess.CompletedProcess(list(command), code, output, "")

    return runner


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def preflight(poc: Synthesized, tmp_path: Path, **overrides: Any) -> Preflight:
    settings: dict[str, Any] = {
        "session": boto3.session.Session(region_name="us-east-1"),
        "region": "us-east-1",
        "project": "mlpoc",
        "assembly": Assembly.from_dir(poc.outdir),
        "context_file": tmp_path / "cdk.context.json",
        "configured_platform": beanstalk_platform.AUTO,
        "budget_usd": 50,
        "runner": docker_with("default*  docker\n  linux/amd64, linux/arm64\n"),
        **overrides,
    }
    return Preflight(**settings)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_bootstrapped_account_with_docker_is_ready_and_the_platform_is_kept(
    aws: None, poc: Synthesized, tmp_path: Path
) -> None:
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=BOOTSTRAP_PARAMETER, Value="27", Type="String"
    )
    checks = by_name(preflight(poc, tmp_path).checks())
    assert all(c.ok for c in checks.values()), checks
    assert checks["credentials"].detail.endswith(f"account {ACCOUNT} · us-east-1")
    assert checks["CDK bootstrap"].detail == "version 27 (the templates need 6+)"
    assert checks["stacks"].detail == "mlpoc-data: not deployed; mlpoc-service: not deployed"
    assert "AWSServiceRoleForECS" in checks["service-linked roles"].detail
    assert checks["idle month"].detail.startswith("18.63 USD a month idle")
    # THEN the newest Docker AL2023 platform is kept where synth finds it for this account
    kept = json.loads((tmp_path / "cdk.context.json").read_text())
    assert kept == {beanstalk_platform.context_key(ACCOUNT, "us-east-1"): MOTO_DOCKER}
    assert (
        checks["Beanstalk platform"].detail == f"resolved {MOTO_DOCKER!r}, kept in cdk.context.json"
    )
    # AND the next run reads it instead of resolving again
    again = by_name(preflight(poc, tmp_path).checks())["Beanstalk platform"]
    assert again.ok and again.detail.startswith(f"kept {MOTO_DOCKER!r}")


def test_what_would_fail_the_deploy_is_named_with_what_to_do(
    aws: None, poc: Synthesized, tmp_path: Path
) -> None:
    # GIVEN no bootstrap, no arm64 builder, a kept platform Beanstalk has retired, a small budget
    retired = "64bit Amazon Linux 2023 v4.0.1 running Docker"
    key = beanstalk_platform.context_key(ACCOUNT, "us-east-1")
    (tmp_path / "cdk.context.json").write_text(json.dumps({key: retired, "other": 1}))
    checks = by_name(
        preflight(
            poc, tmp_path, budget_usd=10, runner=docker_with("default  docker\n  linux/amd64\n")
        ).checks()
    )
    assert checks["CDK bootstrap"].ok is False
    assert checks["CDK bootstrap"].fix == f"npx cdk bootstrap aws://{ACCOUNT}/us-east-1"
    assert checks["Docker (arm64)"].ok is False
    assert "no builder lists linux/arm64" in checks["Docker (arm64)"].detail
    assert checks["Beanstalk platform"].ok is False
    assert "--refresh-platform" in checks["Beanstalk platform"].fix
    assert checks["idle month"].ok is False
    # WHEN the platform is refreshed THEN the kept value is replaced, the rest of the file kept
    refreshed = by_name(preflight(poc, tmp_path, refresh_platform=True).checks())
    assert refreshed["Beanstalk platform"].ok
    assert json.loads((tmp_path / "cdk.context.json").read_text()) == {key: MOTO_DOCKER, "other": 1}


def test_a_pinned_platform_is_checked_against_what_is_offered(
    aws: None, poc: Synthesized, tmp_path: Path
) -> None:
    pinned = "64bit Amazon Linux 2023 v4.0.1 running Docker"
    check = preflight(poc, tmp_path, configured_platform=pinned).platform()
    assert check.ok is False
    assert check.fix == f"set mlpoc:eb_solution_stack to auto, or to {MOTO_DOCKER!r}"
    assert not (tmp_path / "cdk.context.json").exists()  # a pinned name writes nothing


def test_a_stack_left_in_rollback_complete_blocks_the_deploy(
    aws: None, poc: Synthesized, tmp_path: Path
) -> None:
    # moto cannot leave a stack in ROLLBACK_COMPLETE: botocore's Stubber answers instead
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    stubber = Stubber(cloudformation)
    stubber.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": "mlpoc-data",
                    "StackStatus": "ROLLBACK_COMPLETE",
                    "CreationTime": "2026-11-29T00:00:00Z",
                }
            ]
        },
        {"StackName": "mlpoc-data"},
    )
    check = preflight(poc, tmp_path)
    with stubber:
        check.client = lambda service: cloudformation  # type: ignore[method-assign]
        found = check.stacks()
    assert found.ok is False
    assert found.detail == "mlpoc-data is ROLLBACK_COMPLETE: CloudFormation cannot update it"
    assert found.fix.startswith("aws cloudformation delete-stack --stack-name mlpoc-data")


GPU_DATA_STACK = {
    "Resources": {"GpuQueue": {"Type": "AWS::SQS::Queue"}},
    "Outputs": {"GpuQueueUrl": {"Value": {"Ref": "GpuQueue"}}},
}


def test_turning_the_gpu_pool_off_says_to_deploy_the_service_stack_first(
    aws: None, poc: Synthesized, tmp_path: Path
) -> None:
    # GIVEN a deployed data stack that still has the GPU queue (deployed with mlpoc:gpu true)
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    cloudformation.create_stack(StackName="mlpoc-data", TemplateBody=json.dumps(GPU_DATA_STACK))
    # WHEN the app is synthesized with the pool off THEN preflight stops the deploy with the order
    off = preflight(poc, tmp_path).stacks()
    assert off.ok is False
    assert "mlpoc:gpu is now false" in off.detail
    assert off.fix.startswith("npx cdk deploy mlpoc-service --exclusively")
    # AND with the pool still on, or in local mode (no service stack deployed), nothing to say
    gpu = Synthesized(tmp_path / "gpu", gpu=True)
    assert preflight(gpu, tmp_path).stacks().ok is True
    assert preflight(poc, tmp_path, local=True).stacks().ok is True


def test_without_credentials_only_that_is_said(poc: Synthesized, tmp_path: Path) -> None:
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="", aws_secret_access_key=""
    )
    checks = preflight(poc, tmp_path, session=session, endpoint="http://127.0.0.1:9").checks()
    # the model plugins are checked without credentials too: they are this machine's
    assert [c.name for c in checks] == ["credentials", "model plugins"]
    assert checks[0].ok is False
    assert "aws sso login" in checks[0].fix


def test_the_configured_model_plugins_must_import_here(poc: Synthesized, tmp_path: Path) -> None:
    ready = preflight(poc, tmp_path, plugins=("lightgbm",)).model_plugins()
    assert ready.ok is True
    assert ready.detail.startswith("sklearn (built in), lightgbm import")
    missing = preflight(poc, tmp_path, plugins=("lightgbm", "teamforest")).model_plugins()
    assert missing.ok is False
    assert (
        missing.detail == "mlpoc:plugins lists ['teamforest'], which this environment cannot import"
    )
    assert "make install" in missing.fix and "mlpoc plugin check teamforest" in missing.fix


def test_no_docker_command_is_named(aws: None, poc: Synthesized, tmp_path: Path) -> None:
    def missing(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError(command[0])

    check = preflight(poc, tmp_path, runner=missing).docker()
    assert (check.ok, check.detail) == (False, "no docker command")

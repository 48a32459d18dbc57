"""cdk.json knobs: a bad value stops synth with one sentence naming the key and what it takes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlpoc.aws import beanstalk_platform
from mlpoc.errors import ConfigError
from stacks.config import Config, Platform, eb_platform
from tests.support.cdk_app import ROOT, cdk_json_context
from tests.support.cli import uncovered_env


def config(**overrides: Any) -> Config:
    return Config.from_context(
        {**cdk_json_context(), **{f"mlpoc:{k}": v for k, v in overrides.items()}}
    )


def test_the_defaults_are_a_cheap_destroyable_poc() -> None:
    defaults = config()
    assert (defaults.stage, defaults.spot, defaults.api_instance_type) == ("poc", True, "t4g.micro")
    assert defaults.retain_data is False
    assert (defaults.alert_email, defaults.slack_webhook_secret_name) == (None, None)


def test_command_line_strings_are_parsed() -> None:
    # `-c mlpoc:spot=false -c mlpoc:worker_cpu=2048` arrive as strings
    parsed = config(spot="false", worker_cpu="2048", worker_memory="4096", budget_usd="20")
    assert (parsed.spot, parsed.worker_cpu, parsed.worker_memory, parsed.budget_usd) == (
        False,
        2048,
        4096,
        20,
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stage": "prod"}, "mlpoc:stage must be one of poc, retain; got 'prod'"),
        (
            {"worker_cpu": 300},
            "mlpoc:worker_cpu must be one of 256, 512, 1024, 2048, 4096; got 300",
        ),
        (
            {"worker_memory": 512},
            "mlpoc:worker_memory must be one of 2048, 3072, 4096, 5120, 6144, 7168, 8192 for ",
        ),
        ({"spot": "yes"}, "mlpoc:spot must be true or false; got 'yes'"),
        ({"budget_usd": 0}, "mlpoc:budget_usd must be a whole number from 1 to 100000; got 0"),
        (
            {"max_receive_count": 2},
            "mlpoc:max_receive_count must be a whole number from 5 to 1000; got 2",
        ),
        ({"alert_email": "not-an-email"}, "mlpoc:alert_email must be an email address"),
        ({"project": "My_Project"}, "mlpoc:project must be 3-20 lowercase letters"),
        ({"api_instance_type": "large"}, "mlpoc:api_instance_type must be an EC2 instance type"),
        (
            {"eb_solution_stack": "64bit Amazon Linux 2 v3.6.0 running Docker"},
            "mlpoc:eb_solution_stack must be 'auto' (mlpoc preflight resolves the current "
            "platform) or an Elastic Beanstalk 'Docker running on Amazon Linux 2023'",
        ),
        (
            {"plugins": ["xgboost"]},
            "mlpoc:plugins names 'xgboost', but containers/plugins/xgboost/pyproject.toml does "
            "not exist (plugins here: ['lightgbm']); scaffold one with `mlpoc plugin new xgboost`",
        ),
        ({"plugins": "lightgbm"}, "mlpoc:plugins must be a list of plugin names"),
        ({"plugins": ["lightgbm", "lightgbm"]}, "mlpoc:plugins names a plugin twice"),
        ({"gpu_packages": ["torch"]}, "mlpoc:gpu_packages must be a list of pinned packages"),
        ({"gpu_packages": ["torch==2.9.1; rm -rf /"]}, "mlpoc:gpu_packages must be a list of"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        config(**overrides)
    assert str(error.value).startswith(message)


def test_a_missing_key_says_where_to_add_it() -> None:
    context = cdk_json_context()
    del context["mlpoc:budget_usd"]
    with pytest.raises(
        ConfigError, match=r"context key 'mlpoc:budget_usd' is missing: add it to cdk\.json"
    ):
        Config.from_context(context)


def test_app_py_stops_with_one_sentence(tmp_path: Any) -> None:
    # the CDK CLI hands context to app.py through CDK_CONTEXT_JSON
    context = {**cdk_json_context(), "mlpoc:stage": "prod"}
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env=uncovered_env(CDK_CONTEXT_JSON=json.dumps(context), CDK_OUTDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "mlpoc: bad configuration: mlpoc:stage must be one of poc, retain; got 'prod'"
    )


PINNED = "64bit Amazon Linux 2023 v4.7.1 running Docker"


def test_the_eb_platform_is_resolved_per_account_and_region_not_pinned() -> None:
    assert cdk_json_context()["mlpoc:eb_solution_stack"] == beanstalk_platform.AUTO
    kept = {beanstalk_platform.context_key("111122223333", "eu-west-1"): PINNED}
    # GIVEN `auto` and what preflight kept in cdk.context.json for this account and region
    found = eb_platform("auto", account="111122223333", region="eu-west-1", lookup=kept.get)
    assert found == Platform(PINNED)
    # a pinned name wins over anything kept
    pinned = "64bit Amazon Linux 2023 v4.8.0 running Docker"
    found = eb_platform(pinned, account="111122223333", region="eu-west-1", lookup=kept.get)
    assert found == Platform(pinned)
    # a synth with no account (tests, local mode) is never deployed: the synth-only name
    found = eb_platform("auto", account=None, region=None, lookup=kept.get)
    assert found == Platform(beanstalk_platform.SYNTH_ONLY_PLATFORM)


def test_a_deploy_without_a_resolved_platform_says_to_run_preflight() -> None:
    found = eb_platform("auto", account="111122223333", region="us-east-1", lookup={}.get)
    assert found.unresolved is not None
    assert "run `mlpoc preflight --target aws`" in found.unresolved
    assert "mlpoc:eb-platform:account=111122223333:region=us-east-1" in found.unresolved


def synth_for_account(outdirs: dict[Path, dict[str, Any]]) -> list[dict[str, Any]]:
    """What `cdk synth`/`cdk deploy` run with AWS credentials: app.py with the CLI's account
    and region (and cdk-nag), once per context, side by side; the service stacks' templates."""
    running = [
        subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=ROOT,
            env=uncovered_env(
                CDK_DEFAULT_ACCOUNT="111122223333",
                CDK_DEFAULT_REGION="us-east-1",
                CDK_OUTDIR=str(outdir),
                CDK_CONTEXT_JSON=json.dumps(context),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for outdir, context in outdirs.items()
    ]
    templates = []
    for process, outdir in zip(running, outdirs, strict=True):
        _, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr
        templates.append(json.loads((outdir / "mlpoc-service.template.json").read_text()))
    return templates


def test_a_synth_for_an_account_without_a_platform_cannot_be_deployed(tmp_path: Path) -> None:
    # no cdk.context.json: synth goes on (make test works in a shell with AWS credentials), and
    # the template carries a rule CloudFormation checks before it creates anything
    kept = {
        **cdk_json_context(),
        beanstalk_platform.context_key("111122223333", "us-east-1"): PINNED,
    }
    template, kept_template = synth_for_account(
        {tmp_path / "unresolved": cdk_json_context(), tmp_path / "kept": kept}
    )
    (assertion,) = template["Rules"]["EbPlatformResolved"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": ["resolved", "unresolved"]}  # never holds
    assert "run `mlpoc preflight --target aws`" in assertion["AssertDescription"]
    # and a template for an account with a kept platform carries no such rule
    template = kept_template
    assert "EbPlatformResolved" not in template.get("Rules", {})
    (environment,) = [
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ElasticBeanstalk::Environment"
    ]
    assert environment["Properties"]["SolutionStackName"] == PINNED


@pytest.mark.parametrize(
    ("names", "newest"),
    [
        (
            [
                "64bit Amazon Linux 2023 v4.6.3 running Docker",
                "64bit Amazon Linux 2023 v4.10.0 running Docker",
                "64bit Amazon Linux 2023 v4.9.2 running Docker",
                "64bit Amazon Linux 2 v4.0.9 running Docker",
                "64bit Amazon Linux 2023 v6.5.0 running Node.js 22",
            ],
            "64bit Amazon Linux 2023 v4.10.0 running Docker",
        ),
        (["64bit Amazon Linux 2 v4.0.9 running Docker"], None),
    ],
)
def test_preflight_picks_the_newest_docker_platform(names: list[str], newest: str | None) -> None:
    assert beanstalk_platform.newest_docker_al2023(names) == newest


def test_the_stacks_need_only_the_cdk_extra(tmp_path: Path) -> None:
    """`cdk synth` runs with the `cdk` extra alone: building the stacks imports nothing of the
    API, the workers, the CLI or local mode (they are made unimportable here)."""
    probe = (
        "import sys, json, os\n"
        "for name in ('fastapi', 'uvicorn', 'onnxruntime', 'sklearn', 'skl2onnx', 'typer', "
        "'rich', 'moto'):\n"
        "    sys.modules[name] = None\n"
        "import aws_cdk as cdk\n"
        "from stacks.builder import build\n"
        "context = {**json.loads(os.environ['CONTEXT']), 'aws:cdk:bundling-stacks': []}\n"
        "stacks = build(cdk.App(context=context, outdir=os.environ['OUT']))\n"
        "print(stacks.service.stack_name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=uncovered_env(CONTEXT=json.dumps(cdk_json_context()), OUT=str(tmp_path)),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("service")


@pytest.mark.parametrize(
    ("instance_type", "graviton"),
    [("t4g.micro", True), ("m7g.large", True), ("c6gn.xlarge", True), ("t3.small", False),
     ("m7i.large", False), ("g4dn.xlarge", False), ("g5g.xlarge", True)],
)  # fmt: skip
def test_the_api_image_is_built_for_the_instance_types_processor(
    instance_type: str, graviton: bool
) -> None:
    context = {**cdk_json_context(), "mlpoc:api_instance_type": instance_type}
    assert Config.from_context(context).api_on_graviton is graviton

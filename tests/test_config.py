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
from mlpoc.runtime.contract import S3Uri
from mlpoc.runtime.schedules import EXPRESSION_RULE
from stacks.account_config import (
    NO_SHARE,
    SCHEDULE_EXAMPLE,
    SOURCE_EXAMPLE,
    ScheduleSpec,
    Share,
    Source,
    parse_readers,
    parse_schedules,
    parse_share,
    parse_sources,
    worker_role_name,
)
from stacks.config import (
    MONITOR_EXAMPLE,
    Config,
    Monitor,
    Platform,
    _choice_int,
    eb_platform,
    parse_monitor,
)
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


@pytest.mark.integration  # runs app.py in a subprocess
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


@pytest.mark.integration  # runs app.py in a subprocess
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


@pytest.mark.integration  # builds the stacks in a Python subprocess
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


# -- config.py: every knob's limits and its exact sentence (fast: Config.from_context alone) -----
def refusal(**overrides: Any) -> str:
    """The one sentence a bad value stops synth with."""
    with pytest.raises(ConfigError) as raised:
        config(**overrides)
    return str(raised.value)


KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/12345678-1234-1234-1234-123456789012"
SOURCE = {"bucket": "biz-exchange", "prefix": "cleansed/", "key_arn": KEY_ARN,
          "account": "111122223333"}  # fmt: skip
PARSED_SOURCE = Source(
    bucket="biz-exchange", prefix="cleansed/", key_arn=KEY_ARN, account="111122223333"
)


def test_cdk_json_defaults_read_into_every_field() -> None:
    assert config() == Config(
        project="mlpoc",
        stage="poc",
        api_instance_type="t4g.micro",
        worker_cpu=1024,
        worker_memory=2048,
        worker_max_tasks=4,
        spot=True,
        budget_usd=50,
        alert_email=None,
        slack_webhook_secret_name=None,
        eb_solution_stack="auto",
        max_receive_count=5,
        gpu=False,
        gpu_instance_types=("g4dn.xlarge", "g5.xlarge", "g6.xlarge"),
        gpu_max_instances=2,
        plugins=("lightgbm",),
        gpu_packages=(),
        sources=(),
        result_readers=(),
        schedules=(),
        share=NO_SHARE,
        monitor=Monitor(models=("digits",)),
    )


def test_every_knob_set_is_read_into_its_field() -> None:
    parsed = config(
        project="team-ml",
        stage="retain",
        api_instance_type="m7i.large",
        worker_cpu=256,
        worker_memory=512,
        worker_max_tasks=7,
        spot=False,
        budget_usd=123,
        alert_email="ops@example.com",
        slack_webhook_secret_name="team/slack",
        eb_solution_stack=PINNED,
        max_receive_count=9,
        gpu=True,
        gpu_instance_types=["g5.xlarge"],
        gpu_max_instances=3,
        plugins=[],
        gpu_packages=["torch==2.9.1"],
        sources=[SOURCE],
        result_readers=["444455556666"],
        schedules=[
            {
                "model": "churn",
                "expression": "rate(2 days)",
                "promote": "never",
                "source": "s3://biz-exchange/cleansed/churn/",
            }
        ],
        share={"ml_account": "123456789012", "prefix": "out/", "results_prefix": "back/"},
        monitor={"models": ["churn"], "schedule": "rate(6 hours)", "psi": 0.5},
    )
    assert parsed == Config(
        project="team-ml",
        stage="retain",
        api_instance_type="m7i.large",
        worker_cpu=256,
        worker_memory=512,
        worker_max_tasks=7,
        spot=False,
        budget_usd=123,
        alert_email="ops@example.com",
        slack_webhook_secret_name="team/slack",
        eb_solution_stack=PINNED,
        max_receive_count=9,
        gpu=True,
        gpu_instance_types=("g5.xlarge",),
        gpu_max_instances=3,
        plugins=(),
        gpu_packages=("torch==2.9.1",),
        sources=(PARSED_SOURCE,),
        result_readers=("444455556666",),
        schedules=(
            ScheduleSpec(
                model="churn",
                expression="rate(2 days)",
                promote="never",
                source=S3Uri("biz-exchange", "cleansed/churn/"),
            ),
        ),
        share=Share(ml_account="123456789012", prefix="out/", results_prefix="back/"),
        monitor=Monitor(models=("churn",), schedule="rate(6 hours)", psi=0.5),
    )
    assert parsed.retain_data is True
    assert parsed.api_on_graviton is False


def test_a_missing_key_is_one_sentence() -> None:
    context = cdk_json_context()
    del context["mlpoc:gpu"]
    with pytest.raises(ConfigError) as raised:
        Config.from_context(context)
    assert str(raised.value) == ("context key 'mlpoc:gpu' is missing: add it to cdk.json's context")


def test_the_stage_is_poc_or_retain_exactly() -> None:
    assert config(stage="poc").retain_data is False
    assert config(stage="retain").retain_data is True
    for stage in ("POC", "Retain", "prod", None):
        assert refusal(stage=stage) == f"mlpoc:stage must be one of poc, retain; got {stage!r}"


@pytest.mark.parametrize(
    ("key", "low", "high"),
    [
        ("worker_max_tasks", 1, 50),
        ("budget_usd", 1, 100_000),
        ("max_receive_count", 5, 1000),
        ("gpu_max_instances", 1, 20),
    ],
)
def test_a_whole_number_takes_its_limits_and_refuses_one_past(
    key: str, low: int, high: int
) -> None:
    assert getattr(config(**{key: low}), key) == low
    assert getattr(config(**{key: f" {high} "}), key) == high  # -c mlpoc:key=N is text
    for outside in (low - 1, high + 1, str(high + 1)):
        assert refusal(**{key: outside}) == (
            f"mlpoc:{key} must be a whole number from {low} to {high}; got {outside!r}"
        )


@pytest.mark.parametrize("value", [True, False, "four", 2.5, "", None, [3]])
def test_a_whole_number_is_not_a_boolean_a_fraction_or_text(value: Any) -> None:
    assert refusal(worker_max_tasks=value) == (
        f"mlpoc:worker_max_tasks must be a whole number from 1 to 50; got {value!r}"
    )


@pytest.mark.parametrize(
    ("cpu", "memories"),
    [
        (256, (512, 1024, 2048)),
        (512, (1024, 4096)),
        (1024, (2048, 8192)),
        (2048, (4096, 16384)),
        (4096, (8192, 30720)),
    ],
)
def test_each_fargate_cpu_takes_its_smallest_and_largest_memory(
    cpu: int, memories: tuple[int, ...]
) -> None:
    for memory in memories:
        parsed = config(worker_cpu=cpu, worker_memory=str(memory))
        assert (parsed.worker_cpu, parsed.worker_memory) == (cpu, memory)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"worker_cpu": 300},
            "mlpoc:worker_cpu must be one of 256, 512, 1024, 2048, 4096; got 300",
        ),
        (
            {"worker_cpu": True},
            "mlpoc:worker_cpu must be one of 256, 512, 1024, 2048, 4096; got True",
        ),
        (
            {"worker_cpu": "big"},
            "mlpoc:worker_cpu must be one of 256, 512, 1024, 2048, 4096; got 'big'",
        ),
        (
            {"worker_cpu": 256, "worker_memory": 4096},
            "mlpoc:worker_memory must be one of 512, 1024, 2048 for worker_cpu 256; got 4096",
        ),
        (
            {"worker_cpu": 512, "worker_memory": 512},
            "mlpoc:worker_memory must be one of 1024, 2048, 3072, 4096 for worker_cpu 512; got 512",
        ),
        (
            {"worker_cpu": 2048, "worker_memory": "2048"},
            "mlpoc:worker_memory must be one of 4096-16384 in steps of 1024 for worker_cpu 2048; "
            "got '2048'",
        ),
        (
            {"worker_cpu": 4096, "worker_memory": 31744},
            "mlpoc:worker_memory must be one of 8192-30720 in steps of 1024 for worker_cpu 4096; "
            "got 31744",
        ),
        (
            {"worker_cpu": 4096, "worker_memory": 8193},
            "mlpoc:worker_memory must be one of 8192-30720 in steps of 1024 for worker_cpu 4096; "
            "got 8193",
        ),
    ],
)
def test_fargate_sizes_are_listed_or_ranged_in_one_sentence(
    overrides: dict[str, Any], message: str
) -> None:
    assert refusal(**overrides) == message


def test_under_ten_choices_are_listed_and_ten_are_a_range() -> None:
    # no Fargate CPU has exactly ten memory sizes: the helper itself pins the limit
    nine, ten = tuple(range(1, 10)), tuple(range(1, 11))
    with pytest.raises(ConfigError) as raised:
        _choice_int(nine, "here")("k", 0)
    assert str(raised.value) == "k must be one of 1, 2, 3, 4, 5, 6, 7, 8, 9 here; got 0"
    with pytest.raises(ConfigError) as raised:
        _choice_int(ten)("k", 11)
    assert str(raised.value) == "k must be one of 1-10 in steps of 1; got 11"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [(True, True), (False, False), ("true", True), ("false", False), (" TRUE ", True),
     ("False", False)],
)  # fmt: skip
def test_a_boolean_knob_takes_true_or_false_in_any_case(value: Any, parsed: bool) -> None:
    assert config(spot=value, gpu=value).spot is parsed
    assert config(gpu=value).gpu is parsed


@pytest.mark.parametrize("value", ["yes", "", 1, 0, None, "truee"])
def test_a_boolean_knob_refuses_anything_else(value: Any) -> None:
    assert refusal(gpu=value) == f"mlpoc:gpu must be true or false; got {value!r}"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"project": "ab"},
            "mlpoc:project must be 3-20 lowercase letters, digits or -, starting with a letter; "
            "got 'ab'",
        ),
        (
            {"project": 123},
            "mlpoc:project must be 3-20 lowercase letters, digits or -, starting with a letter; "
            "got 123",
        ),
        (
            {"api_instance_type": "large"},
            "mlpoc:api_instance_type must be an EC2 instance type such as t4g.micro; got 'large'",
        ),
        (
            {"alert_email": "ops@example"},
            "mlpoc:alert_email must be an email address, or empty for none; got 'ops@example'",
        ),
        (
            {"slack_webhook_secret_name": "team slack"},
            "mlpoc:slack_webhook_secret_name must be a Secrets Manager secret name, or empty for "
            "none; got 'team slack'",
        ),
        (
            {"eb_solution_stack": 2023},
            "mlpoc:eb_solution_stack must be 'auto' (mlpoc preflight resolves the current "
            "platform) or an Elastic Beanstalk 'Docker running on Amazon Linux 2023' solution "
            "stack, such as '64bit Amazon Linux 2023 v4.7.1 running Docker'; got 2023 (list them "
            "with: aws elasticbeanstalk list-available-solution-stacks)",
        ),
        (
            {"eb_solution_stack": "AUTO"},
            "mlpoc:eb_solution_stack must be 'auto' (mlpoc preflight resolves the current "
            "platform) or an Elastic Beanstalk 'Docker running on Amazon Linux 2023' solution "
            "stack, such as '64bit Amazon Linux 2023 v4.7.1 running Docker'; got 'AUTO' (list "
            "them with: aws elasticbeanstalk list-available-solution-stacks)",
        ),
    ],
)
def test_text_knobs_refuse_in_one_sentence(overrides: dict[str, Any], message: str) -> None:
    assert refusal(**overrides) == message


def test_text_knobs_take_their_shortest_and_longest_names() -> None:
    assert config(project="abc").project == "abc"
    assert config(project="a" + "b" * 18 + "9").project == "a" + "b" * 18 + "9"
    assert refusal(project="a" * 21).startswith("mlpoc:project must be 3-20 lowercase")
    assert config(eb_solution_stack="auto").eb_solution_stack == "auto"


@pytest.mark.parametrize("empty", [None, ""])
def test_an_empty_optional_knob_is_none(empty: Any) -> None:
    parsed = config(alert_email=empty, slack_webhook_secret_name=empty)
    assert (parsed.alert_email, parsed.slack_webhook_secret_name) == (None, None)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lightgbm", 'mlpoc:plugins must be a list of plugin names, e.g. ["lightgbm"]; '
                     "got 'lightgbm'"),
        (["lightgbm", 3], 'mlpoc:plugins must be a list of plugin names, e.g. ["lightgbm"]; '
                          "got ['lightgbm', 3]"),
        ({}, 'mlpoc:plugins must be a list of plugin names, e.g. ["lightgbm"]; got {}'),
        (["lightgbm", "lightgbm"], "mlpoc:plugins names a plugin twice: ['lightgbm', 'lightgbm']"),
        (["lightgbm", "xgboost"],
         "mlpoc:plugins names 'xgboost', but containers/plugins/xgboost/pyproject.toml does not "
         "exist (plugins here: ['lightgbm']); scaffold one with `mlpoc plugin new xgboost`"),
    ],
)  # fmt: skip
def test_plugins_name_existing_plugin_folders_once(value: Any, message: str) -> None:
    assert config(plugins=[]).plugins == ()
    assert config(plugins=["lightgbm"]).plugins == ("lightgbm",)
    assert refusal(plugins=value) == message


@pytest.mark.parametrize("value", ["torch==2.9.1", {}, ["torch"], [3], ["torch==2.9.1", "numpy"]])
def test_gpu_packages_are_a_list_of_pinned_packages(value: Any) -> None:
    assert config(gpu_packages=[]).gpu_packages == ()
    pinned = ["torch==2.9.1", "jax[cuda12]==0.4.30"]
    assert config(gpu_packages=pinned).gpu_packages == tuple(pinned)
    assert refusal(gpu_packages=value) == (
        'mlpoc:gpu_packages must be a list of pinned packages, e.g. ["torch==2.9.1"]; '
        f"got {value!r}"
    )


MANY_GPU_TYPES = [f"g{n}.xlarge" for n in range(1, 22)]


@pytest.mark.parametrize(
    "value",
    ["g4dn.xlarge", [], MANY_GPU_TYPES, ["g5g.xlarge"], ["g5.xlarge", "g5.xlarge"], [5], {}],
)
def test_gpu_instance_types_are_1_to_20_distinct_x86_gpu_types(value: Any) -> None:
    assert config(gpu_instance_types=["p4d.24xlarge"]).gpu_instance_types == ("p4d.24xlarge",)
    assert config(gpu_instance_types=MANY_GPU_TYPES[:20]).gpu_instance_types == tuple(
        MANY_GPU_TYPES[:20]
    )
    assert refusal(gpu_instance_types=value) == (
        "mlpoc:gpu_instance_types must be a list of x86_64 GPU instance types such as "
        '["g4dn.xlarge", "g5.xlarge"]: 1-20 distinct types (several let Spot pick the cheapest '
        f"with capacity); got {value!r}"
    )


# -- the monitor block -----------------------------------------------------------------------------
MONITOR = "mlpoc:monitor"


def test_the_monitor_defaults_to_the_predict_workers_thresholds() -> None:
    assert parse_monitor(MONITOR, {}) == Monitor()
    assert Monitor().worker_environment() == {
        "MLPOC_DRIFT_PSI": "0.2",
        "MLPOC_DRIFT_SHARE": "0.3",
        "MLPOC_MIN_REALIZED_ACCURACY": "0",
    }
    tuned = Monitor(psi=0.25, drift_share=0.5, min_realized_accuracy=0.85)
    assert tuned.worker_environment() == {
        "MLPOC_DRIFT_PSI": "0.25",
        "MLPOC_DRIFT_SHARE": "0.5",
        "MLPOC_MIN_REALIZED_ACCURACY": "0.85",
    }


def test_the_monitor_block_takes_json_text_from_the_command_line() -> None:
    text = '  {"models": ["a", "b-2_c"], "schedule": "cron(0 3 ? * MON *)", "sample_rate": 1}'
    parsed = config(monitor=text).monitor
    assert parsed == Monitor(models=("a", "b-2_c"), schedule="cron(0 3 ? * MON *)", sample_rate=1)
    assert isinstance(parsed.sample_rate, float)
    assert config(monitor={"models": []}).monitor == Monitor()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{bad", "mlpoc:monitor is not valid JSON (Expecting property name enclosed in double "
                 "quotes: line 1 column 2 (char 1)); got '{bad'"),
        ("digits", "mlpoc:monitor must be an object with some of ['drift_share', "
                   "'min_realized_accuracy', 'models', 'psi', 'sample_rate', 'schedule'], as in "
                   f"{MONITOR_EXAMPLE}; got 'digits'"),
        ([], "mlpoc:monitor must be an object with some of ['drift_share', "
             "'min_realized_accuracy', 'models', 'psi', 'sample_rate', 'schedule'], as in "
             f"{MONITOR_EXAMPLE}; got []"),
        ({"models": [], "threshold": 1}, "mlpoc:monitor must be an object with some of "
         "['drift_share', 'min_realized_accuracy', 'models', 'psi', 'sample_rate', 'schedule'], "
         f"as in {MONITOR_EXAMPLE}; got {{'models': [], 'threshold': 1}}"),
        ({"models": "digits"}, "mlpoc:monitor.models must be a list of model names (lowercase "
                               "letters, digits, - and _); got 'digits'"),
        ({"models": ["Digits"]}, "mlpoc:monitor.models must be a list of model names (lowercase "
                                 "letters, digits, - and _); got ['Digits']"),
        ({"models": ["a", 3]}, "mlpoc:monitor.models must be a list of model names (lowercase "
                               "letters, digits, - and _); got ['a', 3]"),
        ({"models": ["a", "b", "a"]}, "mlpoc:monitor.models names a model twice: ['a', 'b', 'a']"),
        ({"schedule": "rate(2 day)"}, f"mlpoc:monitor.schedule {EXPRESSION_RULE} (1 takes a "
                                      "singular unit, more a plural); got 'rate(2 day)'"),
        ({"schedule": 5}, f"mlpoc:monitor.schedule {EXPRESSION_RULE}; got 5"),
    ],
)  # fmt: skip
def test_a_bad_monitor_block_is_one_sentence(value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_monitor(MONITOR, value)
    assert str(raised.value) == message
    assert refusal(monitor=value) == message


@pytest.mark.parametrize(
    ("key", "limits", "outside", "what"),
    [
        ("psi", (0.001, 10), (0.0009, 10.001), "the PSI over which a feature drifts"),
        ("drift_share", (0.001, 1), (0.0009, 1.001), "the share of drifting features that alerts"),
        ("min_realized_accuracy", (0, 1), (-0.001, 1.001),
         "the realized accuracy under which it alerts (0: off)"),
        ("sample_rate", (0, 1), (-0.001, 1.001),
         "the share of realtime requests the API samples (0: none)"),
    ],
)  # fmt: skip
def test_each_monitor_threshold_takes_its_limits_and_refuses_past_them(
    key: str, limits: tuple[float, float], outside: tuple[float, float], what: str
) -> None:
    low, high = limits
    for edge in limits:
        parsed = parse_monitor(MONITOR, {key: edge})
        assert parsed == Monitor(**{key: float(edge)})  # the other thresholds keep defaults
        assert isinstance(getattr(parsed, key), float)
    for bad in (*outside, True, False, "0.5", None):
        with pytest.raises(ConfigError) as raised:
            parse_monitor(MONITOR, {key: bad})
        assert str(raised.value) == (
            f"mlpoc:monitor.{key} ({what}) must be a number from {low:g} to {high:g}; got {bad!r}"
        )


def test_the_monitor_threshold_sentence_reads_its_limits() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_monitor(MONITOR, {"psi": 11})
    assert str(raised.value) == (
        "mlpoc:monitor.psi (the PSI over which a feature drifts) must be a number from 0.001 to "
        "10; got 11"
    )


# -- eb_platform ---------------------------------------------------------------------------------
def test_a_pinned_platform_needs_no_account() -> None:
    asked: list[str] = []
    found = eb_platform(PINNED, account=None, region=None, lookup=asked.append)
    assert (found, asked) == (Platform(PINNED), [])


@pytest.mark.parametrize(
    ("account", "region"), [("111122223333", None), (None, "us-east-1"), ("", ""), ("1", "")]
)
def test_a_synth_without_account_and_region_takes_the_synth_only_platform(
    account: str | None, region: str | None
) -> None:
    kept = {beanstalk_platform.context_key(str(account), str(region)): PINNED}
    found = eb_platform("auto", account=account, region=region, lookup=kept.get)
    assert found == Platform(beanstalk_platform.SYNTH_ONLY_PLATFORM, unresolved=None)


@pytest.mark.parametrize("kept", [None, 42, "64bit Amazon Linux 2 v4.0.9 running Docker"])
def test_an_unresolved_platform_stops_the_deploy_in_one_sentence(kept: Any) -> None:
    asked: list[str] = []

    def lookup(key: str) -> Any:
        asked.append(key)
        return kept

    found = eb_platform("auto", account="111122223333", region="us-east-1", lookup=lookup)
    assert asked == ["mlpoc:eb-platform:account=111122223333:region=us-east-1"]
    assert found == Platform(
        beanstalk_platform.SYNTH_ONLY_PLATFORM,
        unresolved=(
            "mlpoc:eb_solution_stack is 'auto' and no Elastic Beanstalk Docker platform is "
            "resolved for account 111122223333 in us-east-1 yet: run `mlpoc preflight --target "
            "aws` (it keeps the current one in cdk.context.json under "
            "'mlpoc:eb-platform:account=111122223333:region=us-east-1'), or pin a platform with "
            "-c mlpoc:eb_solution_stack='64bit Amazon Linux 2023 vX.Y.Z running Docker'"
        ),
    )


# -- account_config.py: sources, result readers, schedules, share (the parsers alone) ------------
def refused(parse: Any, *args: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        parse(*args)
    return str(raised.value)


SOURCES = "mlpoc:sources"
OTHER_ARN = "arn:aws:kms:eu-west-1:999999999999:key/mrk-0123456789abcdef0123456789abcdef"


def test_a_source_reads_its_prefix_of_its_bucket_only() -> None:
    assert parse_sources(SOURCES, [SOURCE]) == (PARSED_SOURCE,)
    assert parse_sources(SOURCES, " " + json.dumps([SOURCE])) == (PARSED_SOURCE,)
    assert parse_sources(SOURCES, []) == ()
    assert PARSED_SOURCE.uri == S3Uri("biz-exchange", "cleansed/")
    assert PARSED_SOURCE.holds(S3Uri("biz-exchange", "cleansed/"))
    assert PARSED_SOURCE.holds(S3Uri("biz-exchange", "cleansed/churn/"))
    assert not PARSED_SOURCE.holds(S3Uri("biz-exchange", "raw/cleansed/"))
    assert not PARSED_SOURCE.holds(S3Uri("other-exchange", "cleansed/churn/"))


def test_up_to_ten_sources_one_prefix_each() -> None:
    ten = [{**SOURCE, "prefix": f"p{i}/"} for i in range(10)]
    assert [s.prefix for s in parse_sources(SOURCES, ten)] == [f"p{i}/" for i in range(10)]
    mrk = {**SOURCE, "bucket": "other.exchange", "key_arn": OTHER_ARN, "account": "999999999999"}
    assert parse_sources(SOURCES, [SOURCE, mrk])[1] == Source(**mrk)
    eleven = [*ten, {**SOURCE, "prefix": "p10/"}]
    assert refused(parse_sources, SOURCES, eleven) == (
        f"mlpoc:sources must be a list of at most 10 sources such as {SOURCE_EXAMPLE}; "
        f"got {eleven!r}"
    )


BAD_ARN = (
    "mlpoc:sources[0].key_arn must be the ARN of the KMS key that encrypts the bucket, in account "
    "111122223333 (the share stack's output ExchangeKeyArn); got "
)
BAD_PREFIX = (
    "mlpoc:sources[0].prefix must be a folder of that bucket ending in / (such as 'cleansed/'; "
    "not the whole bucket, no wildcards); got "
)
SHAPE = "must have exactly bucket, prefix, key_arn and account, as in"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[oops", "mlpoc:sources is not valid JSON (Expecting value: line 1 column 2 (char 1)); "
                  "got '[oops'"),
        ("{oops", "mlpoc:sources is not valid JSON (Expecting property name enclosed in double "
                  "quotes: line 1 column 2 (char 1)); got '{oops'"),
        ("cleansed/", "mlpoc:sources must be a list of at most 10 sources such as "
                      f"{SOURCE_EXAMPLE}; got 'cleansed/'"),
        (SOURCE, "mlpoc:sources must be a list of at most 10 sources such as "
                 f"{SOURCE_EXAMPLE}; got {SOURCE!r}"),
        (["x"], f"mlpoc:sources[0] {SHAPE} {SOURCE_EXAMPLE}; got 'x'"),
        ([{"bucket": "b"}], f"mlpoc:sources[0] {SHAPE} {SOURCE_EXAMPLE}; got {{'bucket': 'b'}}"),
        ([{**SOURCE, "region": "x"}],
         f"mlpoc:sources[0] {SHAPE} {SOURCE_EXAMPLE}; got {({**SOURCE, 'region': 'x'})!r}"),
        ([{**SOURCE, "account": "12345"}],
         "mlpoc:sources[0].account must be a 12-digit AWS account id (a string); got '12345'"),
        ([{**SOURCE, "account": 111122223333}],
         "mlpoc:sources[0].account must be a 12-digit AWS account id (a string); "
         "got 111122223333"),
        ([SOURCE, {**SOURCE, "bucket": "Biz_Exchange"}],
         "mlpoc:sources[1].bucket must be an S3 bucket name; got 'Biz_Exchange'"),
        ([{**SOURCE, "bucket": 7}], "mlpoc:sources[0].bucket must be an S3 bucket name; got 7"),
        ([{**SOURCE, "prefix": "/"}], BAD_PREFIX + "'/'"),
        ([{**SOURCE, "prefix": "data"}], BAD_PREFIX + "'data'"),
        ([{**SOURCE, "prefix": "*/"}], BAD_PREFIX + "'*/'"),
        ([{**SOURCE, "prefix": 5}], BAD_PREFIX + "5"),
        ([{**SOURCE, "key_arn": None}], BAD_ARN + "None"),
        ([{**SOURCE, "key_arn": "alias/exchange"}], BAD_ARN + "'alias/exchange'"),
        ([{**SOURCE, "key_arn": OTHER_ARN}], BAD_ARN + repr(OTHER_ARN)),
        ([SOURCE, SOURCE], "mlpoc:sources lists the same bucket and prefix twice: "
                           "['s3://biz-exchange/cleansed/', 's3://biz-exchange/cleansed/']"),
    ],
)  # fmt: skip
def test_a_bad_source_is_one_sentence(value: Any, message: str) -> None:
    assert refused(parse_sources, SOURCES, value) == message


READERS = "mlpoc:result_readers"
ACCOUNTS = [f"{n:012d}" for n in range(100000000001, 100000000022)]


def test_up_to_twenty_distinct_accounts_read_the_predictions() -> None:
    assert parse_readers(READERS, ["111122223333"]) == ("111122223333",)
    assert parse_readers(READERS, '["111122223333"]') == ("111122223333",)
    assert parse_readers(READERS, []) == ()
    assert parse_readers(READERS, ACCOUNTS[:20]) == tuple(ACCOUNTS[:20])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (ACCOUNTS, "mlpoc:result_readers must be a list of at most 20 12-digit account ids that "
                   "may read the predictions table, such as [\"111122223333\"]; "
                   f"got {ACCOUNTS!r}"),
        ("111122223333", "mlpoc:result_readers must be a list of at most 20 12-digit account "
                         "ids that may read the predictions table, such as [\"111122223333\"]; "
                         "got '111122223333'"),
        (["111122223333", "1234"],
         "mlpoc:result_readers[1] must be a 12-digit AWS account id (a string); got '1234'"),
        (["111122223333", "111122223333"],
         "mlpoc:result_readers lists an account twice: ['111122223333', '111122223333']"),
    ],
)  # fmt: skip
def test_bad_result_readers_are_one_sentence(value: Any, message: str) -> None:
    assert refused(parse_readers, READERS, value) == message


SCHEDULES = "mlpoc:schedules"
SECOND_SOURCE = Source(bucket="biz-exchange", prefix="other/", key_arn=KEY_ARN,
                       account="111122223333")  # fmt: skip


def test_a_schedule_retrains_a_model_from_its_folder_or_a_source() -> None:
    daily = {"model": "digits", "expression": "rate(1 day)"}
    assert parse_schedules(SCHEDULES, [daily], ()) == (
        ScheduleSpec(model="digits", expression="rate(1 day)", promote="auto", source=None),
    )
    assert parse_schedules(SCHEDULES, json.dumps([daily]), ()) == parse_schedules(
        SCHEDULES, [daily], ()
    )
    churn = {"model": "churn", "expression": "cron(0 3 ? * MON *)", "promote": "always",
             "source": "s3://biz-exchange/other/churn/"}  # fmt: skip
    assert parse_schedules(SCHEDULES, [daily, churn], (PARSED_SOURCE, SECOND_SOURCE))[1] == (
        ScheduleSpec(
            model="churn",
            expression="cron(0 3 ? * MON *)",
            promote="always",
            source=S3Uri("biz-exchange", "other/churn/"),
        )
    )
    for promote in ("auto", "always", "never"):
        (parsed,) = parse_schedules(SCHEDULES, [{**daily, "promote": promote}], ())
        assert parsed.promote == promote
    twenty = [{"model": f"m{i}", "expression": "rate(1 day)"} for i in range(20)]
    assert len(parse_schedules(SCHEDULES, twenty, ())) == 20


def test_the_config_hands_the_sources_to_the_schedules() -> None:
    schedule = {"model": "churn", "expression": "rate(1 day)",
                "source": "s3://biz-exchange/cleansed/churn/"}  # fmt: skip
    (parsed,) = config(sources=[SOURCE], schedules=[schedule]).schedules
    assert parsed.source == S3Uri("biz-exchange", "cleansed/churn/")
    assert refusal(schedules=[schedule]) == (
        "mlpoc:schedules[0].source must lie inside one of mlpoc:sources (what the workers may "
        "read: none are configured); got 's3://biz-exchange/cleansed/churn/'"
    )


ENTRY = "must have model and expression, and may have promote and source, as in"
TWENTY_ONE = [{"model": f"m{i}", "expression": "rate(1 day)"} for i in range(21)]
OUTSIDE = (
    "mlpoc:schedules[0].source must lie inside one of mlpoc:sources (what the workers may read: "
    "s3://biz-exchange/cleansed/, s3://biz-exchange/other/); got "
)
NOT_A_FOLDER = "mlpoc:schedules[0].source must be an s3://bucket/prefix/ folder; got "


def daily(**fields: Any) -> list[dict[str, Any]]:
    return [{"model": "digits", "expression": "rate(1 day)", **fields}]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (TWENTY_ONE, f"mlpoc:schedules must be a list of at most 20 schedules such as "
                     f"{SCHEDULE_EXAMPLE}; got {TWENTY_ONE!r}"),
        ({"model": "digits"}, "mlpoc:schedules must be a list of at most 20 schedules such as "
                              f"{SCHEDULE_EXAMPLE}; got {{'model': 'digits'}}"),
        (["digits"], f"mlpoc:schedules[0] {ENTRY} {SCHEDULE_EXAMPLE}; got 'digits'"),
        ([{"model": "digits"}], f"mlpoc:schedules[0] {ENTRY} {SCHEDULE_EXAMPLE}; "
                                "got {'model': 'digits'}"),
        ([{"expression": "rate(1 day)"}], f"mlpoc:schedules[0] {ENTRY} {SCHEDULE_EXAMPLE}; "
                                          "got {'expression': 'rate(1 day)'}"),
        (daily(dataset="x"), f"mlpoc:schedules[0] {ENTRY} {SCHEDULE_EXAMPLE}; got "
                             f"{daily(dataset='x')[0]!r}"),
        ([{"model": "Digits", "expression": "rate(1 day)"}],
         "mlpoc:schedules[0].model must be a model name (lowercase letters, digits, - and _); "
         "got 'Digits'"),
        ([{"model": 3, "expression": "rate(1 day)"}],
         "mlpoc:schedules[0].model must be a model name (lowercase letters, digits, - and _); "
         "got 3"),
        ([*daily(), {"model": "churn", "expression": "rate(2 day)"}],
         f"mlpoc:schedules[1].expression {EXPRESSION_RULE} (1 takes a singular unit, more a "
         "plural); got 'rate(2 day)'"),
        (daily(promote="best"), "mlpoc:schedules[0].promote must be one of auto, always, never "
                                "(the train job's promotion rule); got 'best'"),
        (daily(source="s3://biz-exchange/cleansed/churn"),
         NOT_A_FOLDER + "'s3://biz-exchange/cleansed/churn'"),
        (daily(source="https://biz-exchange/cleansed/"),
         NOT_A_FOLDER + "'https://biz-exchange/cleansed/'"),
        (daily(source=5), NOT_A_FOLDER + "5"),
        (daily(source="s3://elsewhere/cleansed/x/"), OUTSIDE + "'s3://elsewhere/cleansed/x/'"),
        (daily(source="s3://biz-exchange/raw/x/"), OUTSIDE + "'s3://biz-exchange/raw/x/'"),
        ([*daily(), *daily()], "mlpoc:schedules has two schedules for one model: "
                               "['digits', 'digits']"),
    ],
)  # fmt: skip
def test_a_bad_schedule_is_one_sentence(value: Any, message: str) -> None:
    assert refused(parse_schedules, SCHEDULES, value, (PARSED_SOURCE, SECOND_SOURCE)) == message


SHARE = "mlpoc:share"
SHARE_SHAPE = (
    'mlpoc:share must be an object such as {"ml_account": "", "prefix": "cleansed/", '
    '"results_prefix": ""}; got '
)
OVERLAP = (
    "mlpoc:share.results_prefix must not overlap prefix (the ML side reads one and may write "
    "the other); got "
)


def test_the_share_knob_is_off_unless_it_names_the_ml_account() -> None:
    assert parse_share(SHARE, {}) == NO_SHARE
    assert parse_share(SHARE, {"ml_account": "", "prefix": "cleansed/",
                               "results_prefix": ""}) == NO_SHARE  # fmt: skip
    text = ' {"ml_account": "123456789012", "prefix": "out/", "results_prefix": "back/"}'
    assert parse_share(SHARE, text) == Share(
        ml_account="123456789012", prefix="out/", results_prefix="back/"
    )
    assert parse_share(SHARE, {"ml_account": "123456789012"}) == Share(
        ml_account="123456789012", prefix="cleansed/", results_prefix=None
    )
    assert worker_role_name("mlpoc", "train") == "mlpoc-train-worker"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{oops", "mlpoc:share is not valid JSON (Expecting property name enclosed in double "
                  "quotes: line 1 column 2 (char 1)); got '{oops'"),
        ([], SHARE_SHAPE + "[]"),
        ("123456789012", SHARE_SHAPE + "'123456789012'"),
        ({"ml_account": "123456789012", "bucket": "b"},
         SHARE_SHAPE + "{'ml_account': '123456789012', 'bucket': 'b'}"),
        ({"ml_account": "12"},
         "mlpoc:share.ml_account must be a 12-digit AWS account id (a string); got '12'"),
        ({"prefix": "data"}, "mlpoc:share.prefix must be a folder ending in / (such as "
                             "'cleansed/'); got 'data'"),
        ({"prefix": 5}, "mlpoc:share.prefix must be a folder ending in / (such as 'cleansed/'); "
                        "got 5"),
        ({"results_prefix": "out"}, "mlpoc:share.results_prefix must be a folder ending in / "
                                    "(such as 'cleansed/'); got 'out'"),
        ({"results_prefix": 5}, "mlpoc:share.results_prefix must be a folder ending in / "
                                "(such as 'cleansed/'); got 5"),
        ({"prefix": "x/", "results_prefix": "x/out/"}, OVERLAP + "'x/' and 'x/out/'"),
        ({"prefix": "x/in/", "results_prefix": "x/"}, OVERLAP + "'x/in/' and 'x/'"),
        ({"results_prefix": "cleansed/"}, OVERLAP + "'cleansed/' and 'cleansed/'"),
    ],
)  # fmt: skip
def test_a_bad_share_knob_is_one_sentence(value: Any, message: str) -> None:
    assert refused(parse_share, SHARE, value) == message


def test_a_share_without_a_prefix_is_refused() -> None:
    # results_prefix may be null (nothing written back); the prefix handed over may not
    with pytest.raises(ConfigError, match=r"mlpoc:share\.prefix must be a folder ending in /"):
        parse_share(SHARE, {"ml_account": "123456789012", "prefix": None})
    assert parse_share(SHARE, {"ml_account": "123456789012", "results_prefix": None}).prefix == (
        "cleansed/"
    )

"""``mlpoc preflight``: what a first ``cdk deploy`` needs, checked before it runs.

One :class:`Check` per line, ✓ or ✗ with what to do. Against AWS (your own credentials):
credentials, account and region; the CDK bootstrap and its version; Docker with a builder that
makes arm64 images; the Elastic Beanstalk Docker platform offered now against the one the app
will use (``auto``: resolved here and kept in ``cdk.context.json``, see
:mod:`mlpoc.aws.beanstalk_platform`);
the stacks' state (a stack left in ROLLBACK_COMPLETE blocks a deploy); the service-linked roles
the stacks need, or that they will be created; the idle month from ``mlpoc cost`` against the
budget; and the model plugins ``mlpoc:plugins`` lists import here (with or without
credentials). Against local mode, the same checks where they apply (no bootstrap, no Docker
locally).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mlpoc import cost, plugins
from mlpoc.aws import beanstalk_platform
from mlpoc.aws.cloud_assembly import Assembly
from mlpoc.errors import PluginError

GPU_QUEUE_OUTPUT = "GpuQueueUrl"  # the data stack's output while the GPU pool exists
BOOTSTRAP_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
# what the synthesized templates' CheckBootstrapVersion rule asks for when it cannot be read
DEFAULT_BOOTSTRAP_VERSION = 6
# created by AWS on first use when the deployer may iam:CreateServiceLinkedRole
SERVICE_LINKED_ROLES = {
    "AWSServiceRoleForECS": "ECS (the worker cluster and services)",
    "AWSServiceRoleForApplicationAutoScaling_ECSService": "queue-depth scaling of the workers",
    "AWSServiceRoleForAutoScaling": "the API instance's Auto Scaling group (Elastic Beanstalk)",
    "AWSServiceRoleForElasticBeanstalkManagedUpdates": "Beanstalk's managed platform updates",
}
Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def run(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed docker commands
        list(command), capture_output=True, text=True, timeout=60, check=False
    )


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: does not apply to this target
    detail: str
    fix: str = ""


@dataclass
class Preflight:
    """The checks, with the clients and files they read passed in (tests hand in moto's)."""

    session: Any  # boto3 Session with the target's credentials and region
    region: str
    project: str
    assembly: Assembly
    context_file: Path  # cdk.context.json of the checkout
    configured_platform: str  # cdk.json's mlpoc:eb_solution_stack
    budget_usd: float
    plugins: tuple[str, ...] = ()  # cdk.json's mlpoc:plugins
    local: bool = False
    endpoint: str | None = None
    refresh_platform: bool = False
    runner: Runner = run
    account: str = field(default="", init=False)

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint)

    def checks(self) -> list[Check]:
        found = [self.identity(), self.model_plugins()]
        if not self.account:
            return found  # nothing else can be asked without credentials
        for check in (
            self.bootstrap,
            self.docker,
            self.platform,
            self.stacks,
            self.service_linked_roles,
            self.idle_cost,
        ):
            found.append(check())
        return found

    # -- the checks --------------------------------------------------------------------------
    def model_plugins(self) -> Check:
        """The plugins mlpoc:plugins lists import here, as the worker image will import them
        (a missing library or a typo fails here, not in the first train job)."""
        try:
            plugins.load()
        except PluginError as error:
            return Check("model plugins", False, str(error), "make install")
        missing = [name for name in self.plugins if name not in plugins.names()]
        if missing:
            return Check(
                "model plugins",
                False,
                f"mlpoc:plugins lists {missing}, which this environment cannot import",
                "`make install` (it installs containers/plugins/*), then `mlpoc plugin check "
                f"{missing[0]}`",
            )
        return Check(
            "model plugins",
            True,
            f"{', '.join(['sklearn (built in)', *self.plugins])} import; the worker image "
            "carries the same",
        )

    def identity(self) -> Check:
        try:
            who = self.client("sts").get_caller_identity()
        except (BotoCoreError, ClientError) as error:
            return Check(
                "credentials",
                False,
                f"no usable AWS credentials ({error})",
                "run `aws configure` or `aws sso login` and set AWS_PROFILE; or --target local",
            )
        self.account = str(who["Account"])
        return Check("credentials", True, f"{who['Arn']} · account {self.account} · {self.region}")

    def bootstrap(self) -> Check:
        if self.local:
            return Check("CDK bootstrap", None, "not needed locally (nothing is uploaded)")
        needed = self.required_bootstrap_version()
        fix = f"npx cdk bootstrap aws://{self.account}/{self.region}"
        try:
            version = int(
                self.client("ssm").get_parameter(Name=BOOTSTRAP_PARAMETER)["Parameter"]["Value"]
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ParameterNotFound":
                return Check("CDK bootstrap", False, f"{self.region} is not bootstrapped", fix)
            raise
        if version < needed:
            return Check(
                "CDK bootstrap", False, f"version {version}; the templates need {needed}+", fix
            )
        return Check("CDK bootstrap", True, f"version {version} (the templates need {needed}+)")

    def required_bootstrap_version(self) -> int:
        """From the templates' CheckBootstrapVersion rule: one more than the versions it lists."""
        for template in self.assembly.templates.values():
            rule = template.get("Rules", {}).get("CheckBootstrapVersion")
            if rule:
                refused = rule["Assertions"][0]["Assert"]["Fn::Not"][0]["Fn::Contains"][0]
                return max(int(v) for v in refused) + 1
        return DEFAULT_BOOTSTRAP_VERSION

    def docker(self) -> Check:
        if self.local:
            return Check("Docker (arm64)", None, "not needed locally (processes, not images)")
        fix = (
            "install Docker with buildx; on an x86 machine enable QEMU emulation "
            "(docker run --privileged --rm tonistiigi/binfmt --install arm64)"
        )
        try:
            done = self.runner(["docker", "buildx", "ls"])
        except FileNotFoundError:
            return Check("Docker (arm64)", False, "no docker command", fix)
        except (OSError, subprocess.TimeoutExpired) as error:
            return Check("Docker (arm64)", False, f"docker buildx ls failed: {error}", fix)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return Check("Docker (arm64)", False, f"docker buildx: {detail[0]}", fix)
        if "linux/arm64" not in done.stdout:
            return Check("Docker (arm64)", False, "no builder lists linux/arm64", fix)
        return Check("Docker (arm64)", True, "a buildx builder makes linux/arm64 images")

    def platform(self) -> Check:
        name = "Beanstalk platform"
        stacks = self.client("elasticbeanstalk").list_available_solution_stacks()
        offered = set(stacks["SolutionStacks"])
        newest = beanstalk_platform.newest_docker_al2023(offered)
        if newest is None:
            return Check(name, False, f"{self.region} offers no Docker on Amazon Linux 2023")
        if self.configured_platform != beanstalk_platform.AUTO:
            return self._pinned(offered, newest)
        key = beanstalk_platform.context_key(self.account, self.region)
        kept = self.read_context().get(key)
        if kept and not self.refresh_platform:
            return self._kept(kept, offered, newest)
        if self.local:
            return Check(name, True, f"{newest!r} is offered (not kept: local mode runs no EB)")
        self.write_context(key, newest)
        return Check(name, True, f"resolved {newest!r}, kept in {self.context_file.name}")

    def _pinned(self, offered: set[str], newest: str) -> Check:
        pinned = self.configured_platform
        if pinned in offered:
            return Check(
                "Beanstalk platform", True, f"pinned {pinned!r} is offered (newest: {newest!r})"
            )
        return Check(
            "Beanstalk platform",
            False,
            f"pinned {pinned!r} is not offered in {self.region} (retired)",
            f"set mlpoc:eb_solution_stack to auto, or to {newest!r}",
        )

    def _kept(self, kept: str, offered: set[str], newest: str) -> Check:
        if kept in offered:
            return Check("Beanstalk platform", True, f"kept {kept!r} (newest offered: {newest!r})")
        return Check(
            "Beanstalk platform",
            False,
            f"kept {kept!r} is no longer offered: a running environment stays on it and managed "
            "updates move it on, but a new environment cannot be created with it",
            "for a first deploy or a redeploy after destroy: mlpoc preflight --target aws "
            "--refresh-platform",
        )

    def read_context(self) -> dict[str, Any]:
        try:
            found: dict[str, Any] = json.loads(self.context_file.read_text())
        except FileNotFoundError:
            return {}
        return found

    def write_context(self, key: str, value: str) -> None:
        context = self.read_context()
        context[key] = value
        self.context_file.write_text(json.dumps(context, indent=2, sort_keys=True) + "\n")

    def stacks(self) -> Check:
        cloudformation = self.client("cloudformation")
        states = []
        for stack in (f"{self.project}-data", f"{self.project}-service"):
            try:
                found = cloudformation.describe_stacks(StackName=stack)["Stacks"]
                status = found[0]["StackStatus"]
            except ClientError as error:
                if "does not exist" not in str(error):
                    raise
                states.append(f"{stack}: not deployed")
                continue
            if status == "ROLLBACK_COMPLETE" or status.endswith("_FAILED"):
                return Check(
                    "stacks",
                    False,
                    f"{stack} is {status}: CloudFormation cannot update it",
                    f"aws cloudformation delete-stack --stack-name {stack}, then deploy again",
                )
            if status.endswith("IN_PROGRESS"):
                return Check("stacks", False, f"{stack} is {status}", "wait until it settles")
            if stack.endswith("-data") and not self.local:
                turning_off = self._gpu_turned_off(found[0])
                if turning_off is not None:
                    return turning_off
            states.append(f"{stack}: {status}")
        if self.local:  # the service stack runs as local processes, not as a stack
            states = [s for s in states if not s.startswith(f"{self.project}-service")]
        return Check("stacks", True, "; ".join(states))

    def _gpu_turned_off(self, data_stack: dict[str, Any]) -> Check | None:
        """mlpoc:gpu going from true to false: `cdk deploy --all` would update the data stack
        first, and CloudFormation refuses to drop the GPU queue's exports while the deployed
        service stack imports them. The service stack must let go of them first."""
        deployed = {o["OutputKey"] for o in data_stack.get("Outputs", [])}
        if GPU_QUEUE_OUTPUT not in deployed or self.assembly.gpu_images:
            return None
        return Check(
            "stacks",
            False,
            f"mlpoc:gpu is now false, but the deployed {self.project}-data still has the GPU "
            f"queue that {self.project}-service imports: deploying the data stack first fails "
            "(CloudFormation keeps an export that another stack imports)",
            f"npx cdk deploy {self.project}-service --exclusively (the service stack drops the "
            "GPU pool first), then make deploy",
        )

    def service_linked_roles(self) -> Check:
        if self.local:
            return Check("service-linked roles", None, "none locally")
        iam = self.client("iam")
        missing = []
        for role, purpose in SERVICE_LINKED_ROLES.items():
            try:
                iam.get_role(RoleName=role)
            except ClientError as error:
                if error.response["Error"]["Code"] != "NoSuchEntity":
                    raise
                missing.append(f"{role} ({purpose})")
        if not missing:
            return Check("service-linked roles", True, "all present")
        return Check(
            "service-linked roles",
            True,
            "created by AWS on first use (your deploy role needs iam:CreateServiceLinkedRole): "
            + ", ".join(missing),
        )

    def idle_cost(self) -> Check:
        report = cost.report(self.assembly, self.region)
        detail = (
            f"{report.idle_total:.2f} USD a month idle ({report.idle_free_tier:.2f} with the "
            f"always-free allowances); budget {self.budget_usd:.0f} USD"
        )
        if report.idle_total > self.budget_usd:
            return Check(
                "idle month",
                False,
                detail,
                "raise mlpoc:budget_usd, or shrink the configuration (mlpoc cost says what costs)",
            )
        return Check("idle month", True, detail)

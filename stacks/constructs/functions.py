"""The two Lambda functions, each with its own role, log group and retention.

Code is staged without Docker: a local bundler copies the handler (and, for
``dataset_uploaded``, the few runtime modules it shares with the workers: the job contract and
the ledger) into the asset. Powertools comes from AWS's published layer, resolved at deploy time
from its public SSM parameter for the exact version the tests run with.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import BundlingOptions, DockerImage, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm

from constructs import Construct
from stacks.constructs.bundling import CopyFiles

REPO_ROOT = Path(__file__).resolve().parents[2]
POWERTOOLS_VERSION = "3.37.0"
RUNTIME = lambda_.Runtime.PYTHON_3_14
SHARED_MODULES = (
    "__init__.py",
    "contracts.py",
    "dynamo.py",
    "errors.py",
    "layout.py",
    "ledger.py",
)


class PythonFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        description: str,
        environment: dict[str, str],
        timeout: Duration,
        log_retention: logs.RetentionDays,
        shared_runtime: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        files = {f"lambdas/{name}/handler.py": "handler.py"}
        if shared_runtime:
            files.update({f"containers/mlpoc/{m}": f"mlpoc/{m}" for m in SHARED_MODULES})
        self.log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        # an explicit role: logs to its own group only, no AWS managed policy
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=description,
        )
        self.log_group.grant_write(self.role)
        powertools = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "Powertools",
            ssm.StringParameter.value_for_string_parameter(
                self,
                f"/aws/service/powertools/python/arm64/{RUNTIME.name}/{POWERTOOLS_VERSION}",
            ),
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(
                str(REPO_ROOT / "lambdas" / name),
                bundling=BundlingOptions(
                    image=DockerImage.from_registry(f"public.ecr.aws/sam/build-{RUNTIME.name}"),
                    local=CopyFiles(files),  # type: ignore[arg-type]  # jsii.implements
                    command=["false"],  # never used: the local bundler always succeeds
                ),
            ),
            role=self.role,
            layers=[powertools],
            environment={**environment, "POWERTOOLS_SERVICE_NAME": name},
            timeout=timeout,
            memory_size=256,
            log_group=self.log_group,
        )

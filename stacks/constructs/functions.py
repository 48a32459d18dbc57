"""The two Lambda functions, each with its own role, log group and retention.

Code is staged without Docker: a local bundler copies the handler (and, for
``dataset_uploaded``, the few runtime modules it shares with the workers: the job contract and
the ledger) into the asset, with the installed Powertools (the version pyproject.toml pins, the
one the tests run) and its one dependency the runtime lacks (typing_extensions). No layer: AWS
publishes its Powertools layer through an SSM parameter per region, runtime and version, and a
region without that parameter would fail the deploy.
"""

from __future__ import annotations

from aws_cdk import BundlingOptions, DockerImage, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from constructs import Construct
from mlpoc.paths import CHECKOUT
from stacks.constructs.bundling import CopyFiles
from stacks.constructs.nag import skip_checkov

# checkov's Lambda checks that hold for every function of the kit, and why (each function says
# why it has no dead-letter queue and no reserved concurrency: that depends on who invokes it)
NO_VPC = (
    "It calls AWS APIs (and Slack, for the notifier) over HTTPS and reaches nothing inside the "
    "VPC. The kit's VPC has public subnets only and no NAT gateway: in it, the function would "
    "need interface endpoints (about 7 USD a month each) that protect no resource of its own."
)
PLAIN_ENVIRONMENT = (
    "The environment holds resource names and URLs from the stack and Powertools settings, "
    "never a secret (secrets are read from Secrets Manager when the function runs); Lambda "
    "encrypts it at rest with an AWS-owned key."
)
NO_RESERVATION = (
    "Lambda refuses a reservation that leaves the account less than its minimum unreserved "
    "concurrency, and new accounts start at 10: any reservation would fail their first deploy. "
)

# bundled into every function: Powertools and what it needs beyond the runtime's boto3
BUNDLED_MODULES = ("aws_lambda_powertools", "typing_extensions")
RUNTIME = lambda_.Runtime.PYTHON_3_14
# in every function: mlpoc's one log format and its event names (the notify function reads one)
LOGGING_MODULES = ("__init__.py", "aws/__init__.py", "aws/lambda_logs.py", "aws/log_events.py")
# in the functions that record jobs (shared_runtime): the job contract, the ledger, the layout
SHARED_MODULES = (
    "aws/bucket_layout.py",
    "aws/dynamo.py",
    "errors.py",
    "runtime/__init__.py",
    "aws/backoff.py",
    "runtime/contract.py",
    "runtime/environment.py",
    "runtime/job_records.py",
    "runtime/ledger.py",
    "runtime/scaling.py",
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
        on_failure: lambda_.IDestination | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        modules = LOGGING_MODULES + (SHARED_MODULES if shared_runtime else ())
        files = {f"lambdas/{name}/handler.py": "handler.py"}
        files.update({f"containers/mlpoc/{m}": f"mlpoc/{m}" for m in modules})
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
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler="handler.handler",
            code=lambda_.Code.from_asset(
                str(CHECKOUT / "lambdas" / name),
                bundling=BundlingOptions(
                    image=DockerImage.from_registry(f"public.ecr.aws/sam/build-{RUNTIME.name}"),
                    local=CopyFiles(files, BUNDLED_MODULES),  # type: ignore[arg-type]
                    command=["false"],  # never used: the local bundler always succeeds
                ),
            ),
            role=self.role,
            environment={**environment, "POWERTOOLS_SERVICE_NAME": name},
            timeout=timeout,
            memory_size=256,
            # asynchronous invocations (SNS): two retries, then the failed event is kept
            on_failure=on_failure,
            retry_attempts=2 if on_failure else None,
            log_group=self.log_group,
        )
        skip_checkov(self.function, "CKV_AWS_117", NO_VPC)
        skip_checkov(self.function, "CKV_AWS_173", PLAIN_ENVIRONMENT)

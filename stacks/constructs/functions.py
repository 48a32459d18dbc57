"""The two Lambda functions, each with its own role, log group and retention.

Code is staged without Docker: a local bundler copies the handler and the runtime modules it
imports, directly or through each other (:func:`runtime_modules`: for ``dataset_uploaded`` the
job contract, the ledger and what they use; for ``notify`` the log format and event names), with
the installed Powertools (the version pyproject.toml pins, the one the tests run) and its one
dependency the runtime lacks (typing_extensions). No layer: AWS publishes its Powertools layer
through an SSM parameter per region, runtime and version, and a region without that parameter
would fail the deploy.
"""

from __future__ import annotations

import ast
from pathlib import Path

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
PACKAGE = CHECKOUT / "containers" / "mlpoc"


def runtime_modules(handler: Path) -> tuple[str, ...]:
    """The mlpoc modules ``handler`` imports at its top level, and those they import in turn,
    as paths under containers/mlpoc/ with every package's ``__init__.py`` on the way: what the
    function's bundle must hold, derived, so a module split or moved cannot leave it behind.
    Imports inside functions or under ``if TYPE_CHECKING`` are not followed (none runs at import
    time, and a Lambda function must not need the worker's libraries)."""
    found: set[Path] = set()
    todo = [handler]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in tree.body:
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("mlpoc"):
                continue
            base = PACKAGE.joinpath(*str(node.module).split(".")[1:])
            candidates = [base / f"{alias.name}.py" for alias in node.names]
            candidates = [c for c in candidates if c.is_file()] or [base.with_suffix(".py")]
            for candidate in candidates:
                module = (
                    candidate if candidate.is_file() else candidate.with_suffix("") / "__init__.py"
                )
                if module not in found:
                    found.add(module)
                    todo.append(module)
    packages = {
        parent / "__init__.py"
        for m in found
        for parent in m.parents
        if parent.is_relative_to(PACKAGE)
    }
    return tuple(sorted(str(p.relative_to(PACKAGE)) for p in found | packages))


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
        on_failure: lambda_.IDestination | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        modules = runtime_modules(CHECKOUT / "lambdas" / name / "handler.py")
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

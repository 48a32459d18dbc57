"""Where the operator commands point: the local stack (state file) or the deployed stacks.

Both are found the same way, through the stacks' outputs: locally from the state file that
``mlpoc local up`` writes, on AWS from CloudFormation's DescribeStacks of ``<project>-data``
and ``<project>-service`` with the caller's own credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from mlpoc.aws.clients import Clients, client
from mlpoc.errors import TargetError
from mlpoc.local.safety import Credentials, check_endpoint, local_session
from mlpoc.local.state import LocalState
from mlpoc.models.registry import Registry
from mlpoc.runtime.environment import RESOURCE_OUTPUTS
from mlpoc.runtime.ledger import Ledger

TargetName = Literal["local", "aws"]
# the outputs every command may need: those that hold the runtime's resource names
REQUIRED_OUTPUTS = tuple(RESOURCE_OUTPUTS.values())


@dataclass
class Deployment:
    name: TargetName
    region: str
    outputs: dict[str, str]
    session: boto3.session.Session
    endpoint: str | None
    api_url: str | None
    local_api_key: str | None = None
    # locally: the operator's identity that local mode created in moto (its admin user)
    local_credentials: Credentials | None = None
    # locally: the service template's schedules (on AWS they are read from EventBridge Scheduler)
    local_schedules: list[dict[str, Any]] | None = None

    def client(self, service: str) -> Any:
        if self.endpoint is None:
            return client(service, session=self.session)
        return self.session.client(service, endpoint_url=check_endpoint(self.endpoint))

    def clients(self) -> Clients:
        return Clients(
            s3=self.client("s3"), sqs=self.client("sqs"), dynamodb=self.client("dynamodb")
        )

    def output(self, name: str) -> str:
        try:
            return self.outputs[name]
        except KeyError:
            where = "the local stack" if self.name == "local" else "the deployed stacks"
            raise TargetError(
                f"{where} have no output {name}: redeploy with this version"
            ) from None

    def ledger(self) -> Ledger:
        return Ledger(self.client("dynamodb"), self.output("JobsTableName"))

    def registry(self) -> Registry:
        return Registry(self.client("dynamodb"), self.output("ModelsTableName"))

    def api_key(self) -> str:
        if self.local_api_key is not None:
            return self.local_api_key
        secret: str = self.client("secretsmanager").get_secret_value(
            SecretId=self.output("ApiKeySecretArn")
        )["SecretString"]
        return secret.strip()


def resolve(target: TargetName, *, state_dir: Path, project: str, region: str | None) -> Deployment:
    if target == "local":
        state = LocalState.load(state_dir)
        return Deployment(
            name="local",
            region=state.region,
            # on AWS the service stack outputs ApiUrl; locally the API is a process on loopback
            outputs={**state.outputs, "ApiUrl": state.api_url},
            session=local_session(state.credentials()),
            endpoint=state.endpoint,
            api_url=state.api_url,
            local_api_key=state.api_key,
            local_credentials=state.credentials(),
            local_schedules=state.schedules,
        )
    return _aws(project, region)


def _aws(project: str, region: str | None) -> Deployment:
    try:
        session = boto3.session.Session(region_name=region)
        if session.region_name is None:
            raise NoRegionError
        cloudformation = client("cloudformation", session=session)
        outputs: dict[str, str] = {}
        for stack_name in (f"{project}-data", f"{project}-service"):
            try:
                stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
            except ClientError as error:
                if "does not exist" in str(error):
                    raise TargetError(
                        f"stack {stack_name} is not deployed in {session.region_name}: run "
                        "`make deploy` (or pass --region / --project), or use --target local"
                    ) from None
                raise
            outputs.update({o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])})
    except NoCredentialsError:
        raise TargetError(
            "no AWS credentials: run `aws configure` or `aws sso login` and set AWS_PROFILE, "
            "or use --target local"
        ) from None
    except NoRegionError:
        raise TargetError("no AWS region: pass --region or set AWS_REGION") from None
    except (BotoCoreError, ClientError) as error:
        raise TargetError(f"cannot read the stacks from AWS: {error}") from None
    missing = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    if missing:
        raise TargetError(f"the deployed stacks lack outputs {missing}: redeploy with this version")
    return Deployment(
        name="aws",
        region=str(session.region_name),
        outputs=outputs,
        session=session,
        endpoint=None,
        api_url=outputs.get("ApiUrl"),
    )

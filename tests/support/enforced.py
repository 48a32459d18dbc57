"""A moto server in its own process with local mode's IAM: the data stack from its synthesized
template, the service stack's runtime roles, and moto's access control on.

Its own process, because moto's access control is one switch for every moto in a process: the
other tests' servers and ``mock_aws`` keep running without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

from mlpoc.aws.clients import Clients
from mlpoc.local.deploy import LocalDeployer, create_alerts_topic
from mlpoc.local.iam import Enforced, LocalIdentities
from mlpoc.local.processes import (
    LOCAL_ACCOUNT,
    ProcessSpec,
    Resolver,
    alerts_topic,
    api_key_secret,
    processes,
)
from mlpoc.local.safety import REGION, Credentials, local_env
from mlpoc.local.scheduler import LocalSchedule, from_template, scheduler_role
from tests.support.aws_stack import OUTPUTS, Stack
from tests.support.cdk_app import Synthesized


@contextmanager
def moto_process(*, covered: bool = True) -> Iterator[str]:
    """``python -m mlpoc.local.motoserver`` on a free loopback port; its endpoint.

    ``covered=False`` keeps coverage out of it: a server that only serves the other tests'
    calls has nothing of ours to measure, and tracing moto costs more than the calls."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mlpoc.local.motoserver"],
        stdout=subprocess.PIPE,
        text=True,
        env={
            **local_env("http://127.0.0.1:1"),
            **{k: v for k, v in os.environ.items() if covered and k.startswith("COVERAGE")},
        },
    )
    assert process.stdout is not None
    endpoint = process.stdout.readline().strip()
    try:
        assert endpoint.startswith("http://127.0.0.1:"), endpoint
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class EnforcedStack:
    endpoint: str
    outputs: dict[str, str]
    specs: dict[str, ProcessSpec]  # runtime role (train, predict, api, upload) -> process
    enforced: Enforced
    schedules: list[LocalSchedule] = field(default_factory=list)
    wired: list[str] = field(default_factory=list)
    api_key: str = ""  # the API key local mode generated (its secret is the API's stand-in)
    alerts_inbox: str = ""  # the queue subscribed to the alerts topic's stand-in

    def session(self, role: str) -> boto3.session.Session:
        """A session with the credentials of a runtime role (or "operator")."""
        credentials: Credentials | None = (
            self.enforced.operator
            if role == "operator"
            else self.enforced.processes[self.specs[role].name if role in self.specs else role]
        )
        assert credentials is not None
        return boto3.session.Session(
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
            region_name=REGION,
        )

    def client(self, role: str, service: str) -> Any:
        return self.session(role).client(service, endpoint_url=self.endpoint)

    def role_env(self, role: str) -> dict[str, str]:
        """The credentials variables of a runtime role, for a worker subprocess."""
        return self.enforced.processes[self.specs[role].name].env()

    def runtime_stack(self) -> Stack:
        """The stack as the worker tests know it, its clients signed by the operator."""
        return OperatorStack(
            endpoint=self.endpoint,
            operator=self.session("operator"),
            **{field: self.outputs[output] for field, output in OUTPUTS.items()},
        )


@dataclass(frozen=True)
class OperatorStack(Stack):
    operator: boto3.session.Session | None = None

    def clients(self) -> Clients:
        assert self.operator is not None
        return Clients(
            s3=self.operator.client("s3", endpoint_url=self.endpoint),
            sqs=self.operator.client("sqs", endpoint_url=self.endpoint),
            dynamodb=self.operator.client("dynamodb", endpoint_url=self.endpoint),
        )


def runtime_role(spec: ProcessSpec) -> str:
    """The layout's name for the role a process runs as."""
    return {"function": "upload"}.get(spec.kind, spec.name)


def deploy_enforced(
    endpoint: str, app: Synthesized, *, origin_secret: str | None = None
) -> EnforcedStack:
    """What `mlpoc local up` does before it starts processes, on ``app``'s templates (and the
    schedules' role, assumed as ``scheduler``, when the app has schedules).

    ``origin_secret``: also stand in for the CloudFront origin secret with this value (what
    local mode leaves out), so the API runs with the origin check and its role reads it."""
    data = app.data_json
    service = app.service_json
    deployer = LocalDeployer(endpoint)
    stack = deployer.create("mlpoc-data", data)
    secret_arn, api_key = deployer.create_api_key("mlpoc")
    topic_arn, inbox = create_alerts_topic(deployer, "mlpoc")
    stand_ins = {
        **dict.fromkeys(api_key_secret(service), secret_arn),
        **dict.fromkeys(alerts_topic(service), topic_arn),
    }
    if origin_secret is not None:
        arn = deployer.secretsmanager.create_secret(
            Name="mlpoc-local-origin", SecretString=origin_secret
        )["ARN"]
        stand_ins.update(dict.fromkeys(origin_secret_ids(service), arn))
    resolve = Resolver(stack.exports, REGION, stand_ins)
    specs = processes(service, app.outdir, resolve)
    found = from_template(service, resolve)
    enforced = LocalIdentities(endpoint, account=LOCAL_ACCOUNT).for_processes(
        service, specs, resolve, scheduler_role(found)
    )
    return EnforcedStack(
        endpoint=endpoint,
        outputs=stack.outputs,
        specs={runtime_role(s): s for s in specs},
        enforced=enforced,
        schedules=found,
        wired=stack.wired,
        api_key=api_key,
        alerts_inbox=inbox,
    )


def origin_secret_ids(service: dict[str, Any]) -> list[str]:
    """The logical id of the secret the API's MLPOC_ORIGIN_SECRET_ARN names."""
    return [
        option["Value"]["Ref"]
        for resource in service["Resources"].values()
        if resource["Type"] == "AWS::ElasticBeanstalk::Environment"
        for option in resource["Properties"]["OptionSettings"]
        if option["OptionName"] == "MLPOC_ORIGIN_SECRET_ARN"
    ]

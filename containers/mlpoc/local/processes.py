"""What runs locally, read from the service stack's template.

:func:`processes` reads the ECS task definitions (command + environment), the Lambda functions
behind SQS event source mappings (handler, code asset, environment, batch settings) and the
Elastic Beanstalk environment's properties. Values that are imports of the data stack's exports
are resolved against the local stack (:class:`Resolver`); values that only mean something on
AWS (the image URI) are named and left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL_ACCOUNT = "123456789012"  # moto's default account


class Unresolvable(Exception):
    """A template value that has no meaning outside AWS."""


@dataclass(frozen=True)
class Resolver:
    exports: Mapping[str, str]
    region: str
    # logical id (of the service stack) -> a local stand-in's physical id
    stand_ins: Mapping[str, str] = field(default_factory=dict)

    def __call__(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, dict) and "Fn::ImportValue" in value:
            name = value["Fn::ImportValue"]
            if name not in self.exports:
                raise Unresolvable(f"the data stack exports no {name}")
            return self.exports[name]
        if isinstance(value, dict) and "Ref" in value:
            ref = value["Ref"]
            pseudo = {
                "AWS::Region": self.region,
                "AWS::AccountId": LOCAL_ACCOUNT,
                "AWS::Partition": "aws",
            }
            if ref in pseudo:
                return pseudo[ref]
            if ref in self.stand_ins:
                return self.stand_ins[ref]
        if isinstance(value, dict) and set(value) & {"Fn::Join", "Fn::Sub", "Fn::Select"}:
            resolved = self.value(value)
            if isinstance(resolved, str):
                return resolved
        raise Unresolvable(f"{value} exists only on AWS")

    def value(self, value: Any) -> Any:
        """A template value with every intrinsic function resolved (lists and maps too)."""
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            function, argument = next(iter(value.items()))
            if function in ("Ref", "Fn::ImportValue", "Fn::GetAtt"):
                return self(value)
            functions = {"Fn::Join": self._join, "Fn::Select": self._select, "Fn::Sub": self._sub}
            if function in functions:
                return functions[function](argument)
        return {k: self.value(v) for k, v in value.items()}

    def _join(self, argument: Any) -> str:
        separator, parts = argument
        return str(separator).join(self(self.value(p)) for p in parts)

    def _select(self, argument: Any) -> Any:
        index, items = argument
        return self.value(self.value(items)[int(self(index))])

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return self(self.value(variables[name]))
            return self({"Ref": name})

        return re.sub(r"\$\{([^}!]+)\}", one, str(text))


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    kind: str  # "worker", "function", "api"
    command: list[str]
    env: dict[str, str]
    left_out: dict[str, str]  # variable -> why it is not set locally
    role_id: str = ""  # the logical id of the IAM role it runs as on AWS
    # for functions behind an SQS event source mapping
    asset_dir: Path | None = None
    handler: str = ""
    queue_arn: str = ""
    batch_size: int = 10
    batching_window: int = 0
    report_failures: bool = False
    timeout: int = 3


def _environment(
    pairs: list[tuple[str, Any]], resolve: Resolver
) -> tuple[dict[str, str], dict[str, str]]:
    env: dict[str, str] = {}
    left_out: dict[str, str] = {}
    for name, value in pairs:
        try:
            env[name] = resolve(value)
        except Unresolvable as why:
            left_out[name] = str(why)
    return env, left_out


def _cdk_name(resource: Mapping[str, Any], fallback: str) -> str:
    path = str(resource.get("Metadata", {}).get("aws:cdk:path", ""))
    parts = path.split("/")
    return parts[1] if len(parts) > 2 else fallback  # noqa: PLR2004 - stack/construct/...


def processes(template: Mapping[str, Any], assembly: Path, resolve: Resolver) -> list[ProcessSpec]:
    resources: Mapping[str, Any] = template["Resources"]
    found: list[ProcessSpec] = []
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::ECS::TaskDefinition":
            container = props["ContainerDefinitions"][0]
            env, left_out = _environment(
                [(e["Name"], e["Value"]) for e in container.get("Environment", [])], resolve
            )
            command = list(container.get("Command", []))
            name = command[-1] if command[:3] == ["python", "-m", "mlpoc.worker"] else logical_id
            found.append(
                ProcessSpec(
                    name=name,
                    kind="worker",
                    command=command,
                    env=env,
                    left_out=left_out,
                    role_id=_role_of(props.get("TaskRoleArn")),
                )
            )
        elif resource["Type"] == "AWS::Lambda::EventSourceMapping":
            function_id = props["FunctionName"]["Ref"]
            function = resources[function_id]
            fprops = function["Properties"]
            env, left_out = _environment(
                list(fprops.get("Environment", {}).get("Variables", {}).items()), resolve
            )
            asset = function.get("Metadata", {}).get("aws:asset:path")
            found.append(
                ProcessSpec(
                    name=_cdk_name(function, function_id),
                    kind="function",
                    command=[],
                    env=env,
                    left_out=left_out,
                    role_id=_role_of(fprops.get("Role")),
                    asset_dir=assembly / asset if asset else None,
                    handler=str(fprops["Handler"]),
                    queue_arn=resolve(props["EventSourceArn"]),
                    batch_size=int(props.get("BatchSize", 10)),
                    batching_window=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                    report_failures="ReportBatchItemFailures"
                    in props.get("FunctionResponseTypes", []),
                    timeout=int(fprops.get("Timeout", 3)),
                )
            )
        elif resource["Type"] == "AWS::ElasticBeanstalk::Environment":
            pairs = [
                (o["OptionName"], o["Value"])
                for o in props.get("OptionSettings", [])
                if o["Namespace"] == "aws:elasticbeanstalk:application:environment"
            ]
            env, left_out = _environment(pairs, resolve)
            profile = next(
                (
                    o["Value"]
                    for o in props.get("OptionSettings", [])
                    if o["Namespace"] == "aws:autoscaling:launchconfiguration"
                    and o["OptionName"] == "IamInstanceProfile"
                ),
                None,
            )
            roles = (
                resources[profile["Ref"]]["Properties"]["Roles"]
                if isinstance(profile, dict) and profile.get("Ref") in resources
                else []
            )
            found.append(
                ProcessSpec(
                    name="api",
                    kind="api",
                    command=["python", "-m", "mlpoc.api"],
                    env=env,
                    left_out=left_out,
                    role_id=str(roles[0]["Ref"]) if roles else "",
                )
            )
    return found


def api_key_secret(template: Mapping[str, Any]) -> dict[str, str]:
    """{logical id of the API key's secret: its environment variable}, from the API's settings.

    Only that secret has a local stand-in (local mode generates the key into moto); any other
    secret of the template (CloudFront's origin header) exists only on AWS, so the variable
    that names it is left out locally and so is its grant in the API's local role.
    """
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::ElasticBeanstalk::Environment":
            continue
        for option in resource["Properties"].get("OptionSettings", []):
            value = option["Value"]
            if option["OptionName"] == "MLPOC_API_KEY_SECRET_ARN" and isinstance(value, dict):
                return {str(value["Ref"]): option["OptionName"]}
    return {}


def alerts_topic(template: Mapping[str, Any]) -> list[str]:
    """The logical ids of the topics the workers publish alerts to (``MLPOC_ALERTS_TOPIC_ARN``
    of a task definition): local mode puts a stand-in topic in their place."""
    found = []
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        for container in resource["Properties"]["ContainerDefinitions"]:
            for variable in container.get("Environment", []):
                value = variable["Value"]
                if variable["Name"] == "MLPOC_ALERTS_TOPIC_ARN" and isinstance(value, dict):
                    found.append(str(value["Ref"]))
    return sorted(set(found))


def _role_of(arn: Any) -> str:
    """The role's logical id in ``{"Fn::GetAtt": [role, "Arn"]}`` ("" for anything else)."""
    if isinstance(arn, dict) and isinstance(arn.get("Fn::GetAtt"), list):
        return str(arn["Fn::GetAtt"][0])
    return ""

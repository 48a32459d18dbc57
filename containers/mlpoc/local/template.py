"""Read the synthesized templates (a cloud assembly) for local mode and the cost report.

:class:`Assembly` loads the stacks' templates from ``cdk.out``. Then two jobs for local mode:

* :func:`for_moto` turns the data stack's template into what moto's CloudFormation can create,
  and says what it left out and why: resource types moto does not implement (bucket and queue
  policies), CDK's Lambda-backed custom resources and their helper functions (they need the
  bootstrap asset bucket and Docker), and anything that only served those.
* :func:`processes` reads the service stack's template for what runs: the ECS task definitions
  (command + environment), the Lambda functions behind SQS event source mappings (handler,
  code asset, environment, batch settings) and the Elastic Beanstalk environment's properties.
  Values that are imports of the data stack's exports are resolved against the local stack;
  values that only mean something on AWS (the image URI) are named and left out.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlpoc.errors import SynthError

LOCAL_ACCOUNT = "123456789012"  # moto's default account
# Never created locally: CDK's custom resources run Lambda code from the bootstrap bucket.
ALWAYS_LEFT_OUT = ("AWS::CDK::Metadata", "AWS::Lambda::Function")


@dataclass(frozen=True)
class LeftOut:
    logical_id: str
    type: str
    reason: str


@dataclass
class MotoTemplate:
    template: dict[str, Any]
    left_out: list[LeftOut] = field(default_factory=list)
    # custom resources whose effect local mode applies itself (type -> logical ids)
    to_wire: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def references(value: Any) -> Iterator[str]:
    """Logical ids a template value points at (Ref, Fn::GetAtt, ${X} in Fn::Sub)."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            yield value["Ref"]
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            yield target[0] if isinstance(target, list) else str(target).split(".")[0]
        if "Fn::Sub" in value:
            text = value["Fn::Sub"][0] if isinstance(value["Fn::Sub"], list) else value["Fn::Sub"]
            yield from (m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", str(text)))
        for inner in value.values():
            yield from references(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from references(inner)


def for_moto(template: Mapping[str, Any], supported: Callable[[str], bool]) -> MotoTemplate:
    """A copy of ``template`` that moto can create, and what was left out of it."""
    out = copy.deepcopy(dict(template))
    resources: dict[str, Any] = out["Resources"]
    result = MotoTemplate(template=out)
    reasons = _left_out(resources, supported, result)
    for logical_id in reasons:
        del resources[logical_id]
    for resource in resources.values():
        _prune_depends_on(resource, reasons)
        # moto 5.2 tags KMS keys with TagKey/TagValue and fails on CloudFormation's Key/Value
        if resource["Type"] == "AWS::KMS::Key" and resource.get("Properties", {}).pop("Tags", None):
            result.notes.append("tags of AWS::KMS::Key left out (moto 5.2 cannot read them)")
    _drop_bootstrap_check(out, result)
    outputs = out.get("Outputs", {})
    for name in [n for n, o in outputs.items() if set(references(o)) & set(reasons)]:
        del outputs[name]
    result.left_out = sorted(reasons.values(), key=lambda r: (r.type, r.logical_id))
    return result


def _left_out(
    resources: dict[str, Any], supported: Callable[[str], bool], result: MotoTemplate
) -> dict[str, LeftOut]:
    reasons: dict[str, LeftOut] = {}

    def drop(logical_id: str, reason: str) -> None:
        reasons[logical_id] = LeftOut(logical_id, resources[logical_id]["Type"], reason)

    for logical_id, resource in resources.items():
        kind = resource["Type"]
        if kind.startswith("Custom::"):
            result.to_wire.setdefault(kind, []).append((logical_id, resource))
            drop(logical_id, "Lambda-backed custom resource (needs Docker to run in moto)")
        elif kind in ALWAYS_LEFT_OUT:
            drop(logical_id, "CDK helper: its code lives in the bootstrap asset bucket")
        elif not supported(kind):
            drop(logical_id, "not implemented by moto's CloudFormation")
    # what points at something left out goes too, and so does an IAM role that only left-out
    # resources use (policies attached to the role do not count as users), until nothing changes
    changed = True
    while changed:
        changed = False
        for logical_id, resource in resources.items():
            if logical_id in reasons:
                continue
            gone = [r for r in references(resource.get("Properties", {})) if r in reasons]
            if gone:
                drop(logical_id, f"refers to {gone[0]}, which was left out")
                changed = True
            elif resource["Type"] == "AWS::IAM::Role":
                users = [
                    k
                    for k, r in resources.items()
                    if k != logical_id
                    and r["Type"] != "AWS::IAM::Policy"
                    and logical_id in references(r)
                ]
                if users and all(u in reasons for u in users):
                    drop(logical_id, f"execution role of {users[0]}, which was left out")
                    changed = True
    return reasons


def _prune_depends_on(resource: dict[str, Any], gone: Mapping[str, LeftOut]) -> None:
    depends = resource.get("DependsOn")
    if depends is None:
        return
    kept = [d for d in ([depends] if isinstance(depends, str) else depends) if d not in gone]
    if kept:
        resource["DependsOn"] = kept
    else:
        del resource["DependsOn"]


def _drop_bootstrap_check(out: dict[str, Any], result: MotoTemplate) -> None:
    """The bootstrap version rule reads an SSM parameter that only a bootstrapped account has."""
    if out.pop("Rules", None):
        result.notes.append("the CDK bootstrap version check left out (no bootstrap locally)")
    parameters = out.get("Parameters", {})
    for name in [n for n, p in parameters.items() if p.get("Type", "").startswith("AWS::SSM::")]:
        if not any(name in set(references(r)) for r in out["Resources"].values()):
            del parameters[name]


@dataclass(frozen=True)
class Assembly:
    templates: dict[str, dict[str, Any]]  # stack name -> template
    docker_images: int = 0
    region: str | None = None  # when the stacks were synthesized for one

    @classmethod
    def from_dir(cls, path: Path) -> Assembly:
        try:
            manifest = json.loads((path / "manifest.json").read_text())
        except (OSError, ValueError) as error:
            raise SynthError(
                f"{path} is not a synthesized assembly ({error}); run make synth"
            ) from None
        templates: dict[str, dict[str, Any]] = {}
        images = 0
        regions = set()
        for name, artifact in manifest["artifacts"].items():
            if artifact["type"] == "aws:cloudformation:stack":
                file = artifact["properties"]["templateFile"]
                templates[name] = json.loads((path / file).read_text())
                regions.add(artifact["environment"].rsplit("/", 1)[-1])
            elif artifact["type"] == "cdk:asset-manifest":
                assets = json.loads((path / artifact["properties"]["file"]).read_text())
                images += len(assets.get("dockerImages", {}))
        if not templates:
            raise SynthError(f"{path} holds no stack templates; run make synth")
        known = regions - {"unknown-region"}
        return cls(templates, images, known.pop() if len(known) == 1 else None)

    def resources(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for template in self.templates.values():
            yield from template.get("Resources", {}).items()

    def of_type(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        return [(k, r) for k, r in self.resources() if r["Type"] == kind]


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


def _role_of(arn: Any) -> str:
    """The role's logical id in ``{"Fn::GetAtt": [role, "Arn"]}`` ("" for anything else)."""
    if isinstance(arn, dict) and isinstance(arn.get("Fn::GetAtt"), list):
        return str(arn["Fn::GetAtt"][0])
    return ""

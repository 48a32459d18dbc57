"""The data stack's template, rewritten for moto's CloudFormation.

:func:`for_moto` turns the template into what moto can create, and says what it left out and
why: resource types moto does not implement (bucket and queue policies), CDK's Lambda-backed
custom resources and their helper functions (they need the bootstrap asset bucket and Docker),
and anything that only served those.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlpoc.aws.cloud_assembly import references

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

"""Local mode's IAM: the service stack's runtime roles in moto, and one identity per process.

:func:`role_policies` reads, for one role of the synthesized service template, the policies
AWS would attach to it: every ``AWS::IAM::Policy`` that names it and its inline ``Policies``,
with each template value resolved against the local stack (the data stack's exports, the local
API-key secret). What it cannot carry over is named, never widened:

* a resource that exists only on AWS (the ECS cluster's tasks, a CloudWatch log group, the
  bootstrap image repository) is dropped from its statement, and a statement left with no
  resource is dropped: the local role may do less than the deployed one, never more;
* an AWS managed policy is named and not attached (none of them reaches the kit's data);
* a ``Condition`` is named and dropped, because moto cannot evaluate one: it would deny the
  action everywhere. So conditions are enforced only on AWS.

:class:`LocalIdentities` then creates the roles in moto, assumes each one for the process that
runs under it (moto checks no trust policy while its access control is off, and cannot match a
service principal once it is on, so the roles are assumed first), creates the operator's own
admin user with an access key, and turns moto's access control on. From then on every request
needs the signature of an identity moto issued and a policy that allows it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlpoc.local.motoserver import enforce_iam
from mlpoc.local.processes import ProcessSpec, Resolver, Unresolvable
from mlpoc.local.safety import Credentials, check_endpoint, local_session

OPERATOR = "mlpoc-local-operator"
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass
class RolePolicies:
    role_id: str
    trust: dict[str, Any]
    policies: dict[str, dict[str, Any]]  # policy name -> resolved document
    left_out: list[str] = field(default_factory=list)  # what was not carried over, and why


def _attached_to(resource: Mapping[str, Any], role_id: str) -> bool:
    return {"Ref": role_id} in resource.get("Properties", {}).get("Roles", [])


def role_policies(template: Mapping[str, Any], role_id: str, resolve: Resolver) -> RolePolicies:
    resources: Mapping[str, Any] = template["Resources"]
    role = resources[role_id]
    props = role.get("Properties", {})
    found = RolePolicies(role_id, resolve.value(props["AssumeRolePolicyDocument"]), {})
    documents: list[tuple[str, Any]] = [
        (p["PolicyName"], p["PolicyDocument"]) for p in props.get("Policies", [])
    ]
    documents += [
        (logical_id, resource["Properties"]["PolicyDocument"])
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::IAM::Policy" and _attached_to(resource, role_id)
    ]
    for name, document in documents:
        statements = _local_statements(document.get("Statement", []), resolve, found.left_out)
        if statements:
            found.policies[name] = {"Version": "2012-10-17", "Statement": statements}
    for arn in props.get("ManagedPolicyArns", []):
        try:
            shown = resolve(arn)
        except Unresolvable:
            shown = json.dumps(arn)
        found.left_out.append(f"managed policy {shown}: not attached locally (AWS managed)")
    return found


def _local_statements(
    statements: Iterable[Mapping[str, Any]], resolve: Resolver, left_out: list[str]
) -> list[dict[str, Any]]:
    kept = []
    for statement in statements:
        local = dict(statement)
        actions = local.get("Action", local.get("NotAction"))
        shown = ", ".join(actions) if isinstance(actions, list) else str(actions)
        if "Condition" in local:
            del local["Condition"]
            left_out.append(f"{shown}: its Condition (moto cannot evaluate conditions)")
        key = "Resource" if "Resource" in local else "NotResource"
        if key in local:
            wanted = local[key] if isinstance(local[key], list) else [local[key]]
            resolved = []
            for resource in wanted:
                try:
                    resolved.append(resolve(resource))
                except Unresolvable as why:
                    left_out.append(f"{shown} on {why}")
            if not resolved:
                continue
            local[key] = resolved
        kept.append(local)
    return kept


class LocalIdentities:
    """The runtime roles and the operator's user in a moto server, then enforcement on."""

    def __init__(self, endpoint: str, *, account: str) -> None:
        self.endpoint = check_endpoint(endpoint)
        self.account = account
        session = local_session()
        self._iam = session.client("iam", endpoint_url=self.endpoint)
        self._sts = session.client("sts", endpoint_url=self.endpoint)
        self.roles: dict[str, RolePolicies] = {}

    def create_role(self, role: RolePolicies) -> str:
        """Create (once) a role with its resolved policies; its ARN."""
        arn = f"arn:aws:iam::{self.account}:role/{role.role_id}"
        if role.role_id in self.roles:
            return arn
        self._iam.create_role(
            RoleName=role.role_id,
            AssumeRolePolicyDocument=json.dumps(role.trust),
            Description="mlpoc local mode: from the synthesized service template",
        )
        for name, document in role.policies.items():
            self._iam.put_role_policy(
                RoleName=role.role_id, PolicyName=name, PolicyDocument=json.dumps(document)
            )
        self.roles[role.role_id] = role
        return arn

    def assume(self, role_id: str, session_name: str) -> Credentials:
        """Temporary credentials of one role (moto's access control must still be off)."""
        found = self._sts.assume_role(
            RoleArn=f"arn:aws:iam::{self.account}:role/{role_id}",
            RoleSessionName=session_name[:64],
            DurationSeconds=43_200,
        )["Credentials"]
        return Credentials(found["AccessKeyId"], found["SecretAccessKey"], found["SessionToken"])

    def operator(self) -> Credentials:
        """The operator's identity: an IAM user allowed everything, like an account admin."""
        self._iam.create_user(UserName=OPERATOR)
        self._iam.put_user_policy(
            UserName=OPERATOR, PolicyName="admin", PolicyDocument=json.dumps(ADMIN_POLICY)
        )
        key = self._iam.create_access_key(UserName=OPERATOR)["AccessKey"]
        return Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def enforce(self) -> None:
        enforce_iam(self.endpoint)

    def for_processes(
        self,
        template: Mapping[str, Any],
        specs: Iterable[ProcessSpec],
        resolve: Resolver,
        others: Mapping[str, str] | None = None,
    ) -> Enforced:
        """Every process's role from the template, assumed; the roles of ``others`` (name ->
        role id: what local mode does in a service's place, such as sending the schedules'
        jobs); the operator; enforcement on."""
        enforced = Enforced()
        for name, role_id in (others or {}).items():
            role = role_policies(template, role_id, resolve)
            self.create_role(role)
            if role.left_out:
                enforced.left_out[role_id] = role.left_out
            enforced.processes[name] = self.assume(role_id, name)
        for spec in specs:
            if not spec.role_id:
                raise NoRole(
                    f"{spec.name} has no IAM role in the service template; local mode cannot "
                    "run it under enforcement (run `mlpoc local up --no-iam`)"
                )
            role = role_policies(template, spec.role_id, resolve)
            self.create_role(role)
            if role.left_out:
                enforced.left_out[spec.role_id] = role.left_out
            enforced.processes[spec.name] = self.assume(spec.role_id, spec.name)
        enforced.operator = self.operator()
        self.enforce()
        return enforced


class NoRole(Exception):
    """A process of the service template has no IAM role to run under."""


@dataclass
class Enforced:
    processes: dict[str, Credentials] = field(default_factory=dict)  # process name -> its role's
    operator: Credentials | None = None
    left_out: dict[str, list[str]] = field(default_factory=dict)  # role -> not carried over

    @property
    def issued(self) -> set[str]:
        """The access key ids moto issued (accepted by the safety checks)."""
        keys = {c.access_key_id for c in self.processes.values()}
        return keys | ({self.operator.access_key_id} if self.operator else set())

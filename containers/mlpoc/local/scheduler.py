"""The service template's schedules, run by local mode: a due schedule sends its job.

EventBridge Scheduler does not exist in moto, so local mode reads each
``AWS::Scheduler::Schedule`` of the service template (its expression, its input, its target
queue and role) and, while it runs, sends the input to the queue when the schedule is due, with
the context attributes replaced the way Scheduler replaces them
(:func:`mlpoc.runtime.schedules.fire`),
under the schedules' own role (assumed in moto, so a missing grant is an AccessDenied here).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mlpoc.local.processes import Resolver, Unresolvable
from mlpoc.runtime import schedules

log = logging.getLogger("mlpoc.local")
SCHEDULE_TYPE = "AWS::Scheduler::Schedule"
# the identity local mode sends the schedules' jobs under (their role in the template)
SCHEDULER = "scheduler"


@dataclass(frozen=True)
class LocalSchedule:
    name: str  # the schedule's logical id in the service template
    model: str
    expression: str
    input: str  # the target's input, template values resolved, context attributes kept
    queue_arn: str
    role_id: str | None  # the logical id of the role Scheduler assumes

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    def queue_url(self, endpoint: str) -> str:
        """The target queue's URL on the local endpoint (moto's form: endpoint/account/name)."""
        account, name = self.queue_arn.split(":")[4:6]
        return f"{endpoint}/{account}/{name}"


def scheduler_role(found: list[LocalSchedule]) -> dict[str, str]:
    """The identity to assume for sending the schedules' jobs ({SCHEDULER: role id}), if any
    (every schedule of the template shares one role)."""
    return {SCHEDULER: found[0].role_id} if found and found[0].role_id else {}


def from_template(template: Mapping[str, Any], resolve: Resolver) -> list[LocalSchedule]:
    found = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource["Type"] != SCHEDULE_TYPE:
            continue
        props = resource["Properties"]
        target = props["Target"]
        try:
            text = resolve(target["Input"])
            queue_arn = resolve(target["Arn"])
        except Unresolvable as why:
            log.warning("schedule.left_out", extra={"schedule": logical_id, "why": str(why)})
            continue
        role = target.get("RoleArn", {})
        role_id = role.get("Fn::GetAtt", [None])[0] if isinstance(role, dict) else None
        found.append(
            LocalSchedule(
                name=logical_id,
                model=json.loads(text)["model"],
                expression=props["ScheduleExpression"],
                input=text,
                queue_arn=queue_arn,
                role_id=role_id,
            )
        )
    return found


class LocalScheduler:
    """Sends each due schedule's job; ``tick(now)`` as time passes (local mode: every second)."""

    def __init__(
        self,
        found: list[LocalSchedule],
        *,
        send: Callable[[LocalSchedule, str], None],
        started: float,
    ) -> None:
        self.send = send
        self.notes: list[str] = []
        self.due: list[tuple[LocalSchedule, schedules.Due]] = []
        for schedule in found:
            refusal = schedules.local_refusal(schedule.expression)
            if refusal is not None:
                self.notes.append(
                    f"schedule {schedule.name} ({schedule.model}) does not run locally: "
                    f"{refusal}; fire it with `mlpoc schedule run {schedule.model}`"
                )
                continue
            self.due.append((schedule, schedules.Due(schedule.expression, started=started)))

    def tick(self, now: float) -> list[str]:
        """Send the job of every schedule due at ``now``; the job ids sent."""
        sent = []
        for schedule, due in self.due:
            if due.due(now):
                body = schedules.fire(schedule.input, arn=schedule.name, now=now)
                self.send(schedule, body)
                sent.append(json.loads(body)["job_id"])
        return sent

"""Before `cdk destroy`: the GPU pool brought to zero, so CloudFormation can delete it.

The pool's group protects new instances from scale-in (ECS managed termination protection),
and an instance that is protected, or runs a task, keeps the capacity provider, the group and
the stack in DELETE_IN_PROGRESS (aws/aws-cdk#18179). So, in order: the GPU service to zero
tasks; the instances' scale-in protection off; the group to 0/0; then wait until it holds no
instance. `make destroy` runs it (`mlpoc release-gpu`); a stack without the pool has nothing to
release.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlpoc.errors import TargetError

POLL_SECONDS = 15.0


@dataclass(frozen=True)
class GpuPool:
    cluster: str
    service: str
    group: str


def instances(autoscaling: Any, group: str) -> list[str]:
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    groups = found["AutoScalingGroups"]
    return [i["InstanceId"] for i in groups[0]["Instances"]] if groups else []


def release(
    ecs: Any,
    autoscaling: Any,
    pool: GpuPool,
    *,
    timeout: float = 900.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str], None] = lambda _: None,
) -> int:
    """Bring the pool to zero and wait; the number of instances it held. A TargetError when
    instances remain after ``timeout`` seconds (say which, and what to do)."""
    ecs.update_service(cluster=pool.cluster, service=pool.service, desiredCount=0)
    progress(f"GPU service {pool.service}: 0 tasks")
    held = instances(autoscaling, pool.group)
    if held:
        autoscaling.set_instance_protection(
            AutoScalingGroupName=pool.group, InstanceIds=held, ProtectedFromScaleIn=False
        )
        progress(f"scale-in protection off: {', '.join(held)}")
    autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=pool.group, MinSize=0, MaxSize=0, DesiredCapacity=0
    )
    progress(f"group {pool.group}: 0/0")
    deadline = clock() + timeout
    while remaining := instances(autoscaling, pool.group):
        if clock() >= deadline:
            raise TargetError(
                f"the GPU pool still holds {', '.join(remaining)} after {timeout:.0f} s: "
                "terminate them (aws ec2 terminate-instances), then run make destroy again"
            )
        progress(f"waiting for {len(remaining)} instance(s) to terminate")
        sleep(POLL_SECONDS)
    return len(held)

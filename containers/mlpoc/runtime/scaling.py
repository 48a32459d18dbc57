"""The scale-from-zero nudge: a producer that has just sent a job raises the worker service that
runs it from zero tasks to one at once.

Without it, the first job on an idle stack waits for the queue's CloudWatch metrics (SQS
publishes them once a minute, and only while a queue is active: a quiet queue's first
datapoints come late) and for the scale-out alarm, before ECS even starts a task. The nudge is
one DescribeServices and, only when the service wants zero tasks, one UpdateService to one.
Queue-depth scaling then takes over: more tasks for a backlog, and back to zero once the tasks
are idle (the stack's scale-in alarm fires only while tasks run with an empty queue, so it
never undoes the nudge; see ``stacks/constructs/workers.py``).

The producers are the API, the upload function and the CLI; the stack sets the cluster and
service names on the first two and grants them just these two actions on just these services.
Local mode runs every worker as a process that is always polling, so the names are not set there
and the nudge is off. A failed nudge never fails the submit: the job is queued already, and the
alarm starts a task a few minutes later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("mlpoc.runtime.scaling")

CLUSTER_VARIABLE = "MLPOC_WORKER_CLUSTER"
# queue (job type) -> the variable that names its worker service, and the stack output
SERVICE_VARIABLES: dict[str, str] = {
    "train": "MLPOC_TRAIN_SERVICE",
    "predict": "MLPOC_PREDICT_SERVICE",
    "gpu": "MLPOC_GPU_SERVICE",  # only with the GPU pool (mlpoc:gpu)
}
CLUSTER_OUTPUT = "ClusterName"
SERVICE_OUTPUTS: dict[str, str] = {
    "train": "TrainServiceName",
    "predict": "PredictServiceName",
    "gpu": "GpuServiceName",
}


@dataclass(frozen=True)
class WorkerServices:
    """The ECS cluster and the worker service behind each queue."""

    cluster: str
    services: Mapping[str, str]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerServices | None:
        """None where the names are not set (local mode, a worker): no nudge."""
        cluster = env.get(CLUSTER_VARIABLE, "")
        services = {q: env[v] for q, v in SERVICE_VARIABLES.items() if env.get(v)}
        return cls(cluster, services) if cluster and services else None

    def nudge(self, ecs: Any, queue: str) -> bool:
        """Raise ``queue``'s service to one task if it wants none; True when it did."""
        service = self.services.get(queue)
        if service is None:
            return False
        try:
            described = ecs.describe_services(cluster=self.cluster, services=[service])
            found = described.get("services", [])
            if not found or int(found[0].get("desiredCount", 0)) > 0:
                return False
            ecs.update_service(cluster=self.cluster, service=service, desiredCount=1)
        except (ClientError, BotoCoreError) as error:
            log.warning(
                "scaling.nudge_failed",
                extra={"service": service, "error": str(error), "fallback": "queue-depth alarm"},
            )
            return False
        log.info("scaling.nudged", extra={"service": service, "desired_count": 1})
        return True


def nudger(services: WorkerServices | None, ecs: Any) -> Callable[[str], bool] | None:
    """What :func:`mlpoc.runtime.submission.submit` calls after a send (None: no nudge)."""
    if services is None:
        return None
    return lambda queue: services.nudge(ecs, queue)

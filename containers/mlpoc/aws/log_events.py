"""The names of the workers' log events: what a dashboard, an alarm or a person filters on.

Every line the workers and the functions log is one JSON object whose ``event`` field is one of
these (see :mod:`mlpoc.aws.logs`); the dashboard's queries import them from here.
"""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    # the worker process
    WORKER_STARTED = "worker.started"
    WORKER_STOPPING = "worker.stopping"
    WORKER_STOPPED = "worker.stopped"
    BATCH_FAILED = "worker.batch_failed"
    RECEIVE_FAILED = "worker.receive_failed"
    DELETE_FAILED = "worker.delete_failed"
    VISIBILITY_FAILED = "worker.visibility_failed"
    HEARTBEAT_FAILED = "worker.heartbeat_failed"
    PROTECTION = "worker.protection"
    PROTECTION_FAILED = "worker.protection_failed"
    PROTECTION_REFUSED = "worker.protection_refused"
    # one job
    JOB_STARTED = "job.started"
    JOB_SUCCEEDED = "job.succeeded"
    JOB_SPLIT = "job.split"  # a predict job handed to its shard jobs (mlpoc.data.shards)
    JOB_FAILED = "job.failed"
    JOB_GAVE_UP = "job.gave_up"
    JOB_REJECTED = "job.rejected"
    JOB_RETRYING = "job.retrying"
    JOB_DUPLICATE = "job.duplicate"
    JOB_BUSY = "job.busy"
    JOB_LEASE_LOST = "job.lease_lost"
    JOB_LEASE_LOST_ON_HEARTBEAT = "job.lease_lost_on_heartbeat"
    JOB_ACCESS_DENIED = "job.access_denied"
    JOB_ERROR_AFTER_COMMIT = "job.error_after_commit"
    JOB_RELEASED_ON_STOP = "job.released_on_stop"
    JOB_FOLLOWUP_SENT = "job.followup_sent"
    JOB_FOLLOWUP_RESENT = "job.followup_resent"
    TRAIN_COMMIT_CONFLICT = "train.commit_conflict"


# the events that end a job other than by success (the dashboard's failure panel)
FAILURE_EVENTS = (Event.JOB_FAILED, Event.JOB_GAVE_UP, Event.JOB_REJECTED, Event.JOB_LEASE_LOST)

# the ``source`` of a monitor job's alert on the alerts topic (the notify function formats it)
MONITOR_SOURCE = "mlpoc.monitor"

"""Scheduled retraining (``mlpoc:schedules``): one EventBridge Scheduler schedule per model that
sends a train job straight to the train queue (a templated SQS target, no function between);
and scheduled monitoring (``mlpoc:monitor``): one per watched model that sends a monitor job to
the predict queue (:mod:`mlpoc.worker.monitor`).

The job (:func:`mlpoc.runtime.schedules.job_message`) is a train job over a folder: the worker
builds
the dataset version itself. Its id carries ``<aws.scheduler.scheduled-time>``: each run is its
own job, and a retried send of one run (Scheduler gives each attempt a new execution id) is a
duplicate the ledger refuses. A run that could not be sent after its retries goes to the
schedules' dead-letter queue (encrypted with the project key; an alarm watches it). The
schedules' role may send to the train queue and to that queue and use the project key for it
(``grant_send_messages``), and Scheduler may assume it only for schedules of this account.
"""

from __future__ import annotations

from aws_cdk import Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from mlpoc.aws import bucket_layout
from mlpoc.runtime.schedules import job_message, monitor_message
from stacks.account_config import ScheduleSpec
from stacks.config import Monitor
from stacks.constructs.nag import acknowledge
from stacks.constructs.queues import dead_letter_queue

# a run that could not be sent is retried for up to an hour; a later run catches up anyway
RETRY = scheduler.CfnSchedule.RetryPolicyProperty(
    maximum_event_age_in_seconds=3600, maximum_retry_attempts=10
)


class Schedules(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        schedules: tuple[ScheduleSpec, ...],
        monitor: Monitor,
        queue: sqs.IQueue,
        predict_queue: sqs.IQueue,
        data_bucket: str,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            description="EventBridge Scheduler: sends the scheduled train jobs",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            ),
        )
        queue.grant_send_messages(self.role)
        if monitor.models:
            predict_queue.grant_send_messages(self.role)
        self.dead_letters = dead_letter_queue(self, "DeadLetters", key=key)
        # Scheduler delivers a run it could not send with the schedule's execution role
        self.dead_letters.grant_send_messages(self.role)
        acknowledge(
            self.dead_letters,
            "AwsSolutions-SQS3",
            "This queue is itself the dead-letter queue of the schedules (EventBridge Scheduler's "
            "DeadLetterConfig); an alarm fires on its first message.",
        )
        for action in ("kms:GenerateDataKey*", "kms:ReEncrypt*"):
            acknowledge(
                self.role.node.find_child("DefaultPolicy"),
                f"AwsSolutions-IAM5[Action::{action}]",
                "Added by grant_send_messages for the train queue's key (the project key): "
                "Scheduler encrypts each job it sends with that one key.",
            )
        self.schedules: dict[str, scheduler.CfnSchedule] = {}
        for spec in schedules:
            folder = (
                str(spec.source)
                if spec.source is not None
                else Fn.join(
                    "", ["s3://", data_bucket, "/", bucket_layout.model_prefix(spec.model)]
                )
            )
            message = job_message(spec.model, folder, spec.promote)
            self.schedules[f"retrain-{spec.model}"] = self._schedule(
                f"Retrain-{spec.model}",
                f"retrain {spec.model} on what is new ({spec.expression})",
                spec.expression,
                queue,
                message,
            )
        for model in monitor.models:
            samples = Fn.join("", ["s3://", data_bucket, "/", bucket_layout.sample_folder(model)])
            self.schedules[f"monitor-{model}"] = self._schedule(
                f"Monitor-{model}",
                f"check {model}'s recent inputs for drift and its realized accuracy "
                f"({monitor.schedule})",
                monitor.schedule,
                predict_queue,
                monitor_message(model, samples),
            )

    def _schedule(
        self,
        construct_id: str,
        description: str,
        expression: str,
        queue: sqs.IQueue,
        message: dict[str, object],
    ) -> scheduler.CfnSchedule:
        return scheduler.CfnSchedule(
            self,
            construct_id,
            description=description,
            schedule_expression=expression,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=queue.queue_arn,
                role_arn=self.role.role_arn,
                input=Stack.of(self).to_json_string(message),
                retry_policy=RETRY,
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                    arn=self.dead_letters.queue_arn
                ),
            ),
        )

    @property
    def names(self) -> str:
        """The schedules' names, comma-separated (the stack output `mlpoc schedule run` reads)."""
        return Fn.join(",", [s.ref for s in self.schedules.values()])

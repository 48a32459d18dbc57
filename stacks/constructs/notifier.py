"""The alert notifier: the alerts topic → a small function that posts to Slack (the webhook from
Secrets Manager) or, without one, logs the alert. An alert it could not deliver after Lambda's
retries is kept in its own queue for 14 days, which raises an alarm, instead of vanishing."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions

from constructs import Construct
from stacks.constructs.functions import NO_RESERVATION, PythonFunction
from stacks.constructs.nag import acknowledge, skip_checkov
from stacks.constructs.queues import dead_letter_queue


class AlertNotifier(PythonFunction):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        topic: sns.ITopic,
        key: kms.IKey,
        slack_webhook_secret_name: str | None,
        log_retention: logs.RetentionDays,
    ) -> None:
        # SNS invokes the function asynchronously: what fails after the retries lands here. The
        # queue and the secret's import are the function's siblings (the function needs the queue
        # before it exists): their logical ids stay what deployed stacks already have.
        undelivered = dead_letter_queue(scope, "UndeliveredAlerts", key=key)
        secret = (
            secretsmanager.Secret.from_secret_name_v2(
                scope, "SlackWebhook", slack_webhook_secret_name
            )
            if slack_webhook_secret_name
            else None
        )
        super().__init__(
            scope,
            construct_id,
            name="notify",
            description="Alerts topic -> Slack webhook (from Secrets Manager), or the log",
            environment={"MLPOC_SLACK_SECRET_ARN": secret.secret_arn} if secret else {},
            timeout=Duration.seconds(10),
            log_retention=log_retention,
            on_failure=destinations.SqsDestination(undelivered),
        )
        self.undelivered = undelivered
        if secret is not None:
            secret.grant_read(self.function)
        topic.add_subscription(subscriptions.LambdaSubscription(self.function))
        skip_checkov(
            self.function,
            "CKV_AWS_116",
            "SNS invokes it asynchronously; after two retries a failed alert goes to the "
            "UndeliveredAlerts queue through the function's on-failure destination (which keeps "
            "the error with the event), alarmed on like every dead-letter queue of the kit.",
        )
        skip_checkov(
            self.function,
            "CKV_AWS_115",
            NO_RESERVATION + "Only the alerts topic invokes it, once per alarm change.",
        )
        acknowledge(
            undelivered,
            "AwsSolutions-SQS3",
            "This queue is itself the dead letter destination of the notify function's failed "
            "asynchronous invocations; nothing consumes it, so it needs no dead-letter queue.",
        )
        for finding in ("Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*"):
            acknowledge(
                self.role.node.find_child("DefaultPolicy"),
                f"AwsSolutions-IAM5[{finding}]",
                "Added by the send grant of the undelivered-alerts queue, which the project key "
                "encrypts: data-key generation and re-encryption with that one key.",
            )

"""Alerts: one encrypted SNS topic, the alarms that feed it, the budget, and where it goes."""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import Duration, Stack
from aws_cdk import aws_budgets as budgets
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from stacks.constructs.encryption import source_conditions


@jsii.implements(events.IRuleTarget)
class TopicTarget:
    """The alerts topic as an EventBridge target, without the unconditioned topic and key
    statements ``targets.SnsTopic`` would add: the Alerts construct and the project key grant
    EventBridge under this rule's own ARN and account."""

    def __init__(self, topic: sns.ITopic) -> None:
        self.topic = topic

    def bind(
        self,
        rule: Any,  # IRuleRef, which aws-cdk-lib does not export by that name
        id: str | None = None,  # jsii passes it by this name
    ) -> events.RuleTargetConfig:
        del rule, id
        return events.RuleTargetConfig(arn=self.topic.topic_arn)


class Alerts(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project: str,
        key: kms.IKey,
        alert_email: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self, "Topic", display_name=f"{project} alerts", master_key=key, enforce_ssl=True
        )
        if alert_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alert_email))
        self.alarms: list[cloudwatch.Alarm] = []

    def _alarm(self, alarm: cloudwatch.Alarm) -> cloudwatch.Alarm:
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        return alarm

    def dead_letters(self, name: str, dlq: sqs.IQueue) -> cloudwatch.Alarm:
        """Anything in a dead-letter queue needs a person: alarm at the first message."""
        return self._alarm(
            dlq.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ).create_alarm(
                self,
                f"{name}DeadLetters",
                alarm_description=f"Messages in the {name} dead-letter queue: inspect, redrive",
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    def oldest_message(self, name: str, queue: sqs.IQueue, limit: Duration) -> None:
        """A queue that stops moving (no capacity, a crash loop) shows as an old message."""
        self._alarm(
            queue.metric_approximate_age_of_oldest_message(
                period=Duration.minutes(5), statistic="Maximum"
            ).create_alarm(
                self,
                f"{name}OldestMessage",
                alarm_description=f"The oldest {name} message waited {limit.to_human_string()}",
                threshold=limit.to_seconds(),
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    def _allow(self, sid: str, service: str, conditions: dict[str, Any]) -> None:
        """A service principal may publish, under conditions that name this account's own
        sources; the topic policy replaces SNS's default one, so nothing else may."""
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid=sid,
                principals=[iam.ServicePrincipal(service)],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions=conditions,
            )
        )

    def allow_alarms(self) -> None:
        """CloudWatch alarms publish to the topic (without this, every alarm action fails)."""
        stack = Stack.of(self)
        self._allow(
            "AllowCloudWatchAlarms",
            "cloudwatch.amazonaws.com",
            source_conditions(stack, "arn:{partition}:cloudwatch:{region}:{account}:alarm:*"),
        )

    def task_failures(self, cluster_arn: str) -> events.Rule:
        """A worker task that stopped with a non-zero exit code (crash, OOM kill)."""
        rule = events.Rule(
            self,
            "WorkerTaskFailures",
            description="Worker tasks that stopped with a failing exit code",
            event_pattern=events.EventPattern(
                source=["aws.ecs"],
                detail_type=["ECS Task State Change"],
                detail={
                    "clusterArn": [cluster_arn],
                    "lastStatus": ["STOPPED"],
                    "containers": {"exitCode": [{"anything-but": 0}]},
                },
            ),
        )
        rule.add_target(TopicTarget(self.topic))
        self._allow(
            "AllowTaskFailureRule",
            "events.amazonaws.com",
            {
                "StringEquals": {"aws:SourceAccount": Stack.of(self).account},
                "ArnEquals": {"aws:SourceArn": rule.rule_arn},
            },
        )
        return rule

    def spot_interruptions(self) -> events.Rule:
        """EC2's two-minute Spot interruption warnings (the GPU pool's instances). The event
        names the instance only, so the rule takes every Spot warning of this account and
        region: a PoC account's Spot instances are the pool's."""
        rule = events.Rule(
            self,
            "SpotInterruptions",
            description="EC2 Spot interruption warnings (the GPU pool)",
            event_pattern=events.EventPattern(
                source=["aws.ec2"], detail_type=["EC2 Spot Instance Interruption Warning"]
            ),
        )
        rule.add_target(TopicTarget(self.topic))
        self._allow(
            "AllowSpotInterruptionRule",
            "events.amazonaws.com",
            {
                "StringEquals": {"aws:SourceAccount": Stack.of(self).account},
                "ArnEquals": {"aws:SourceArn": rule.rule_arn},
            },
        )
        return rule

    def gpu_idle(self, group_name: str, *, namespace: str, metric: str) -> cloudwatch.Alarm:
        """A GPU instance that ran 30 minutes with its GPU idle: a job that does not use the
        GPU (a CPU plugin sent with "resources": "gpu"), or an instance left behind.

        The agent publishes each instance's samples under the group's dimension; the alarm
        takes their Minimum, so one idle instance fires it while others are busy (Maximum
        would wait for every instance to idle). A job whose GPU dips under 5 % at least once
        in every 5 minutes for half an hour fires it too: it barely uses the GPU."""
        return self._alarm(
            cloudwatch.Metric(
                namespace=namespace,
                metric_name=metric,
                dimensions_map={"AutoScalingGroupName": group_name},
                period=Duration.minutes(5),
                statistic="Minimum",
            ).create_alarm(
                self,
                "GpuIdle",
                alarm_description=(
                    "A GPU instance ran 30 min with its GPU under 5 % busy: train GPU jobs with a "
                    "plugin that uses the GPU, or send CPU jobs without resources gpu"
                ),
                threshold=5,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=6,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    def api_errors(self, environment_name: str) -> None:
        """5xx answers of the API (Elastic Beanstalk's enhanced-health metric, per minute)."""
        self._alarm(
            cloudwatch.Metric(
                namespace="AWS/ElasticBeanstalk",
                metric_name="ApplicationRequests5xx",
                dimensions_map={"EnvironmentName": environment_name},
                period=Duration.minutes(5),
                statistic="Sum",
            ).create_alarm(
                self,
                "ApiServerErrors",
                alarm_description="The API answered 5xx: see its logs in CloudWatch",
                threshold=0,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    def budget(self, project: str, limit_usd: int) -> budgets.CfnBudget:
        """Monthly cost budget: 80 % actual and 100 % forecast go to the topic."""
        self._allow(
            "AllowBudgetNotifications",
            "budgets.amazonaws.com",
            source_conditions(Stack.of(self), "arn:{partition}:budgets::{account}:*"),
        )
        subscribers = [
            budgets.CfnBudget.SubscriberProperty(
                subscription_type="SNS", address=self.topic.topic_arn
            )
        ]

        def notify(
            kind: str, percent: int
        ) -> budgets.CfnBudget.NotificationWithSubscribersProperty:
            return budgets.CfnBudget.NotificationWithSubscribersProperty(
                notification=budgets.CfnBudget.NotificationProperty(
                    notification_type=kind,
                    comparison_operator="GREATER_THAN",
                    threshold=percent,
                    threshold_type="PERCENTAGE",
                ),
                subscribers=subscribers,
            )

        return budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=f"{project}-monthly",
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=limit_usd, unit="USD"),
            ),
            notifications_with_subscribers=[notify("ACTUAL", 80), notify("FORECASTED", 100)],
        )

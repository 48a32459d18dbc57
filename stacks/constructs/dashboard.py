"""One CloudWatch dashboard of the pipeline: queues, workers, jobs, the API.

Queue depth and the age of the oldest message (train, predict, events and their dead-letter
queues) come from SQS's free metrics; running worker tasks from Container Insights; job
durations and failures from the workers' structured JSON logs through Logs Insights (no custom
metric, nothing billed while idle); the API's p99 latency and 5xx answers from Elastic
Beanstalk's enhanced health, which publishes exactly those two metrics.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from mlpoc.aws.log_events import FAILURE_EVENTS, Event

PERIOD = Duration.minutes(1)


def _queue_metrics(
    queues: dict[str, sqs.IQueue], metric: str, statistic: str = "Maximum"
) -> list[cloudwatch.IMetric]:
    return [
        cloudwatch.Metric(
            namespace="AWS/SQS",
            metric_name=metric,
            dimensions_map={"QueueName": queue.queue_name},
            statistic=statistic,
            period=PERIOD,
            label=name,
        )
        for name, queue in queues.items()
    ]


class PipelineDashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project: str,
        queues: dict[str, sqs.IQueue],
        dead_letter_queues: dict[str, sqs.IQueue],
        cluster: ecs.ICluster,
        services: dict[str, ecs.BaseService],
        worker_logs: list[logs.ILogGroup],
        api_environment_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        # a name a person looks for in the console (and the stack outputs its URL)
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{project}-pipeline",
            default_interval=Duration.hours(6),
        )
        width = 12
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Queue depth (visible messages)",
                left=_queue_metrics(queues, "ApproximateNumberOfMessagesVisible"),
                width=width,
            ),
            cloudwatch.GraphWidget(
                title="Dead-letter queues (messages)",
                left=_queue_metrics(dead_letter_queues, "ApproximateNumberOfMessagesVisible"),
                width=width,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Oldest message age (seconds)",
                left=_queue_metrics(queues, "ApproximateAgeOfOldestMessage"),
                width=width,
            ),
            cloudwatch.GraphWidget(
                title="Running worker tasks",
                left=[
                    cloudwatch.Metric(
                        namespace="ECS/ContainerInsights",
                        metric_name="RunningTaskCount",
                        dimensions_map={
                            "ClusterName": cluster.cluster_name,
                            "ServiceName": service.service_name,
                        },
                        statistic="Maximum",
                        period=PERIOD,
                        label=role,
                    )
                    for role, service in services.items()
                ],
                width=width,
            ),
        )
        log_groups = [group.log_group_name for group in worker_logs]
        failures = ", ".join(f"'{event.value}'" for event in FAILURE_EVENTS)
        self.dashboard.add_widgets(
            cloudwatch.LogQueryWidget(
                title="Job durations (seconds, succeeded jobs, by worker log group)",
                log_group_names=log_groups,
                view=cloudwatch.LogQueryVisualizationType.LINE,
                query_lines=[
                    # arithmetic belongs in fields (Logs Insights' stats takes plain functions)
                    "fields duration_ms / 1000 as seconds",
                    f"filter event = '{Event.JOB_SUCCEEDED.value}'",
                    "stats avg(seconds) as avg_s, max(seconds) as max_s by bin(15m), @log",
                ],
                width=width,
            ),
            cloudwatch.LogQueryWidget(
                title="Job failures (failed, gave up, rejected, lease lost)",
                log_group_names=log_groups,
                view=cloudwatch.LogQueryVisualizationType.TABLE,
                query_lines=[
                    "fields @timestamp, event, job_id, reason",
                    f"filter event in [{failures}]",
                    "sort @timestamp desc",
                    "limit 50",
                ],
                width=width,
            ),
        )

        def api_metric(name: str, statistic: str, label: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/ElasticBeanstalk",
                metric_name=name,
                dimensions_map={"EnvironmentName": api_environment_name},
                statistic=statistic,
                period=PERIOD,
                label=label,
            )

        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="API latency, p99 (seconds)",
                left=[api_metric("ApplicationLatencyP99", "Maximum", "p99")],
                width=width,
            ),
            cloudwatch.GraphWidget(
                title="API 5xx answers",
                left=[api_metric("ApplicationRequests5xx", "Sum", "5xx")],
                width=width,
            ),
        )

"""The stateless half: workers on ECS Fargate, the event lambdas, alarms and the budget.

Everything here can be destroyed and redeployed at any time; the data stays in the data stack.
Data access is granted in one place, `constructs/access.py`, from the bucket layout.
"""

from __future__ import annotations

from aws_cdk import Aspects, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs

from constructs import Construct
from mlpoc.aws.bucket_layout import RuntimeRole
from mlpoc.runtime.environment import GPU_QUEUE_VARIABLE, SOURCES_VARIABLE
from mlpoc.runtime.scaling import CLUSTER_VARIABLE, SERVICE_VARIABLES
from mlpoc.runtime.schedules import SCHEDULES_OUTPUT
from stacks.config import Config
from stacks.constructs.access import DataAccess
from stacks.constructs.alerts import Alerts
from stacks.constructs.api import ApiService
from stacks.constructs.dashboard import PipelineDashboard
from stacks.constructs.encryption import EncryptLogGroups
from stacks.constructs.gpu_pool import CW_AGENT_NAMESPACE, GPU_UTILIZATION, GpuPool
from stacks.constructs.helper_logs import keep_helper_logs
from stacks.constructs.network import Network
from stacks.constructs.notifier import AlertNotifier
from stacks.constructs.scheduled_jobs import Schedules
from stacks.constructs.sources import SourceAccess
from stacks.constructs.upload import UploadFunction
from stacks.constructs.workers import Workers, WorkerSpec
from stacks.data_stack import EVENTS_LAMBDA_TIMEOUT, LOG_RETENTION, DataStack

# How cdk-nag names the cross-stack references to pinned data resources (their export names
# derive from the pinned logical ids, so these stay fixed).
DATA_BUCKET_ARN = "DataBucketArn8D876988"
MODEL_BUCKET_ARN = "ModelBucketArn5A89C171"
PREDICTIONS_TABLE_ARN = "PredictionsTableArn8C38D423"


class ServiceStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        data: DataStack,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.network = Network(self, "Network", log_retention=LOG_RETENTION)
        environment = resource_environment(data)
        self.workers = Workers(
            self,
            "Workers",
            config=config,
            vpc=self.network.vpc,
            specs=[
                WorkerSpec(
                    role="train", queue=data.train.queue, environment=environment, prefetch=1
                ),
                WorkerSpec(
                    role="predict",
                    queue=data.predict.queue,
                    environment={**environment, **config.monitor.worker_environment()},
                    prefetch=10,
                ),
            ],
            log_retention=LOG_RETENTION,
        )
        self.gpu = (
            GpuPool(
                self,
                "Gpu",
                config=config,
                vpc=self.network.vpc,
                cluster=self.workers.cluster,
                queue=data.gpu.queue,
                task_role=self.workers.task_roles["train"],  # the train worker's code and grants
                environment=environment,
                log_retention=LOG_RETENTION,
            )
            if data.gpu is not None
            else None
        )
        services: dict[str, ecs.BaseService] = dict(self.workers.services)
        if self.gpu is not None:
            services["gpu"] = self.gpu.service
        # the producers also get the worker services, to raise one from zero on a submit
        producers = {
            **environment,
            CLUSTER_VARIABLE: self.workers.cluster.cluster_name,
            **{SERVICE_VARIABLES[q]: service.service_name for q, service in services.items()},
        }
        self.api = ApiService(
            self,
            "Api",
            config=config,
            vpc=self.network.vpc,
            environment={**producers, "MLPOC_SAMPLE_RATE": f"{config.monitor.sample_rate:g}"},
            # imported by ARN: its grants go on the roles' policies, never on the data stack's
            # key policy (which would make the data stack depend on this one)
            key=kms.Key.from_key_arn(self, "ProjectKey", data.encryption.key.key_arn),
        )

        self.dataset_uploaded = UploadFunction(
            self,
            "DatasetUploaded",
            environment=producers,
            events_queue=data.events.queue,
            timeout=EVENTS_LAMBDA_TIMEOUT,
            log_retention=LOG_RETENTION,
        )
        self._grant(data)
        if config.sources:
            SourceAccess(
                self,
                "SourceAccess",
                roles={r: self.workers.task_roles[r] for r in ("train", "predict")},
                sources=config.sources,
            )
        self.schedules = (
            Schedules(
                self,
                "Schedules",
                schedules=config.schedules,
                monitor=config.monitor,
                queue=data.train.queue,
                predict_queue=data.predict.queue,
                data_bucket=data.storage.data.bucket_name,
                key=data.encryption.key,
            )
            if config.schedules or config.monitor.models
            else None
        )
        extra = [self.gpu.service] if self.gpu is not None else []
        self.workers.grant_nudge(self.api.instance_role, *extra)
        self.workers.grant_nudge(self.dataset_uploaded.role)

        self.alerts = Alerts(
            self,
            "Alerts",
            project=config.project,
            key=data.encryption.key,
            alert_email=config.alert_email,
        )
        self.notify = AlertNotifier(
            self,
            "Notify",
            topic=self.alerts.topic,
            key=data.encryption.key,
            slack_webhook_secret_name=config.slack_webhook_secret_name,
            log_retention=LOG_RETENTION,
        )
        self.undelivered_alerts = self.notify.undelivered
        # the monitor job (on the predict workers) publishes its alerts to the topic
        predict_role = self.workers.task_roles["predict"]
        self.alerts.topic.grant_publish(predict_role)
        self.workers.task_definitions["predict"].default_container.add_environment(  # type: ignore[union-attr]
            "MLPOC_ALERTS_TOPIC_ARN", self.alerts.topic.topic_arn
        )
        self._alarms(data, config)
        queues = {"train": data.train, "predict": data.predict, "events": data.events}
        worker_logs: list[logs.ILogGroup] = list(self.workers.log_groups.values())
        if data.gpu is not None and self.gpu is not None:
            queues["gpu"] = data.gpu
            worker_logs.append(self.gpu.log_group)
        self.dashboard = PipelineDashboard(
            self,
            "Pipeline",
            project=config.project,
            queues={name: q.queue for name, q in queues.items()},
            dead_letter_queues={name: q.dead_letter_queue for name, q in queues.items()},
            cluster=self.workers.cluster,
            services=services,
            worker_logs=worker_logs,
            api_environment_name=self.api.environment.ref,
        )
        keep_helper_logs(
            self,
            retention=LOG_RETENTION,
            removal=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )
        Aspects.of(self).add(EncryptLogGroups(data.encryption.key))
        self._outputs()

    def _grant(self, data: DataStack) -> None:
        """Data access for every runtime role, from the bucket layout (stacks/constructs/access)."""
        roles: dict[RuntimeRole, iam.IRole] = {
            "train": self.workers.task_roles["train"],
            "predict": self.workers.task_roles["predict"],
            "api": self.api.instance_role,
            "upload": self.dataset_uploaded.role,
        }
        tables = data.tables
        DataAccess(
            self,
            "DataAccess",
            roles=roles,
            buckets={"data": data.storage.data, "models": data.storage.models},
            tables={
                "jobs": tables.jobs,
                "models": tables.models,
                "predictions": tables.predictions,
                "annotations": tables.annotations,
                "features": tables.features,
            },
            key=data.encryption.key,
            consumes={"train": data.train.queue, "predict": data.predict.queue},
            sends={
                "train": (data.train.dead_letter_queue, data.predict.queue),
                "predict": (data.predict.dead_letter_queue, data.predict.queue),  # + shards
                "api": (data.train.queue, data.predict.queue),
                "upload": (data.train.queue, data.predict.queue),
            },
        )
        if data.gpu is not None:  # the GPU pool runs the train worker's code under its role
            data.gpu.queue.grant_consume_messages(roles["train"])
            data.gpu.dead_letter_queue.grant_send_messages(roles["train"])
            data.gpu.queue.grant_send_messages(roles["api"])
        DataAccess.acknowledge_grants(
            roles,
            data_stack=data,
            bucket_arns={"data": DATA_BUCKET_ARN, "models": MODEL_BUCKET_ARN},
            indexed_tables={"predictions": PREDICTIONS_TABLE_ARN},
        )

    def _alarms(self, data: DataStack, config: Config) -> None:
        self.alerts.allow_alarms()
        self.train_dead_letters = self.alerts.dead_letters("Train", data.train.dead_letter_queue)
        for name, queue in (("Predict", data.predict), ("Events", data.events)):
            self.alerts.dead_letters(name, queue.dead_letter_queue)
        self.alerts.dead_letters("UndeliveredAlerts", self.undelivered_alerts)
        self.alerts.oldest_message("Train", data.train.queue, Duration.hours(2))
        self.alerts.oldest_message("Predict", data.predict.queue, Duration.minutes(30))
        self.alerts.oldest_message("Events", data.events.queue, Duration.minutes(15))
        self.alerts.task_failures(self.workers.cluster.cluster_arn)
        self.alerts.budget(config.project, config.budget_usd)
        self.alerts.api_errors(self.api.environment.ref)
        if self.schedules is not None:
            self.alerts.dead_letters("Schedules", self.schedules.dead_letters)
        if self.gpu is not None and data.gpu is not None:
            self.alerts.dead_letters("Gpu", data.gpu.dead_letter_queue)
            self.alerts.oldest_message("Gpu", data.gpu.queue, Duration.hours(2))
            self.alerts.spot_interruptions()
            self.alerts.gpu_idle(
                self.gpu.instances.auto_scaling_group_name,
                namespace=CW_AGENT_NAMESPACE,
                metric=GPU_UTILIZATION,
            )

    def _outputs(self) -> None:
        values = {
            "ClusterName": self.workers.cluster.cluster_name,
            "TrainServiceName": self.workers.services["train"].service_name,
            "PredictServiceName": self.workers.services["predict"].service_name,
            "TrainLogGroup": self.workers.log_groups["train"].log_group_name,
            "PredictLogGroup": self.workers.log_groups["predict"].log_group_name,
            "AlertsTopicArn": self.alerts.topic.topic_arn,
            # what `mlpoc smoke` follows: one alarm, to the notify function's log
            "SmokeAlarmName": self.train_dead_letters.alarm_name,
            "NotifyLogGroup": self.notify.log_group.log_group_name,
            "ApiUrl": self.api.url,
            "ApiKeySecretArn": self.api.api_key.secret_arn,
            "ApiEnvironmentName": self.api.environment.ref,
            "DashboardUrl": (
                f"https://{self.region}.console.aws.amazon.com/cloudwatch/home?region="
                f"{self.region}#dashboards:name={self.dashboard.dashboard.dashboard_name}"
            ),
        }
        if self.schedules is not None:
            values[SCHEDULES_OUTPUT] = self.schedules.names
        if self.gpu is not None:
            values["GpuServiceName"] = self.gpu.service.service_name
            values["GpuLogGroup"] = self.gpu.log_group.log_group_name
            values["GpuAutoScalingGroupName"] = self.gpu.instances.auto_scaling_group_name
        for name, value in values.items():
            CfnOutput(self, name, value=value)


def resource_environment(data: DataStack) -> dict[str, str]:
    """The names every runtime role reads (`mlpoc.runtime.environment`): the same keys locally."""
    return {
        "MLPOC_DATA_BUCKET": data.storage.data.bucket_name,
        "MLPOC_MODEL_BUCKET": data.storage.models.bucket_name,
        "MLPOC_JOBS_TABLE": data.tables.jobs.table_name,
        "MLPOC_MODELS_TABLE": data.tables.models.table_name,
        "MLPOC_PREDICTIONS_TABLE": data.tables.predictions.table_name,
        "MLPOC_ANNOTATIONS_TABLE": data.tables.annotations.table_name,
        "MLPOC_FEATURES_TABLE": data.tables.features.table_name,
        "MLPOC_TRAIN_QUEUE_URL": data.train.queue.queue_url,
        "MLPOC_PREDICT_QUEUE_URL": data.predict.queue.queue_url,
        **({GPU_QUEUE_VARIABLE: data.gpu.queue.queue_url} if data.gpu is not None else {}),
        **({SOURCES_VARIABLE: data.source_prefixes} if data.source_prefixes else {}),
    }

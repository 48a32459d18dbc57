"""The stateless half: workers on ECS Fargate, the event lambdas, alarms and the budget.

Everything here can be destroyed and redeployed at any time; the data stays in the data stack.
Permissions are `grant_*` calls on the data stack's resources, role by role.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns_subscriptions as subscriptions

from constructs import Construct
from mlpoc.api.app import DATASET_VERSIONS
from stacks.config import Config
from stacks.constructs.alerts import Alerts
from stacks.constructs.api import ApiService
from stacks.constructs.dashboard import PipelineDashboard
from stacks.constructs.functions import PythonFunction
from stacks.constructs.nag import acknowledge
from stacks.constructs.network import Network
from stacks.constructs.workers import Workers, WorkerSpec
from stacks.data_stack import EVENTS_LAMBDA_TIMEOUT, DataStack

LOG_RETENTION = logs.RetentionDays.ONE_MONTH
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
                    role="predict", queue=data.predict.queue, environment=environment, prefetch=10
                ),
            ],
            log_retention=LOG_RETENTION,
        )
        self._grant_workers(data)
        self.api = ApiService(
            self,
            "Api",
            config=config,
            vpc=self.network.vpc,
            image=self.workers.image,
            environment=environment,
        )
        self._grant_api(data)

        self.dataset_uploaded = PythonFunction(
            self,
            "DatasetUploaded",
            name="dataset_uploaded",
            description="S3 dataset upload -> job record in the ledger + train/predict job",
            environment={
                k: environment[k]
                for k in (
                    "MLPOC_DATA_BUCKET",
                    "MLPOC_JOBS_TABLE",
                    "MLPOC_TRAIN_QUEUE_URL",
                    "MLPOC_PREDICT_QUEUE_URL",
                )
            },
            timeout=EVENTS_LAMBDA_TIMEOUT,
            log_retention=LOG_RETENTION,
            shared_runtime=True,
        )
        uploaded = self.dataset_uploaded.function
        uploaded.add_event_source(
            sources.SqsEventSource(
                data.events.queue,
                batch_size=10,
                max_batching_window=Duration.seconds(5),
                report_batch_item_failures=True,
            )
        )
        data.storage.data.grant_read(uploaded, "datasets/*")
        data.tables.jobs.grant_read_write_data(uploaded)
        data.train.queue.grant_send_messages(uploaded)
        data.predict.queue.grant_send_messages(uploaded)

        self.alerts = Alerts(
            self,
            "Alerts",
            project=config.project,
            key=data.encryption.key,
            alert_email=config.alert_email,
        )
        notify_environment = {}
        secret = None
        if config.slack_webhook_secret_name:
            secret = secretsmanager.Secret.from_secret_name_v2(
                self, "SlackWebhook", config.slack_webhook_secret_name
            )
            notify_environment["MLPOC_SLACK_SECRET_ARN"] = secret.secret_arn
        self.notify = PythonFunction(
            self,
            "Notify",
            name="notify",
            description="Alerts topic -> Slack webhook (from Secrets Manager), or the log",
            environment=notify_environment,
            timeout=Duration.seconds(10),
            log_retention=LOG_RETENTION,
            shared_runtime=False,
        )
        if secret is not None:
            secret.grant_read(self.notify.function)
        self.alerts.topic.add_subscription(subscriptions.LambdaSubscription(self.notify.function))
        self._alarms(data, config)
        queues = {"train": data.train, "predict": data.predict, "events": data.events}
        self.dashboard = PipelineDashboard(
            self,
            "Pipeline",
            project=config.project,
            queues={name: q.queue for name, q in queues.items()},
            dead_letter_queues={name: q.dead_letter_queue for name, q in queues.items()},
            cluster=self.workers.cluster,
            services=self.workers.services,
            worker_logs=list(self.workers.log_groups.values()),
            api_environment_name=self.api.environment.ref,
        )
        self._acknowledge_grants(data)
        self._outputs()

    def _grant_workers(self, data: DataStack) -> None:
        train, predict = self.workers.task_roles["train"], self.workers.task_roles["predict"]
        # train: read datasets, write artifacts, own the ledger and the registry, queue follow-ups
        data.storage.data.grant_read(train, "datasets/*")
        data.storage.models.grant_read_write(train, "models/*")
        data.tables.jobs.grant_read_write_data(train)
        data.tables.models.grant_read_write_data(train)
        data.train.queue.grant_consume_messages(train)
        data.train.dead_letter_queue.grant_send_messages(train)
        data.predict.queue.grant_send_messages(train)
        # predict: read datasets and artifacts, resolve versions, write predictions
        data.storage.data.grant_read(predict, "datasets/*")
        data.storage.models.grant_read(predict, "models/*")
        data.tables.jobs.grant_read_write_data(predict)
        data.tables.models.grant_read_data(predict)
        data.tables.predictions.grant_write_data(predict)
        data.predict.queue.grant_consume_messages(predict)
        data.predict.dead_letter_queue.grant_send_messages(predict)

    def _grant_api(self, data: DataStack) -> None:
        api = self.api.instance_role
        # read datasets and dataset versions, write dataset versions (retrain), read artifacts
        data.storage.data.grant_read(api, "datasets/*")
        data.storage.data.grant_read_write(api, f"{DATASET_VERSIONS}/*")
        data.storage.models.grant_read(api, "models/*")
        tables = data.tables
        for table in (tables.jobs, tables.models, tables.predictions, tables.annotations):
            table.grant_read_write_data(api)
        data.train.queue.grant_send_messages(api)
        data.predict.queue.grant_send_messages(api)

    def _acknowledge_grants(self, data: DataStack) -> None:
        """The wildcards that CDK's grant_* methods write, acknowledged finding by finding."""
        exports = data.stack_name + ":ExportsOutputFnGetAtt"
        s3_actions = (
            "the action groups of grant_read/grant_read_write (GetObject*, GetBucket*, List*, "
            "and for the train worker Abort*/DeleteObject* to replace its own artifact), on one "
            "bucket prefix; a hand-written list would miss new S3 read APIs"
        )
        kms = (
            "added by the grants on SSE-KMS buckets, tables and queues: data-key generation and "
            "re-encryption with the project key only"
        )
        datasets = f"Resource::{exports}{DATA_BUCKET_ARN}/datasets/*"
        models = f"Resource::{exports}{MODEL_BUCKET_ARN}/models/*"
        common = {
            "Action::s3:GetBucket*": s3_actions,
            "Action::s3:GetObject*": s3_actions,
            "Action::s3:List*": s3_actions,
            "Action::kms:GenerateDataKey*": kms,
            "Action::kms:ReEncrypt*": kms,
            datasets: "objects under datasets/ only: where uploads and dataset versions live",
        }
        policies = {
            self.workers.task_roles["train"]: {
                **common,
                "Action::s3:Abort*": s3_actions,
                "Action::s3:DeleteObject*": s3_actions,
                models: "objects under models/ only: the artifacts this worker writes",
            },
            self.workers.task_roles["predict"]: {
                **common,
                models: "objects under models/ only: the artifacts this worker verifies and loads",
                f"Resource::{exports}{PREDICTIONS_TABLE_ARN}/index/*": (
                    "the predictions table's own indexes (the review index), from grant_write_data"
                ),
            },
            self.dataset_uploaded.role: common,
            self.api.instance_role: {
                **common,
                "Action::s3:Abort*": s3_actions,
                "Action::s3:DeleteObject*": s3_actions,
                models: "objects under models/ only: the artifacts the API verifies and serves",
                f"Resource::{exports}{DATA_BUCKET_ARN}/{DATASET_VERSIONS}/*": (
                    "objects under dataset-versions/ only: the datasets the retrain route writes"
                ),
                f"Resource::{exports}{PREDICTIONS_TABLE_ARN}/index/*": (
                    "the predictions table's own indexes (the review queue the API reads)"
                ),
            },
        }
        for role, findings in policies.items():
            policy = role.node.find_child("DefaultPolicy")
            for finding, reason in findings.items():
                acknowledge(policy, f"AwsSolutions-IAM5[{finding}]", f"{reason}.")
        for task in self.workers.task_definitions.values():
            acknowledge(
                task,
                "AwsSolutions-ECS2",
                "The environment holds resource names from the stack (buckets, tables, queue "
                "URLs) and tuning knobs, never a secret; secrets are read from Secrets Manager.",
            )
            acknowledge(
                task.obtain_execution_role().node.find_child("DefaultPolicy"),
                "AwsSolutions-IAM5[Resource::*]",
                "ecr:GetAuthorizationToken has no resource-level permissions; the image pull "
                "and log writes in the same policy are scoped to the repository and log group.",
            )

    def _alarms(self, data: DataStack, config: Config) -> None:
        for name, queue in (
            ("Train", data.train),
            ("Predict", data.predict),
            ("Events", data.events),
        ):
            self.alerts.dead_letters(name, queue.dead_letter_queue)
        self.alerts.oldest_message("Train", data.train.queue, Duration.hours(2))
        self.alerts.oldest_message("Predict", data.predict.queue, Duration.minutes(30))
        self.alerts.oldest_message("Events", data.events.queue, Duration.minutes(15))
        self.alerts.task_failures(self.workers.cluster.cluster_arn)
        self.alerts.budget(config.project, config.budget_usd)
        self.alerts.api_errors(self.api.environment.ref)

    def _outputs(self) -> None:
        values = {
            "ClusterName": self.workers.cluster.cluster_name,
            "TrainServiceName": self.workers.services["train"].service_name,
            "PredictServiceName": self.workers.services["predict"].service_name,
            "TrainLogGroup": self.workers.log_groups["train"].log_group_name,
            "PredictLogGroup": self.workers.log_groups["predict"].log_group_name,
            "AlertsTopicArn": self.alerts.topic.topic_arn,
            "ApiUrl": self.api.url,
            "ApiKeySecretArn": self.api.api_key.secret_arn,
            "ApiEnvironmentName": self.api.environment.ref,
            "DashboardUrl": (
                f"https://{self.region}.console.aws.amazon.com/cloudwatch/home?region="
                f"{self.region}#dashboards:name={self.dashboard.dashboard.dashboard_name}"
            ),
        }
        for name, value in values.items():
            CfnOutput(self, name, value=value)


def resource_environment(data: DataStack) -> dict[str, str]:
    """The names every runtime role reads (`mlpoc.settings`): the same keys locally."""
    return {
        "MLPOC_DATA_BUCKET": data.storage.data.bucket_name,
        "MLPOC_MODEL_BUCKET": data.storage.models.bucket_name,
        "MLPOC_JOBS_TABLE": data.tables.jobs.table_name,
        "MLPOC_MODELS_TABLE": data.tables.models.table_name,
        "MLPOC_PREDICTIONS_TABLE": data.tables.predictions.table_name,
        "MLPOC_ANNOTATIONS_TABLE": data.tables.annotations.table_name,
        "MLPOC_TRAIN_QUEUE_URL": data.train.queue.queue_url,
        "MLPOC_PREDICT_QUEUE_URL": data.predict.queue.queue_url,
    }

"""The stateful half: what holds data. Nothing stateless lives here, so the service stack can be
destroyed and redeployed freely while datasets, models and the ledger stay.
"""

from __future__ import annotations

from aws_cdk import Aspects, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from mlpoc.aws import bucket_layout
from mlpoc.runtime.contract import QUEUE_OUTPUTS, SOURCES_OUTPUT
from stacks.config import Config
from stacks.constructs.dynamodb_tables import Tables
from stacks.constructs.encryption import EncryptLogGroups, ProjectKey
from stacks.constructs.helper_logs import keep_helper_logs
from stacks.constructs.nag import acknowledge
from stacks.constructs.queues import JobQueue
from stacks.constructs.storage import Storage

# The events queue feeds a Lambda function: AWS recommends a visibility timeout of at least six
# times the function's timeout, so a throttled batch is not redelivered while still in flight.
EVENTS_LAMBDA_TIMEOUT = Duration.seconds(30)
EVENTS_VISIBILITY = Duration.seconds(6 * 30)
# Workers extend visibility with a heartbeat every third of it: short timeouts mean a killed
# worker's job comes back quickly.
TRAIN_VISIBILITY = Duration.seconds(120)
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
PREDICT_VISIBILITY = Duration.seconds(60)
# The construct id aws-cdk-lib gives its bucket-notifications singleton (fixed in the library).
NOTIFICATIONS_HANDLER_ID = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"


class DataStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: Config, **kwargs: object
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        keep = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY

        self.encryption = ProjectKey(
            self,
            "Encryption",
            project=config.project,
            removal=keep,
            result_readers=config.result_readers,
        )
        key = self.encryption.key
        self.storage = Storage(
            self, "Storage", key=key, removal=keep, auto_delete=not config.retain_data
        )
        self.tables = Tables(
            self,
            "Tables",
            key=key,
            removal=keep,
            point_in_time_recovery=config.retain_data,
            result_readers=config.result_readers,
        )
        # datasets may also come from these folders of another account (mlpoc:sources)
        self.source_prefixes = ",".join(str(source.uri) for source in config.sources)

        def job_queue(name: str, visibility: Duration) -> JobQueue:
            return JobQueue(
                self,
                name,
                key=key,
                visibility_timeout=visibility,
                max_receive_count=config.max_receive_count,
                removal=RemovalPolicy.DESTROY,  # messages are transient; the ledger is the record
            )

        self.train = job_queue("Train", TRAIN_VISIBILITY)
        self.predict = job_queue("Predict", PREDICT_VISIBILITY)
        self.events = job_queue("Events", EVENTS_VISIBILITY)
        # the GPU training pool's jobs (mlpoc:gpu): train jobs with "resources": "gpu"
        self.gpu = job_queue("Gpu", TRAIN_VISIBILITY) if config.gpu else None

        self._notify_dataset_uploads()
        keep_helper_logs(self, retention=LOG_RETENTION, removal=keep)
        Aspects.of(self).add(EncryptLogGroups(self.encryption.key))
        self._pin_logical_ids()
        self._outputs()

    def _notify_dataset_uploads(self) -> None:
        """S3 ObjectCreated under datasets/ -> events queue.

        SqsDestination would add a key-policy statement conditioned on the bucket's ARN, and the
        bucket is encrypted with that key: a circular dependency. The key already lets S3 use it
        for queues of this account (ProjectKey); here the queue policy admits only this bucket.
        """
        queue = self.events.queue
        queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowDatasetUploadEvents",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
                resources=[queue.queue_arn],
                conditions={
                    "ArnLike": {"aws:SourceArn": self.storage.data.bucket_arn},
                    "StringEquals": {"aws:SourceAccount": self.account},
                },
            )
        )
        keyless = sqs.Queue.from_queue_attributes(
            self,
            "EventsQueueForNotifications",
            queue_arn=queue.queue_arn,
            queue_url=queue.queue_url,
        )
        self.storage.data.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.SqsDestination(keyless),
            s3.NotificationKeyFilter(
                prefix=bucket_layout.DATASETS.path, suffix=bucket_layout.DATASET_SUFFIX
            ),
        )
        # CDK's singleton that writes the bucket's notification configuration at deploy time.
        handler = self.node.find_child(NOTIFICATIONS_HANDLER_ID).node.find_child("Role")
        acknowledge(
            handler,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]",
            "CDK's BucketNotificationsHandler only writes its own CloudWatch logs with this "
            "policy; its one other permission, s3:PutBucketNotification, is inline.",
        )

    def _pin_logical_ids(self) -> None:
        """Stateful resources keep these ids forever: a refactor must never replace them."""
        pinned = {
            "ProjectKey": self.encryption.key,
            "AccessLogBucket": self.storage.access_logs,
            "DataBucket": self.storage.data,
            "ModelBucket": self.storage.models,
            "JobsTable": self.tables.jobs,
            "ModelsTable": self.tables.models,
            "PredictionsTable": self.tables.predictions,
            "AnnotationsTable": self.tables.annotations,
            "FeaturesTable": self.tables.features,
        }
        for logical_id, construct in pinned.items():
            construct.node.default_child.override_logical_id(logical_id)  # type: ignore[union-attr]

    def _outputs(self) -> None:
        values = {
            "DataBucketName": self.storage.data.bucket_name,
            "ModelBucketName": self.storage.models.bucket_name,
            "JobsTableName": self.tables.jobs.table_name,
            "ModelsTableName": self.tables.models.table_name,
            "PredictionsTableName": self.tables.predictions.table_name,
            "AnnotationsTableName": self.tables.annotations.table_name,
            "FeaturesTableName": self.tables.features.table_name,
            "TrainQueueUrl": self.train.queue.queue_url,
            "PredictQueueUrl": self.predict.queue.queue_url,
            "EventsQueueUrl": self.events.queue.queue_url,
            "TrainDeadLetterQueueUrl": self.train.dead_letter_queue.queue_url,
            "PredictDeadLetterQueueUrl": self.predict.dead_letter_queue.queue_url,
            "EventsDeadLetterQueueUrl": self.events.dead_letter_queue.queue_url,
            "KeyArn": self.encryption.key.key_arn,
        }
        if self.source_prefixes:
            values[SOURCES_OUTPUT] = self.source_prefixes
        if self.gpu is not None:
            values[QUEUE_OUTPUTS["gpu"]] = self.gpu.queue.queue_url
            values["GpuDeadLetterQueueUrl"] = self.gpu.dead_letter_queue.queue_url
        for name, value in values.items():
            CfnOutput(self, name, value=value)

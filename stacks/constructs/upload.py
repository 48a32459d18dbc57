"""The upload function: a CSV lands under ``datasets/`` → the events queue → one job record in
the ledger and one train or predict job (``lambdas/dataset_uploaded``)."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs

from constructs import Construct
from mlpoc.runtime.environment import UPLOAD_VARIABLES
from mlpoc.runtime.scaling import CLUSTER_VARIABLE, SERVICE_VARIABLES
from stacks.constructs.functions import NO_RESERVATION, PythonFunction
from stacks.constructs.nag import skip_checkov

# uploads at once: a batch of ten CSVs each, so fifty files start in parallel at most
MAX_CONCURRENCY = 5


class UploadFunction(PythonFunction):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: Mapping[str, str],
        events_queue: sqs.IQueue,
        timeout: Duration,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            name="dataset_uploaded",
            description="S3 dataset upload -> job record in the ledger + train/predict job",
            environment={
                k: environment[k]
                for k in (*UPLOAD_VARIABLES, CLUSTER_VARIABLE, *SERVICE_VARIABLES.values())
                if k in environment
            },
            timeout=timeout,
            log_retention=log_retention,
        )
        self.function.add_event_source(
            sources.SqsEventSource(
                events_queue,
                batch_size=10,
                max_batching_window=Duration.seconds(5),
                report_batch_item_failures=True,  # one bad upload never holds back the others
                max_concurrency=MAX_CONCURRENCY,
            )
        )
        skip_checkov(
            self.function,
            "CKV_AWS_116",
            "Invoked by an SQS event source mapping, never asynchronously: a message that fails "
            "goes back to the events queue, whose redrive policy moves it to the queue's own "
            "dead-letter queue. A function's dead-letter queue applies to asynchronous calls only.",
        )
        skip_checkov(
            self.function,
            "CKV_AWS_115",
            NO_RESERVATION + "Its concurrency is bounded by the event source mapping's "
            f"MaximumConcurrency ({MAX_CONCURRENCY}) instead, which reserves nothing.",
        )

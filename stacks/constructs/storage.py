"""Buckets: data (datasets, dataset versions) and models (artifacts), plus access logs.

All three block public access and refuse plain HTTP; data and models use SSE-KMS with the
project key and S3 Bucket Keys (one KMS call per object-key period instead of per request).
The access-log bucket uses SSE-S3, the only encryption S3 server access logging can write to.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from constructs import Construct
from mlpoc.aws import bucket_layout
from stacks.constructs.nag import skip_checkov

NONCURRENT_DAYS = 30
LOG_DAYS = 90


def log_bucket_settings() -> dict[str, Any]:
    """What a bucket S3 server access logs go to has: SSE-S3, logs kept :data:`LOG_DAYS`."""
    return {
        "encryption": s3.BucketEncryption.S3_MANAGED,
        "lifecycle_rules": [s3.LifecycleRule(expiration=Duration.days(LOG_DAYS))],
    }


def explain_log_bucket(bucket: s3.Bucket) -> None:
    """Why checkov's logging and versioning checks do not apply to a log bucket."""
    skip_checkov(
        bucket,
        "CKV_AWS_18",
        "This is the bucket the other buckets' server access logs go to. Logging it too would "
        "need one more log bucket, whose own logs would need another: the chain stops here.",
    )
    skip_checkov(
        bucket,
        "CKV_AWS_21",
        "S3's log delivery writes each log object once, under a new key, and nothing else "
        f"writes here; the objects expire after {LOG_DAYS} days. Versions would only keep "
        "expired logs longer.",
    )


class Storage(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        removal: RemovalPolicy,
        auto_delete: bool,
    ) -> None:
        super().__init__(scope, construct_id)

        def bucket(name: str, **own: Any) -> s3.Bucket:
            """A bucket with the settings every bucket here shares, plus its own."""
            return s3.Bucket(
                self,
                name,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                removal_policy=removal,
                auto_delete_objects=auto_delete,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                **own,
            )

        def encrypted(name: str, **own: Any) -> s3.Bucket:
            return bucket(
                name,
                encryption=s3.BucketEncryption.KMS,
                encryption_key=key,
                bucket_key_enabled=True,
                server_access_logs_bucket=self.access_logs,
                server_access_logs_prefix=f"{name.lower()}/",
                **own,
            )

        self.access_logs = bucket("AccessLogs", **log_bucket_settings())
        explain_log_bucket(self.access_logs)
        # Both versioned: a dataset a job or a model version points to can be overwritten, and
        # an artifact is overwritten by a retried job; the old version stays 30 days to go back
        # to (and the sha256 in the registry says which one a version was trained from).
        keep_old = s3.LifecycleRule(
            noncurrent_version_expiration=Duration.days(NONCURRENT_DAYS),
            abort_incomplete_multipart_upload_after=Duration.days(7),
        )
        # the monitor's input samples are a rolling window: gone after SAMPLE_DAYS
        samples = s3.LifecycleRule(
            prefix=bucket_layout.INPUT_SAMPLES.path,
            expiration=Duration.days(bucket_layout.SAMPLE_DAYS),
            noncurrent_version_expiration=Duration.days(1),
        )
        self.data = encrypted("Data", versioned=True, lifecycle_rules=[keep_old, samples])
        self.models = encrypted("Models", versioned=True, lifecycle_rules=[keep_old])

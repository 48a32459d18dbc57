"""Model artifacts in the model bucket: ``models/{name}/{version}/model.onnx`` + ``metadata.json``.

The sha256 of the ONNX bytes is recorded in the registry when the version is committed, and
checked against the downloaded bytes before anything parses them. ONNX is a protobuf graph, not
code: nothing is ever unpickled from a bucket.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mlpoc.aws import bucket_layout
from mlpoc.errors import ArtifactError


@dataclass(frozen=True)
class ArtifactKeys:
    onnx: str
    metadata: str

    @classmethod
    def of(cls, model: str, version: int) -> ArtifactKeys:
        prefix = bucket_layout.artifact_prefix(model, version)
        return cls(onnx=f"{prefix}/model.onnx", metadata=f"{prefix}/metadata.json")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(
    s3: Any, bucket: str, keys: ArtifactKeys, onnx_bytes: bytes, metadata: Mapping[str, Any]
) -> None:
    """Upload the ONNX bytes and the metadata (the bucket's default SSE-KMS key encrypts both)."""
    s3.put_object(
        Bucket=bucket,
        Key=keys.onnx,
        Body=onnx_bytes,
        ContentType="application/octet-stream",
        ChecksumAlgorithm="SHA256",
    )
    s3.put_object(
        Bucket=bucket,
        Key=keys.metadata,
        Body=json.dumps(metadata, indent=2, sort_keys=True).encode(),
        ContentType="application/json",
    )


def read_verified(s3: Any, bucket: str, key: str, expected_sha256: str) -> bytes:
    """Download an artifact and refuse it unless its sha256 is the registered one."""
    try:
        data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response["Error"]["Code"] in {"NoSuchKey", "404"}:
            raise ArtifactError(f"artifact s3://{bucket}/{key} is missing") from None
        raise
    actual = sha256(data)
    if actual != expected_sha256:
        raise ArtifactError(
            f"artifact s3://{bucket}/{key} has sha256 {actual[:12]}… but the registry recorded "
            f"{expected_sha256[:12]}…: it was modified after training. Refusing to load it; "
            "retrain, or restore the object version that matches"
        )
    return data

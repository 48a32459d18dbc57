"""Human corrections and the retrain they feed: the review queue (predictions below the
confidence threshold), a correction, and a train job over the promoted version's folder (the
train worker builds the dataset version with every correction in it:
:mod:`mlpoc.data.dataset_versions`).

HTTP-free: the API's routes call these, and a refusal is a :class:`~mlpoc.errors.Refused`
whose code the API turns into its status.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from mlpoc.aws import bucket_layout, dynamo, table_keys
from mlpoc.aws.clients import Clients
from mlpoc.errors import Refused, RegistryError
from mlpoc.models.registry import Registry
from mlpoc.runtime import submission
from mlpoc.runtime.contract import Job, S3Uri
from mlpoc.runtime.environment import Settings
from mlpoc.runtime.ledger import Ledger
from mlpoc.runtime.submission import Nudge


@dataclass(frozen=True)
class Annotations:
    runtime: Settings
    clients: Clients
    ledger: Ledger
    registry: Registry
    nudge: Nudge | None = None

    def review_queue(self, model: str, limit: int) -> list[dict[str, Any]]:
        """The model's least confident stored predictions that nobody has corrected yet."""
        response = self.clients.dynamodb.query(
            TableName=self.runtime.predictions_table,
            IndexName=table_keys.REVIEW_INDEX,
            KeyConditionExpression="review = :m",
            ExpressionAttributeValues={":m": {"S": model}},
            Limit=limit,
        )
        items = []
        for raw in response["Items"]:
            item = dynamo.deserialize(raw) or {}
            items.append(
                {
                    "item_id": item["item_id"],
                    "label": item["label"],
                    "confidence": item["confidence"],
                    "version": item["version"],
                    "features": json.loads(item["features"]) if "features" in item else None,
                }
            )
        return items

    def correct(self, model: str, item_id: str, label: str) -> None:
        """Record a person's label for a stored prediction, and take it out of the review queue
        (a later prediction below the threshold puts it back)."""
        key = {"model": {"S": model}, "item_id": {"S": item_id}}
        table = self.runtime.predictions_table
        prediction = dynamo.deserialize(
            self.clients.dynamodb.get_item(TableName=table, Key=key).get("Item")
        )
        if prediction is None:
            raise Refused("not_found", f"no stored prediction for {model}/{item_id}")
        classes = self.registry.get(model, int(prediction["version"])).classes
        if label not in classes:
            raise Refused("unknown_label", f"label must be one of {classes}")
        self.clients.dynamodb.put_item(
            TableName=self.runtime.annotations_table,
            Item=dynamo.serialize(
                {
                    "model": model,
                    "item_id": item_id,
                    "label": label,
                    "predicted_label": prediction["label"],
                    "version": prediction["version"],  # the version that served it
                    "confidence": prediction["confidence"],
                    "features": prediction.get("features"),
                    "annotated_at": time.time(),
                }
            ),
        )
        self.clients.dynamodb.update_item(
            TableName=table, Key=key, UpdateExpression="REMOVE review"
        )

    def retrain(self, model: str) -> dict[str, Any]:
        """A train job over the promoted version's folder, queued: the train worker builds the
        new dataset version (the promoted version's data, what is new in the folder, every
        correction: :mod:`mlpoc.data.dataset_versions`). What was queued."""
        try:
            base = self.registry.resolve(model, "current")
        except RegistryError as error:
            raise Refused("no_model", str(error)) from None
        usable = [c for c in self.corrections(model) if c.get("features")]
        if not usable:
            raise Refused("no_corrections", f"no corrected labels for {model!r} yet")
        folder = base.extra.get("folder") or str(
            S3Uri(self.runtime.data_bucket, bucket_layout.model_prefix(model))
        )
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        job = Job(
            job_id=f"retrain-{model}-{stamp}-{uuid.uuid4().hex[:6]}",
            type="train",
            model=model,
            dataset=S3Uri.parse(str(folder)),
            params={"origin": "retrain"},
        )
        submission.enqueue(
            self.ledger, self.clients.sqs, self.runtime, job, source="api", nudge=self.nudge
        )
        return {
            "job_id": job.job_id,
            "status": "QUEUED",
            "dataset": str(job.dataset),
            "corrections": len(usable),
            "base_version": base.version,
        }

    def corrections(self, model: str) -> list[dict[str, Any]]:
        return corrections(self.clients.dynamodb, self.runtime.annotations_table, model)


def corrections(dynamodb: Any, table: str, model: str) -> list[dict[str, Any]]:
    """Every correction of ``model`` (one query of the annotations table, paged)."""
    return list(dynamo.partition(dynamodb, table, "model", model))

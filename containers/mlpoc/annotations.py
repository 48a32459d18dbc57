"""Human corrections and the retrain they feed: the review queue (predictions below the
confidence threshold), a correction, and a new dataset version made of the promoted version's
dataset plus every correction, queued as a train job.

HTTP-free: the API's routes call these, and a refusal is a :class:`~mlpoc.errors.Refused`
whose code the API turns into its status.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from mlpoc import datasets, dynamo, jobs, layout, tables
from mlpoc.aws import Clients
from mlpoc.contracts import Job, S3Uri
from mlpoc.errors import Refused, RegistryError
from mlpoc.jobs import Nudge
from mlpoc.ledger import Ledger
from mlpoc.registry import Registry
from mlpoc.settings import Settings


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
            IndexName=tables.REVIEW_INDEX,
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
        """A new dataset version (the promoted version's dataset plus every correction) and a
        train job on it, queued; what was queued."""
        try:
            base = self.registry.resolve(model, "current")
        except RegistryError as error:
            raise Refused("no_model", str(error)) from None
        usable = [c for c in self.corrections(model) if c.get("features")]
        if not usable:
            raise Refused("no_corrections", f"no corrected labels for {model!r} yet")
        text = datasets.fetch(self.clients.s3, S3Uri.parse(base.dataset))
        header = next(csv.reader(io.StringIO(text)))
        out = io.StringIO()
        out.write(text if text.endswith("\n") else text + "\n")
        writer = csv.writer(out, lineterminator="\n")
        for correction in usable:
            values = dict(zip(base.features, json.loads(correction["features"]), strict=True))
            values["label"] = correction["label"]
            writer.writerow([values.get(column, "") for column in header])
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        key = layout.dataset_version_key(model, stamp, uuid.uuid4().hex[:6])
        bucket = self.runtime.data_bucket
        self.clients.s3.put_object(Bucket=bucket, Key=key, Body=out.getvalue().encode())
        job = Job(
            job_id=f"retrain-{model}-{stamp}-{uuid.uuid4().hex[:6]}",
            type="train",
            model=model,
            dataset=S3Uri(bucket, key),
            params={"plugin": base.plugin},
        )
        jobs.enqueue(
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
        return list(
            dynamo.items(
                self.clients.dynamodb.query,
                TableName=self.runtime.annotations_table,
                KeyConditionExpression="#m = :m",
                ExpressionAttributeNames={"#m": "model"},
                ExpressionAttributeValues={":m": {"S": model}},
            )
        )

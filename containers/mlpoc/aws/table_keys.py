"""Key schemas of the five tables: the one description the runtime, the CDK stack and the tests
share, so a key can never differ between what is deployed and what the code queries.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: tuple[str, str]  # (attribute, "S" | "N")
    sort_key: tuple[str, str] | None = None


@dataclass(frozen=True)
class TableSchema:
    partition_key: tuple[str, str]
    sort_key: tuple[str, str] | None = None
    indexes: tuple[Index, ...] = ()
    ttl: str | None = None  # the attribute DynamoDB deletes an item after (epoch seconds)

    def create_table_kwargs(self, name: str) -> dict[str, object]:
        """Arguments for ``create_table`` (used where no CloudFormation runs, e.g. unit tests)."""
        keys = [self.partition_key, *([self.sort_key] if self.sort_key else [])]
        attributes = dict(keys)
        for index in self.indexes:
            attributes[index.partition_key[0]] = index.partition_key[1]
            if index.sort_key:
                attributes[index.sort_key[0]] = index.sort_key[1]
        kwargs: dict[str, object] = {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [
                {"AttributeName": k, "KeyType": t}
                for (k, _), t in zip(keys, ("HASH", "RANGE"), strict=False)
            ],
            "AttributeDefinitions": [
                {"AttributeName": k, "AttributeType": t} for k, t in attributes.items()
            ],
        }
        if self.indexes:
            kwargs["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index.name,
                    "KeySchema": [
                        {"AttributeName": index.partition_key[0], "KeyType": "HASH"},
                        *(
                            [{"AttributeName": index.sort_key[0], "KeyType": "RANGE"}]
                            if index.sort_key
                            else []
                        ),
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for index in self.indexes
            ]
        return kwargs


# The ledger: one record per job.
JOBS = TableSchema(partition_key=("job_id", "S"))
# The registry: version items (sk "v00000001", ...) and one pointer item per model (sk "@pointer").
MODELS = TableSchema(partition_key=("model", "S"), sort_key=("version", "S"))
# Stored predictions, one per (model, item). Items that need a human look carry ``review``
# (the model name) and appear in the sparse ``review`` index, lowest confidence first.
REVIEW_INDEX = "review"
PREDICTIONS = TableSchema(
    partition_key=("model", "S"),
    sort_key=("item_id", "S"),
    indexes=(Index(REVIEW_INDEX, ("review", "S"), ("confidence", "N")),),
)
# Human labels, one per (model, item). Only people (through the API) write here.
ANNOTATIONS = TableSchema(partition_key=("model", "S"), sort_key=("item_id", "S"))
# The online feature store: one item per (feature set version, entity key), partition
# "<set>#<version>", sort the entity key, the values in ``v`` (a JSON list in the version's
# column order). A superseded version's items get ``expires_at`` (mlpoc.data.feature_sets).
FEATURES = TableSchema(partition_key=("set", "S"), sort_key=("key", "S"), ttl="expires_at")

"""Feature sets (mlpoc.data.feature_sets): published in versions by worker jobs, joined by key when
a model trains, read by key when it predicts, promoted and rolled back apart from the models, and
a promoted version with other columns refused for a model that cannot take it."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import replace
from typing import Any

import pytest

from mlpoc.api.lookups import Lookups
from mlpoc.aws import bucket_layout
from mlpoc.data import digits, feature_binding, feature_sets, feature_snapshots
from mlpoc.errors import DatasetError, RegistryError, TransientError
from mlpoc.models.registry import Registry
from mlpoc.runtime.environment import Settings
from mlpoc.runtime.ledger import Ledger
from mlpoc.worker.loop import Worker
from mlpoc.worker.train import handle_train
from tests.support.aws_stack import Stack
from tests.support.pipeline import run_job, scan
from tests.test_api import AUTH, make_client

TRAIN_ROWS = slice(0, 1500)


def put(stack: Stack, key: str, text: str) -> str:
    stack.clients().s3.put_object(Bucket=stack.data_bucket, Key=key, Body=text.encode())
    return f"s3://{stack.data_bucket}/{key}"


def publish(stack: Stack, job_id: str, text: str, **params: Any) -> dict[str, Any]:
    dataset = put(stack, f"inputs/images/{job_id}.csv", text)
    run_job(
        stack,
        {"job_id": job_id, "type": "features", "model": "images", "dataset": dataset,
         "params": params},
    )  # fmt: skip
    record = Ledger(stack.clients().dynamodb, stack.jobs_table).get(job_id)
    assert record is not None and record["status"] == "SUCCEEDED", record
    return dict(record["result"])


def train_by_key(stack: Stack, job_id: str, dataset: str, **params: Any) -> dict[str, Any]:
    run_job(
        stack,
        {"job_id": job_id, "type": "train", "model": "bykey", "dataset": dataset,
         "params": {"feature_set": "images", **params}},
    )  # fmt: skip
    record = Ledger(stack.clients().dynamodb, stack.jobs_table).get(job_id)
    assert record is not None and record["status"] == "SUCCEEDED", record
    return dict(record["result"])


def sets(stack: Stack) -> feature_sets.FeatureSets:
    return feature_sets.FeatureSets(stack.clients().dynamodb, stack.models_table)


@pytest.fixture
def published(stack: Stack) -> Stack:
    """images v1 (promoted, the first) and v2 (the same images, every pixel +1: not promoted);
    model bykey v1 trained on images v1."""
    first = publish(stack, "images-1", digits.feature_set_csv(), key="image")
    assert first["feature_version"] == 1 and first["promoted"] is True
    assert first["rows"] == 1797 and first["columns"] == 65
    second = publish(stack, "images-2", digits.feature_set_csv(shift=1))
    assert second["feature_version"] == 2 and second["promoted"] is False  # auto: first only
    dataset = put(stack, "datasets/bykey/train.csv", digits.keyed_csv(TRAIN_ROWS, labels=True))
    result = train_by_key(stack, "bykey-1", dataset)
    assert result["feature_set"]["version"] == 1 and result["feature_set"]["unknown_keys"] == 0
    return stack


def test_a_publish_writes_a_snapshot_the_online_items_and_a_version(published: Stack) -> None:
    clients = published.clients()
    v1 = sets(published).get("images", 1)
    assert v1.key == "image" and v1.rows == 1797
    assert [c.type for c in v1.columns] == ["number"] * 64 + ["category"]
    # the snapshot is where the layout says, as published, and matches its recorded sha256
    assert v1.snapshot == f"s3://{published.data_bucket}/{bucket_layout.snapshot_key('images', 1)}"
    snapshot = feature_snapshots.Snapshot.read(clients.s3, v1)
    assert snapshot.rows["image-3"][:4] == ["0", "0", "7", "15"]
    # one online item per image and version, its values in the version's column order
    items = scan(clients.dynamodb, published.features_table)
    assert len(items) == 2 * 1797
    item = next(i for i in items if i["set"]["S"] == "images#2" and i["key"]["S"] == "image-3")
    assert json.loads(item["v"]["S"])[:4] == [1, 1, 8, 16]  # v2: every pixel +1, clipped at 16
    # the model version records the set it was trained with, and the columns it took
    model = Registry(clients.dynamodb, published.models_table).get("bykey", 1)
    trained = model.extra["feature_set"]
    assert (trained["name"], trained["version"], trained["key"]) == ("images", 1, "image")
    assert [c["name"] for c in trained["columns"]] == [*digits.FEATURES, "ink"]
    assert "image" not in model.features  # the key is not a feature
    # and the feature sets stay out of the models' listing
    assert [p.model for p in Registry(clients.dynamodb, published.models_table).pointers()] == [
        "bykey"
    ]


def test_the_api_serves_by_key_from_the_version_each_model_needs(
    published: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, _ = digits.digits()
    with make_client(published) as client:
        # the models page says what the model reads before any request loaded it
        before = client.get("/v1/models/bykey", headers=AUTH).json()["features"]
        assert before == {"set": "images", "version": 1, "trained_with": 1, "key": "image"}
        keys = [digits.image_key(1600), digits.image_key(1601), "image-99999"]
        answer = client.post("/v1/predict", json={"model": "bykey", "keys": keys}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["features"] == {"set": "images", "version": 1}
        first, _, unknown = body["predictions"]
        assert first["key"] == keys[0] and "label" in first and "confidence" in first
        assert unknown == {
            "key": "image-99999",
            "error": "unknown key: feature set images v1 has no 'image-99999'",
        }
        # the same answer as sending the row's features inline
        inline = {name: float(v) for name, v in zip(digits.FEATURES, x[1600], strict=True)}
        kind = feature_snapshots.Snapshot.read(
            published.clients().s3, sets(published).get("images", 1)
        )
        inline["ink"] = kind.rows[keys[0]][-1]
        by_rows = client.post(
            "/v1/predict", json={"model": "bykey", "rows": [inline]}, headers=AUTH
        ).json()
        assert by_rows["predictions"][0]["label"] == first["label"]
        assert by_rows["predictions"][0]["confidence"] == first["confidence"]

        # a poll with the set's pointer where it was reads no version record again
        server = client.app.state.services.server
        reads: list[int] = []
        original = feature_sets.FeatureSets.get
        monkeypatch.setattr(
            feature_sets.FeatureSets,
            "get",
            lambda self, name, version: reads.append(version) or original(self, name, version),
        )
        server.refresh()
        assert reads == []
        # WHEN v2 (same columns, same types) is promoted, the model reads it from the next poll
        sets(published).promote("images", 2)
        reads.clear()
        server.refresh()
        assert reads == [2]  # the newly promoted version's record, once
        health = client.get("/v1/health", headers=AUTH).json()["models"]["bykey"]
        assert health["features"] == {
            "set": "images", "version": 2, "trained_with": 1, "key": "image"
        }  # fmt: skip
        again = client.post("/v1/predict", json={"model": "bykey", "keys": keys[:1]}, headers=AUTH)
        assert again.json()["features"]["version"] == 2

        # WHEN v3 changes a column's type and is promoted, the model keeps its own version
        third = publish(published, "images-3", digits.feature_set_csv(ink_as="number"))
        assert third["promoted"] is False
        sets(published).promote("images", 3)
        client.app.state.services.server.refresh()
        health = client.get("/v1/health", headers=AUTH).json()["models"]["bykey"]
        assert health["features"]["version"] == 1
        assert health["features"]["note"] == (
            "feature set images v3 is promoted, but its 'ink' is a number, not a category: "
            "model bykey v1 keeps reading v1, the version it was trained with (train it again "
            "to take the new version)"
        )
        model = client.get("/v1/models/bykey", headers=AUTH).json()
        assert model["features"]["note"] == health["features"]["note"]
        kept = client.post("/v1/predict", json={"model": "bykey", "keys": keys[:1]}, headers=AUTH)
        assert kept.json()["features"]["version"] == 1
        assert kept.json()["predictions"][0]["label"] == first["label"]
        # the feature set's own page says which version each held model reads
        shown = client.get("/v1/features/images", headers=AUTH).json()
        assert shown["promoted"] == 3 and [v["version"] for v in shown["versions"]] == [1, 2, 3]
        assert shown["read_by"]["bykey"]["version"] == 1


def test_requests_by_key_are_refused_with_a_sentence(published: Stack) -> None:
    with make_client(published) as client:
        too_many = [f"image-{i}" for i in range(feature_binding.MAX_KEYS + 1)]
        assert (
            client.post(
                "/v1/predict", json={"model": "bykey", "keys": too_many}, headers=AUTH
            ).status_code
            == 422
        )
        empty = client.post("/v1/predict", json={"model": "bykey", "keys": [" "]}, headers=AUTH)
        assert empty.status_code == 422 and empty.json()["error"]["message"] == "a key is empty"
        neither = client.post("/v1/predict", json={"model": "bykey"}, headers=AUTH)
        assert neither.status_code == 422
        assert "send rows" in neither.json()["error"]["message"]
        mismatched = client.post(
            "/v1/predict",
            json={"model": "bykey", "keys": ["image-1"], "rows": [{}, {}]},
            headers=AUTH,
        )
        assert mismatched.status_code == 422
        # a value sent inline wins over the set's (a feature set can be partly overridden)
        inked = client.post(
            "/v1/predict",
            json={"model": "bykey", "keys": ["image-1"], "rows": [{"ink": "nonsense-ink"}]},
            headers=AUTH,
        )
        assert inked.status_code == 200
    # a model trained on inline features takes no keys
    run_job(
        published,
        {"job_id": "inline-1", "type": "train", "model": "inline",
         "dataset": put(published, "datasets/inline/t.csv", digits.training_csv(slice(0, 300)))},
    )  # fmt: skip
    with make_client(published) as client:
        refused = client.post("/v1/predict", json={"model": "inline", "keys": ["a"]}, headers=AUTH)
        assert refused.status_code == 422
        assert refused.json()["error"]["message"] == (
            "model inline v1 was trained on features sent inline, not on a feature set: send rows"
        )


def test_a_predict_job_by_key_joins_the_snapshot_and_counts_unknown_keys(
    published: Stack,
) -> None:
    text = digits.keyed_csv(slice(1500, 1600), labels=False) + "digit-x,image-nope\n"
    dataset = put(published, "datasets/bykey/score.csv", text)
    run_job(published, {"job_id": "bykey-p", "type": "predict", "model": "bykey",
                        "dataset": dataset})  # fmt: skip
    record = Ledger(published.clients().dynamodb, published.jobs_table).get("bykey-p")
    assert record is not None
    result = record["result"]
    assert result["rows"] == 100 and result["features"]["unknown_keys"] == 1
    assert result["features"]["unknown_examples"] == ["image-nope"]
    assert (result["features"]["set"], result["features"]["version"]) == ("images", 1)
    stored = [i for i in scan(published.clients().dynamodb, published.predictions_table)
              if i["model"]["S"] == "bykey"]  # fmt: skip
    assert len(stored) == 100


def test_a_retrain_over_a_folder_takes_the_promoted_feature_version(published: Stack) -> None:
    # GIVEN v2 promoted, and a new file of keys and labels in the model's folder
    sets(published).promote("images", 2)
    put(published, "datasets/bykey/more.csv", digits.keyed_csv(slice(1500, 1700), labels=True))
    # WHEN the folder is retrained (what the schedule sends), no feature set named
    run_job(published, {"job_id": "bykey-2", "type": "train", "model": "bykey",
                        "dataset": f"s3://{published.data_bucket}/datasets/bykey/"})  # fmt: skip
    # THEN the new version read the live version's set, at the version promoted now
    model = Registry(published.clients().dynamodb, published.models_table).get("bykey", 2)
    assert model.extra["feature_set"]["version"] == 2
    assert model.extra["feature_set"]["rows"] == 1700


def test_rollback_expiry_and_refusals_of_feature_versions(stack: Stack) -> None:
    small = slice(0, 50)
    publish(stack, "images-1", digits.feature_set_csv(small), key="image")
    for n in (2, 3, 4):
        publish(stack, f"images-{n}", digits.feature_set_csv(small, shift=n), promote="always")
    found = sets(stack)
    # v1 is neither promoted (4), nor the rollback target (3), nor read by a model: it expires
    v1 = found.get("images", 1)
    assert v1.expires_at is not None and found.get("images", 2).expires_at is None
    items = scan(stack.clients().dynamodb, stack.features_table)
    expiring = {i["set"]["S"] for i in items if "expires_at" in i}
    assert expiring == {"images#1"}
    with pytest.raises(RegistryError, match="marked to expire, so it cannot be promoted again"):
        found.promote("images", 1)
    # rollback returns to the version promoted before, apart from any model
    assert found.rollback("images").promoted == 3
    assert found.pointer("images").history == [1, 2]  # type: ignore[union-attr]
    with pytest.raises(RegistryError, match="no version 9"):
        found.promote("images", 9)


def test_bad_feature_tables_fail_the_job_with_what_was_wrong() -> None:
    table = "image,a,b\nx,1,2\nx,3,4\n,5,6\n"
    with pytest.raises(DatasetError) as error:
        feature_snapshots.parse_table([("s3://b/f.csv", table)], "image")
    message = str(error.value)
    assert "keys are empty" in message and "line 4" in message
    assert "'x' (s3://b/f.csv line 2, s3://b/f.csv line 3)" in message
    with pytest.raises(DatasetError, match="has no key column 'user'"):
        feature_snapshots.parse_table([("f.csv", "image,a\nx,1\n")], "user")
    with pytest.raises(DatasetError, match="other columns than"):
        feature_snapshots.parse_table(
            [("a.csv", "image,a\nx,1\n"), ("b.csv", "image,b\ny,1\n")], "image"
        )


def test_a_train_job_that_names_a_missing_or_unusable_set_fails_with_a_sentence(
    stack: Stack,
) -> None:
    dataset = put(stack, "datasets/bykey/train.csv", digits.keyed_csv(slice(0, 100), labels=True))
    for job_id, params, reason in [
        ("no-set", {"feature_set": "images"}, "feature set 'images' has no promoted version"),
        ("bad-v", {"feature_set": "images", "feature_version": "x"}, "feature_version must be"),
        ("no-name", {"feature_version": 1}, "params.feature_version needs params.feature_set"),
    ]:
        record = failed(stack, {"job_id": job_id, "type": "train", "model": "bykey",
                                "dataset": dataset, "params": params})  # fmt: skip
        assert reason in record["reason"], record["reason"]


def failed(stack: Stack, message: dict[str, Any]) -> dict[str, Any]:
    """Run one job that must fail; its ledger record."""
    clients = stack.clients()
    settings = replace(Settings.from_env("train", stack.env()), wait_seconds=1)
    body = json.dumps({"schema": 1, **message})
    clients.sqs.send_message(QueueUrl=settings.queue_url, MessageBody=body)
    Worker(settings=settings, clients=clients, handler=handle_train).process_batch()
    record = Ledger(clients.dynamodb, stack.jobs_table).get(message["job_id"])
    assert record is not None and record["status"] == "FAILED", record
    return dict(record)


def test_a_join_keeps_inline_cells_and_rows_without_a_key() -> None:
    version = feature_sets.FeatureVersion(
        name="s", version=1, key="k", columns=(), rows=2, snapshot="s3://b/k", sha256="",
        job_id="j", dataset="d", created_at=0.0,
    )  # fmt: skip
    snapshot = feature_snapshots.Snapshot(
        version, ["a", "b"], {"1": ["10", "20"], "2": ["11", "21"]}
    )
    text = "k,a,label\n1,,x\n2,99,y\n,5,z\n3,1,w\n"
    joined = feature_snapshots.join(text, "t.csv", snapshot, keep_key=False)
    assert joined.text == "a,label,b\n10,x,20\n99,y,21\n5,z,\n"
    assert (joined.rows, joined.unmatched, joined.examples) == (3, 1, ["3"])
    with pytest.raises(DatasetError, match="none of the 1 rows"):
        feature_snapshots.join("k,label\n9,x\n", "t.csv", snapshot, keep_key=False)


class FakeDynamo:
    """BatchGetItem that leaves the first ``throttled`` calls' keys unprocessed."""

    def __init__(self, items: dict[str, list[Any]], throttled: int = 0) -> None:
        self.items, self.throttled = items, throttled
        self.calls: list[dict[str, Any]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(RequestItems)
        ((table, request),) = RequestItems.items()
        if len(self.calls) <= self.throttled:
            return {"Responses": {table: []}, "UnprocessedKeys": RequestItems}
        found = [
            {**k, "v": {"S": json.dumps(self.items[k["key"]["S"]])}}
            for k in request["Keys"]
            if k["key"]["S"] in self.items
        ]
        return {"Responses": {table: found}, "UnprocessedKeys": {}}


BOUND = feature_binding.Binding(
    name="s", version=2, trained=1, key="k", names=("b", "a"), positions=(1, 0)
)


def pairs(*keys: str) -> list[tuple[str, str]]:
    return [(BOUND.partition, k) for k in keys]


def test_a_fetch_is_one_batch_get_and_a_binding_takes_the_models_columns() -> None:
    fake = FakeDynamo({"x": [1, 2], "y": [3, None]})
    found = feature_binding.fetch(fake, "t", pairs("x", "y", "x", "nope"), sleep=lambda _: None)
    # one call, each key asked once, from the version's partition; unknown keys absent
    assert len(fake.calls) == 1
    assert [k["key"]["S"] for k in fake.calls[0]["t"]["Keys"]] == ["x", "y", "nope"]
    assert {k["set"]["S"] for k in fake.calls[0]["t"]["Keys"]} == {"s#2"}
    assert found == {("s#2", "x"): [1, 2], ("s#2", "y"): [3, None]}
    assert BOUND.take(found["s#2", "y"]) == [None, 3]  # the model's order (b, a)


def test_a_throttled_fetch_retries_the_unprocessed_keys_then_gives_up() -> None:
    slept: list[float] = []
    fake = FakeDynamo({"x": [1, 2]}, throttled=1)
    assert feature_binding.fetch(fake, "t", pairs("x"), sleep=slept.append) == {
        ("s#2", "x"): [1, 2]
    }
    assert len(fake.calls) == 2 and len(slept) == 1
    always = FakeDynamo({"x": [1, 2]}, throttled=99)
    with pytest.raises(TransientError, match="unprocessed 4 times"):
        feature_binding.fetch(always, "t", pairs("x"), sleep=lambda _: None)
    with pytest.raises(ValueError, match="at most 100 keys"):
        feature_binding.fetch(fake, "t", pairs(*(str(i) for i in range(101))))


def test_concurrent_lookups_share_one_batch_get_while_one_is_in_flight() -> None:
    fake = FakeDynamo({f"k{i}": [i, -i] for i in range(200)})
    lookups = Lookups(fake, "t")
    in_flight = threading.Event()

    def held(*args: Any) -> dict[tuple[str, str], list[Any]]:
        in_flight.wait(10)  # the first call stays in flight until the others have arrived
        return feature_binding.fetch(*args)

    lookups.fetch = held
    other = feature_binding.Binding(
        name="o", version=1, trained=1, key="k", names=("a",), positions=(0,)
    )

    async def run() -> list[dict[str, list[Any]]]:
        first = asyncio.create_task(lookups.get(BOUND, ["k0"]))
        while not lookups.calls:  # its call has started
            await asyncio.sleep(0.001)
        # seven more requests meanwhile, of two feature set versions, one with an unknown key
        rest = [asyncio.create_task(lookups.get(BOUND, [f"k{i}", "nope"])) for i in range(1, 7)]
        rest.append(asyncio.create_task(lookups.get(other, ["k9"])))
        await asyncio.sleep(0.01)
        in_flight.set()
        return await asyncio.gather(first, *rest)

    answers = asyncio.run(run())
    # THEN the first went alone, and the seven that came while it was in flight went together
    assert lookups.calls == len(fake.calls) == 2
    assert [len(c["t"]["Keys"]) for c in fake.calls] == [1, 8]
    # each request got its own keys, in its model's column order; unknown keys are absent
    assert answers[0] == {"k0": [0, 0]} and answers[3] == {"k3": [-3, 3]}
    assert answers[7] == {"k9": [9]}


def test_coalesced_lookups_stay_within_100_keys_a_call_and_share_an_error() -> None:
    fake = FakeDynamo({f"k{i}": [i, i] for i in range(300)})
    lookups = Lookups(fake, "t")

    async def run() -> list[dict[str, list[Any]]]:
        asked = [
            lookups.get(BOUND, [f"k{j}" for j in range(i * 60, i * 60 + 60)]) for i in range(4)
        ]
        return await asyncio.gather(*asked)

    answers = asyncio.run(run())
    assert [len(c["t"]["Keys"]) for c in fake.calls] == [60, 60, 60, 60]  # 120 > 100: apart
    assert all(len(a) == 60 for a in answers)
    throttled = Lookups(FakeDynamo({}, throttled=99), "t")
    throttled.fetch = lambda *a: feature_binding.fetch(*a, sleep=lambda _: None)

    async def refused() -> list[Any]:
        return await asyncio.gather(
            throttled.get(BOUND, ["a"]), throttled.get(BOUND, ["b"]), return_exceptions=True
        )

    assert all(isinstance(e, TransientError) for e in asyncio.run(refused()))

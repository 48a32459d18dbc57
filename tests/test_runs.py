"""Run records (mlpoc.models.runs): what each train job leaves beside its artifact — per-class
scores and the confusion matrix, the data's identity, the drift reference — and `mlpoc models
compare` putting two versions side by side."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import numpy as np
import pytest
import typer
from rich.console import Console

from mlpoc.cli import ops, render
from mlpoc.cli.operator_commands import version_number
from mlpoc.data import digits
from mlpoc.errors import RegistryError, TargetError
from mlpoc.models import runs
from mlpoc.models.inference import Predictions
from mlpoc.models.registry import ModelVersion, Registry
from tests.support.aws_stack import Stack
from tests.test_cli_ops import deployment
from tests.test_promotion import train

# -- the record's parts --------------------------------------------------------------------------


def test_per_class_scores_and_the_confusion_matrix_count_each_row_once() -> None:
    truth = np.array(["a", "a", "a", "b", "b", "c"], dtype=object)
    predicted = ["a", "a", "b", "b", "c", "c"]
    found = runs.classification(predicted, truth)
    assert found["confusion"] == {
        "labels": ["a", "b", "c"],
        "matrix": [[2, 1, 0], [0, 1, 1], [0, 0, 1]],  # rows: the truth; columns: the prediction
    }
    assert found["per_class"]["a"] == {
        "precision": 1.0,
        "recall": 0.666667,
        "f1": 0.8,
        "support": 3,
    }
    assert found["per_class"]["b"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    # a label predicted but never true: a column of its own, precision 0, support 0
    found = runs.classification(["a", "z"], np.array(["a", "a"], dtype=object))
    assert found["confusion"]["matrix"] == [[1, 1], [0, 0]]
    assert found["per_class"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_residuals_are_prediction_minus_truth() -> None:
    found = runs.regression(np.array([1.0, 2.0, 5.0]), np.array([1.0, 3.0, 2.0]))["residuals"]
    assert found["mean"] == pytest.approx(2 / 3, abs=1e-6)
    assert found["max_abs"] == 3.0
    assert found["quantiles"]["p50"] == 0.0


def test_a_numeric_profile_bins_by_the_training_deciles_and_counts_the_missing() -> None:
    values = np.array([*range(100), np.nan, np.nan], dtype=np.float64)
    found = runs.numeric_profile(values)
    assert len(found["edges"]) == 9 and found["edges"] == sorted(found["edges"])
    assert sum(found["shares"]) == pytest.approx(1.0)
    assert all(s == pytest.approx(0.1) for s in found["shares"])
    assert found["missing"] == pytest.approx(2 / 102, abs=1e-6)
    # later data in the reference's bins: everything above the last edge lands in the last bin
    later = runs.numeric_profile(np.full(10, 1000.0), found["edges"])
    assert later["shares"] == [0.0] * 9 + [1.0] and later["missing"] == 0.0
    # a constant column has one edge, two bins, and nothing is lost
    assert runs.numeric_profile(np.ones(5))["shares"] == [0.0, 1.0]


def test_a_category_profile_keeps_the_most_frequent_and_the_rest_as_other() -> None:
    values = np.array(["x"] * 6 + ["y"] * 3 + ["z"] + [""] * 2, dtype=object)
    found = runs.category_profile(values)
    assert found["shares"] == {"x": 0.6, "y": 0.3, "z": 0.1, runs.OTHER: 0.0}
    assert found["missing"] == pytest.approx(2 / 12, abs=1e-6)
    # later data against the reference's categories: an unseen one counts as other
    later = runs.category_profile(np.array(["x", "w"], dtype=object), ["x", "y", "z"])
    assert later["shares"] == {"x": 0.5, "y": 0.0, "z": 0.0, runs.OTHER: 0.5}
    many = np.array([f"c{i:03d}" for i in range(runs.MOST_CATEGORIES + 10)], dtype=object)
    assert len(runs.category_profile(many)["shares"]) == runs.MOST_CATEGORIES + 1


def test_the_output_profile_follows_the_task() -> None:
    classified = Predictions(labels=["a", "b"], confidence=np.array([0.95, 0.55], np.float32))
    found = runs.output_profile(classified)
    assert found["confidence"]["edges"] == runs.CONFIDENCE_EDGES
    assert found["confidence"]["shares"][9] == 0.5 and found["confidence"]["shares"][5] == 0.5
    assert found["label"]["shares"] == {"a": 0.5, "b": 0.5, runs.OTHER: 0.0}
    values = Predictions(labels=["1.0"], confidence=None, values=np.array([1.0]))
    assert set(runs.output_profile(values)) == {"value"}


def test_the_data_identity_is_the_hash_of_what_was_read() -> None:
    found = runs.DataIdentity.of("s3://b/k.csv", "a,b\n1,2\n", "v1")
    assert found.to_json() == {
        "uri": "s3://b/k.csv",
        "sha256": hashlib.sha256(b"a,b\n1,2\n").hexdigest(),
        "version_id": "v1",
    }


# -- written by a train job ----------------------------------------------------------------------


def metadata(stack: Stack, version: ModelVersion) -> dict[str, Any]:
    body = stack.clients().s3.get_object(Bucket=stack.model_bucket, Key=version.metadata_key)
    found: dict[str, Any] = json.loads(body["Body"].read())
    return found


def test_each_version_leaves_a_run_record_and_compare_shows_what_changed(stack: Stack) -> None:
    first_text = digits.training_csv(slice(0, 600))
    train(stack, "v1", first_text, estimator="logistic_regression", C=0.001)
    train(stack, "v2", digits.training_csv(slice(0, 900)), estimator="logistic_regression")
    registry = Registry(stack.clients().dynamodb, stack.models_table)
    v1, v2 = registry.get("digits", 1), registry.get("digits", 2)
    # THEN the record is beside the artifact, and the registry item points at it
    record = metadata(stack, v1)["run"]
    assert v1.extra["run"] == {"record": v1.metadata_key, "data_sha256": record["data"]["sha256"]}
    assert record["data"]["sha256"] == hashlib.sha256(first_text.encode()).hexdigest()
    assert record["data"]["version_id"]  # the data bucket is versioned: which object version
    assert record["data"]["rows"] == 600
    # the evaluation is the held-out rows', and agrees with the recorded accuracy
    matrix = np.array(record["evaluation"]["confusion"]["matrix"])
    assert record["evaluation"]["confusion"]["labels"] == [str(d) for d in range(10)]
    assert matrix.sum() == v1.extra["test_rows"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(v1.metrics["accuracy"], abs=1e-6)
    assert sum(c["support"] for c in record["evaluation"]["per_class"].values()) == matrix.sum()
    # the drift reference: every feature of the schema, and the predictions' confidence
    features = record["profile"]["features"]
    assert sorted(features) == sorted(v1.features) and len(features) == 64
    assert all(sum(f["shares"]) == pytest.approx(1.0, abs=1e-5) for f in features.values())
    assert sum(record["profile"]["output"]["confidence"]["shares"]) == pytest.approx(1.0, abs=1e-5)
    # WHEN the two versions are compared
    shown = shown_table(
        render.compare_table("digits", *ops.runs(deployment(stack), "digits", [1, 2]))
    )
    assert "digits: v1 vs v2" in shown
    gain = v2.metrics["accuracy"] - v1.metrics["accuracy"]
    scores = rf"{v1.metrics['accuracy']:.4f}\s+│ {v2.metrics['accuracy']:.4f}"
    assert re.search(rf"held-out accuracy\s+│ {scores}\s+│ \{gain:+.4f} better", shown)
    assert re.search(r"│   C\s+│ 0\.001\s+│\s+│ differs", shown)  # the parameter that differs
    assert "F1 of class" in shown
    assert f"accuracy on the same {v2.extra['compared']['rows']} rows" in shown
    assert "decided the promotion" in shown


def test_compare_says_when_a_version_has_no_run_record(stack: Stack) -> None:
    train(stack, "v1", digits.training_csv(slice(0, 300)), estimator="logistic_regression")
    train(stack, "v2", digits.training_csv(slice(0, 300)), estimator="logistic_regression")
    first, second = ops.runs(deployment(stack), "digits", [1, 2])
    older = ops.Run(first.version, {k: v for k, v in first.metadata.items() if k != "run"})
    shown = shown_table(render.compare_table("digits", older, second))
    assert re.search(r"│ v1\s+│ no run record: trained before runs were recorded", shown)
    assert "F1 of class" not in shown  # nothing to compare per class


def test_a_version_is_a_number_or_v_and_a_number(capsys: pytest.CaptureFixture[str]) -> None:
    assert version_number("3") == 3 and version_number("v12") == 12
    for wrong in ("0", "v", "x3", "-1"):
        with pytest.raises(typer.Exit) as refused:
            version_number(wrong)
        assert refused.value.exit_code == 2
        assert f"a version is a number such as 3 or v3, not '{wrong}'" in capsys.readouterr().err


def shown_table(table: Any) -> str:
    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


def test_compare_names_a_version_whose_record_is_gone(stack: Stack) -> None:
    train(stack, "v1", digits.training_csv(slice(0, 300)), estimator="logistic_regression")
    version = Registry(stack.clients().dynamodb, stack.models_table).get("digits", 1)
    stack.clients().s3.delete_object(Bucket=stack.model_bucket, Key=version.metadata_key)
    with pytest.raises(TargetError, match=r"digits v1: its metadata s3://.* is gone"):
        ops.runs(deployment(stack), "digits", [1])
    with pytest.raises(RegistryError, match="no version 7"):
        ops.runs(deployment(stack), "digits", [7])

"""The promotion decision, without AWS: a model's metrics from its own predictions, a plugin's
graph run as the API will run it, the candidate and the live version scored on the held-out rows
they share (or why they were not), and whether the candidate replaces the live version under
``params.promote`` and ``params.min_improvement``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper

from mlpoc import plugins
from mlpoc.data.datasets import TrainingSet
from mlpoc.data.held_out import Split
from mlpoc.errors import ArtifactError
from mlpoc.models.inference import OnnxModel, Predictions, evaluate, score
from mlpoc.models.registry import ModelVersion, Pointer
from mlpoc.schema import CATEGORY, NUMBER, REGRESSION, Column, Schema
from mlpoc.worker import promotion
from mlpoc.worker.promotion import Comparison, compare, run_as_served, should_promote

SCHEMA = Schema(columns=(Column("a", NUMBER),))


def version(number: int = 1, schema: Schema = SCHEMA, **extra: Any) -> ModelVersion:
    return ModelVersion(
        model="m",
        version=number,
        sha256="",
        artifact_key=f"m/v{number}.onnx",
        metadata_key="",
        features=schema.features,
        classes=["neg", "pos"],
        metrics={},
        job_id="j",
        dataset="d.csv",
        plugin="p",
        created_at=0.0,
        extra={"schema": schema.to_json(), **extra},
    )


def table(a: list[float], y: list[Any], schema: Schema = SCHEMA) -> TrainingSet:
    return TrainingSet(
        schema=schema,
        columns={"a": np.array(a, dtype=np.float32)},
        y=np.array(y, dtype=np.float64 if schema.task == REGRESSION else object),
        keys=[f"k{i}" for i in range(len(a))],
    )


class Rule:
    """A stand-in model: labels (or values) from the column ``a``, each call's rows recorded."""

    def __init__(self, rule: Callable[[float], Any], schema: Schema = SCHEMA) -> None:
        self.rule = rule
        self.schema = schema
        self.seen: list[list[float]] = []

    def predict(self, columns: Mapping[str, np.ndarray]) -> Predictions:
        a = [float(v) for v in columns["a"]]
        self.seen.append(a)
        if self.schema.task == REGRESSION:
            values = np.array([self.rule(v) for v in a], dtype=np.float64)
            return Predictions(labels=[str(v) for v in values], confidence=None, values=values)
        labels = [self.rule(v) for v in a]
        return Predictions(labels=labels, confidence=np.ones(len(a), dtype=np.float32))


class Crashes:
    schema = SCHEMA

    def predict(self, columns: Mapping[str, np.ndarray]) -> Predictions:
        raise RuntimeError("boom")


def sign(value: float) -> str:
    return "pos" if value > 0 else "neg"


# -- score and evaluate -------------------------------------------------------------------------
def test_a_classifier_is_scored_on_its_labels_against_the_rows_truth() -> None:
    rows = table([1, -1, 2, -2], ["pos", "neg", "neg", "neg"])
    model = Rule(sign)
    scored, predictions = evaluate(model, rows)  # type: ignore[arg-type]
    assert scored == {"accuracy": 0.75, "macro_f1": round((2 / 3 + 0.8) / 2, 6)}
    assert predictions.labels == ["pos", "neg", "pos", "neg"] and predictions.values is None
    assert model.seen == [[1.0, -1.0, 2.0, -2.0]]  # the rows' own columns
    assert score(model, rows) == scored  # type: ignore[arg-type]


def test_a_regression_is_scored_on_its_values() -> None:
    schema = Schema(columns=SCHEMA.columns, task=REGRESSION)
    rows = table([1, 2, 5], [1.0, 3.0, 3.0], schema)
    scored, predictions = evaluate(Rule(lambda a: a, schema), rows)  # type: ignore[arg-type]
    assert scored == {"rmse": round(np.sqrt(5 / 3), 6), "mae": 1.0, "r2": round(1 - 5 / (8 / 3), 6)}
    assert predictions.values is not None and predictions.values.tolist() == [1.0, 2.0, 5.0]
    assert score(Rule(lambda a: a + 1, schema), rows)["mae"] == round(4 / 3, 6)  # type: ignore[arg-type]


# -- run_as_served: the plugin's graph in onnxruntime ------------------------------------------
def graph(output: str = "probabilities") -> bytes:
    """A two-class graph of one float input ``a``: [a, -a], so ``neg`` when a > 0."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 1])
    out = helper.make_tensor_value_info(output, TensorProto.FLOAT, [None, 2])
    nodes = [
        helper.make_node("Neg", ["a"], ["minus"]),
        helper.make_node("Concat", ["a", "minus"], [output], axis=1),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [a], [out]), opset_imports=[helper.make_opsetid("", 13)]
    )
    model.ir_version = 8
    return model.SerializeToString()


PLUGIN = plugins.Plugin(name="tiny", train=lambda *_: None, libraries=())  # type: ignore[arg-type,return-value]


def test_the_candidate_runs_as_the_api_will_run_it() -> None:
    live = version(4)
    held_out = table([3, -3, -1], ["neg", "pos", "neg"])
    served, scored, predictions = run_as_served(
        PLUGIN, plugins.ExportedModel(graph(), ["neg", "pos"]), live, held_out
    )
    assert isinstance(served, OnnxModel) and served.version is live
    assert predictions.labels == ["neg", "pos", "pos"]
    assert scored["accuracy"] == round(2 / 3, 6)


def test_a_graph_that_breaks_the_contract_fails_the_job_naming_the_plugin() -> None:
    held_out = table([1], ["neg"])
    with pytest.raises(plugins.PluginCrashed) as crashed:
        run_as_served(PLUGIN, plugins.ExportedModel(b"not a graph"), version(4), held_out)
    message = str(crashed.value)
    assert message.startswith(
        "the ONNX model of the plugin 'tiny', run by onnxruntime, raised ArtifactError: "
        "model m v4 is not a loadable ONNX graph"
    )
    assert message.endswith("fix it, then send the job again")


def test_a_graph_that_fails_on_the_held_out_rows_fails_the_job() -> None:
    other = Schema(columns=(Column("a", CATEGORY, ("x",)),))
    rows = TrainingSet(
        schema=other, columns={"a": np.array(["x"], dtype=object)}, y=np.array(["neg"]), keys=["k"]
    )
    with pytest.raises(plugins.PluginCrashed, match=r"^the ONNX model of the plugin 'tiny', run"):
        run_as_served(PLUGIN, plugins.ExportedModel(graph()), version(4), rows)


# -- compare: both versions on the same held-out rows ------------------------------------------
class Loader:
    """``inference.load`` standing in: the live version's model, or an error."""

    def __init__(self, model: Any = None, error: Exception | None = None) -> None:
        self.model, self.error = model, error
        self.calls: list[tuple[Any, str, ModelVersion]] = []

    def __call__(self, s3: Any, bucket: str, live: ModelVersion) -> Any:
        self.calls.append((s3, bucket, live))
        if self.error is not None:
            raise self.error
        return self.model


S3 = object()
CTX = SimpleNamespace(
    clients=SimpleNamespace(s3=S3), settings=SimpleNamespace(model_bucket="models")
)


def held(a: list[float], y: list[str], shares: list[float]) -> Split:
    rows = table(a, y)
    return Split(train=rows, test=rows, shares=np.array(shares))


def run(
    monkeypatch: pytest.MonkeyPatch,
    live: ModelVersion,
    candidate: Any,
    split: Split,
    loader: Loader,
    *,
    metric: str = "accuracy",
) -> Comparison:
    monkeypatch.setattr(promotion.inference, "load", loader)
    return compare(CTX, live, candidate, split, metric)  # type: ignore[arg-type]


def test_both_are_scored_on_the_rows_under_the_live_versions_own_test_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live = version(3, held_out={"share": 0.2})
    served = Rule(lambda a: "pos")
    loader = Loader(served)
    candidate = Rule(sign)
    # the row at exactly 0.2 and the one over it were the live version's training rows
    split = held([1, -1, 2, -2], ["pos", "neg", "pos", "pos"], [0.1, 0.15, 0.2, 0.3])
    compared = run(monkeypatch, live, candidate, split, loader)
    assert compared == Comparison(3, "accuracy", rows=2, candidate=1.0, live_score=0.5)
    assert served.seen == [[1.0, -1.0]] and candidate.seen == [[1.0, -1.0]]
    assert loader.calls == [(S3, "models", live)]
    assert run(monkeypatch, live, candidate, split, loader, metric="macro_f1").candidate == 1.0
    assert run(monkeypatch, live, candidate, split, loader, metric="macro_f1").live_score == round(
        2 / 3 / 2, 6
    )


@pytest.mark.parametrize("extra", [{}, {"held_out": None}, {"held_out": {"test_size": 0.2}}])
def test_a_live_version_trained_on_a_random_split_meets_every_held_out_row(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any]
) -> None:
    split = held([1, -1, 2], ["pos", "neg", "neg"], [0.1, 0.5, 0.9])
    compared = run(
        monkeypatch, version(2, **extra), Rule(sign), split, Loader(Rule(lambda a: "neg"))
    )
    assert compared == Comparison(
        2, "accuracy", rows=3, candidate=round(2 / 3, 6), live_score=round(2 / 3, 6)
    )


def test_no_rows_in_common_is_not_a_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    loader = Loader(Rule(sign))
    split = held([1, -1], ["pos", "neg"], [0.3, 0.1])
    compared = run(monkeypatch, version(2, held_out={"share": 0.1}), Rule(sign), split, loader)
    assert compared == Comparison(2, "accuracy", why_not="no held-out rows in common")
    assert loader.calls == []  # the live version is not even downloaded


def test_a_live_version_that_cannot_take_the_candidates_table_is_not_compared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loader = Loader(Rule(sign))
    live = version(5, Schema(columns=(Column("a", NUMBER), Column("b", NUMBER))))
    compared = run(monkeypatch, live, Rule(sign), held([1], ["pos"], [0.0]), loader)
    assert compared == Comparison(5, "accuracy", why_not="v5: it needs the column 'b'")
    assert compared.to_json() == {
        "live": 5,
        "metric": "accuracy",
        "not_compared": "v5: it needs the column 'b'",
    }
    assert loader.calls == []


def test_a_live_artifact_at_fault_is_the_reason_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loader = Loader(error=ArtifactError("model m v2: sha256 mismatch"))
    compared = run(monkeypatch, version(2), Rule(sign), held([1], ["pos"], [0.0]), loader)
    assert compared == Comparison(2, "accuracy", why_not="model m v2: sha256 mismatch")


def test_s3s_own_errors_propagate_so_the_job_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    loader = Loader(error=ConnectionError("throttled"))
    with pytest.raises(ConnectionError, match="throttled"):
        run(monkeypatch, version(2), Rule(sign), held([1], ["pos"], [0.0]), loader)


def test_a_live_graph_that_fails_on_the_rows_is_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    compared = run(
        monkeypatch, version(7), Rule(sign), held([1], ["pos"], [0.0]), Loader(Crashes())
    )
    assert compared == Comparison(7, "accuracy", why_not="v7 failed on these rows: boom")


def test_a_comparison_records_both_scores_and_the_rows() -> None:
    compared = Comparison(3, "rmse", rows=40, candidate=1.5, live_score=2.0)
    assert compared.to_json() == {
        "live": 3,
        "metric": "rmse",
        "rows": 40,
        "candidate": 1.5,
        "live_score": 2.0,
    }
    assert Comparison(3, "rmse") == Comparison(3, "rmse", 0, None, None, None)


# -- should_promote: the policy -----------------------------------------------------------------
LIVE = Pointer(model="m", promoted=1, promoted_metric=0.99, history=[1], next_version=2)
NOTHING_LIVE = Pointer(model="m", promoted=None, promoted_metric=None, history=[], next_version=1)


def comparison(candidate: float | None, live: float | None, metric: str = "accuracy") -> Comparison:
    return Comparison(1, metric, rows=10, candidate=candidate, live_score=live)


@pytest.mark.parametrize(
    ("mode", "pointer", "compared", "least", "promoted"),
    [
        ("never", None, None, 0.0, False),
        ("never", LIVE, comparison(1.0, 0.0), 0.0, False),
        ("always", LIVE, None, 0.0, True),
        ("always", LIVE, comparison(0.0, 1.0), 0.0, True),
        ("auto", None, None, 0.0, True),  # nothing live: the first version goes live
        ("auto", NOTHING_LIVE, None, 0.0, True),
        ("auto", LIVE, None, 0.0, False),  # not compared: the live version stays
        ("auto", LIVE, Comparison(1, "accuracy", why_not="needs 'a'"), 0.0, False),
        ("auto", LIVE, comparison(None, 0.5), 0.0, False),
        ("auto", LIVE, comparison(0.9, None), 0.0, False),
        ("auto", LIVE, comparison(0.91, 0.9), 0.0, True),
        ("auto", LIVE, comparison(0.9, 0.9), 0.0, False),  # a tie keeps the live version
        ("auto", LIVE, comparison(0.9, 0.91), 0.0, False),
        ("auto", LIVE, comparison(0.95, 0.9), 0.04, True),
        ("auto", LIVE, comparison(0.95, 0.9), 0.06, False),  # better, but not by enough
        ("auto", LIVE, comparison(3.0, 3.5, "rmse"), 0.4, True),  # rmse: lower is better
        ("auto", LIVE, comparison(3.0, 3.5, "rmse"), 0.5, False),
        ("auto", LIVE, comparison(3.5, 3.0, "rmse"), 0.0, False),
    ],
)
def test_the_promotion_policy(
    mode: str, pointer: Pointer | None, compared: Comparison | None, least: float, promoted: bool
) -> None:
    assert should_promote(mode, pointer, compared, least) is promoted


def test_any_improvement_is_enough_by_default() -> None:
    assert should_promote("auto", LIVE, comparison(0.5, 0.1)) is True
    assert should_promote("auto", LIVE, comparison(0.1, 0.1)) is False

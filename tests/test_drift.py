"""Fast unit tests of mlpoc.quality.monitoring, alone (the mutation run's tests of the module).

Exact PSI values on small hand-computed distributions (an empty bin as EPSILON, the missing
values as the last bin, an unseen category as "(other)"), the chart's bins, the monitor job's
thresholds and the sentence that refuses a bad one, the minimum row count and the drift share
at their exact boundaries, realized accuracy per version and day, and the alert sentences.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from mlpoc.models.inference import Predictions
from mlpoc.models.registry import ModelVersion
from mlpoc.quality import monitoring
from mlpoc.quality.monitoring import Thresholds

LN2 = math.log(2)
LN3_2 = math.log(1.5)
# (0.75 - 0.5) ln(0.75/0.5) + (0.25 - 0.5) ln(0.25/0.5) = 0.25 ln 3
PSI_75_25 = 0.25 * math.log(3)

# -- the module's documented defaults ----------------------------------------------------------


def test_the_defaults_are_the_documented_ones() -> None:
    assert monitoring.PSI_DRIFT == 0.2
    assert monitoring.DRIFT_SHARE == 0.3
    assert monitoring.MIN_ROWS == 100
    assert monitoring.MIN_REVIEWED == 20
    assert monitoring.EPSILON == 1e-4
    assert monitoring.DIGITS == 4
    assert monitoring.MISSING_BIN == "missing"
    assert Thresholds() == Thresholds(psi=0.2, share=0.3, min_realized=None)
    assert Thresholds().to_json() == {"psi": 0.2, "share": 0.3, "min_realized": None}
    assert Thresholds(0.5, 0.6, 0.7).to_json() == {"psi": 0.5, "share": 0.6, "min_realized": 0.7}


# -- PSI ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "recent", "expected"),
    [
        ([0.5, 0.5], [0.5, 0.5], 0.0),
        # 0.4 ln(0.9/0.5) - 0.4 ln(0.1/0.5) = 0.4 ln 9
        ([0.5, 0.5], [0.9, 0.1], 0.4 * math.log(9)),
        ([0.5, 0.5], [0.75, 0.25], PSI_75_25),
        # symmetric in its two distributions
        ([0.75, 0.25], [0.5, 0.5], PSI_75_25),
        # three bins: 0.1 ln(0.3/0.2) + 0 - 0.1 ln(0.4/0.5) = 0.1 ln 1.875
        ([0.2, 0.3, 0.5], [0.3, 0.3, 0.4], 0.1 * math.log(1.875)),
        # integers are shares too
        ([1, 0], [1, 0], 0.0),
    ],
)
def test_psi_of_hand_computed_distributions(
    reference: list[float], recent: list[float], expected: float
) -> None:
    found = monitoring.psi(reference, recent)
    assert isinstance(found, float)
    assert found == pytest.approx(expected, abs=1e-12)


def test_an_empty_bin_counts_as_epsilon() -> None:
    # (1e-4 - 1) ln(1e-4 / 1) + (1 - 1e-4) ln(1 / 1e-4) = 2 (1 - 1e-4) ln 1e4
    expected = 2 * (1 - 1e-4) * math.log(1e4)
    assert monitoring.psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(expected, abs=1e-9)
    assert monitoring.psi(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(expected)
    # float32 shares (a classifier's confidence is float32) are worked in float64: the empty
    # bin is exactly 1e-4, not float32's nearest to it
    reference32, recent32 = np.array([1, 0], np.float32), np.array([0, 1], np.float32)
    assert monitoring.psi(reference32, recent32) == pytest.approx(expected, rel=1e-12)
    assert monitoring.psi(reference32, [0.0, 1.0]) == pytest.approx(expected, rel=1e-12)
    assert monitoring.psi([1.0, 0.0], recent32) == pytest.approx(expected, rel=1e-12)
    # a negative share is clipped up to EPSILON too; a share over 1 is kept as it is
    assert monitoring.psi([-1.0, 1.0], [0.0, 1.0]) == 0.0
    assert monitoring.psi([2.0, 1.0], [1.0, 1.0]) == pytest.approx(math.log(2), abs=1e-12)


@pytest.mark.parametrize(
    ("reference", "recent", "sentence"),
    [
        ([1.0], [0.5, 0.5], "PSI needs the same bins: (1,) and (2,)"),
        ([0.2, 0.3, 0.5], [1.0], "PSI needs the same bins: (3,) and (1,)"),
    ],
)
def test_psi_refuses_different_bins(
    reference: list[float], recent: list[float], sentence: str
) -> None:
    with pytest.raises(ValueError) as raised:
        monitoring.psi(reference, recent)
    assert str(raised.value) == sentence


# -- one column's drift ------------------------------------------------------------------------


def test_shares_of_all_rows_scale_the_filled_shares_and_end_with_the_missing_one() -> None:
    profile = {"shares": {"a": 0.5, "b": 0.25, "(other)": 0.25}, "missing": 0.2}
    listed = {"shares": [0.5, 0.25, 0.25], "missing": 0.2}
    assert monitoring._with_missing(listed) == pytest.approx([0.4, 0.2, 0.2, 0.2])
    # by the given keys, in their order; a key the profile lacks has no rows
    keyed = monitoring._with_missing(profile, ["b", "zzz", "a"])
    assert keyed == pytest.approx([0.2, 0.0, 0.4, 0.2])
    numbers = {"shares": [0.5, 0.5], "missing": "0.5"}
    assert monitoring._with_missing(numbers) == [0.25, 0.25, 0.5]
    assert monitoring._with_missing({"shares": [1], "missing": 0}) == [1.0, 0.0]


@pytest.mark.parametrize(
    ("edges", "bins"),
    [
        ([], ["all", "missing"]),
        ([3.0], ["< 3", "≥ 3", "missing"]),
        ([0.5, 2.25, 1e6], ["< 0.5", "0.5 to 2.25", "2.25 to 1e+06", "≥ 1e+06", "missing"]),
    ],
)
def test_the_bins_of_a_number_are_named_by_their_edges(edges: list[float], bins: list[str]) -> None:
    assert monitoring._number_bins(edges) == bins


NUMBER_REF: dict[str, Any] = {
    "type": "number",
    "edges": [0.0, 10.0],
    "shares": [0.25, 0.5, 0.25],
    "missing": 0.0,
}


def test_a_number_is_binned_at_its_reference_edges() -> None:
    same = monitoring.distribution_drift(NUMBER_REF, np.array([-1.0, 5.0, 5.0, 20.0]))
    assert same == {
        "psi": 0.0,
        "bins": ["< 0", "0 to 10", "≥ 10", "missing"],
        "reference": [0.25, 0.5, 0.25, 0.0],
        "recent": [0.25, 0.5, 0.25, 0.0],
    }
    # twice as many below the first edge, half as many between: 0.25 ln 2 + 0.25 ln 2
    moved = monitoring.distribution_drift(NUMBER_REF, np.array([-1.0, -2.0, 5.0, 20.0]))
    assert moved["recent"] == [0.5, 0.25, 0.25, 0.0]
    assert moved["psi"] == round(0.5 * LN2, 4) == 0.3466


def test_missing_numbers_are_a_bin_of_their_own() -> None:
    found = monitoring.distribution_drift(
        NUMBER_REF, np.array([-1.0, 5.0, 5.0, 20.0, np.nan, np.nan, np.nan, np.nan])
    )
    assert found["recent"] == [0.125, 0.25, 0.125, 0.5]
    # halves of the three bins: 3 x (-x/2) ln(1/2), then (0.5 - 1e-4) ln(0.5 / 1e-4)
    expected = 0.5 * LN2 + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert found["psi"] == round(expected, 4) == 4.6043


def test_a_number_without_edges_is_one_bin_and_its_missing_share() -> None:
    ref = {"type": "number", "edges": [], "shares": [1.0], "missing": 0.5}
    found = monitoring.distribution_drift(ref, [1.0, 2.0, 3.0, np.nan])
    assert found["bins"] == ["all", "missing"]
    assert found["reference"] == [0.5, 0.5]
    assert found["recent"] == [0.75, 0.25]
    assert found["psi"] == round(PSI_75_25, 4) == 0.2747


CATEGORY_REF: dict[str, Any] = {
    "type": "category",
    "shares": {"a": 0.5, "b": 0.5, "(other)": 0.0},
    "missing": 0.0,
}


def test_a_category_drifts_by_its_shares_rounded_to_four_digits() -> None:
    found = monitoring.distribution_drift(CATEGORY_REF, np.array(["a", "a", "a", "b"], object))
    assert found == {
        "psi": 0.2747,  # 0.25 ln 3 = 0.274653...
        "bins": ["a", "b", "(other)", "missing"],
        "reference": [0.5, 0.5, 0.0, 0.0],
        "recent": [0.75, 0.25, 0.0, 0.0],
    }
    same = monitoring.distribution_drift(CATEGORY_REF, ["b", "a"])
    assert same["psi"] == 0.0 and same["recent"] == [0.5, 0.5, 0.0, 0.0]


def test_an_unseen_category_counts_as_other() -> None:
    found = monitoring.distribution_drift(CATEGORY_REF, np.array(["a", "new"], object))
    assert found["bins"] == ["a", "b", "(other)", "missing"]
    assert found["recent"] == [0.5, 0.0, 0.5, 0.0]
    # b empties and (other) fills: 2 (0.5 - 1e-4) ln(0.5 / 1e-4)
    assert found["psi"] == round(2 * (0.5 - 1e-4) * math.log(5000), 4) == 8.5155


def test_missing_categories_are_a_bin_of_their_own() -> None:
    ref = {"type": "category", "shares": {"a": 0.5, "b": 0.5, "(other)": 0.0}, "missing": 0.2}
    values = np.array(["a"] * 6 + ["b"] * 2 + [""] * 2, object)
    found = monitoring.distribution_drift(ref, values)
    assert found["reference"] == [0.4, 0.4, 0.0, 0.2]
    assert found["recent"] == [0.6, 0.2, 0.0, 0.2]
    # 0.2 ln(0.6/0.4) - 0.2 ln(0.2/0.4) = 0.2 ln 3
    assert found["psi"] == round(0.2 * math.log(3), 4) == 0.2197


def test_a_profile_without_a_type_or_edges_is_a_category() -> None:
    untyped = {"shares": {"1": 0.5, "2": 0.5, "(other)": 0.0}, "missing": 0.0}
    found = monitoring.distribution_drift(untyped, np.array(["1", "1", "1", "2"], object))
    assert found["bins"] == ["1", "2", "(other)", "missing"]
    assert found["psi"] == 0.2747
    # a category with edges (never written so) is still a category
    typed = {**untyped, "type": "category", "edges": [1.5]}
    assert monitoring.distribution_drift(typed, np.array(["1", "1", "1", "2"], object)) == found


def test_the_shares_are_rounded_to_four_digits() -> None:
    ref = {"type": "category", "shares": {"a": 0.5, "b": 0.5, "(other)": 0.0}, "missing": 0.0}
    found = monitoring.distribution_drift(ref, np.array(["a", "a", "b"], object))
    assert found["recent"] == [0.6667, 0.3333, 0.0, 0.0]
    # (1/6) ln(4/3) + (1/6) ln(3/2) = (1/6) ln 2 = 0.11552..., over the rounded shares
    assert found["psi"] == 0.1155


# -- the prediction scores ---------------------------------------------------------------------

CONFIDENCE_REF: dict[str, Any] = {
    "type": "number",
    "edges": [0.5],
    "shares": [0.5, 0.5],
    "missing": 0.0,
}
LABEL_REF: dict[str, Any] = {
    "type": "category",
    "shares": {"x": 0.5, "y": 0.5, "(other)": 0.0},
    "missing": 0.0,
}
CLASSIFIER_OUTPUT = {"confidence": CONFIDENCE_REF, "label": LABEL_REF}


def classified() -> Predictions:
    return Predictions(labels=["x", "x", "x", "y"], confidence=np.array([0.1, 0.9, 0.9, 0.9]))


def test_a_classifiers_confidence_and_labels_drift() -> None:
    found = monitoring.output_drift(CLASSIFIER_OUTPUT, classified())
    assert sorted(found) == ["confidence", "label"]
    assert found["confidence"]["bins"] == ["< 0.5", "≥ 0.5", "missing"]
    assert found["confidence"]["recent"] == [0.25, 0.75, 0.0]
    assert found["confidence"]["psi"] == 0.2747
    assert found["label"]["recent"] == [0.75, 0.25, 0.0, 0.0]
    assert found["label"]["psi"] == 0.2747


def test_a_regressors_values_drift() -> None:
    values = Predictions(labels=["1", "2", "3", "4"], confidence=None, values=np.arange(4.0))
    reference = {"value": {"type": "number", "edges": [1.0], "shares": [0.5, 0.5], "missing": 0}}
    found = monitoring.output_drift(reference, values)
    assert sorted(found) == ["value"]
    assert found["value"]["recent"] == [0.25, 0.75, 0.0]
    assert found["value"]["psi"] == 0.2747


def test_output_without_its_reference_or_its_scores_has_no_drift() -> None:
    values = Predictions(labels=["1"], confidence=None, values=np.arange(1.0))
    assert monitoring.output_drift(CLASSIFIER_OUTPUT, values) == {}
    assert monitoring.output_drift({}, classified()) == {}
    regression_ref = {"value": CONFIDENCE_REF}
    assert monitoring.output_drift(regression_ref, classified()) == {}
    assert monitoring.output_drift(
        {**regression_ref, **CLASSIFIER_OUTPUT}, classified()
    ).keys() == {
        "confidence",
        "label",
    }


# -- a version's drift -------------------------------------------------------------------------

HALF: dict[str, Any] = {"type": "number", "edges": [0.0], "shares": [0.5, 0.5], "missing": 0.0}


def halves(rows: int, below: float = 0.5) -> np.ndarray:
    under = int(rows * below)
    return np.array([-1.0] * under + [1.0] * (rows - under))


def test_fewer_than_the_minimum_rows_are_not_judged() -> None:
    profile = {"features": {"x": HALF}}
    found = monitoring.drift(profile, {"x": halves(99, 0.9)}, classified(), Thresholds())
    assert found == {
        "rows": 99,
        "judged": False,
        "why": "99 recent row(s): at least 100 are needed to judge drift",
        "drifting": [],
        "share": 0.0,
        "drift": False,
    }
    empty = monitoring.drift(profile, {}, None, Thresholds())
    assert empty["rows"] == 0 and empty["judged"] is False
    assert empty["why"] == "0 recent row(s): at least 100 are needed to judge drift"


@pytest.mark.parametrize(("rows", "judged"), [(99, False), (100, True), (101, True)])
def test_the_minimum_row_count_is_judged(rows: int, judged: bool) -> None:
    found = monitoring.drift({"features": {"x": HALF}}, {"x": halves(rows)}, None, Thresholds())
    assert found["judged"] is judged
    assert found["rows"] == rows


def test_a_judged_version_reports_each_feature_and_its_output() -> None:
    profile = {"features": {"x": HALF, "y": HALF, "absent": HALF}, "output": CLASSIFIER_OUTPUT}
    columns = {"y": halves(100, 0.75), "x": halves(100), "extra": halves(100, 0.9)}
    found = monitoring.drift(profile, columns, classified(), Thresholds())
    assert found["rows"] == 100 and found["judged"] is True
    assert sorted(found["features"]) == ["x", "y"]  # a feature not in the rows is left out
    assert found["features"]["x"]["psi"] == 0.0
    assert found["features"]["y"]["psi"] == 0.2747
    assert found["features"]["y"]["recent"] == [0.75, 0.25, 0.0]
    assert found["drifting"] == ["y"]
    assert found["share"] == 0.5
    assert found["drift"] is True  # 0.5 > 0.3
    assert found["output"] == monitoring.output_drift(CLASSIFIER_OUTPUT, classified())
    assert found["output"]["label"]["psi"] == 0.2747
    assert "why" not in found


def test_drifting_features_are_named_in_order() -> None:
    profile = {"features": {"b": HALF, "a": HALF, "c": HALF}}
    columns = {"b": halves(100, 0.9), "a": halves(100, 0.1), "c": halves(100)}
    found = monitoring.drift(profile, columns, None, Thresholds())
    assert found["drifting"] == ["a", "b"]
    assert found["share"] == 0.6667
    assert found["output"] == {}


def test_the_output_is_left_out_without_predictions_or_a_reference_for_them() -> None:
    profile = {"features": {"x": HALF}}
    found = monitoring.drift(profile, {"x": halves(100)}, classified(), Thresholds())
    assert found["output"] == {}
    with_output = {**profile, "output": CLASSIFIER_OUTPUT}
    assert monitoring.drift(with_output, {"x": halves(100)}, None, Thresholds())["output"] == {}


@pytest.mark.parametrize(("limit", "drifts"), [(0.2746, True), (0.2747, False), (0.2748, False)])
def test_a_feature_drifts_when_its_psi_exceeds_the_threshold(limit: float, drifts: bool) -> None:
    found = monitoring.drift(
        {"features": {"x": HALF}}, {"x": halves(100, 0.75)}, None, Thresholds(psi=limit)
    )
    assert found["features"]["x"]["psi"] == 0.2747
    assert found["drifting"] == (["x"] if drifts else [])
    assert found["share"] == (1.0 if drifts else 0.0)


@pytest.mark.parametrize(("share", "drifts"), [(0.4999, True), (0.5, False), (0.5001, False)])
def test_a_version_drifts_when_the_drifting_share_exceeds_the_threshold(
    share: float, drifts: bool
) -> None:
    profile = {"features": {"x": HALF, "y": HALF}}
    columns = {"x": halves(100, 0.9), "y": halves(100)}
    found = monitoring.drift(profile, columns, None, Thresholds(share=share))
    assert found["share"] == 0.5
    assert found["drift"] is drifts


def test_the_default_thresholds_judge_three_of_ten_as_no_drift_and_four_as_drift() -> None:
    profile = {"features": {f"f{i}": HALF for i in range(10)}}
    three = {f"f{i}": halves(100, 0.9 if i < 3 else 0.5) for i in range(10)}
    found = monitoring.drift(profile, three, None, Thresholds())
    assert (found["share"], found["drift"]) == (0.3, False)
    four = {f"f{i}": halves(100, 0.9 if i < 4 else 0.5) for i in range(10)}
    found = monitoring.drift(profile, four, None, Thresholds())
    assert (found["share"], found["drift"]) == (0.4, True)


def test_a_single_drifting_feature_is_the_whole_share() -> None:
    found = monitoring.drift({"features": {"x": HALF}}, {"x": halves(100, 0.9)}, None, Thresholds())
    assert found["share"] == 1.0 and found["drift"] is True


def test_rows_without_a_profiled_feature_share_nothing() -> None:
    found = monitoring.drift({"features": {"x": HALF}}, {"other": halves(100)}, None, Thresholds())
    assert found["features"] == {} and found["drifting"] == []
    assert found["share"] == 0.0 and found["drift"] is False


def test_the_share_is_rounded_to_four_digits() -> None:
    profile = {"features": {f"f{i}": HALF for i in range(3)}}
    columns = {"f0": halves(100, 0.9), "f1": halves(100), "f2": halves(100)}
    assert monitoring.drift(profile, columns, None, Thresholds())["share"] == 0.3333


# -- thresholds from a job's params ------------------------------------------------------------

DEFAULT = Thresholds(psi=0.25, share=0.35, min_realized=0.6)


def test_thresholds_without_params_are_the_defaults() -> None:
    assert Thresholds.from_params({}, DEFAULT) == DEFAULT
    assert Thresholds.from_params({}, Thresholds()) == Thresholds()
    assert Thresholds.from_params({"other": 5}, Thresholds()).min_realized is None


def test_each_param_overrides_its_own_threshold() -> None:
    assert Thresholds.from_params({"psi": 0.1}, DEFAULT) == Thresholds(0.1, 0.35, 0.6)
    assert Thresholds.from_params({"drift_share": 0.5}, DEFAULT) == Thresholds(0.25, 0.5, 0.6)
    floor = Thresholds.from_params({"min_realized_accuracy": 0.9}, DEFAULT)
    assert floor == Thresholds(0.25, 0.35, 0.9)
    assert Thresholds.from_params({"min_realized_accuracy": 0.9}, Thresholds()).min_realized == 0.9


def test_whole_numbers_become_floats() -> None:
    found = Thresholds.from_params(
        {"psi": 2, "drift_share": 1, "min_realized_accuracy": 1}, DEFAULT
    )
    assert found == Thresholds(2.0, 1.0, 1.0)
    assert type(found.psi) is float
    assert type(found.share) is float
    assert type(found.min_realized) is float


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("psi", 1e-9, "psi"),
        ("psi", 10, "psi"),
        ("psi", 10.0, "psi"),
        ("drift_share", 1e-9, "share"),
        ("drift_share", 1.0, "share"),
        ("min_realized_accuracy", 1e-9, "min_realized"),
        ("min_realized_accuracy", 1.0, "min_realized"),
    ],
)
def test_a_threshold_at_its_limits_is_taken(name: str, value: float, field: str) -> None:
    assert getattr(Thresholds.from_params({name: value}, DEFAULT), field) == value


@pytest.mark.parametrize(
    ("params", "sentence"),
    [
        ({"psi": 0}, "params.psi must be a number in (0, 10]; got 0"),
        ({"psi": -0.1}, "params.psi must be a number in (0, 10]; got -0.1"),
        ({"psi": 10.001}, "params.psi must be a number in (0, 10]; got 10.001"),
        ({"psi": "high"}, "params.psi must be a number in (0, 10]; got 'high'"),
        ({"psi": None}, "params.psi must be a number in (0, 10]; got None"),
        ({"psi": True}, "params.psi must be a number in (0, 10]; got True"),
        ({"drift_share": 0.0}, "params.drift_share must be a number in (0, 1]; got 0.0"),
        ({"drift_share": 1.0001}, "params.drift_share must be a number in (0, 1]; got 1.0001"),
        ({"drift_share": True}, "params.drift_share must be a number in (0, 1]; got True"),
        ({"drift_share": [0.5]}, "params.drift_share must be a number in (0, 1]; got [0.5]"),
        (
            {"min_realized_accuracy": 0},
            "params.min_realized_accuracy must be a number in (0, 1]; got 0",
        ),
        (
            {"min_realized_accuracy": 1.5},
            "params.min_realized_accuracy must be a number in (0, 1]; got 1.5",
        ),
        (
            {"min_realized_accuracy": None},
            "params.min_realized_accuracy must be a number in (0, 1]; got None",
        ),
        (
            {"min_realized_accuracy": False},
            "params.min_realized_accuracy must be a number in (0, 1]; got False",
        ),
    ],
)
def test_a_bad_threshold_is_refused_by_name(params: dict[str, Any], sentence: str) -> None:
    with pytest.raises(ValueError) as raised:
        Thresholds.from_params(params, DEFAULT)
    assert str(raised.value) == sentence


# -- realized accuracy -------------------------------------------------------------------------

DAY = 86_400.0
START = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def correction(version: Any, label: Any, served: Any, at: float | None = START) -> dict[str, Any]:
    found = {"version": version, "label": label, "predicted_label": served}
    return found if at is None else {**found, "annotated_at": at}


def version(number: int, metrics: dict[str, float]) -> ModelVersion:
    return ModelVersion(
        model="m", version=number, sha256="0" * 64, artifact_key="a", metadata_key="m",
        features=["x"], classes=[], metrics=metrics, job_id="j", dataset="d", plugin="p",
        created_at=0.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("stamp", "day"),
    [
        (0, "1970-01-01"),
        (START, "2023-11-14"),
        (START + 2 * 3600, "2023-11-15"),
        (86_399.9, "1970-01-01"),
    ],
)
def test_a_day_is_the_utc_date(stamp: float, day: str) -> None:
    assert monitoring.day_of(stamp) == day


def test_realized_accuracy_per_version_newest_first_and_per_day() -> None:
    found = monitoring.realized(
        [
            correction(1, "5", "6"),
            correction(2, "3", "3"),
            correction(2, "3", "8"),
            correction("2", 1, "1", START + DAY),  # numbers and text compare as text
            correction(2, "7", "7", START + DAY),
            correction(3, "7", "7", START + DAY),
        ],
        [version(1, {"rmse": 3.0}), version(2, {"accuracy": 0.954321}), version(4, {})],
    )
    assert found == [
        {
            "version": 3,
            "reviewed": 1,
            "kept": 1,
            "realized": 1.0,
            "held_out": None,  # not among the versions given
            "by_day": [{"day": "2023-11-15", "reviewed": 1, "kept": 1, "realized": 1.0}],
        },
        {
            "version": 2,
            "reviewed": 4,
            "kept": 3,
            "realized": 0.75,
            "held_out": 0.9543,
            "by_day": [
                {"day": "2023-11-14", "reviewed": 2, "kept": 1, "realized": 0.5},
                {"day": "2023-11-15", "reviewed": 2, "kept": 2, "realized": 1.0},
            ],
        },
        {
            "version": 1,
            "reviewed": 1,
            "kept": 0,
            "realized": 0.0,
            "held_out": None,  # a regression has no accuracy
            "by_day": [{"day": "2023-11-14", "reviewed": 1, "kept": 0, "realized": 0.0}],
        },
    ]


def test_realized_accuracy_is_rounded_to_four_digits() -> None:
    found = monitoring.realized(
        [correction(1, "a", "a"), correction(1, "a", "b"), correction(1, "a", "c")], []
    )
    assert found[0]["realized"] == 0.3333
    assert found[0]["by_day"][0]["realized"] == 0.3333
    assert found[0]["held_out"] is None


def test_days_are_in_order_whatever_the_order_of_the_corrections() -> None:
    found = monitoring.realized(
        [correction(1, "a", "a", START + DAY), correction(1, "a", "b", START)], []
    )
    assert [d["day"] for d in found[0]["by_day"]] == ["2023-11-14", "2023-11-15"]
    assert [d["kept"] for d in found[0]["by_day"]] == [0, 1]


def test_a_correction_without_a_time_counts_on_the_first_day() -> None:
    found = monitoring.realized([correction(1, "a", "a", at=None)], [])
    assert found[0]["by_day"] == [{"day": "1970-01-01", "reviewed": 1, "kept": 1, "realized": 1.0}]


@pytest.mark.parametrize(
    "item",
    [
        correction(None, "a", "a"),
        correction(1, "a", None),
        {"label": "a", "predicted_label": "a", "annotated_at": START},
        {"version": 1, "label": "a", "annotated_at": START},
    ],
)
def test_a_correction_without_its_version_or_served_label_is_left_out(item: dict[str, Any]) -> None:
    assert monitoring.realized([item, correction(2, "a", "b")], [])[0]["version"] == 2
    assert len(monitoring.realized([item, correction(2, "a", "b")], [])) == 1
    assert monitoring.realized([item], []) == []


# -- alerts ------------------------------------------------------------------------------------


def drifted(names: list[str], features: int, drift: bool = True) -> dict[str, Any]:
    return {
        "version": 3,
        "rows": 120,
        "features": {f"f{i}": {} for i in range(features)},
        "drifting": names,
        "share": round(len(names) / features, 4),
        "drift": drift,
    }


def test_a_drifting_version_alerts_with_its_features() -> None:
    said = monitoring.alerts("digits", [drifted(["a", "b"], 3)], [], Thresholds())
    assert said == [
        "digits v3: 2 of 3 features drift (share 67% > 30%, PSI > 0.2) over 120 recent rows: a, b"
    ]
    custom = monitoring.alerts("m", [drifted(["x"], 2)], [], Thresholds(psi=0.15, share=0.25))
    assert custom == [
        "m v3: 1 of 2 features drift (share 50% > 25%, PSI > 0.15) over 120 recent rows: x"
    ]


def test_a_version_that_does_not_drift_says_nothing() -> None:
    assert monitoring.alerts("digits", [drifted(["a"], 10, drift=False)], [], Thresholds()) == []


@pytest.mark.parametrize(
    ("count", "tail"),
    [
        (8, "f0, f1, f2, f3, f4, f5, f6, f7"),
        (9, "f0, f1, f2, f3, f4, f5, f6, f7…"),
        (10, "f0, f1, f2, f3, f4, f5, f6, f7…"),
    ],
)
def test_at_most_eight_drifting_features_are_named(count: int, tail: str) -> None:
    names = [f"f{i}" for i in range(count)]
    said = monitoring.alerts("digits", [drifted(names, 10)], [], Thresholds())
    assert len(said) == 1
    assert said[0].startswith(f"digits v3: {count} of 10 features drift (share {count * 10}% > ")
    assert said[0].endswith(f"over 120 recent rows: {tail}")


def realized_item(reviewed: int, accuracy: float, held_out: float | None) -> dict[str, Any]:
    return {"version": 4, "reviewed": reviewed, "realized": accuracy, "held_out": held_out}


def test_a_realized_accuracy_under_the_floor_alerts() -> None:
    said = monitoring.alerts(
        "digits", [], [realized_item(20, 0.5, 0.97)], Thresholds(min_realized=0.8)
    )
    assert said == [
        "digits v4: realized accuracy 50% over 20 reviewed predictions is under 80% (held-out "
        "97%; reviewed items are the least confident ones)"
    ]
    unknown = monitoring.alerts(
        "r", [], [realized_item(25, 0.1, None)], Thresholds(min_realized=0.2)
    )
    assert unknown == [
        "r v4: realized accuracy 10% over 25 reviewed predictions is under 20% (held-out "
        "n/a; reviewed items are the least confident ones)"
    ]


@pytest.mark.parametrize(("reviewed", "alerted"), [(19, False), (20, True), (21, True)])
def test_realized_accuracy_alerts_only_from_the_minimum_reviewed(
    reviewed: int, alerted: bool
) -> None:
    item = realized_item(reviewed, 0.5, 0.9)
    said = monitoring.alerts("digits", [], [item], Thresholds(min_realized=0.8))
    assert len(said) == int(alerted)


@pytest.mark.parametrize(("accuracy", "alerted"), [(0.7999, True), (0.8, False), (0.8001, False)])
def test_realized_accuracy_alerts_only_under_the_floor(accuracy: float, alerted: bool) -> None:
    item = realized_item(50, accuracy, 0.9)
    said = monitoring.alerts("digits", [], [item], Thresholds(min_realized=0.8))
    assert len(said) == int(alerted)


def test_without_a_floor_realized_accuracy_never_alerts() -> None:
    assert monitoring.alerts("digits", [], [realized_item(50, 0.0, 0.9)], Thresholds()) == []


def test_drift_and_realized_alerts_come_in_order() -> None:
    said = monitoring.alerts(
        "digits",
        [drifted(["a"], 1), drifted(["b"], 10, drift=False), {**drifted(["c"], 2), "version": 5}],
        [realized_item(20, 0.5, 0.9), {**realized_item(30, 0.4, 0.9), "version": 6}],
        Thresholds(min_realized=0.8),
    )
    assert [s.split(":")[0] for s in said] == ["digits v3", "digits v5", "digits v4", "digits v6"]

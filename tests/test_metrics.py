"""Held-out metrics on small hand-computed inputs: classification accuracy and macro-F1 (over the
classes of the truth and the predictions, labels compared exactly as given), regression RMSE, MAE
and R² (0 for a constant truth), the promotion metric and minimum improvement a job names (with
the exact refusals), and which score is better (ties keep the live version; rmse and mae are
lower-is-better)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from mlpoc.errors import JobFailed
from mlpoc.models.metrics import better, check, classification, regression
from mlpoc.schema import CLASSIFICATION, REGRESSION


def labels(*values: object) -> np.ndarray:
    return np.array(values, dtype=object)


# -- classification -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("predicted", "truth", "expected"),
    [
        (["a", "b"], ["a", "b"], {"accuracy": 1.0, "macro_f1": 1.0}),
        (["b", "a"], ["a", "b"], {"accuracy": 0.0, "macro_f1": 0.0}),
        # a: tp 1, fn 1 -> 2/3; b: fp 1 -> 0
        (["a", "b"], ["a", "a"], {"accuracy": 0.5, "macro_f1": 0.333333}),
        # a: 2/3; b (only in the truth): 0; c (only predicted): 0
        (["a", "a", "c"], ["a", "b", "b"], {"accuracy": 0.333333, "macro_f1": 0.222222}),
        # a: tp 1 fp 1 -> 2/3; b: tp 1 fp 1 fn 1 -> 1/2; c: tp 2 fn 1 -> 4/5
        (list("aabbcc"), list("abbccc"), {"accuracy": 0.666667, "macro_f1": 0.655556}),
    ],
)
def test_accuracy_and_macro_f1(
    predicted: list[str], truth: list[str], expected: dict[str, float]
) -> None:
    assert classification(predicted, labels(*truth)) == expected


def test_a_label_that_equals_no_label_scores_an_f1_of_zero() -> None:
    # NaN is one of the classes but matches nothing: no tp, fp or fn, and no division by zero
    assert classification([1.0, np.nan], labels(1.0, np.nan)) == {  # type: ignore[list-item]
        "accuracy": 0.5,
        "macro_f1": 0.5,
    }


def test_labels_are_compared_exactly_as_given_not_as_numpy_strings() -> None:
    # a numpy string array would drop the trailing NUL and make the two labels equal
    assert classification(["a\x00"], labels("a")) == {"accuracy": 0.0, "macro_f1": 0.0}
    assert classification(["a"], ["a\x00"]) == {"accuracy": 0.0, "macro_f1": 0.0}  # type: ignore[arg-type]
    assert classification(["a"], ["a"]) == {"accuracy": 1.0, "macro_f1": 1.0}  # type: ignore[arg-type]


# -- regression ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("predicted", "truth", "expected"),
    [
        ([1.0, 6.0], [1.0, 6.0], {"rmse": 0.0, "mae": 0.0, "r2": 1.0}),
        # errors 1, -2: rmse sqrt(5/2), mae 3/2; spread 12.5, residual 5 -> r2 0.6
        ([2.0, 4.0], [1.0, 6.0], {"rmse": 1.581139, "mae": 1.5, "r2": 0.6}),
        # errors 2, -2: spread 2, residual 8 -> r2 -3
        ([3.0, 1.0], [1.0, 3.0], {"rmse": 2.0, "mae": 2.0, "r2": -3.0}),
        # errors 0, 0, 3: rmse sqrt(3), mae 1; mean 2, spread 2, residual 9 -> r2 -3.5
        ([1.0, 2.0, 6.0], [1.0, 2.0, 3.0], {"rmse": 1.732051, "mae": 1.0, "r2": -3.5}),
    ],
)
def test_rmse_mae_and_r2(
    predicted: list[float], truth: list[float], expected: dict[str, float]
) -> None:
    assert regression(np.array(predicted), np.array(truth)) == expected


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [
        ([2.0, 2.0], {"rmse": 0.0, "mae": 0.0, "r2": 0.0}),
        ([1.0, 3.0], {"rmse": 1.0, "mae": 1.0, "r2": 0.0}),
    ],
)
def test_r2_is_zero_when_the_truth_is_constant(
    predicted: list[float], expected: dict[str, float]
) -> None:
    assert regression(np.array(predicted), np.array([2.0, 2.0])) == expected


def test_values_are_read_as_float64_numbers() -> None:
    # exact decimals (json parsed with parse_float=Decimal) do not mix with floats unconverted
    predicted = [Decimal("2"), Decimal("4")]
    assert regression(predicted, labels(Decimal("1"), Decimal("6"))) == {  # type: ignore[arg-type]
        "rmse": 1.581139,
        "mae": 1.5,
        "r2": 0.6,
    }
    assert regression(np.array([2, 4]), labels(Decimal("1"), Decimal("6")))["mae"] == 1.5


# -- check: params.metric and params.min_improvement --------------------------------------------
@pytest.mark.parametrize(
    ("task", "metric", "least", "expected"),
    [
        (CLASSIFICATION, None, None, ("accuracy", 0.0)),
        (REGRESSION, None, None, ("rmse", 0.0)),
        (CLASSIFICATION, "macro_f1", None, ("macro_f1", 0.0)),
        (CLASSIFICATION, "accuracy", 0.5, ("accuracy", 0.5)),
        (REGRESSION, "mae", 0, ("mae", 0.0)),
        (REGRESSION, "r2", 0.0, ("r2", 0.0)),
        (REGRESSION, "rmse", 2, ("rmse", 2.0)),
        (REGRESSION, None, 0.25, ("rmse", 0.25)),
    ],
)
def test_the_metric_and_minimum_improvement_a_job_names(
    task: str, metric: object, least: object, expected: tuple[str, float]
) -> None:
    named = check(task, metric, least)
    assert named == expected
    assert type(named[0]) is str and type(named[1]) is float


@pytest.mark.parametrize(
    ("task", "metric", "message"),
    [
        (
            CLASSIFICATION,
            "rmse",
            "params.metric must be one of ['accuracy', 'macro_f1'] for classification; got 'rmse'",
        ),
        (
            REGRESSION,
            "accuracy",
            "params.metric must be one of ['rmse', 'mae', 'r2'] for regression; got 'accuracy'",
        ),
        (
            REGRESSION,
            "RMSE",
            "params.metric must be one of ['rmse', 'mae', 'r2'] for regression; got 'RMSE'",
        ),
        (
            CLASSIFICATION,
            3,
            "params.metric must be one of ['accuracy', 'macro_f1'] for classification; got 3",
        ),
    ],
)
def test_an_unknown_metric_is_refused(task: str, metric: object, message: str) -> None:
    with pytest.raises(JobFailed) as refused:
        check(task, metric, -1)  # the metric is checked first
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("least", "shown"),
    [(-0.1, "-0.1"), (-1, "-1"), (True, "True"), (False, "False"), ("0.1", "'0.1'"), ([], "[]")],
)
def test_a_minimum_improvement_that_is_not_a_number_at_least_zero_is_refused(
    least: object, shown: str
) -> None:
    with pytest.raises(JobFailed) as refused:
        check(CLASSIFICATION, "accuracy", least)
    assert str(refused.value) == f"params.min_improvement must be a number >= 0; got {shown}"


# -- better: ties keep the live version ---------------------------------------------------------
@pytest.mark.parametrize(
    ("metric", "candidate", "live", "least", "expected"),
    [
        ("accuracy", 0.75, 0.5, 0.0, True),
        ("accuracy", 0.5, 0.5, 0.0, False),  # a tie keeps the live version
        ("accuracy", 0.5, 0.75, 0.0, False),
        ("macro_f1", 0.75, 0.5, 0.0, True),
        ("r2", 0.5, -0.5, 0.0, True),  # r2: higher is better
        ("r2", -0.5, 0.5, 0.0, False),
        ("rmse", 1.0, 1.5, 0.0, True),  # rmse and mae: lower is better
        ("rmse", 1.5, 1.0, 0.0, False),
        ("rmse", 1.0, 1.0, 0.0, False),
        ("mae", 1.0, 1.5, 0.0, True),
        ("mae", 1.5, 1.0, 0.0, False),
        ("accuracy", 0.75, 0.5, 0.25, False),  # better by exactly the minimum is not enough
        ("accuracy", 0.75, 0.5, 0.125, True),
        ("rmse", 1.0, 1.5, 0.5, False),
        ("rmse", 1.0, 1.5, 0.25, True),
        ("mae", 1.0, 1.5, 0.5, False),
    ],
)
def test_which_score_is_better(
    metric: str, candidate: float, live: float, least: float, expected: bool
) -> None:
    assert better(metric, candidate, live, least) is expected


def test_any_gain_is_better_by_default() -> None:
    assert better("accuracy", 0.75, 0.5) is True
    assert better("rmse", 1.0, 1.5) is True
    assert better("accuracy", 0.5, 0.5) is False

"""The ``lightgbm`` plugin keeps the ONNX contract on tables with categories and blanks, for
both tasks (the check `mlpoc plugin check lightgbm` runs), and refuses bad parameters."""

from __future__ import annotations

import pytest

from mlpoc.plugins import Layout, PluginError
from mlpoc.plugins.check import check, sample_table


def test_lightgbm_classifies_a_table_with_categories_and_blanks() -> None:
    text = sample_table("classification")
    report = check("lightgbm", text, "sample.csv", layout=Layout(id="id"))
    assert report.metrics["accuracy"] > 0.8
    assert "ink" in report.inputs and report.classes == [str(d) for d in range(10)]


def test_lightgbm_regresses() -> None:
    text = sample_table("regression")
    report = check("lightgbm", text, "sample.csv", layout=Layout(id="id", task="regression"))
    assert report.metrics["r2"] > 0.5


def test_lightgbm_refuses_a_bad_parameter_with_its_name() -> None:
    with pytest.raises(PluginError, match=r"params\.learning_rate must be a number > 0"):
        check(
            "lightgbm",
            sample_table(),
            "sample.csv",
            layout=Layout(id="id"),
            params={"learning_rate": 0},
        )

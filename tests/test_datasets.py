"""Dataset CSV validation: every refusal names the line, the column and the fix."""

from __future__ import annotations

import boto3
import numpy as np
import pytest
from moto import mock_aws

from mlpoc.data import datasets, digits
from mlpoc.data.datasets import parse_prediction, parse_training
from mlpoc.errors import DatasetError, JobFailed
from mlpoc.runtime.contract import S3Uri
from mlpoc.schema import CATEGORY, NUMBER, Column, Layout, Schema


def test_the_shipped_digits_parse_into_typed_columns_and_labels() -> None:
    data = parse_training(digits.training_csv(), "digits.csv")
    assert data.features == digits.FEATURES
    assert {c.type for c in data.schema.columns} == {NUMBER}
    assert data.columns["pixel_0"].shape == (1797,) and data.columns["pixel_0"].dtype == np.float32
    assert sorted(set(data.y)) == [str(d) for d in range(10)]


def test_a_table_as_teams_have_it_named_label_id_ignored_text_and_blanks() -> None:
    text = (
        "animal_id,island,mass,notes,species\n"
        "p1,Biscoe,3750,ok,Adelie\n"
        "p2,,NA,,Gentoo\n"
        "p3,Dream, 4100 ,tagged,Adelie\n"
    )
    layout = Layout(label="species", id="animal_id", ignore=("notes",))
    data = parse_training(text, "t.csv", layout)
    assert data.schema.to_json() == {
        "task": "classification",
        "label": "species",
        "id": "animal_id",
        "ignored": ["notes"],
        "columns": [
            {"name": "island", "type": "category", "categories": ["Biscoe", "Dream"]},
            {"name": "mass", "type": "number"},
        ],
    }
    assert data.columns["island"].tolist() == ["Biscoe", "", "Dream"]  # missing: ""
    assert np.isnan(data.columns["mass"][1]) and data.columns["mass"][2] == 4100
    assert data.keys == ["p1", "p2", "p3"]
    assert data.y.tolist() == ["Adelie", "Gentoo", "Adelie"]
    regression = parse_training("a,y\n1,2.5\n2,3\n", "r.csv", Layout(label="y", task="regression"))
    assert regression.y.dtype == np.float64 and regression.y.tolist() == [2.5, 3.0]


def test_prediction_columns_are_checked_against_the_schema_by_name() -> None:
    schema = Schema(columns=(Column("a", NUMBER), Column("c", CATEGORY, ("u",))))
    text = "c,id,a,label\nu,x1,1,7\n,x2,,8\nnever seen,x3,3,9\n"
    data = parse_prediction(text, "p.csv", schema)
    assert data.ids == ["x1", "x2", "x3"]
    assert data.columns["c"].tolist() == ["u", "", "never seen"]  # unseen: the model's to handle
    assert data.columns["a"][0] == 1 and np.isnan(data.columns["a"][1])
    keyed = Schema(columns=(Column("a", NUMBER),), id="animal_id")
    assert parse_prediction("animal_id,a\nz,1\n", "p.csv", keyed).ids == ["z"]


def test_every_bad_column_is_summarized_with_a_count_and_its_first_lines() -> None:
    schema = Schema(columns=(Column("a", NUMBER), Column("b", NUMBER)))
    rows = "".join(f"r{i},{'x' if i % 2 else i},{'?' if i == 7 else i}\n" for i in range(20))
    with pytest.raises(DatasetError) as refused:
        parse_prediction("id,a,b\n" + rows, "p.csv", schema)
    message = str(refused.value)
    assert "column 'a': 10 cells are not numbers (lines 3, 5, 7, 9, 11, …)" in message
    assert "column 'b': 1 cells are not numbers (line 9)" in message
    # training: a column of numbers with a few text cells is a typo, not a category
    typos = "a,label\n" + "".join(f"{'oops' if i == 4 else i},{i % 2}\n" for i in range(30))
    with pytest.raises(DatasetError, match=r"column 'a': 1 cells are not numbers in a column"):
        parse_training(typos, "t.csv")
    ids = "name,label\n" + "".join(f"n{i},{i % 2}\n" for i in range(60))
    with pytest.raises(DatasetError, match=r"'name' has 60 distinct .* params.id_column"):
        parse_training(ids, "t.csv")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "is empty: it needs a header line"),
        ("a,b,label\n", "has a header but no rows"),
        ("a,a,label\n1,2,x\n", r"duplicate column name\(s\) \['a'\]"),
        ("a,,label\n1,2,x\n", "empty column name"),
        ("a,b\n1,2\n", "has no column 'label'.*params.label_column"),
        ("label\nx\n", "no feature columns"),
        ("a,label\n1,x\n2\n", "line 3: 1 values for 2 columns"),
        ("a,b,label\n1,,x\n2,,y\n", "column 'b' is empty in every row"),
        ("a,label\n1,x\n2,\n3, \n", r"column 'label': 2 rows have no label \(lines 3, 4\)"),
    ],
)
def test_bad_training_csvs(text: str, reason: str) -> None:
    with pytest.raises(DatasetError, match=reason):
        parse_training(text, "t.csv")


def test_bad_table_parameters_are_refused_before_any_read() -> None:
    with pytest.raises(JobFailed, match=r"params\.task must be one of"):
        Layout.from_params({"task": "ranking"})
    with pytest.raises(JobFailed, match="must name different columns"):
        Layout.from_params({"label_column": "y", "ignore_columns": ["y"]})
    with pytest.raises(JobFailed, match="ignore_columns must be a list"):
        Layout.from_params({"ignore_columns": "notes"})
    base = Schema(columns=(), label="species", id="k", task="regression")
    assert Layout.from_params({}, base) == Layout(label="species", id="k", task="regression")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a,b\n1,2\n", "has no 'id' column"),
        ("id,a\nx,1\n", r"lacks feature column\(s\) the model was trained on: b"),
        ("id,a,b\nx,1,2\nx,3,4\n", "line 3: id 'x' appears twice"),
        ("id,a,b\n,1,2\n", "line 2: id must be 1-512 characters"),
        ("id,a,b\nx,1,inf\n", r"column 'b': 1 cells are not numbers \(line 2\)"),
    ],
)
def test_bad_prediction_csvs(text: str, reason: str) -> None:
    schema = Schema(columns=(Column("a", NUMBER), Column("b", NUMBER)))
    with pytest.raises(DatasetError, match=reason):
        parse_prediction(text, "p.csv", schema)


@mock_aws
def test_fetch_explains_a_missing_or_binary_object() -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="data")
    with pytest.raises(DatasetError, match="does not exist: upload it first"):
        datasets.fetch(s3, S3Uri("data", "missing.csv"))
    s3.put_object(Bucket="data", Key="bin.csv", Body=b"\xff\xfe\x00binary")
    with pytest.raises(DatasetError, match="is not UTF-8 text"):
        datasets.fetch(s3, S3Uri("data", "bin.csv"))
    s3.put_object(Bucket="data", Key="ok.csv", Body="\ufeffa,label\n1,x\n".encode())
    assert datasets.fetch(s3, S3Uri("data", "ok.csv")) == "a,label\n1,x\n"

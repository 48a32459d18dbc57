"""Dataset CSV validation: every refusal names the line, the column and the fix."""

from __future__ import annotations

import boto3
import numpy as np
import pytest
from moto import mock_aws

from mlpoc import datasets, samples
from mlpoc.contracts import S3Uri
from mlpoc.datasets import parse_prediction, parse_training
from mlpoc.errors import DatasetError


def test_the_shipped_digits_parse_into_features_and_labels() -> None:
    data = parse_training(samples.training_csv(), "digits.csv")
    assert data.features == samples.FEATURES
    assert data.x.shape == (1797, 64) and data.x.dtype == np.float32
    assert sorted(set(data.y)) == [str(d) for d in range(10)]


def test_prediction_columns_are_taken_by_name_in_the_model_order() -> None:
    text = "b,id,a,label\n2,x1,1,7\n4,x2,3,8\n"
    data = parse_prediction(text, "p.csv", ["a", "b"])
    assert data.ids == ["x1", "x2"]
    assert data.x.tolist() == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "is empty: it needs a header line"),
        ("a,b,label\n", "has a header but no rows"),
        ("a,a,label\n1,2,x\n", r"duplicate column name\(s\) \['a'\]"),
        ("a,,label\n1,2,x\n", "empty column name"),
        ("a,b\n1,2\n", "has no 'label' column"),
        ("label\nx\n", "no feature columns"),
        ("a,label\n1,x\n2\n", "line 3: 1 values for 2 columns"),
        ("a,label\n1,x\nfoo,y\n", "line 3, column 'a': 'foo' is not a number"),
        ("a,label\n1,x\nnan,y\n", "line 3, column 'a': 'nan' is not a finite number"),
        ("a,label\n1,x\n2,\n", "line 3: the label is empty"),
    ],
)
def test_bad_training_csvs(text: str, reason: str) -> None:
    with pytest.raises(DatasetError, match=reason):
        parse_training(text, "t.csv")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a,b\n1,2\n", "has no 'id' column"),
        ("id,a\nx,1\n", r"lacks feature column\(s\) the model was trained on: b"),
        ("id,a,b\nx,1,2\nx,3,4\n", "line 3: id 'x' appears twice"),
        ("id,a,b\n,1,2\n", "line 2: id must be 1-512 characters"),
    ],
)
def test_bad_prediction_csvs(text: str, reason: str) -> None:
    with pytest.raises(DatasetError, match=reason):
        parse_prediction(text, "p.csv", ["a", "b"])


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

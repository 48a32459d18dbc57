"""The API's bodies: what a request may carry and the one error shape every 4xx/5xx has."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlpoc.data.feature_binding import MAX_KEYS
from mlpoc.runtime.contract import SCHEMA_VERSION

LIST_LIMIT = 100  # the most items a list route returns


def list_size(asked: int) -> int:
    """A list route's ``limit``, kept between 1 and LIST_LIMIT."""
    return max(1, min(asked, LIST_LIMIT))


class ErrorDetail(BaseModel):
    where: str = Field(description="The field, e.g. body.rows.0")
    problem: str


class ErrorInfo(BaseModel):
    code: str = Field(description="One word: unauthorized, not_found, conflict, invalid_job, …")
    message: str = Field(description="A sentence: what was wrong and what to do")
    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    error: ErrorInfo


class JobRequest(BaseModel):
    """A job, as the job contract (schema 1) has it; the contract's own checks (bucket, layout,
    model name, plugin parameters) answer 422 ``invalid_job`` with the reason."""

    model_config = ConfigDict(extra="forbid")

    schema_: int = Field(SCHEMA_VERSION, alias="schema", description="The contract's version")
    job_id: str | None = Field(None, description="Your id (default: generated); unique")
    type: Literal["train", "predict", "features"] = Field(
        description="train, predict, or features (publish a feature set version: model is the "
        "set's name, params.key its key column)"
    )
    model: str = Field(description="The model's name, e.g. digits")
    dataset: str = Field(description="s3://<data bucket>/datasets/… (or inputs/ for predict)")
    version: str | int = Field("current", description="predict: current or a version number")
    params: dict[str, Any] = Field(default_factory=dict, description="train: plugin parameters")
    resources: Literal["cpu", "gpu"] = Field(
        "cpu", description='train: "gpu" runs it on the GPU pool (a stack with mlpoc:gpu)'
    )


class PredictRequest(BaseModel):
    model: str = Field(min_length=1, max_length=64)
    rows: list[dict[str, float | str | None]] | None = Field(
        None,
        min_length=1,
        description="One object per row: each feature column of the model's schema; a number "
        'column takes a number (null: missing), a category column text (null or "": missing). '
        "With keys: one per key, the features the feature set does not hold (a value given "
        "here wins over the set's)",
    )
    keys: list[str | int] | None = Field(
        None,
        min_length=1,
        max_length=MAX_KEYS,
        description="Entity keys of the model's feature set (a model trained with one): their "
        "features are read from the feature set version the model reads, in one batched read",
    )
    ids: list[str] | None = None


class PromoteRequest(BaseModel):
    version: int = Field(ge=1)


class AnnotationRequest(BaseModel):
    item_id: str = Field(min_length=1, max_length=512)
    label: str = Field(min_length=1, max_length=64)

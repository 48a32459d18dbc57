"""The ruling on a job's outcome (the README's "bad or unlucky job" table), without AWS."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from mlpoc.errors import DatasetError, LeaseLost
from mlpoc.worker.decide import MessageAction, Outcome, decide


def rule(
    error: BaseException | None,
    *,
    committed: bool = False,
    receive: int = 1,
    limit: int | None = 5,
    jitter: float = 0.0,
):  # type: ignore[no-untyped-def]
    return decide(
        committed=committed,
        error=error,
        receive_count=receive,
        max_receive_count=limit,
        jitter=lambda: jitter,
    )


def test_a_committed_job_succeeded_whatever_its_handler_raised_afterwards() -> None:
    for error in (None, RuntimeError("after the commit")):
        ruling = rule(error, committed=True)
        assert (ruling.outcome, ruling.message) == (Outcome.SUCCEEDED, MessageAction.DELETE)


def test_a_job_that_can_never_succeed_fails_with_its_reason_and_its_message_is_deleted() -> None:
    ruling = rule(DatasetError("line 3, column 'x': not a number"))
    assert (ruling.outcome, ruling.message) == (Outcome.FAILED, MessageAction.DELETE)
    assert ruling.reason == "line 3, column 'x': not a number"


def test_a_lost_lease_leaves_the_job_and_the_message_to_the_owner() -> None:
    ruling = rule(LeaseLost("job-1"))
    assert (ruling.outcome, ruling.message) == (Outcome.UNCHANGED, MessageAction.LEAVE)


@pytest.mark.parametrize(
    ("receive", "jitter", "after"),
    [(1, 0.0, 1), (1, 1.0, 2), (3, 0.0, 4), (3, 1.0, 8), (9, 0.0, 150), (20, 1.0, 300)],
)
def test_any_other_error_is_retried_after_a_capped_backoff_with_jitter(
    receive: int, jitter: float, after: int
) -> None:
    ruling = rule(
        ConnectionError("endpoint unreachable"), receive=receive, limit=None, jitter=jitter
    )
    assert (ruling.outcome, ruling.message) == (Outcome.RETRYABLE, MessageAction.RELEASE)
    assert ruling.release_after == after
    assert ruling.reason == "ConnectionError: endpoint unreachable"


def test_a_handler_that_returns_without_committing_is_retried_with_a_reason() -> None:
    ruling = rule(None)
    assert ruling.outcome is Outcome.RETRYABLE
    assert ruling.reason == "RuntimeError: the handler returned without committing a result"


def test_on_the_last_receive_the_job_gives_up_and_its_message_goes_to_the_dlq_at_once() -> None:
    ruling = rule(TimeoutError("slow"), receive=5, limit=5)
    assert (ruling.outcome, ruling.message, ruling.release_after) == (
        Outcome.GAVE_UP,
        MessageAction.RELEASE,
        0,
    )
    assert ruling.reason is not None
    assert ruling.reason.startswith("gave up after 5 attempts; last error: TimeoutError: slow")
    assert "redrive" in ruling.reason


def test_an_iam_refusal_is_retried_and_named() -> None:
    sentence = (
        "User: arn:aws:sts::1:assumed-role/Predict/x is not authorized to perform: s3:GetObject"
    )
    error = ClientError({"Error": {"Code": "AccessDenied", "Message": sentence}}, "GetObject")
    ruling = rule(error)
    assert ruling.outcome is Outcome.RETRYABLE
    assert ruling.access_denied == sentence
    assert rule(error, receive=5).access_denied == sentence  # and on the last receive too

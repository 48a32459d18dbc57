"""The ruling on a job's outcome (the README's "bad or unlucky job" table), without AWS."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from mlpoc.aws import backoff
from mlpoc.errors import DatasetError, JobFailed, LeaseLost, TransientError
from mlpoc.plugins import PluginCrashed
from mlpoc.worker.decide import MessageAction, Outcome, Ruling, decide


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


def test_the_last_receives_reason_says_how_many_attempts_what_failed_and_what_to_do() -> None:
    ruling = rule(TimeoutError("slow"), receive=5, limit=5)
    assert ruling.reason == (
        "gave up after 5 attempts; last error: TimeoutError: slow. The message is in the "
        "dead-letter queue: fix the cause, then redrive it"
    )


@pytest.mark.parametrize(
    ("receive", "limit", "outcome"),
    [
        (1, 1, Outcome.GAVE_UP),  # a queue that allows one receive
        (4, 5, Outcome.RETRYABLE),  # one before the last
        (5, 5, Outcome.GAVE_UP),  # the last
        (6, 5, Outcome.GAVE_UP),  # beyond it (the limit lowered meanwhile)
        (1_000, None, Outcome.RETRYABLE),  # no dead-letter queue: never gives up
    ],
)
def test_a_job_gives_up_on_exactly_the_queues_last_receive(
    receive: int, limit: int | None, outcome: Outcome
) -> None:
    ruling = rule(TransientError("throttled"), receive=receive, limit=limit)
    assert ruling.outcome is outcome
    assert ruling.message is MessageAction.RELEASE
    assert ruling.access_denied is None
    if outcome is Outcome.GAVE_UP:
        assert ruling.release_after == 0
        assert ruling.reason is not None
        assert ruling.reason.startswith(
            f"gave up after {receive} attempts; last error: TransientError: throttled. "
        )
    else:
        assert ruling.release_after == round(backoff.JOB.step(receive, jitter=lambda: 0.0))
        assert ruling.reason == "TransientError: throttled"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (JobFailed("no such model 'x': train it first"), "no such model 'x': train it first"),
        (
            PluginCrashed("digits' train", ValueError("boom")),
            "digits' train raised ValueError: boom. It would fail the same way on every retry: "
            "fix it, then send the job again",
        ),
    ],
)
def test_a_job_that_can_never_succeed_fails_at_once_even_on_its_last_receive(
    error: JobFailed, reason: str
) -> None:
    for receive in (1, 5, 9):
        assert rule(error, receive=receive) == Ruling(
            Outcome.FAILED, MessageAction.DELETE, reason=reason
        )


def test_a_lost_lease_is_left_even_on_the_last_receive() -> None:
    assert rule(LeaseLost("job-1"), receive=5) == Ruling(Outcome.UNCHANGED, MessageAction.LEAVE)


def test_a_committed_job_is_deleted_even_on_the_last_receive() -> None:
    ruling = rule(TimeoutError("after the commit"), committed=True, receive=9)
    assert ruling == Ruling(Outcome.SUCCEEDED, MessageAction.DELETE)


def test_the_retry_wait_is_the_job_backoff_rounded_to_whole_seconds() -> None:
    # 2 * 2**(3-1) = 8: half of it plus 0.3 of the other half is 5.2, released after 5
    assert rule(ConnectionError("x"), receive=3, jitter=0.3).release_after == 5
    assert rule(ConnectionError("x"), receive=3, jitter=0.4).release_after == 6  # 5.6


@pytest.mark.parametrize(
    ("policy", "attempt", "jitter", "wait"),
    [
        (backoff.POLL, 0, 0.0, 1.0),  # no retry yet counts as the first
        (backoff.POLL, -3, 1.0, 2.0),
        (backoff.POLL, 1, 0.5, 1.5),
        (backoff.POLL, 4, 1.0, 16.0),
        (backoff.POLL, 5, 1.0, 30.0),  # capped (2 * 2**4 = 32)
        (backoff.JOB, 8, 1.0, 256.0),
        (backoff.JOB, 9, 0.0, 150.0),  # capped at 300, half of it at least
        (backoff.BATCH_WRITE, 1, 1.0, 0.05),
        (backoff.BATCH_WRITE, 7, 1.0, 3.2),
        (backoff.BATCH_WRITE, 8, 1.0, 5.0),
        (backoff.Backoff(base=1.0, cap=1e30), 10_000, 1.0, 2.0**16),  # no overflow
        (backoff.Backoff(base=1.0, cap=1e30, max_exponent=3), 10, 1.0, 8.0),
    ],
)
def test_a_backoff_step_is_half_the_capped_doubling_plus_a_jittered_half(
    policy: backoff.Backoff, attempt: int, jitter: float, wait: float
) -> None:
    assert policy.step(attempt, jitter=lambda: jitter) == pytest.approx(wait)

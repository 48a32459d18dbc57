"""The one distinction the worker loop cares about: can this job ever succeed as submitted?

Subclasses of :class:`JobFailed` are permanent: the job is marked FAILED with the message as
its reason and its SQS message is deleted (retrying would fail the same way). Any other
exception is transient: the job goes back to the queue with a backoff, and after the queue's
``maxReceiveCount`` it is marked FAILED and left to SQS's dead-letter queue.
"""

from __future__ import annotations


class JobFailed(Exception):
    """A job that can never succeed as submitted; the message says why and what to do."""


# What S3, SQS, DynamoDB and Secrets Manager answer when IAM refuses a call.
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException"})


def access_denied(error: BaseException) -> str | None:
    """The service's sentence when ``error`` is an IAM refusal (it names the principal, the
    action and the resource), else None. A refusal is retried like any transient error (IAM
    changes take a moment to apply after a deploy), but it is logged as what it is."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    details = response.get("Error", {})
    if details.get("Code") not in ACCESS_DENIED_CODES:
        return None
    return str(details.get("Message") or error)

"""Every error of mlpoc, in one place, and the one distinction the worker loop cares about.

:class:`MlpocError` is an error whose message says what was wrong and what to do: the CLI prints
it as one red line, never a traceback, and the API turns the job and registry ones into its
error shape.

Subclasses of :class:`JobFailed` are permanent: the job is marked FAILED with the message as
its reason and its SQS message is deleted (retrying would fail the same way). Any other
exception is transient: the job goes back to the queue with a backoff, and after the queue's
``maxReceiveCount`` it is marked FAILED and left to SQS's dead-letter queue.

Control flow that never leaves its module (the worker's stop signal, the smoke test's early
stop) keeps its private exception where it is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class MlpocError(Exception):
    """An error whose message says what was wrong and what to do."""


# -- the job's outcome (worker loop) --------------------------------------------------------------
class JobFailed(MlpocError):
    """A job that can never succeed as submitted; the message says why and what to do."""


class DatasetError(JobFailed):
    """A dataset that can never be used as it is (the job fails with this reason)."""


class ArtifactError(JobFailed):
    """A model artifact is missing or does not match the registry (tampered or corrupted)."""


class RegistryError(JobFailed):
    """A request the registry cannot satisfy (unknown model or version, nothing promoted)."""


class PluginError(JobFailed):
    """An unknown plugin or parameters a plugin rejects (the job fails with this reason)."""


class JobRejected(MlpocError):
    """A message that can never succeed, whatever the number of retries."""

    def __init__(self, reason: str, job_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.job_id = job_id


class TransientError(Exception):
    """A failure worth retrying later (the message goes back to the queue)."""


class LeaseLost(Exception):
    """This worker no longer owns the job (its lease expired and another worker claimed it)."""


class PointerMoved(Exception):
    """Another writer changed the promotion pointer first; re-read and decide again."""


class CommitConflict(Exception):
    """A transaction item other than the ledger's failed its condition (e.g. a pointer moved)."""

    def __init__(self, codes: Sequence[str]) -> None:
        super().__init__(f"transaction cancelled: {list(codes)}")
        self.codes = list(codes)


# -- configuration ---------------------------------------------------------------------------------
class SettingsError(MlpocError):
    """A required environment variable is missing or malformed."""


class ConfigError(MlpocError):
    """A context value that cannot be used; the message names the key and the allowed values."""


# -- the command line and local mode ------------------------------------------------------------
class TargetError(MlpocError):
    """The target cannot be reached or is not deployed; the message says what to do."""


class CostError(MlpocError):
    """The report cannot be made (no prices for the region, no templates)."""


class DemoError(MlpocError):
    """The demo could not go on (a job failed, the API did not answer); the message says which."""


class LocalError(MlpocError):
    """Local mode cannot start (or is not running); the message says what to do."""


class LocalModeRefused(MlpocError):
    """Local mode was asked to talk to something that might be a real AWS account."""


class SynthError(MlpocError):
    """The CDK app did not synthesize (bad cdk.json value, missing checkout, CDK error)."""


class DeployError(MlpocError):
    """The local stack could not be created."""


# -- a request the service refuses (the API answers 404, 409 or 422) --------------------------
class Refused(MlpocError):
    """A request refused as asked: ``code`` says why in one word (the API's error code), the
    message in a sentence (what to do)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# -- the API ---------------------------------------------------------------------------------------
class ApiError(Exception):
    """An HTTP error in the API's one shape: status, code, message, details."""

    def __init__(self, status: int, code: str, message: str, details: list[Any] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


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

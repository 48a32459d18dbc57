"""The one distinction the worker loop cares about: can this job ever succeed as submitted?

Subclasses of :class:`JobFailed` are permanent: the job is marked FAILED with the message as
its reason and its SQS message is deleted (retrying would fail the same way). Any other
exception is transient: the job goes back to the queue with a backoff, and after the queue's
``maxReceiveCount`` it is marked FAILED and left to SQS's dead-letter queue.
"""

from __future__ import annotations


class JobFailed(Exception):
    """A job that can never succeed as submitted; the message says why and what to do."""

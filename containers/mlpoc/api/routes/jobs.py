"""Jobs: submit one (the job contract), list the newest, read one."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Depends

from mlpoc.api.deps import ClientsDep, LedgerDep, NudgeDep, SettingsDep, require_key
from mlpoc.api.responses import errors
from mlpoc.api.schemas import JobRequest, list_size
from mlpoc.errors import ApiError, JobRejected
from mlpoc.runtime import submission
from mlpoc.runtime.contract import parse_job

router = APIRouter(
    prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(require_key)], responses=errors(401)
)


@router.post("", status_code=202, responses=errors(409, 413, 422))
def submit_job(
    body: JobRequest,
    settings: SettingsDep,
    clients: ClientsDep,
    ledger: LedgerDep,
    nudge: NudgeDep,
) -> dict[str, Any]:
    """Record the job QUEUED and send it to its queue (on AWS, a worker service with no task
    is raised to one at once)."""
    message = body.model_dump(by_alias=True)
    message["job_id"] = message["job_id"] or f"api-{uuid.uuid4().hex[:16]}"
    runtime = settings.runtime
    try:
        job = parse_job(
            json.dumps(message), data_bucket=runtime.data_bucket, sources=runtime.sources
        )
    except JobRejected as rejected:
        raise ApiError(422, "invalid_job", rejected.reason) from None
    submission.enqueue(ledger, clients.sqs, runtime, job, source="api", nudge=nudge)
    return {"job_id": job.job_id, "status": "QUEUED"}


@router.get("", responses=errors(422))
def list_jobs(ledger: LedgerDep, limit: int = 50, shards: bool = False) -> dict[str, Any]:
    """The newest jobs first (at most 100); ``shards=true`` lists split jobs' shards too."""
    records = ledger.recent(list_size(limit), shards=shards)
    return {"jobs": [public_job(r) for r in records]}


@router.get("/{job_id}", responses=errors(404, 422))
def get_job(job_id: str, ledger: LedgerDep) -> dict[str, Any]:
    record = ledger.get(job_id)
    if record is None:
        raise ApiError(404, "not_found", f"no job {job_id!r}")
    return public_job(record)


def public_job(record: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "job_id", "status", "type", "model", "dataset", "requested_version", "attempts",
        "reason", "result", "created_at", "started_at", "finished_at", "source", "parent",
    )  # fmt: skip
    public = {k: record[k] for k in keep if k in record}
    if "shards_total" in record:  # a split predict job: its progress
        done = len(record.get("shards_done") or ())
        public["shards"] = {"done": done, "total": record["shards_total"]}
    return public

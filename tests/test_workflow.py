"""The GitHub workflow: hardened (zizmor finds nothing of medium or high severity), and it runs
what .ci/run runs, with the container stage in a job of its own."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.cdk_app import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def zizmor() -> str:
    found = shutil.which("zizmor", path=str(Path(sys.executable).parent))
    assert found, "zizmor is in the dev extra: make install"
    return found


def test_zizmor_finds_nothing_of_medium_or_high_severity() -> None:
    done = subprocess.run(
        [zizmor(), "--offline", "--format", "json", str(WORKFLOW)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    findings = json.loads(done.stdout)
    serious = [
        (f["ident"], f["determinations"]["severity"])
        for f in findings
        if f["determinations"]["severity"] in ("Medium", "High")
    ]
    assert serious == []


def test_zizmor_would_catch_an_unpinned_action(tmp_path: Path) -> None:
    # the audit above is not vacuous: the same workflow with a tag instead of a commit fails it
    text = re.sub(r"actions/checkout@[0-9a-f]{40}", "actions/checkout@v4", WORKFLOW.read_text())
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    unpinned = tmp_path / ".github" / "workflows" / "ci.yml"
    unpinned.write_text(text)
    done = subprocess.run(
        [zizmor(), "--offline", "--format", "json", str(unpinned)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "unpinned-uses" in {f["ident"] for f in json.loads(done.stdout)}


def test_every_action_is_a_commit_every_checkout_drops_its_token_the_job_image_a_digest() -> None:
    jobs = workflow()["jobs"]
    for job in jobs.values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
    assert re.fullmatch(r"python:3\.11-bookworm@sha256:[0-9a-f]{64}", jobs["test"]["container"])


def test_the_workflow_runs_make_test_and_the_container_stage_elsewhere() -> None:
    jobs = workflow()["jobs"]
    test_runs = [s.get("run", "") for s in jobs["test"]["steps"]]
    assert "make test" in test_runs
    # the job container has no Docker engine: the containers job runs the stage, on the runner
    assert jobs["test"]["env"]["MLPOC_CONTAINER_STAGE"] == "the containers job"
    container_runs = " ".join(s.get("run", "") for s in jobs["containers"]["steps"])
    assert "MLPOC_BASES=real make images" in container_runs
    assert "tests/test_containers.py" in container_runs
    assert "container" not in jobs["containers"]  # on the runner, with its Docker

"""A grant the code needs, taken out of the synthesized template: local mode fails where AWS would.

The predict worker writes its predictions with BatchWriteItem. Remove that one statement from
the predict role's policy in a synthesized service template, run the local stack on it
(`mlpoc local up --assembly`), and the predict job fails with an AccessDenied that names the
role, the action and the table, in the ledger, in the worker's log and in `mlpoc local status`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlpoc.data import digits
from tests.support.cli import local_up, mlpoc, operator_client

pytestmark = pytest.mark.integration

ACTION = "dynamodb:BatchWriteItem"


def remove_grant(assembly: Path) -> str:
    """Drop the predict role's BatchWriteItem statement; the role's logical id."""
    path = assembly / "mlpoc-service.template.json"
    template = json.loads(path.read_text())
    role = next(k for k in template["Resources"] if k.startswith("WorkersPredictTaskRole"))
    policy = next(
        r
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role} in r["Properties"]["Roles"]
    )
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    kept = [s for s in statements if s["Action"] != ACTION]
    assert len(kept) == len(statements) - 1, "the predict role has no BatchWriteItem statement"
    policy["Properties"]["PolicyDocument"]["Statement"] = kept
    path.write_text(json.dumps(template))
    return role


@pytest.fixture(scope="module")
def mutated(
    tmp_path_factory: pytest.TempPathFactory, local_assembly: Path
) -> Iterator[tuple[Path, str]]:
    assembly = tmp_path_factory.mktemp("mutated") / "cdk.out"
    shutil.copytree(local_assembly, assembly)  # the session's synthesis, then one grant less
    role = remove_grant(assembly)
    state_dir = tmp_path_factory.mktemp("mutated-state")
    with local_up(state_dir, assembly, "local-up-mutated.log"):
        yield state_dir, role


def ledger_record(outputs: dict[str, str], job_id: str) -> dict[str, Any]:
    dynamodb = operator_client("dynamodb", outputs)
    item = dynamodb.get_item(TableName=outputs["JobsTableName"], Key={"job_id": {"S": job_id}})
    return {k: v.get("S", v.get("N")) for k, v in item.get("Item", {}).items()}


def test_a_missing_grant_fails_the_job_with_the_role_and_the_action(
    mutated: tuple[Path, str], tmp_path: Path
) -> None:
    state_dir, role = mutated
    outputs = json.loads(mlpoc("outputs", "--json", state_dir=state_dir).stdout)
    train_csv, score_csv = tmp_path / "train.csv", tmp_path / "score.csv"
    train_csv.write_text(digits.training_csv(slice(0, 300)))
    score_csv.write_text(digits.prediction_csv(slice(300, 320)))
    # GIVEN a model (the train role kept every grant)
    trained = mlpoc("train", "mut", str(train_csv), "--wait", state_dir=state_dir)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    # WHEN a predict job runs under the role that lost its write to the predictions table
    sent = mlpoc("predict", "mut", str(score_csv), "--job-id", "mut-predict", state_dir=state_dir)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    deadline, record = time.monotonic() + 60, {}
    while "AccessDenied" not in record.get("reason", "") and time.monotonic() < deadline:
        time.sleep(0.5)
        record = ledger_record(outputs, "mut-predict")
    # THEN the job did not succeed, and its reason names the role, the action and the table
    # (the record may already be RUNNING the retry: a claim keeps the last attempt's reason)
    assert record.get("status") in ("RETRYABLE", "FAILED", "RUNNING"), record
    assert record["status"] != "RUNNING" or int(record["attempts"]) >= 2, record
    reason = record["reason"]
    assert "AccessDeniedException" in reason
    assert f"assumed-role/{role}/predict is not authorized to perform: {ACTION}" in reason
    assert f":table/{outputs['PredictionsTableName']}" in reason
    # AND so does the worker's own log line
    log = (state_dir / "logs" / "predict.log").read_text()
    assert f"assumed-role/{role}/predict is not authorized to perform: {ACTION}" in log
    # AND `mlpoc local status` lists the denial
    status = mlpoc("local", "status", state_dir=state_dir)
    shown = status.stdout + status.stderr
    assert "request(s) denied" in shown
    assert role in shown
    assert ACTION in shown


def test_the_smoke_test_fails_on_it_names_the_step_and_still_cleans_up(
    mutated: tuple[Path, str],
) -> None:
    state_dir, _ = mutated
    done = mlpoc("smoke", "--timeout", "6", state_dir=state_dir)
    assert done.returncode == 1
    assert "smoke test failed: predict and store" in done.stderr
    # the predict job could not store its predictions: it never finished
    assert "predict and store" in done.stdout and "still not finished after 6 s" in done.stdout
    assert "clean up" in done.stdout and "ledger records of smoke-" in done.stdout

"""A team's own model on its own table, in local mode, as the docs tell a team to do it.

A plugin scaffolded by `mlpoc plugin new` (not installed: found through ``MLPOC_PLUGINS``
and ``PYTHONPATH``, the path for a module that is not packaged yet) passes `mlpoc plugin check`
and trains through local mode on the penguins table (palmerpenguins ships it): a label column
named ``species``, an id column, text columns and blanks. The example LightGBM plugin (installed
by `make install`) trains a second version, and the promotion is decided on the same held-out
rows, both scores shown. The versions serve stored and realtime predictions from strings and
nulls; a regression model is judged by RMSE and serves values.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from palmerpenguins import load_penguins

from mlpoc.aws import dynamo
from mlpoc.models import metrics
from tests.support.cli import local_up, mlpoc, operator_client

pytestmark = pytest.mark.integration
PLUGIN = "teamforest"


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The penguins as a team has them: an id, a label named species, text and blank cells."""
    penguins = load_penguins()
    penguins.insert(0, "penguin", [f"p{i}" for i in range(len(penguins))])
    where = tmp_path_factory.mktemp("penguins")
    out = {"train": where / "penguins.csv", "score": where / "score.csv"}
    penguins.to_csv(out["train"], index=False)
    score = penguins.drop(columns=["species"]).iloc[::9]
    score.to_csv(out["score"], index=False)
    # regression: the body mass from the rest (rows without a mass cannot be labels)
    out["mass"] = where / "mass.csv"
    penguins.dropna(subset=["body_mass_g"]).to_csv(out["mass"], index=False)
    out["mass_blanks"] = where / "mass_blanks.csv"
    penguins.to_csv(out["mass_blanks"], index=False)
    # features by key: the traits as a feature set (text, blanks), and labels by penguin
    out["traits"] = where / "traits.csv"
    penguins.drop(columns=["species"]).to_csv(out["traits"], index=False)
    out["labels"] = where / "labels.csv"
    penguins[["penguin", "species"]].to_csv(out["labels"], index=False)
    out["keys"] = where / "keys.csv"
    keyed = penguins[["penguin"]].iloc[::9].copy()
    keyed.insert(0, "id", "k-" + keyed["penguin"])
    unknown = pd.DataFrame({"id": ["k-unknown"], "penguin": ["p-unknown"]})
    pd.concat([keyed, unknown]).to_csv(out["keys"], index=False)
    return out


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A plugin scaffolded the way the docs say, and the environment that finds it."""
    root = tmp_path_factory.mktemp("team-plugins")
    done = mlpoc("plugin", "new", PLUGIN, "--into", str(root), state_dir=None)
    assert done.returncode == 0, done.stderr
    assert f'add "{PLUGIN}" to mlpoc:plugins' in " ".join(done.stdout.split())
    path = [str(root / PLUGIN), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"MLPOC_PLUGINS": f"mlpoc_{PLUGIN}", "PYTHONPATH": os.pathsep.join(path)}


@pytest.fixture(scope="module")
def state_dir(
    tmp_path_factory: pytest.TempPathFactory, local_assembly: Path, team: dict[str, str]
) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("own-model")
    with local_up(where, local_assembly, "own-model.log", env=team):
        yield where


@pytest.fixture(scope="module")
def outputs(state_dir: Path) -> dict[str, str]:
    done = mlpoc("outputs", "--json", state_dir=state_dir)
    assert done.returncode == 0, done.stderr
    found: dict[str, str] = json.loads(done.stdout)
    return found


def job(state_dir: Path, env: dict[str, str], *args: str) -> tuple[str, Any]:
    """`mlpoc train|predict … --wait`: the status and the result (or reason)."""
    done = mlpoc(*args, "--wait", state_dir=state_dir, env=env, timeout=240)
    status, _, shown = done.stdout.strip().splitlines()[-1].partition(" ")
    return status, json.loads(shown)


def version(outputs: dict[str, str], model: str, number: int) -> dict[str, Any]:
    dynamodb = operator_client("dynamodb", outputs)
    item = dynamodb.get_item(
        TableName=outputs["ModelsTableName"],
        Key={"model": {"S": model}, "version": {"S": f"v{number:08d}"}},
    )["Item"]
    found: dict[str, Any] = dynamo.deserialize(item) or {}
    return found


def api(outputs: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    import httpx

    response = httpx.post(
        outputs["ApiUrl"] + "/v1/predict",
        json=body,
        headers={"X-API-Key": outputs["ApiKey"]},
        timeout=30,
    )
    return response.status_code, response.json()


def test_a_scaffolded_plugin_passes_its_check_on_the_teams_table(
    tables: dict[str, Path], team: dict[str, str]
) -> None:
    done = mlpoc(
        "plugin", "check", PLUGIN, str(tables["train"]),
        "--label", "species", "--id-column", "penguin", "--ignore", "year",
        state_dir=None, env=team,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "the ONNX contract holds" in done.stdout
    assert "island, bill_length_mm" in done.stdout  # the inputs: named columns, text among them
    assert "Adelie, Chinstrap, Gentoo" in done.stdout
    # and the check refuses a table that is not the team's shape, with the reason
    refused = mlpoc("plugin", "check", PLUGIN, str(tables["train"]), state_dir=None, env=team)
    assert refused.returncode == 1
    assert "has no column 'label'" in refused.stderr and "params.label_column" in refused.stderr


def test_a_teams_plugin_and_table_train_and_the_next_version_is_judged_on_the_same_rows(
    state_dir: Path, outputs: dict[str, str], tables: dict[str, Path], team: dict[str, str]
) -> None:
    table = [
        "--param", "label_column=species", "--param", "id_column=penguin",
        "--param", 'ignore_columns=["year"]',
    ]  # fmt: skip
    # GIVEN the team's plugin trained through local mode on its table
    status, first = job(
        state_dir, team, "train", "penguins", str(tables["train"]),
        "--param", f"plugin={PLUGIN}", *table,
    )  # fmt: skip
    assert status == "SUCCEEDED", first
    assert first["promoted"] is True and "compared" not in first  # nothing was live
    assert first["metrics"]["accuracy"] > 0.9
    recorded = version(outputs, "penguins", first["model_version"])
    assert recorded["plugin"] == PLUGIN
    assert recorded["schema"]["label"] == "species" and recorded["schema"]["id"] == "penguin"
    columns = {c["name"]: c for c in recorded["schema"]["columns"]}
    assert "year" not in columns and "penguin" not in columns
    assert columns["island"] == {
        "name": "island",
        "type": "category",
        "categories": ["Biscoe", "Dream", "Torgersen"],
    }
    assert columns["bill_length_mm"]["type"] == "number"
    # and its run record profiles the team's columns by their types, for drift
    s3 = operator_client("s3", outputs)
    record = json.loads(
        s3.get_object(Bucket=outputs["ModelBucketName"], Key=recorded["metadata_key"])[
            "Body"
        ].read()
    )["run"]
    island = record["profile"]["features"]["island"]
    assert island["type"] == "category" and set(island["shares"]) >= {"Biscoe", "Dream"}
    assert record["profile"]["features"]["bill_length_mm"]["edges"]  # deciles of a number
    assert set(record["evaluation"]["per_class"]) == {"Adelie", "Chinstrap", "Gentoo"}
    # WHEN the example LightGBM plugin trains a candidate on the same table
    status, second = job(
        state_dir, team, "train", "penguins", str(tables["train"]), "--param", "plugin=lightgbm",
        *table,
    )  # fmt: skip
    assert status == "SUCCEEDED", second
    # THEN both were scored on the same held-out rows, and that decided the promotion
    compared = second["compared"]
    assert compared["live"] == first["model_version"] and compared["metric"] == "accuracy"
    assert compared["rows"] == recorded["test_rows"]  # the same rows the live one was tested on
    assert compared["live_score"] == pytest.approx(first["metrics"]["accuracy"])
    wins = metrics.better("accuracy", compared["candidate"], compared["live_score"])
    assert second["promoted"] is wins
    assert version(outputs, "penguins", second["model_version"])["compared"] == compared
    # AND the jobs list shows both scores
    listed = mlpoc("jobs", state_dir=state_dir, env=team)
    assert f"held-out rows {compared['candidate']:.3f} vs v1 {compared['live_score']:.3f}" in (
        " ".join(listed.stdout.split())
    )


def test_the_teams_model_serves_stored_and_realtime_predictions_from_text_and_blanks(
    state_dir: Path,
    outputs: dict[str, str],
    tables: dict[str, Path],
    team: dict[str, str],
) -> None:
    status, stored = job(state_dir, team, "predict", "penguins", str(tables["score"]))
    assert status == "SUCCEEDED", stored
    assert stored["rows"] == len(load_penguins().iloc[::9])
    code, body = api(
        outputs,
        {
            "model": "penguins",
            "rows": [
                {"island": "Dream", "bill_length_mm": 49.0, "bill_depth_mm": 18.5,
                 "flipper_length_mm": 195, "body_mass_g": 3800, "sex": "male"},
                # blanks and a never-seen island: imputed and encoded inside the graph
                {"island": "Atlantis", "bill_length_mm": None, "bill_depth_mm": None,
                 "flipper_length_mm": "", "body_mass_g": None, "sex": None},
            ],
        },
    )  # fmt: skip
    assert code == 200, body
    assert body["predictions"][0]["label"] == "Chinstrap"
    assert [p["label"] in {"Adelie", "Chinstrap", "Gentoo"} for p in body["predictions"]] == [
        True,
        True,
    ]
    code, refused = api(
        outputs,
        {"model": "penguins", "rows": [{"island": "Dream", "bill_length_mm": "long",
                                        "bill_depth_mm": 1, "flipper_length_mm": 1,
                                        "body_mass_g": 1, "sex": "male"}]},
    )  # fmt: skip
    assert code == 422, refused
    assert refused["error"]["message"].startswith("column(s) 'bill_length_mm' of model penguins")
    # the monitor judges the team's whole table (text, blanks) against the live version, under
    # the predict role, and the models page draws its charts with the team's labels
    status, monitored = job(
        state_dir, team, "monitor", "run", "penguins", "--dataset", str(tables["train"])
    )
    assert status == "SUCCEEDED", monitored
    assert monitored["rows"] == 344 and monitored["drifting_versions"] == []
    shown = mlpoc("monitor", "show", "penguins", state_dir=state_dir, env=team)
    assert shown.returncode == 0 and "344" in shown.stdout, shown.stdout + shown.stderr
    import httpx

    charts = {
        path: httpx.get(
            f"{outputs['ApiUrl']}/v1/models/penguins/charts/{path}",
            headers={"X-API-Key": outputs["ApiKey"]},
            timeout=30,
        )
        for path in ("confusion.svg", "drift.svg?feature=island", "compare.svg")
    }
    for path, chart in charts.items():
        assert chart.status_code == 200 and "<svg" in chart.text, (path, chart.text[:300])
    assert "Chinstrap" in charts["confusion.svg"].text  # the team's labels on the matrix


def test_a_regression_model_is_judged_by_rmse_and_serves_values(
    state_dir: Path,
    outputs: dict[str, str],
    tables: dict[str, Path],
    team: dict[str, str],
) -> None:
    regression = [
        "--param", "label_column=body_mass_g", "--param", "task=regression",
        "--param", "id_column=penguin", "--param", "plugin=lightgbm",
    ]  # fmt: skip
    # a label that is blank in two rows fails at once, naming the column and the lines
    status, reason = job(state_dir, team, "train", "mass", str(tables["mass_blanks"]), *regression)
    assert status == "FAILED"
    assert "column 'body_mass_g': 2 rows have no value (lines 5, 273)" in reason
    status, trained = job(state_dir, team, "train", "mass", str(tables["mass"]), *regression)
    assert status == "SUCCEEDED", trained
    assert trained["task"] == "regression" and trained["metric"] == "rmse"
    assert set(trained["metrics"]) == {"rmse", "mae", "r2"}
    assert trained["metrics"]["r2"] > 0.6 and trained["metrics"]["rmse"] < 500
    code, body = api(
        outputs,
        {"model": "mass", "rows": [{"species": "Gentoo", "island": "Biscoe",
                                    "bill_length_mm": 47.5, "bill_depth_mm": 15.0,
                                    "flipper_length_mm": 218, "sex": "female", "year": 2008}]},
    )  # fmt: skip
    assert code == 200, body
    (answer,) = body["predictions"]
    assert set(answer) == {"value"} and 4000 < answer["value"] < 6000
    # a regression has no review queue: a threshold for it is refused, not ignored
    score = io.StringIO()
    load_penguins().drop(columns=["body_mass_g"]).assign(
        penguin=[f"p{i}" for i in range(344)]
    ).iloc[:20].to_csv(score, index=False)
    path = tables["mass"].parent / "mass_score.csv"
    path.write_text(score.getvalue())
    status, reason = job(
        state_dir, team, "predict", "mass", str(path), "--param", "review_threshold=0.5"
    )
    assert status == "FAILED" and "a regression model has no review queue" in reason
    status, stored = job(state_dir, team, "predict", "mass", str(path))
    assert status == "SUCCEEDED" and (stored["rows"], stored["for_review"]) == (20, 0)
    # a regression is monitored by its inputs and the drift of its predicted values
    status, monitored = job(
        state_dir, team, "monitor", "run", "mass", "--dataset", str(tables["mass"])
    )
    assert status == "SUCCEEDED" and monitored["rows"] == 342, monitored
    report = json.loads(
        operator_client("s3", outputs)
        .get_object(Bucket=outputs["ModelBucketName"], Key="monitor/mass/latest.json")["Body"]
        .read()
    )
    (judged,) = report["versions"]
    assert judged["judged"] and set(judged["output"]) == {"value"}
    assert judged["output"]["value"]["psi"] < 0.2


def test_a_teams_plugin_trains_on_a_feature_set_and_serves_by_key(
    state_dir: Path,
    outputs: dict[str, str],
    tables: dict[str, Path],
    team: dict[str, str],
) -> None:
    # GIVEN the team's traits published as a feature set through the CLI (a features job,
    # under the train role), text columns and blanks typed as in a train job
    status, published = job(
        state_dir, team, "features", "publish", "traits", str(tables["traits"]), "--key", "penguin"
    )
    assert status == "SUCCEEDED", published
    assert (published["feature_version"], published["rows"], published["promoted"]) == (
        1,
        344,
        True,
    )
    shown = mlpoc("features", "show", "traits", state_dir=state_dir, env=team)
    assert shown.returncode == 0 and "island:c" in shown.stdout, shown.stdout + shown.stderr
    # WHEN the team's plugin trains on labels by key only
    status, trained = job(
        state_dir, team, "train", "traitsbykey", str(tables["labels"]),
        "--param", f"plugin={PLUGIN}", "--param", "label_column=species",
        "--param", "feature_set=traits",
    )  # fmt: skip
    assert status == "SUCCEEDED", trained
    assert trained["feature_set"]["version"] == 1 and trained["feature_set"]["unknown_keys"] == 0
    taken = {c["name"]: c["type"] for c in trained["feature_set"]["columns"]}
    assert taken["island"] == "category" and taken["bill_length_mm"] == "number"
    # THEN the API serves it by key (one lookup, under the API's role), an unknown key apart
    code, body = api(outputs, {"model": "traitsbykey", "keys": ["p0", "p-unknown", "p300"]})
    assert code == 200, body
    first, unknown, last = body["predictions"]
    assert first["label"] in {"Adelie", "Chinstrap", "Gentoo"} and "confidence" in last
    assert unknown["error"] == "unknown key: feature set traits v1 has no 'p-unknown'"
    # AND a predict job by key stores the known rows and counts the unknown one
    status, stored = job(state_dir, team, "predict", "traitsbykey", str(tables["keys"]))
    assert status == "SUCCEEDED", stored
    assert stored["rows"] == len(load_penguins().iloc[::9])
    assert stored["features"]["unknown_keys"] == 1

"""The annotation loop as a person uses it: headless Chromium against the API over HTTP.

Debian's chromium and chromium-driver (installed by `make test`) drive the real page: enter the
key, correct three labels, retrain, and see the job appear. Screenshots go to
test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import Select, WebDriverWait

from mlpoc.api.app import create_app
from mlpoc.api.settings import ApiSettings
from mlpoc.aws import bucket_layout
from mlpoc.data import digits
from mlpoc.runtime.environment import Settings
from mlpoc.runtime.ledger import Ledger
from mlpoc.worker.loop import Worker
from mlpoc.worker.predict import PredictHandler
from tests.conftest import ARTIFACTS
from tests.support.aws_stack import Stack
from tests.support.pipeline import prepare, run_job, train
from tests.test_monitor import shifted_csv

pytestmark = pytest.mark.integration

KEY = "browser-test-key-0123456789"
SHOTS = ARTIFACTS / "screenshots"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def api_url(stack: Stack) -> Iterator[str]:
    prepare(stack)
    settings = ApiSettings.from_env({**stack.env(), "MLPOC_API_KEY": KEY})
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, stack.clients()), host="127.0.0.1", port=port, log_config=None
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "install Debian's chromium and chromium-driver (make test does)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1280,1000", f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    yield chrome
    chrome.quit()


def test_a_person_corrects_three_labels_and_retrains(
    api_url: str, browser: webdriver.Chrome, stack: Stack
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, 20)
    # GIVEN the review page, and a key to enter
    browser.get(f"{api_url}/ui/annotate/digits")
    key_box = wait.until(ready.visibility_of_element_located((By.ID, "key")))
    key_box.send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".card")) >= 3)
    browser.save_screenshot(str(SHOTS / "1-review-queue.png"))
    # WHEN three labels are corrected to the truth
    truth = digits.digits()[1]
    cards = browser.find_elements(By.CSS_SELECTOR, ".card")[:3]
    for card in cards:
        item_id = card.get_attribute("data-item")
        label = str(truth[int(item_id.split("-")[1])])
        card.find_element(By.CSS_SELECTOR, f'.choices button[data-label="{label}"]').click()
        wait.until(lambda _b, c=card: "done" in c.get_attribute("class"))
    assert browser.find_element(By.ID, "done-count").text == "3 corrected"
    browser.save_screenshot(str(SHOTS / "2-three-corrected.png"))
    # AND retrain is pressed
    browser.find_element(By.ID, "retrain").click()
    link = wait.until(ready.element_to_be_clickable((By.ID, "job-link")))
    status = browser.find_element(By.ID, "status").text
    assert "Training started with 3 corrections" in status
    job_id = status.split("job ")[1].split(".")[0]
    browser.save_screenshot(str(SHOTS / "3-retrain-started.png"))
    # THEN the job is on the jobs page, and in the ledger with the new dataset version
    link.click()
    row = wait.until(
        ready.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-job="{job_id}"]'))
    )
    assert "QUEUED" in row.text and "train" in row.text
    browser.save_screenshot(str(SHOTS / "4-jobs.png"))
    record = Ledger(stack.clients().dynamodb, stack.jobs_table).get(job_id)
    # (a train job over the model's folder: the train worker builds the dataset version)
    assert record is not None and record["dataset"].endswith("/datasets/digits/")
    # AND a sharded predict job, once split, shows there with its progress and not its shards
    split_a_predict_job(stack, "big-batch")

    def progress(b: webdriver.Chrome) -> str | None:
        rows = b.find_elements(By.CSS_SELECTOR, 'tr[data-job="big-batch"]')  # refreshed every 2 s
        return rows[0].text if rows and "shards" in rows[0].text else None

    text = wait.until(progress)
    assert "RUNNING" in text and " 0/6 shards" in text
    assert not browser.find_elements(By.CSS_SELECTOR, 'tr[data-job^="big-batch.shard"]')
    browser.save_screenshot(str(SHOTS / "5-sharded-job.png"))


def split_a_predict_job(stack: Stack, job_id: str) -> None:
    """A 600-row predict job in shards of 16 KB, split by a predict worker (its shards queued)."""
    clients = stack.clients()
    key = "datasets/digits/batch.csv"
    clients.s3.put_object(Bucket=stack.data_bucket, Key=key, Body=digits.batch_csv(600).encode())
    dataset = f"s3://{stack.data_bucket}/{key}"
    body = {"schema": 1, "job_id": job_id, "type": "predict", "model": "digits",
            "dataset": dataset, "params": {"shard_bytes": 16_384}}  # fmt: skip
    clients.sqs.send_message(QueueUrl=stack.predict_queue_url, MessageBody=json.dumps(body))
    settings = replace(Settings.from_env("predict", stack.env()), wait_seconds=0, prefetch=1)
    worker = Worker(settings=settings, clients=clients, handler=PredictHandler(settings, clients))
    assert worker.process_batch().succeeded == 1


def test_the_models_page_draws_its_charts_from_the_api_alone(
    api_url: str, browser: webdriver.Chrome, stack: Stack
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    clients = stack.clients()
    # GIVEN a second version, two corrections of v1's answers, and a monitor run over shifted rows
    train(stack, "train-2", estimator="logistic_regression", C=0.01)
    queue = call(api_url, "GET", "/v1/annotations/digits")["items"]
    for item in queue[:2]:  # the served label kept once, replaced once
        label = item["label"] if item is queue[0] else str((int(item["label"]) + 1) % 10)
        call(
            api_url, "POST", "/v1/annotations/digits", {"item_id": item["item_id"], "label": label}
        )
    key = f"{bucket_layout.sample_folder('digits')}1/shifted.csv"
    clients.s3.put_object(
        Bucket=stack.data_bucket, Key=key, Body=shifted_csv(slice(1_400, 1_797)).encode()
    )
    run_job(
        stack,
        {"job_id": "monitor-1", "type": "monitor", "model": "digits",
         "dataset": f"s3://{stack.data_bucket}/{bucket_layout.sample_folder('digits')}"},
    )  # fmt: skip
    # WHEN a person opens the models page with the key
    wait = WebDriverWait(browser, 20)
    browser.get(f"{api_url}/ui/models/digits")
    wait.until(ready.visibility_of_element_located((By.ID, "key"))).send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#chart-drift svg"))
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#chart-compare svg"))
    browser.set_window_size(1280, 3600)  # the whole page in the screenshot
    browser.save_screenshot(str(SHOTS / "6-models-charts.png"))
    # THEN the metric across versions: two points, the promoted ones marked
    points = browser.find_elements(By.CSS_SELECTOR, "#chart-metric svg circle.point")
    assert len(points) == 2
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-metric svg circle.promoted")
    # the confusion matrix of the live version: 10 x 10 cells
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart-confusion svg rect.cell")) == 100
    # two versions side by side: a bar of each for each metric and class
    bars = browser.find_elements(By.CSS_SELECTOR, "#chart-compare svg rect.bar")
    assert len(bars) >= 2 * (2 + 10)
    # realized accuracy of v1's reviewed answers, and the drifting features' charts
    assert "50.0% of 2" in browser.find_element(By.ID, "versions").text
    assert "drifting feature(s)" in browser.find_element(By.ID, "monitor-summary").text
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-drift figure.drift svg")
    # a chart is rendered: it has a size on the page
    assert browser.find_element(By.CSS_SELECTOR, "#chart-metric svg").size["width"] > 300
    # AND nothing came from anywhere but the API (no CDN): every resource is same-origin
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    assert loaded and all(url.startswith(api_url) for url in loaded), loaded
    # WHEN another pair is chosen, the comparison is drawn again
    Select(browser.find_element(By.ID, "compare-a")).select_by_value("2")
    wait.until(lambda b: "v2 beside v2" in compared(b))
    browser.save_screenshot(str(SHOTS / "7-models-compare.png"))


def compared(browser: webdriver.Chrome) -> str:
    return str(
        browser.find_element(By.CSS_SELECTOR, "#chart-compare svg").get_attribute("aria-label")
    )


def call(api_url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 - the loopback API
        api_url + path, method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"X-API-Key": KEY, "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def test_the_feature_set_page_promotes_a_version_and_a_model_keeps_its_own(
    api_url: str, browser: webdriver.Chrome, stack: Stack
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    # GIVEN images v1 (promoted), v2 and v3 (ink turned into a number), and a model on v1
    rows = slice(0, 300)
    for version, text in enumerate(
        (
            digits.feature_set_csv(rows),
            digits.feature_set_csv(rows, shift=1),
            digits.feature_set_csv(rows, ink_as="number"),
        ),
        start=1,
    ):
        key = f"inputs/images/v{version}.csv"
        stack.clients().s3.put_object(Bucket=stack.data_bucket, Key=key, Body=text.encode())
        dataset = f"s3://{stack.data_bucket}/{key}"
        run_job(stack, {"job_id": f"images-{version}", "type": "features", "model": "images",
                        "dataset": dataset, "params": {"key": "image"}})  # fmt: skip
    key = "inputs/bykey/labels.csv"
    labels = digits.keyed_csv(slice(0, 250), labels=True)
    stack.clients().s3.put_object(Bucket=stack.data_bucket, Key=key, Body=labels.encode())
    run_job(stack, {"job_id": "bykey-1", "type": "train", "model": "bykey",
                    "dataset": f"s3://{stack.data_bucket}/{key}",
                    "params": {"feature_set": "images"}})  # fmt: skip
    answer = call(api_url, "POST", "/v1/predict", {"model": "bykey", "keys": ["image-260"]})
    assert answer["features"] == {"set": "images", "version": 1}  # the API holds it now
    # WHEN a person opens the feature set's page and promotes v3
    wait = WebDriverWait(browser, 30)
    browser.get(f"{api_url}/ui/features/images")
    wait.until(ready.visibility_of_element_located((By.ID, "key"))).send_keys(KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#feature-versions tr")) == 3)
    first = browser.find_element(By.CSS_SELECTOR, '#feature-versions tr[data-version="1"]')
    assert "promoted" in first.text and "64 numbers, 1 category: ink" in first.text
    browser.find_element(By.CSS_SELECTOR, '#feature-versions tr[data-version="3"] button').click()
    wait.until(lambda b: "v3 is now promoted" in b.find_element(By.ID, "status").text)

    # THEN, from the API's next poll, the model keeps v1 and the page says why
    def kept(b: webdriver.Chrome) -> str | None:
        b.refresh()  # the key stays in the tab's session storage; the list is drawn after load
        found = WebDriverWait(b, 10).until(
            lambda x: x.find_elements(By.CSS_SELECTOR, '#read-by li[data-model="bykey"]')
        )
        return found[0].text if "keeps reading v1" in found[0].text else None

    text = wait.until(kept)
    assert text.startswith("bykey reads v1 (trained with v1): feature set images v3 is promoted")
    assert "'ink' is a number, not a category" in text
    browser.save_screenshot(str(SHOTS / "8-feature-set.png"))
    # AND the model's page names the set it reads, with the same reason
    browser.get(f"{api_url}/ui/models/bykey")
    summary = wait.until(lambda b: b.find_element(By.ID, "features-summary").text or None)
    assert summary.startswith("Requests by key read feature set images v1 (trained with v1")
    assert "keeps reading v1" in summary
    link = browser.find_element(By.CSS_SELECTOR, "#features-summary a")
    assert link.get_attribute("href") == f"{api_url}/ui/features/images"

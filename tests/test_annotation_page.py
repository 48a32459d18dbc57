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
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from mlpoc import samples
from mlpoc.api.app import create_app
from mlpoc.api.settings import ApiSettings
from mlpoc.ledger import Ledger
from mlpoc.settings import Settings
from mlpoc.worker.loop import Worker
from mlpoc.worker.predict import PredictHandler
from tests.conftest import ARTIFACTS
from tests.support.aws_stack import Stack
from tests.support.pipeline import prepare

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
    truth = samples.digits()[1]
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
    clients.s3.put_object(Bucket=stack.data_bucket, Key=key, Body=samples.batch_csv(600).encode())
    dataset = f"s3://{stack.data_bucket}/{key}"
    body = {"schema": 1, "job_id": job_id, "type": "predict", "model": "digits",
            "dataset": dataset, "params": {"shard_bytes": 16_384}}  # fmt: skip
    clients.sqs.send_message(QueueUrl=stack.predict_queue_url, MessageBody=json.dumps(body))
    settings = replace(Settings.from_env("predict", stack.env()), wait_seconds=0, prefetch=1)
    worker = Worker(settings=settings, clients=clients, handler=PredictHandler(settings, clients))
    assert worker.process_batch().succeeded == 1

"""Shared fixtures: fake credentials everywhere, a moto server, a fresh stack per test."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlpoc import plugins
from tests.support.aws_stack import FAKE_CREDENTIALS, Stack, create_stack
from tests.support.cdk_app import (
    LINKED_ML,
    LINKED_READER,
    LINKED_SCHEDULES,
    LINKED_SOURCE,
    SharedApp,
    Synthesized,
    default_app,
    share_app,
)
from tests.support.cli import ARTIFACTS
from tests.support.enforced import EnforcedStack, deploy_enforced, moto_process


def pytest_configure(config: pytest.Config) -> None:
    """Before any fixture of any scope: fake credentials, no profile, no config files."""
    os.environ.update(FAKE_CREDENTIALS)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


# what makes a test more than a unit test: a moto server, a stack built in moto (in process or
# not), a synthesized app, a local stack. A test that uses one is marked `stack`, which
# `make test-fast` leaves out.
STACK_FIXTURES = frozenset(
    {"moto_endpoint", "stack", "enforced", "poc", "retain", "linked", "share", "local_assembly"}
    | {"configuration", "synth"}  # test_checkov's and test_cdk_compliance's synthesized apps
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks the tests that use a stack (above); then puts the files with subprocesses and
    backlogs first: `make test` hands whole files to its two runners (pytest-xdist, --dist
    loadfile), and the long ones must not be the last handed out."""
    for item in items:
        if STACK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)
    slow = ("integration", "perf")
    items.sort(key=lambda item: not any(item.get_closest_marker(m) for m in slow))


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test can reach a real account: fake keys, no profile, no config files."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture(scope="session", autouse=True)
def _plugins() -> None:
    plugins.load(["tests.support.fault_plugins"])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Local mode's moto (patched), in its own process: the tests' clients and the server do not
    share one interpreter's lock, and coverage does not trace moto."""
    with moto_process(covered=False) as endpoint:
        yield endpoint


@pytest.fixture
def stack(moto_endpoint: str) -> Stack:
    return create_stack(moto_endpoint)


@pytest.fixture
def log_dir(request: pytest.FixtureRequest) -> Path:
    """Where a test's worker logs go (kept under test-artifacts/ for CI to upload)."""
    path = ARTIFACTS / "logs" / request.node.name.replace("/", "_")
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.log"):
        old.unlink()
    return path


@pytest.fixture(scope="session")
def poc() -> Synthesized:
    """The app synthesized with cdk.json's defaults (stage poc), once per session."""
    return default_app()


@pytest.fixture(scope="session")
def retain(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Stage retain, on-demand only, with an alert email and a Slack secret."""
    return Synthesized(
        tmp_path_factory.mktemp("cdk-retain"),
        stage="retain",
        spot=False,
        alert_email="team@example.com",
        slack_webhook_secret_name="mlpoc/slack",
    )


@pytest.fixture(scope="session")
def linked(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Two accounts and schedules: a source, a reader account, two schedules."""
    return Synthesized(
        tmp_path_factory.mktemp("cdk-linked"),
        sources=[LINKED_SOURCE],
        result_readers=[LINKED_READER],
        schedules=LINKED_SCHEDULES,
    )


@pytest.fixture(scope="session")
def share(tmp_path_factory: pytest.TempPathFactory) -> SharedApp:
    """The share stack, as a business account synthesizes it (with a results prefix)."""
    return share_app(tmp_path_factory.mktemp("cdk-share"), LINKED_ML, results_prefix="results/")


@pytest.fixture(scope="session")
def enforced(poc: Synthesized) -> Iterator[EnforcedStack]:
    """The local stack's resources and runtime roles with IAM enforced, in a moto process."""
    with moto_process() as endpoint:
        yield deploy_enforced(endpoint, poc)


@pytest.fixture(scope="session")
def local_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app synthesized the way local mode does it (assets bundled), for the tests that start
    `mlpoc local up --assembly`: once per `make test`, shared by its runners (the first one to
    get the lock synthesizes; the others read it; nobody writes into it)."""
    from mlpoc.local.synth import synthesize
    from mlpoc.paths import CHECKOUT

    base = tmp_path_factory.getbasetemp()
    # under xdist each runner's base is <session>/popen-gwN: the session's folder is shared
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    outdir = shared / "local-assembly" / "cdk.out"
    with (shared / "local-assembly.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (outdir / "manifest.json").is_file():
            synthesize(CHECKOUT, outdir)
    return outdir

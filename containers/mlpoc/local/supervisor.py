"""``mlpoc local up``: moto, the data stack, the workers, the event functions and the API.

With IAM enforced (the default), each process runs under its own role from the service
template, the operator commands under a separate admin identity, and moto refuses anything a
role's policies do not allow (:mod:`mlpoc.local.iam`); the denials moto records are kept in the
state file for ``mlpoc local status``.

:class:`LocalMode` does the work; the CLI prints. The running instance is described by a state
file (``<state dir>/local.json``) so that ``mlpoc local down`` and ``mlpoc local status`` work
from another terminal, and so that the operator commands (``--target local``) find the
endpoint, the stack outputs and the API.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any

from mlpoc.aws.cloud_assembly import Assembly
from mlpoc.errors import LocalError
from mlpoc.local import motopatch, sqs_lambda
from mlpoc.local import scheduler as local_schedules
from mlpoc.local.deploy import LocalDeployer, create_alerts_topic
from mlpoc.local.iam import LocalIdentities, NoRole
from mlpoc.local.motoserver import EmbeddedMoto
from mlpoc.local.processes import (
    LOCAL_ACCOUNT,
    ProcessSpec,
    Resolver,
    alerts_topic,
    api_key_secret,
    processes,
)
from mlpoc.local.safety import FAKE, REGION, Credentials, check_env, local_env, local_session
from mlpoc.local.scheduler import LocalSchedule, LocalScheduler
from mlpoc.local.state import STATE_FILE, LocalState, ProcessState, pid_alive
from mlpoc.local.synth import project_dir, synthesize

# Local long polls are short so that Ctrl-C stops an idle worker within seconds (AWS: 20 s).
LOCAL_OVERRIDES = {"MLPOC_WAIT_SECONDS": "5"}
# The API's OpenAPI pages are off on AWS; on the laptop they are what a developer reads.
LOCAL_API_OVERRIDES = {"MLPOC_API_DOCS": "on"}
STOP_SECONDS = 10.0
API_START_SECONDS = 60.0
# what local mode says of the GPU pool's worker (a stack synthesized with mlpoc:gpu)
GPU_STAND_IN = (
    "the GPU pool runs here as a CPU stand-in: the gpu worker is the same code on the GPU queue, "
    "with no GPU and no EC2 instances, so GPU jobs run end to end on the CPU"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def local_notes(notes: list[str], specs: list[ProcessSpec]) -> list[str]:
    """What local mode says of the stack beyond moto's notes: the GPU pool's CPU stand-in."""
    return [*notes, *(GPU_STAND_IN for spec in specs if spec.name == "gpu")]


class LocalMode:
    """One running local stack. ``start()``, then ``wait()`` or ``stop()``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        project_path: Path | None = None,
        progress: Callable[[str], None] = lambda _: None,
        iam: bool = True,
        assembly: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.root = project_path
        self.progress = progress
        self.iam = iam
        self.given_assembly = assembly  # a synthesized cdk.out to use instead of synthesizing
        self.operator: Credentials = FAKE
        self.issued: set[str] = set()
        self.moto = EmbeddedMoto()
        self.children: dict[str, tuple[ProcessSpec, subprocess.Popen[bytes], IO[bytes]]] = {}
        self.env: dict[str, dict[str, str]] = {}
        self.commands: dict[str, list[str]] = {}
        self.iam_left_out: dict[str, list[str]] = {}
        self.state: LocalState | None = None
        self.scheduler = LocalScheduler([], send=lambda *_: None, started=0)
        self._stop = threading.Event()

    # -- start -------------------------------------------------------------------------------
    def start(self) -> LocalState:
        self._refuse_second_instance()
        root = project_dir(self.root) if self.given_assembly is None else Path()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        endpoint = self.moto.start()
        try:
            return self._start(root, endpoint)
        except BaseException:
            self.stop()
            raise

    def _start(self, root: Path, endpoint: str) -> LocalState:
        base_env = local_env(endpoint)
        if self.given_assembly is None:
            self.progress("synthesizing the CDK app (the templates `cdk deploy` uses)")
            assembly = self.state_dir / "cdk.out"
            shutil.rmtree(assembly, ignore_errors=True)
            synthesize(root, assembly)
        else:
            assembly = self.given_assembly
            self.progress(f"using the synthesized templates in {assembly}")
        templates = Assembly.from_dir(assembly).templates
        data_name = next(n for n in templates if n.endswith("-data"))
        service = next(t for n, t in templates.items() if n.endswith("-service"))
        project = data_name.removesuffix("-data")

        self.progress(f"creating {data_name} in moto through CloudFormation")
        deployer = LocalDeployer(endpoint)
        stack = deployer.create(data_name, templates[data_name])
        secret_arn, api_key = deployer.create_api_key(project)
        topic_arn, inbox = create_alerts_topic(deployer, project)
        stack.notes.append(
            f"alerts topic: a stand-in ({topic_arn}); what the monitor job publishes lands in the "
            f"queue {inbox.rsplit('/', 1)[-1]} (the notify function needs Lambda)"
        )

        resolve = Resolver(
            stack.exports,
            REGION,
            {
                **dict.fromkeys(api_key_secret(service), secret_arn),
                **dict.fromkeys(alerts_topic(service), topic_arn),
            },
        )
        specs = processes(service, assembly, resolve)
        queue_urls = self._queue_urls(specs, endpoint)
        found = local_schedules.from_template(service, resolve)
        identities = self._identities(
            service, specs, resolve, endpoint, local_schedules.scheduler_role(found)
        )
        self.scheduler = self._scheduler(
            found, endpoint, identities.get(local_schedules.SCHEDULER, FAKE)
        )

        api_port = free_port()
        self.progress("starting " + ", ".join(s.name for s in specs))
        for spec in specs:
            env = {**base_env, **spec.env, **identities.get(spec.name, FAKE).env()}
            if spec.kind == "worker":
                env.update(LOCAL_OVERRIDES)
            if spec.kind == "api":
                env.update(
                    LOCAL_API_OVERRIDES, MLPOC_API_HOST="127.0.0.1", MLPOC_API_PORT=str(api_port)
                )
            check_env(env, issued=self.issued)
            self.env[spec.name] = env
            self.commands[spec.name] = self._command(spec, queue_urls)
            self._spawn(spec)
        api_url = f"http://127.0.0.1:{api_port}"
        self.state = LocalState(
            pid=os.getpid(),
            project=project,
            endpoint=endpoint,
            region=REGION,
            api_url=api_url,
            api_key=api_key,
            outputs=stack.outputs,
            processes=[self._process_state(name) for name in self.children],
            started_at=time.time(),
            left_out=[
                {"logical_id": r.logical_id, "type": r.type, "reason": r.reason}
                for r in stack.left_out
            ],
            wired=stack.wired,
            notes=[*local_notes(stack.notes, specs), *self.scheduler.notes],
            env_left_out={s.name: s.left_out for s in specs if s.left_out},
            iam=self.iam,
            operator=(
                {
                    "access_key_id": self.operator.access_key_id,
                    "secret_access_key": self.operator.secret_access_key,
                }
                if self.iam
                else {}
            ),
            roles={s.name: s.role_id for s in specs} if self.iam else {},
            iam_left_out=self.iam_left_out,
            schedules=[f.to_state() for f in found],
        )
        self._wait_for_api(api_url)
        self.state.save(self.state_dir)
        return self.state

    def _refuse_second_instance(self) -> None:
        try:
            existing = LocalState.load(self.state_dir)
        except LocalError:
            return
        if pid_alive(existing.pid):
            raise LocalError(
                f"local mode is already running (pid {existing.pid}, API {existing.api_url}); "
                "use it, or stop it with `mlpoc local down`"
            )
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)  # left by a killed instance

    def _queue_urls(self, specs: list[ProcessSpec], endpoint: str) -> dict[str, str]:
        """The URL of each event source's queue (its ARN in the template)."""
        sqs = local_session().client("sqs", endpoint_url=endpoint)
        return {
            s.queue_arn: sqs.get_queue_url(QueueName=s.queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
            for s in specs
            if s.queue_arn
        }

    def _scheduler(
        self, found: list[LocalSchedule], endpoint: str, credentials: Credentials
    ) -> LocalScheduler:
        """Sends the due schedules' jobs as the schedules' role (EventBridge Scheduler's part)."""
        sqs = local_session(credentials).client("sqs", endpoint_url=endpoint)
        log_path = self.state_dir / "logs" / "scheduler.log"

        def send(schedule: LocalSchedule, body: str) -> None:
            sqs.send_message(QueueUrl=schedule.queue_url(endpoint), MessageBody=body)
            with log_path.open("a") as out:
                out.write(f"{time.strftime('%H:%M:%S')} {schedule.name} sent {body}\n")

        return LocalScheduler(found, send=send, started=time.time())

    def _identities(
        self,
        service: dict[str, Any],
        specs: list[ProcessSpec],
        resolve: Resolver,
        endpoint: str,
        others: dict[str, str],
    ) -> dict[str, Credentials]:
        """Each process's role from the template, assumed; the operator; then enforcement on."""
        if not self.iam:
            return {}
        self.progress("creating each process's IAM role from the service template")
        motopatch.DENIALS.clear()
        try:
            enforced = LocalIdentities(endpoint, account=LOCAL_ACCOUNT).for_processes(
                service, specs, resolve, others
            )
        except NoRole as error:
            raise LocalError(str(error)) from None
        assert enforced.operator is not None  # noqa: S101 - for_processes sets it
        self.operator, self.issued = enforced.operator, enforced.issued
        self.iam_left_out = enforced.left_out
        self.progress("IAM enforced: every process runs as its own role, the CLI as the operator")
        return enforced.processes

    def _command(self, spec: ProcessSpec, queue_urls: dict[str, str]) -> list[str]:
        if spec.kind != "function":
            # the container runs `python -m …`: here, this interpreter
            return [
                sys.executable if spec.command[0] == "python" else spec.command[0],
                *spec.command[1:],
            ]
        if spec.asset_dir is None:
            raise LocalError(f"{spec.name} has no code asset in the assembly: synthesize again")
        queue_url = queue_urls[spec.queue_arn]
        command = [
            sys.executable, sqs_lambda.__file__,
            "--asset", str(spec.asset_dir), "--handler", spec.handler,
            "--function-name", spec.name, "--queue-url", queue_url, "--queue-arn", spec.queue_arn,
            "--batch-size", str(spec.batch_size), "--window", str(spec.batching_window),
            "--timeout", str(spec.timeout),
        ]  # fmt: skip
        return [*command, "--report-failures"] if spec.report_failures else command

    def _spawn(self, spec: ProcessSpec) -> None:
        log_path = self.state_dir / "logs" / f"{spec.name}.log"
        log_file = log_path.open("ab")
        process = subprocess.Popen(  # noqa: S603 - our own commands, from the template
            self.commands[spec.name],
            env=self.env[spec.name],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches local mode, which stops the children
        )
        old = self.children.get(spec.name)
        if old:
            old[2].close()
        self.children[spec.name] = (spec, process, log_file)

    def _process_state(self, name: str) -> ProcessState:
        spec, process, log_file = self.children[name]
        return ProcessState(name=name, kind=spec.kind, pid=process.pid, log=log_file.name)

    def _wait_for_api(self, api_url: str) -> None:
        self.progress(f"waiting for the API on {api_url}")
        deadline = time.monotonic() + API_START_SECONDS
        while time.monotonic() < deadline:
            for name, (_, process, log_file) in self.children.items():
                if process.poll() is not None:
                    raise LocalError(
                        f"{name} exited with code {process.returncode} while starting; "
                        f"see {log_file.name}"
                    )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{api_url}/healthz", timeout=2) as response,  # noqa: S310
            ):
                if response.status == HTTPStatus.OK:
                    return
            time.sleep(0.25)
        raise LocalError(f"the API did not answer on {api_url} within {API_START_SECONDS:.0f} s")

    # -- run ---------------------------------------------------------------------------------
    def wait(self) -> None:
        """Until SIGINT/SIGTERM (or stop()): watch the children, restart one that exits."""
        previous = {
            s: signal.signal(s, lambda *_: self._stop.set())
            for s in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            while not self._stop.wait(1.0):
                self._restart_exited()
                self._send_due()
                self.record_denials()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _send_due(self) -> None:
        try:
            self.scheduler.tick(time.time())
        except Exception as error:
            with (self.state_dir / "logs" / "scheduler.log").open("a") as out:
                out.write(f"{time.strftime('%H:%M:%S')} send failed: {error}\n")

    def _restart_exited(self) -> None:
        assert self.state is not None  # noqa: S101 - wait() follows start()
        for entry in self.state.processes:
            spec, process, log_file = self.children[entry.name]
            if process.poll() is None:
                continue
            log_file.write(
                f"\n[mlpoc local] exited with {process.returncode}; restarting\n".encode()
            )
            log_file.flush()
            self._spawn(spec)
            entry.pid = self.children[entry.name][1].pid
            entry.restarts += 1
            self.state.save(self.state_dir)

    def record_denials(self) -> list[motopatch.Denial]:
        """What moto refused since the start (role, action, resource); saved for `status`."""
        denials = list(motopatch.DENIALS)
        if self.state is not None and len(denials) != len(self.state.denials):
            self.state.denials = [
                {"role": d.role, "session": d.session, "action": d.action,
                 "resource": d.resource, "at": d.at}
                for d in denials
            ]  # fmt: skip
            self.state.save(self.state_dir)
        return denials

    def request_stop(self) -> None:
        self._stop.set()

    # -- stop --------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()
        for _, process, _ in self.children.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for _, process, log_file in self.children.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log_file.close()
        self.children.clear()
        with contextlib.suppress(Exception):
            self.moto.stop()
        state_file = self.state_dir / STATE_FILE
        if self.state is not None and state_file.exists():
            with contextlib.suppress(LocalError):
                if LocalState.load(self.state_dir).pid == os.getpid():
                    state_file.unlink()

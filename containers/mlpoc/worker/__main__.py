"""``python -m mlpoc.worker train|predict|gpu``: the container's entry point for the workers.
``gpu`` is a train worker on the GPU pool's queue (the GPU image; locally a CPU stand-in).

The worker runs as PID 1 of its container, and the kernel drops a signal sent to PID 1 that
has no handler. So SIGTERM is caught before anything heavy is imported (scikit-learn and ONNX
take seconds): a stop that arrives while the worker starts is remembered and honoured as soon
as the loop exists, instead of waiting for ECS's SIGKILL.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

USAGE = "usage: python -m mlpoc.worker train|predict|gpu"
ROLES = ("train", "predict", "gpu")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

if TYPE_CHECKING:
    from mlpoc.runtime.environment import Role


class StopSignals:
    """SIGTERM/SIGINT from the first line of ``main``: remembered until a worker takes them."""

    def __init__(self) -> None:
        self.received = False
        self._forward: Callable[[], None] | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> StopSignals:
        self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = True
        if self._forward is not None:
            self._forward()

    def forward_to(self, request_stop: Callable[[], None]) -> None:
        """From now on a signal stops the worker; one that came during start-up does now."""
        self._forward = request_stop
        if self.received:
            request_stop()

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in ROLES:
        sys.stderr.write(USAGE + "\n")
        return 2
    signals = StopSignals().install()
    try:
        return _run(args[0], signals)
    finally:
        signals.restore()


def _run(name: str, signals: StopSignals) -> int:
    # the heavy imports (boto3, numpy; scikit-learn and ONNX with the handlers), after the
    # signal handlers are in place
    from mlpoc import plugins  # noqa: PLC0415
    from mlpoc.aws import logs  # noqa: PLC0415
    from mlpoc.aws.clients import Clients  # noqa: PLC0415
    from mlpoc.errors import PluginError, SettingsError  # noqa: PLC0415
    from mlpoc.runtime.environment import Settings  # noqa: PLC0415
    from mlpoc.worker.context import Handler  # noqa: PLC0415
    from mlpoc.worker.loop import Worker  # noqa: PLC0415
    from mlpoc.worker.predict import PredictHandler  # noqa: PLC0415
    from mlpoc.worker.train import handle_train  # noqa: PLC0415

    role = cast("Role", name)  # one of ROLES: main() checked it
    try:
        settings = Settings.from_env(role)
    except SettingsError as error:
        sys.stderr.write(f"mlpoc worker: {error}\n")
        return 2
    logs.configure(settings.log_level)
    try:
        plugins.load(settings.plugins)
    except PluginError as error:
        sys.stderr.write(f"mlpoc worker: {error}\n")
        return 2
    clients = Clients.create()
    handler: Handler = PredictHandler(settings, clients) if role == "predict" else handle_train
    worker = Worker(settings=settings, clients=clients, handler=handler)
    signals.forward_to(worker.request_stop)
    worker.run()
    if worker.abandoned:
        # A released job's thread may still be inside a library call; do not wait for it.
        logging.shutdown()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m mlpoc.worker train|predict|gpu``: the container's entry point for the workers.
``gpu`` is a train worker on the GPU pool's queue (the GPU image; locally a CPU stand-in)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence

from mlpoc import logs, plugins
from mlpoc.aws import Clients
from mlpoc.errors import PluginError, SettingsError
from mlpoc.settings import Role, Settings
from mlpoc.worker.context import Handler
from mlpoc.worker.loop import Worker
from mlpoc.worker.predict import PredictHandler
from mlpoc.worker.train import handle_train

USAGE = "usage: python -m mlpoc.worker train|predict|gpu"
ROLES: dict[str, Role] = {"train": "train", "predict": "predict", "gpu": "gpu"}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in ROLES:
        sys.stderr.write(USAGE + "\n")
        return 2
    role = ROLES[args[0]]
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
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.request_stop())
    worker.run()
    if worker.abandoned:
        # A released job's thread may still be inside a library call; do not wait for it.
        logging.shutdown()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m mlpoc.api``: serve the API with uvicorn (the container's API command)."""

from __future__ import annotations

import os
import sys

import uvicorn

from mlpoc.api.app import create_app
from mlpoc.api.settings import ApiSettings
from mlpoc.aws import clients, logs
from mlpoc.aws.clients import Clients
from mlpoc.errors import SettingsError


def main() -> int:
    try:
        settings = ApiSettings.from_env()
    except SettingsError as error:
        sys.stderr.write(f"mlpoc api: {error}\n")
        return 2
    logs.configure(settings.runtime.log_level)
    ecs = clients.client("ecs") if settings.worker_services is not None else None
    app = create_app(settings, Clients.create(), ecs=ecs)
    uvicorn.run(
        app,
        # in the container, compose sets MLPOC_API_HOST=0.0.0.0; anywhere else: loopback only
        host=os.environ.get("MLPOC_API_HOST", "127.0.0.1"),
        port=int(os.environ.get("MLPOC_API_PORT", "8000")),
        log_config=None,
        access_log=False,
        proxy_headers=True,
        loop="uvloop",
        http="httptools",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

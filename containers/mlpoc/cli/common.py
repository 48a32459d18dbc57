"""What every command shares: the Typer apps, the consoles, the options that find a stack, and
the way a known error becomes one red line.

A command that operates a stack takes ``dep: Deployment`` and is decorated with
:func:`operates`: the options that find the stack (``--target``, ``--state-dir``,
``--project``, ``--region``) are added to it there, and the stack is resolved once, before the
command runs.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from mlpoc.cli.target import Deployment, TargetName, resolve
from mlpoc.errors import MlpocError
from mlpoc.paths import CHECKOUT

app = typer.Typer(
    name="mlpoc",
    help="Run an ML proof of concept as a service: locally on moto, or on AWS.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
local_app = typer.Typer(help="The whole stack on this machine (moto, workers, functions, API).")
dlq_app = typer.Typer(help="Dead-letter queues: what failed for good, and a redrive after a fix.")
app.add_typer(local_app, name="local")
schedule_app = typer.Typer(help="Scheduled retraining (mlpoc:schedules): list, or run one now.")
app.add_typer(dlq_app, name="dlq")
app.add_typer(schedule_app, name="schedule")
monitor_app = typer.Typer(
    help="Is the model still good: drift of recent inputs and realized accuracy (a monitor job)."
)
app.add_typer(monitor_app, name="monitor")
features_app = typer.Typer(
    help="Feature sets: versioned features by entity key, published apart from training."
)
app.add_typer(features_app, name="features")
plugin_app = typer.Typer(help="Model plugins: scaffold one, check one before any job is sent.")
app.add_typer(plugin_app, name="plugin")
console = Console()
errors = Console(stderr=True)

DEFAULT_STATE_DIR = CHECKOUT / ".mlpoc"
StateDir = Annotated[
    Path,
    typer.Option(envvar="MLPOC_STATE_DIR", help="Where local mode keeps its state file and logs."),
]
Target = Annotated[
    str,
    typer.Option("--target", "-t", envvar="MLPOC_TARGET", help="local (the default) or aws."),
]
Project = Annotated[
    str, typer.Option(envvar="MLPOC_PROJECT", help="The project name (cdk.json mlpoc:project).")
]
Region = Annotated[str | None, typer.Option(help="AWS region (default: your AWS config).")]
Assembly = Annotated[
    Path | None,
    typer.Option(help="A synthesized cdk.out to use (default: synthesize the app now)."),
]

# a check or step: passed, failed, or does not apply to this target
MARKS = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[dim]-[/]"}


def fail(message: str, code: int = 1) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


@contextmanager
def friendly() -> Iterator[None]:
    """Known failures (every :class:`~mlpoc.errors.MlpocError` says what to do) become one red
    line and exit 1, not a traceback."""
    try:
        yield
    except MlpocError as error:
        raise fail(str(error)) from None


def target_name(target: str) -> TargetName:
    """The --target value, or exit 2 with what it may be."""
    if target == "local":
        return "local"
    if target == "aws":
        return "aws"
    raise fail(f"--target must be local or aws, not {target!r}", 2)


def deployment(target: str, state_dir: Path, project: str, region: str | None) -> Deployment:
    return resolve(target_name(target), state_dir=state_dir, project=project, region=region)


F = TypeVar("F", bound=Callable[..., Any])

_WHERE = [
    inspect.Parameter("target", inspect.Parameter.KEYWORD_ONLY, default="local", annotation=Target),
    inspect.Parameter(
        "state_dir", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_STATE_DIR, annotation=StateDir
    ),
    inspect.Parameter(
        "project", inspect.Parameter.KEYWORD_ONLY, default="mlpoc", annotation=Project
    ),
    inspect.Parameter("region", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Region),
]


def operates(command: F) -> F:
    """Give a command that takes ``dep: Deployment`` the options that find the stack, resolve
    the stack once before it runs, and turn known errors into one line."""
    own = [
        p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "dep"
    ]

    @functools.wraps(command)
    def run(
        *, target: str, state_dir: Path, project: str, region: str | None, **kwargs: Any
    ) -> Any:
        with friendly():
            dep = deployment(target, state_dir, project, region)
            return command(dep=dep, **kwargs)

    parameters = [*own, *_WHERE]
    run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run  # type: ignore[return-value]


def key_values(values: list[str]) -> dict[str, Any]:
    """``--param key=value`` options: each value JSON when it parses as JSON, else text."""
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise fail(f"--param takes key=value, got {item!r}", 2)
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params

"""Around a deploy: `mlpoc preflight` before it, `mlpoc smoke` after it, `mlpoc cost` for the
price of what it deploys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mlpoc.cli import render
from mlpoc.cli.common import (
    DEFAULT_STATE_DIR,
    MARKS,
    Assembly,
    Project,
    Region,
    StateDir,
    Target,
    app,
    console,
    fail,
    friendly,
    operates,
    target_name,
)
from mlpoc.cli.target import Deployment
from mlpoc.errors import CostError, TargetError
from mlpoc.local.state import LocalState

GPU_GROUP_OUTPUT = "GpuAutoScalingGroupName"

if TYPE_CHECKING:
    from mlpoc.cli.preflight import Check


@app.command("release-gpu")
@operates
def release_gpu(
    dep: Deployment,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the instances to go.")] = 900,
) -> None:
    """Before `cdk destroy`: the GPU pool to zero (service, scale-in protection, group), so the
    stack can be deleted (`make destroy` runs it first)."""
    from mlpoc.cli.teardown import GpuPool, release  # noqa: PLC0415

    if GPU_GROUP_OUTPUT not in dep.outputs:
        console.print("no GPU pool: nothing to release")
        return
    pool = GpuPool(
        cluster=dep.output("ClusterName"),
        service=dep.output("GpuServiceName"),
        group=dep.output(GPU_GROUP_OUTPUT),
    )
    with friendly():
        held = release(
            dep.client("ecs"),
            dep.client("autoscaling"),
            pool,
            timeout=timeout,
            progress=lambda m: console.print(f"[dim]·[/] {m}"),
        )
    console.print(f"the GPU pool is at zero ({held} instance(s) released): cdk destroy can go on")


@app.command()
@operates
def smoke(
    dep: Deployment,
    timeout: Annotated[
        float, typer.Option(help="Seconds each job may take (a worker scales from 0 on AWS).")
    ] = 600.0,
) -> None:
    """After a deploy: train, predict, the ledger, the API (with and without the key, and around
    CloudFront), the alert path; then delete what it made. Exit 1 on any failure."""
    from mlpoc.cli.smoke import run_smoke  # noqa: PLC0415

    steps = run_smoke(dep, timeout=timeout, progress=lambda m: console.print(f"[dim]·[/] {m}"))
    table = Table("step", "", "what happened", title=f"smoke test ({dep.name})")
    for step in steps:
        table.add_row(step.name, MARKS[step.ok], step.detail)
    console.print(table)
    failed = [s.name for s in steps if s.ok is False]
    if failed:
        raise fail(f"smoke test failed: {', '.join(failed)}")
    console.print("[green]the deployed loop works[/]")


@app.command()
def preflight(
    target: Target = "local",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    project: Project = "mlpoc",
    region: Region = None,
    assembly: Assembly = None,
    refresh_platform: Annotated[
        bool,
        typer.Option(help="Resolve the Beanstalk platform again (for a new environment)."),
    ] = False,
) -> None:
    """Before `cdk deploy`: credentials, bootstrap, Docker, platform, stacks, roles, idle cost."""
    with friendly():
        found = _preflight(
            target=target,
            state_dir=state_dir,
            project=project,
            region=region,
            assembly=assembly,
            refresh_platform=refresh_platform,
        )
    for check in found:
        console.print(f"{MARKS[check.ok]} {check.name:<22} {check.detail}")
        if check.ok is False and check.fix:
            console.print(f"  [red]→ {check.fix}[/]")
    failed = [c for c in found if c.ok is False]
    if failed:
        raise fail(f"{len(failed)} check(s) failed: fix them before `make deploy`")
    console.print("[green]ready[/]" + ("" if target == "local" else ": `make deploy`"))


def _preflight(
    *,
    target: str,
    state_dir: Path,
    project: str,
    region: str | None,
    assembly: Path | None,
    refresh_platform: bool,
) -> list[Check]:
    import boto3  # noqa: PLC0415

    from mlpoc.aws.cloud_assembly import Assembly as CloudAssembly  # noqa: PLC0415
    from mlpoc.cli.preflight import Preflight  # noqa: PLC0415
    from mlpoc.local.safety import local_session  # noqa: PLC0415
    from mlpoc.local.synth import load_context, project_dir  # noqa: PLC0415

    root = project_dir(None)
    context = load_context(root)
    if target_name(target) == "local":
        state = LocalState.load(state_dir)
        session, endpoint, region = local_session(state.credentials()), state.endpoint, state.region
    else:
        session, endpoint = boto3.session.Session(region_name=region), None
        region = session.region_name
        if region is None:
            raise TargetError("no AWS region: pass --region or set AWS_REGION")
    return Preflight(
        session=session,
        region=str(region),
        project=project,
        assembly=CloudAssembly.from_dir(_synthesized(assembly)),
        context_file=root / "cdk.context.json",
        configured_platform=str(context.get("mlpoc:eb_solution_stack", "auto")),
        budget_usd=float(context.get("mlpoc:budget_usd", 0)),
        plugins=tuple(context.get("mlpoc:plugins", ())),
        local=target == "local",
        endpoint=endpoint,
        refresh_platform=refresh_platform,
    ).checks()


def _synthesized(assembly: Path | None) -> Path:
    """The given cloud assembly, or the app synthesized now into a temporary folder."""
    if assembly is not None:
        return assembly
    import tempfile  # noqa: PLC0415

    from mlpoc.local.synth import project_dir, synthesize  # noqa: PLC0415

    return synthesize(project_dir(None), Path(tempfile.mkdtemp()) / "cdk.out")


@app.command()
def cost(
    region: Annotated[
        str | None,
        typer.Option(help="Region to price (default: the stacks' region, AWS_REGION, us-east-1)."),
    ] = None,
    assembly: Assembly = None,
    summary: Annotated[bool, typer.Option(help="One line (what `make synth` prints).")] = False,
) -> None:
    """The idle month and the cost of work, from the synthesized templates and prices.json."""
    from mlpoc import cost as costs  # noqa: PLC0415 - only this command needs it
    from mlpoc.aws.cloud_assembly import Assembly as CloudAssembly  # noqa: PLC0415

    with friendly():
        found = CloudAssembly.from_dir(_synthesized(assembly))
        where = region or found.region or os.environ.get("AWS_REGION") or "us-east-1"
        try:
            result = costs.report(found, where)
        except CostError as error:
            if summary:  # a line in `make synth`: say it, do not fail the synthesis
                typer.echo(f"mlpoc cost: {error}")
                return
            raise fail(str(error)) from None
    if summary:
        typer.echo(
            f"mlpoc cost: idle {result.idle_total:.2f} USD/month in {result.region} "
            f"({result.idle_free_tier:.2f} within AWS's always-free allowances); prices of "
            f"{result.as_of}; `mlpoc cost` for the breakdown"
            + (f"; NOT PRICED: {len(result.unpriced)} item(s)" if result.unpriced else "")
        )
        return
    render.print_cost(result)

"""What the PoC costs: the idle month and the marginal cost of work, from the templates.

Reads a synthesized cloud assembly (``cdk.out``) and a dated price table
(``mlpoc/cost/prices.json``). Each resource that costs money while nothing happens becomes a line;
resources that cost only per use are counted; anything the table has no rule or price for is
*named* in the report, never priced at zero. Marginal costs (per 1,000 train jobs, per
1,000,000 stored predictions) come from the request pattern the runtime really has (one ledger
record, a claim, heartbeats every third of the visibility timeout, one commit transaction, one
batched write per prediction) and the worker task size and capacity strategy in the template.
Everything that is an assumption rather than a template fact (data volume, log volume, job
duration) is in the price table's ``assumptions`` and printed with the report.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mlpoc.aws.cloud_assembly import Assembly
from mlpoc.cost.cross_account import across_accounts
from mlpoc.cost.idle import Idle, unknown_types
from mlpoc.cost.lines import ALTERNATIVE, USAGE_ONLY, Line, usd
from mlpoc.cost.work import (
    TRAIN_JOB_CALLS,
    per_gpu_hour,
    per_lookups,
    per_monitor,
    per_predictions,
    per_train_jobs,
)
from mlpoc.errors import CostError

__all__ = ["TRAIN_JOB_CALLS", "Line", "Report", "load_prices", "region_prices", "report"]


@dataclass
class Report:
    region: str
    as_of: str
    idle: list[Line]
    usage_only: dict[str, int]
    unpriced: list[str]
    train: list[Line]
    predictions: list[Line]
    alternative: Line
    assumptions: dict[str, Any] = field(default_factory=dict)
    gpu: list[Line] = field(default_factory=list)  # the GPU pool, per instance-hour
    across_accounts: list[str] = field(default_factory=list)  # who pays for what crosses
    monitor: list[Line] = field(default_factory=list)  # a month of monitoring (mlpoc:monitor)
    lookups: list[Line] = field(default_factory=list)  # features by key (mlpoc.data.feature_sets)

    @property
    def idle_total(self) -> float:
        return round(sum(line.usd or 0.0 for line in self.idle), 2)

    @property
    def idle_free_tier(self) -> float:
        return round(sum((line.usd or 0.0) - line.free for line in self.idle), 2)

    @staticmethod
    def total(lines: list[Line]) -> float:
        return round(sum(line.usd or 0.0 for line in lines), 2)


def load_prices(path: Path | None = None) -> dict[str, Any]:
    text = (
        path.read_text()
        if path is not None
        else resources.files("mlpoc.cost").joinpath("prices.json").read_text()
    )
    table: dict[str, Any] = json.loads(text)
    return table


def region_prices(table: Mapping[str, Any], region: str) -> dict[str, Any]:
    if region not in table["regions"]:
        known = ", ".join(sorted(table["regions"]))
        raise CostError(
            f"no prices for region {region} in mlpoc/cost/prices.json (it has {known}); add the "
            "region's figures from the pages its 'sources' list, or pass --region"
        )
    prices: dict[str, Any] = table["regions"][region]
    return prices


def report(assembly: Assembly, region: str, table: Mapping[str, Any] | None = None) -> Report:
    table = table or load_prices()
    prices = region_prices(table, region)
    idle = Idle(assembly, prices, table)
    idle.run()
    a = table["assumptions"]
    hours = float(a["hours_per_month"])
    rate = prices["sagemaker_hour"].get(ALTERNATIVE)
    alternative = Line(
        f"SageMaker real-time endpoint, one {ALTERNATIVE} (the smallest), always on",
        f"{hours:.0f} h x {rate} USD" if rate is not None else "no price in prices.json",
        usd(rate * hours) if rate is not None else None,
    )
    usage = Counter(r["Type"] for _, r in assembly.resources() if r["Type"] in USAGE_ONLY)
    return Report(
        region=region,
        as_of=str(table["as_of"]),
        idle=idle.lines,
        usage_only=dict(sorted(usage.items())),
        unpriced=[*idle.unpriced, *unknown_types(assembly)],
        train=per_train_jobs(assembly, prices, a),
        predictions=per_predictions(assembly, prices, a),
        alternative=alternative,
        assumptions=dict(a),
        gpu=per_gpu_hour(assembly, prices, a),
        across_accounts=across_accounts(assembly, prices, table["always_free"]),
        monitor=per_monitor(assembly, prices, a),
        lookups=per_lookups(assembly, prices, a),
    )

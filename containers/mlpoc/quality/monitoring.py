"""Is the model still good: drift of recent inputs against a version's training reference, and
realized accuracy from the review page's corrections. Pure functions over numpy; the monitor job
(:mod:`mlpoc.worker.monitor`) reads the data and writes the report, the API draws it.

**Drift** is the population stability index (PSI) of each feature: the recent rows binned the
way the version's reference profile was (:mod:`mlpoc.models.runs`: deciles of a number, the most
frequent categories plus one bin for the rest), with missing values as one more bin::

    PSI = sum over bins of (recent - reference) * ln(recent / reference)

A feature drifts when its PSI exceeds ``psi`` (0.2 by default: the usual reading is < 0.1
stable, 0.1-0.2 a moderate shift, > 0.2 a significant one). The version's inputs drift when the
share of drifting features exceeds ``share`` (0.3 by default, Evidently's dataset-drift rule).
The prediction scores (a classifier's confidence, a regressor's value) and the predicted labels
get a PSI too, reported beside the features and not counted in the share. Fewer than
``MIN_ROWS`` recent rows are not judged: PSI over a few dozen rows is noise.

**Realized accuracy** is, per served version, the share of reviewed predictions whose served
label the reviewer kept. It is biased low: the review page shows the predictions the model was
least sure of, so it measures the model where it is weakest, not on average. It is still the
one number that comes from people, not from held-out rows; watch its trend, and alert when it
falls below a floor.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlpoc.models import runs
from mlpoc.models.inference import Predictions
from mlpoc.models.registry import ModelVersion
from mlpoc.schema import CATEGORY

PSI_DRIFT = 0.2
DRIFT_SHARE = 0.3
MIN_ROWS = 100
MIN_REVIEWED = 20  # realized accuracy over fewer reviewed items raises no alert
EPSILON = 1e-4  # an empty bin's share (PSI takes the log of each share)
DIGITS = 4
MISSING_BIN = "missing"


@dataclass(frozen=True)
class Thresholds:
    psi: float = PSI_DRIFT
    share: float = DRIFT_SHARE
    min_realized: float | None = None  # None: no realized-accuracy alert

    def to_json(self) -> dict[str, Any]:
        return {"psi": self.psi, "share": self.share, "min_realized": self.min_realized}

    @classmethod
    def from_params(cls, params: Mapping[str, Any], default: Thresholds) -> Thresholds:
        """A monitor job's ``params`` over the worker's defaults; ValueError names a bad one."""
        psi = _fraction(params, "psi", default.psi, upper=10.0)
        share = _fraction(params, "drift_share", default.share, upper=1.0)
        floor = (
            _fraction(params, "min_realized_accuracy", 0.0, upper=1.0)
            if "min_realized_accuracy" in params
            else default.min_realized
        )
        return cls(psi=psi, share=share, min_realized=floor)


def _fraction(params: Mapping[str, Any], name: str, default: float, upper: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= upper:
        raise ValueError(f"params.{name} must be a number in (0, {upper:g}]; got {value!r}")
    return float(value)


def psi(reference: Sequence[float] | np.ndarray, recent: Sequence[float] | np.ndarray) -> float:
    """The population stability index of two distributions over the same bins (each sums to
    1; an empty bin counts as :data:`EPSILON`)."""
    expected = np.clip(np.asarray(reference, np.float64), EPSILON, None)
    actual = np.clip(np.asarray(recent, np.float64), EPSILON, None)
    if expected.shape != actual.shape:
        raise ValueError(f"PSI needs the same bins: {expected.shape} and {actual.shape}")
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _with_missing(profile: Mapping[str, Any], keys: Sequence[str] | None = None) -> list[float]:
    """A profile's shares of all rows: each bin's share of the filled rows scaled by the filled
    share, then the missing share as the last bin."""
    missing = float(profile["missing"])
    shares = profile["shares"]
    values = [shares.get(k, 0.0) for k in keys] if keys is not None else list(shares)
    return [float(v) * (1 - missing) for v in values] + [missing]


def _number_bins(edges: Sequence[float]) -> list[str]:
    if not edges:
        return ["all", MISSING_BIN]
    inner = [f"{a:g} to {b:g}" for a, b in itertools.pairwise(edges)]
    return [f"< {edges[0]:g}", *inner, f"≥ {edges[-1]:g}", MISSING_BIN]


def distribution_drift(reference: Mapping[str, Any], values: np.ndarray) -> dict[str, Any]:
    """One column's PSI against its reference profile, with both distributions (for a chart)."""
    if reference.get("type") == CATEGORY or "edges" not in reference:
        keys = list(reference["shares"])
        named = [k for k in keys if k != runs.OTHER]
        recent = runs.category_profile(np.asarray(values, dtype=object), named)
        bins = [*keys, MISSING_BIN]
        expected, actual = _with_missing(reference, keys), _with_missing(recent, keys)
    else:
        edges = list(reference["edges"])
        recent = runs.numeric_profile(np.asarray(values, np.float64), edges)
        bins = _number_bins(edges)
        expected, actual = _with_missing(reference), _with_missing(recent)
    return {
        "psi": round(psi(expected, actual), DIGITS),
        "bins": bins,
        "reference": [round(v, DIGITS) for v in expected],
        "recent": [round(v, DIGITS) for v in actual],
    }


def output_drift(reference: Mapping[str, Any], predictions: Predictions) -> dict[str, Any]:
    """The prediction scores' PSI (a classifier's confidence and labels, a regressor's value)."""
    found: dict[str, Any] = {}
    if predictions.values is not None and "value" in reference:
        found["value"] = distribution_drift(reference["value"], predictions.values)
    if predictions.confidence is not None and "confidence" in reference:
        found["confidence"] = distribution_drift(reference["confidence"], predictions.confidence)
        found["label"] = distribution_drift(
            reference["label"], np.asarray(predictions.labels, dtype=object)
        )
    return found


def drift(
    profile: Mapping[str, Any],
    columns: Mapping[str, np.ndarray],
    predictions: Predictions | None,
    thresholds: Thresholds,
) -> dict[str, Any]:
    """Recent rows (the version's typed columns) against the version's reference ``profile``."""
    rows = len(next(iter(columns.values()))) if columns else 0
    if rows < MIN_ROWS:
        return {
            "rows": rows,
            "judged": False,
            "why": f"{rows} recent row(s): at least {MIN_ROWS} are needed to judge drift",
            "drifting": [],
            "share": 0.0,
            "drift": False,
        }
    features = {
        name: distribution_drift(reference, columns[name])
        for name, reference in profile["features"].items()
        if name in columns
    }
    drifting = sorted(n for n, f in features.items() if f["psi"] > thresholds.psi)
    share = len(drifting) / max(len(features), 1)
    return {
        "rows": rows,
        "judged": True,
        "features": features,
        "output": output_drift(profile.get("output", {}), predictions) if predictions else {},
        "drifting": drifting,
        "share": round(share, DIGITS),
        "drift": share > thresholds.share,
    }


def day_of(stamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(stamp))


def realized(
    corrections: Iterable[Mapping[str, Any]], versions: Iterable[ModelVersion]
) -> list[dict[str, Any]]:
    """Per served version (newest first): how many of its answers people reviewed, how many they
    kept, the realized accuracy, per day, beside the version's held-out accuracy. A correction
    without the version that served it (recorded before versions were kept) is left out."""
    held_out = {v.version: v.metrics.get("accuracy") for v in versions}
    by_version: dict[int, dict[str, list[int]]] = {}
    for item in corrections:
        if item.get("version") is None or item.get("predicted_label") is None:
            continue
        days = by_version.setdefault(int(item["version"]), {})
        counts = days.setdefault(day_of(float(item.get("annotated_at", 0))), [0, 0])
        counts[0] += 1
        counts[1] += int(str(item["label"]) == str(item["predicted_label"]))
    found = []
    for version in sorted(by_version, reverse=True):
        days = by_version[version]
        reviewed = sum(c[0] for c in days.values())
        kept = sum(c[1] for c in days.values())
        score = held_out.get(version)
        found.append(
            {
                "version": version,
                "reviewed": reviewed,
                "kept": kept,
                "realized": round(kept / reviewed, DIGITS),
                "held_out": None if score is None else round(score, DIGITS),
                "by_day": [
                    {"day": d, "reviewed": c[0], "kept": c[1], "realized": round(c[1] / c[0], 4)}
                    for d, c in sorted(days.items())
                ],
            }
        )
    return found


def alerts(
    model: str,
    versions: Sequence[Mapping[str, Any]],
    realized_accuracy: Sequence[Mapping[str, Any]],
    thresholds: Thresholds,
) -> list[str]:
    """The sentences a monitor run alerts with (empty: nothing to say)."""
    said = []
    for found in versions:
        if found["drift"]:
            names = ", ".join(found["drifting"][:8]) + ("…" if len(found["drifting"]) > 8 else "")  # noqa: PLR2004
            said.append(
                f"{model} v{found['version']}: {len(found['drifting'])} of "
                f"{len(found['features'])} features drift (share {found['share']:.0%} > "
                f"{thresholds.share:.0%}, PSI > {thresholds.psi:g}) over {found['rows']} recent "
                f"rows: {names}"
            )
    floor = thresholds.min_realized
    for found in realized_accuracy:
        if floor is not None and found["reviewed"] >= MIN_REVIEWED and found["realized"] < floor:
            said.append(
                f"{model} v{found['version']}: realized accuracy {found['realized']:.0%} over "
                f"{found['reviewed']} reviewed predictions is under {floor:.0%} (held-out "
                f"{_percent(found['held_out'])}; reviewed items are the least confident ones)"
            )
    return said


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"

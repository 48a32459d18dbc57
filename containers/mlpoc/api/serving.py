"""Models held in memory for realtime predictions, swapped when the promotion pointer moves.

Requests read a reference to the current classifier and keep it for their whole call, so a swap
never fails a request in flight. A new version is verified (sha256) and loaded *before* the
swap; a bad artifact leaves the previous version serving and is reported by ``/healthz``.
A deployment may pin versions (``MLPOC_PINNED_MODELS``): those are never swapped.

A version trained with a feature set is held with its
:class:`~mlpoc.data.feature_binding.Binding`: the
feature set version its requests by key read. Each poll looks at the feature set's pointer too,
so a feature version promoted later is read as soon as it matches the model's columns (and a
mismatch is reported in the binding's ``note``), with no model swap.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from mlpoc.data import feature_binding, feature_sets
from mlpoc.data.feature_binding import Binding
from mlpoc.errors import ArtifactError, RegistryError
from mlpoc.models.inference import OnnxModel, load
from mlpoc.models.registry import ModelVersion, Registry

log = logging.getLogger("mlpoc.api")


@dataclass
class LoadedModel:
    classifier: OnnxModel
    pinned: bool
    problem: str | None = None  # the last refused version, for /healthz
    features: Binding | None = None  # the feature set version requests by key read


class ModelServer:
    def __init__(
        self,
        *,
        registry: Registry,
        s3: Any,
        bucket: str,
        pinned: dict[str, int],
        poll_seconds: float,
    ) -> None:
        self._registry = registry
        self._sets = feature_sets.FeatureSets(registry.dynamodb, registry.table)
        self._s3 = s3
        self._bucket = bucket
        self._pinned = pinned
        self._poll_seconds = poll_seconds
        self._held: dict[str, LoadedModel] = {}
        self._loading = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def held(self, model: str) -> LoadedModel | None:
        """The held version and the feature set version it reads, as one consistent pair (a
        swap replaces the pair; a rebind changes only the pair's binding) (no I/O)."""
        return self._held.get(model)

    def _bind(self, version: ModelVersion) -> Binding | None:
        return feature_binding.binding(self._sets, version)

    def get(self, model: str) -> OnnxModel:
        held = self._held.get(model)
        if held is not None:
            return held.classifier
        with self._loading:  # one load per model, however many first requests arrive at once
            held = self._held.get(model)
            if held is None:
                pinned = self._pinned.get(model)
                version = (
                    self._registry.get(model, pinned)
                    if pinned
                    else self._registry.resolve(model, "current")
                )
                held = LoadedModel(
                    load(self._s3, self._bucket, version),
                    pinned=pinned is not None,
                    features=self._bind(version),
                )
                self._held[model] = held
                log.info("model.loaded", extra={"model": model, "version": version.version})
        return held.classifier

    def refresh(self) -> None:
        """Swap every held, unpinned model whose promoted version changed."""
        for model, held in list(self._held.items()):
            pointer = None if held.pinned else self._registry.pointer(model)
            if pointer is None or pointer.promoted in (None, held.classifier.version.version):
                self._rebind(model, held)
                continue
            try:
                version = self._registry.get(model, pointer.promoted)
                classifier = load(self._s3, self._bucket, version)
                bound = self._bind(version)
            except (ArtifactError, RegistryError) as error:
                if held.problem != str(error):
                    log.error("model.refused", extra={"model": model, "reason": str(error)})
                held.problem = str(error)
                continue
            self._held[model] = LoadedModel(classifier, pinned=False, features=bound)
            log.info(
                "model.swapped",
                extra={
                    "model": model,
                    "from": held.classifier.version.version,
                    "to": version.version,
                },
            )

    def _rebind(self, model: str, held: LoadedModel) -> None:
        """Follow the feature set's pointer for a model that stays: one read per poll, and the
        versions' records read again only when the pointer moved."""
        if held.features is None:
            return
        try:
            pointer = self._sets.pointer(held.features.name)
            if (pointer.promoted if pointer else None) == held.features.promoted:
                return
            bound = feature_binding.binding(self._sets, held.classifier.version, pointer)
        except RegistryError as error:  # its record is gone: keep reading what it read
            log.error("feature_sets.refused", extra={"model": model, "reason": str(error)})
            return
        if bound != held.features:
            log.info(
                "feature_sets.bound",
                extra={
                    "model": model,
                    "from": held.features.version,
                    "to": bound.version if bound else None,
                    "note": bound.note if bound else None,
                },
            )
            held.features = bound

    def status(self) -> dict[str, Any]:
        return {
            model: {
                "version": held.classifier.version.version,
                "pinned": held.pinned,
                **({"refused": held.problem} if held.problem else {}),
                **({"features": held.features.to_json()} if held.features else {}),
            }
            for model, held in self._held.items()
        }

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="model-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            started = time.monotonic()
            try:
                self.refresh()
            except Exception:  # the next poll tries again; serving goes on meanwhile
                log.exception("model.refresh_failed")
            log.debug("model.refreshed", extra={"ms": int((time.monotonic() - started) * 1000)})

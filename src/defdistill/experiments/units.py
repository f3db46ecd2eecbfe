"""Resumable units of work.

A unit (a trained model, an evaluation) is identified by a name and a *key*: everything
its result depends on (configuration, data, the weights it evaluates). Its result is
stored in ``units/<name>.json`` together with the key, written atomically when the unit
finishes. A rerun reuses a stored result only when the stored key equals the new one, so a
changed configuration never reuses stale results; a damaged file (unreadable, JSON of
another shape, or a result that no longer matches the sha256 stored beside it: edited by
hand) is recomputed. A unit made of steps (an evaluation's attacks) also records each
finished step in ``units/in-progress/<name>.json`` under the same key (:class:`StepLog`), so
``kill -9`` loses at most the step in progress; the record is deleted when the unit's result
is stored.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from defdistill.devices import machine_label
from defdistill.io import atomic_write_json, json_bytes, read_json_object

log = logging.getLogger(__name__)

IN_PROGRESS = "in-progress"  # units/in-progress/<name>.json: the finished steps of a unit


def key_digest(key: dict[str, Any]) -> str:
    """A stable sha256 of a JSON-serialisable key."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


class UnitStore:
    """Results of finished units under ``root/units``."""

    def __init__(self, root: str | Path, force: bool = False) -> None:
        self.dir = Path(root) / "units"
        self.force = force
        self.reused: list[str] = []
        self.computed: list[str] = []

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def _record_path(self, name: str) -> Path:
        return self.dir / IN_PROGRESS / f"{name}.json"

    def steps(self, name: str, key: dict[str, Any]) -> StepLog:
        """The finished steps of unit ``name`` computed with exactly ``key`` by a run that
        stopped before the unit finished (none with ``force``)."""
        return StepLog(self._record_path(name), key_digest(key), fresh=self.force)

    def load(self, name: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """The stored result of ``name`` if it was computed with exactly ``key``."""
        path = self._path(name)
        if self.force or not path.is_file():
            return None
        try:
            stored = read_json_object(path)
        except (ValueError, OSError) as err:
            log.warning("%s; recomputing", err)
            return None
        if stored.get("key_sha256") != key_digest(key):
            log.info("%s: configuration changed; recomputing", name)
            return None
        if not isinstance(stored.get("result"), dict):
            log.warning("%s: no result stored; recomputing", path)
            return None
        if stored.get("result_sha256") != key_digest(stored["result"]):
            log.warning("%s: the result does not match its sha256 (edited?); recomputing", path)
            return None
        return stored["result"]

    def run(self, name: str, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict:
        """Return the stored result of unit ``name`` or compute and store it."""
        result = self.load(name, key)
        if result is not None:
            self.reused.append(name)
            return result
        result = compute()
        stored = json.loads(json_bytes(result))  # the result as it reads back (NaN -> null)
        atomic_write_json(self._path(name), {"key": key, "key_sha256": key_digest(key), "result": stored,
                                             "result_sha256": key_digest(stored)})  # fmt: skip
        self.computed.append(name)
        self._record_path(name).unlink(missing_ok=True)
        return result


class StepLog:
    """The finished steps of one unit in progress, each stored as soon as it finishes.

    The file holds the unit's key digest, the steps' results by name and their sha256; a
    record of another key (the configuration or the weights changed), damaged or edited, is
    ignored and replaced by the next step's write.
    """

    def __init__(self, path: Path, key_sha256: str, fresh: bool = False) -> None:
        self.path = path
        self.key_sha256 = key_sha256
        self.steps: dict[str, dict[str, Any]] = {}
        self.machines: list[str] = []  # the machines that computed the steps, in order
        if not fresh:
            self._read()

    def _read(self) -> None:
        if not self.path.is_file():
            return
        try:
            stored = read_json_object(self.path)
        except (ValueError, OSError) as err:
            log.warning("%s; its steps are recomputed", err)
            return
        steps = stored.get("steps")
        if stored.get("key_sha256") != self.key_sha256 or not isinstance(steps, dict):
            return
        if stored.get("steps_sha256") != key_digest(steps):
            log.warning("%s: the steps do not match their sha256 (edited?); recomputing them", self.path)
            return
        self.steps = steps
        machines = stored.get("machines")
        self.machines = [str(m) for m in machines] if isinstance(machines, list) else []

    def load(self, step: str) -> dict[str, Any] | None:
        """The stored result of ``step``, or None."""
        return self.steps.get(step)

    def save(self, step: str, result: dict[str, Any]) -> None:
        """Record ``step`` as finished with ``result`` (atomically, with every step before it)."""
        self.steps[step] = json.loads(json_bytes(result))
        self.machines = list(dict.fromkeys([*self.machines, machine_label()]))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"key_sha256": self.key_sha256, "steps": self.steps,
                                      "steps_sha256": key_digest(self.steps),
                                      "machines": self.machines})  # fmt: skip

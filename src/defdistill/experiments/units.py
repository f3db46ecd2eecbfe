"""Resumable units of work.

A unit (a trained model, an evaluation) is identified by a name and a *key*: everything
its result depends on (configuration, data, the weights it evaluates). Its result is
stored in ``units/<name>.json`` together with the key, written atomically when the unit
finishes. A rerun reuses a stored result only when the stored key equals the new one, so
``kill -9`` loses at most the unit in progress and a changed configuration never reuses
stale results; a damaged file (unreadable, JSON of another shape, or a result that no
longer matches the sha256 stored beside it: edited by hand) is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from defdistill.io import atomic_write_json, json_bytes, read_json_object

log = logging.getLogger(__name__)


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
        return result

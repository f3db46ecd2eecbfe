"""Where a ``defdistill reproduce`` run stands, read from its output directory alone.

The paper profile trains for hours and may span sittings and machines: this says, without
touching the run (it reads files that the run replaces atomically, and takes no lock), which
networks have finished with what test accuracy, which are in training at which epoch and at
what pace, which measurements have finished and how many attacks an unfinished one has done,
per data set and seed
(:mod:`defdistill.experiments.sweep` lays the directory out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from defdistill.checkpoint import MAX_META_BYTES, META
from defdistill.data import DATASETS
from defdistill.experiments.units import IN_PROGRESS
from defdistill.io import held_by_another, read_json_object
from defdistill.training.resume import STATE_FILE, read_progress

_SEED_DIR = re.compile(r"seed-(\d+)")
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class NetworkStatus:
    """One network of a run: trained (``test_accuracy`` set) or in training."""

    name: str  # its directory under models/: baseline, distilled-T20, distilled-T20/teacher
    epoch: int  # finished epochs
    epochs: int  # the run's total; 0 when unknown (a state written before the record)
    seconds: float  # training wall time so far
    test_accuracy: float | None = None
    problem: str | None = None  # why its files could not be read

    @property
    def trained(self) -> bool:
        return self.test_accuracy is not None

    @property
    def seconds_left(self) -> float | None:
        """The rest of its epochs at its pace so far; None when that cannot be estimated."""
        if self.trained or not self.epoch or not self.epochs:
            return None
        return (self.epochs - self.epoch) * self.seconds / self.epoch


@dataclass(frozen=True)
class SeedStatus:
    """One data set and seed of a run."""

    dataset: str
    seed: int
    networks: list[NetworkStatus]
    measurements: list[str]  # the finished units' names (units/<name>.json)
    # an unfinished measurement's name -> its finished attacks (units/in-progress/<name>.json);
    # None when its record cannot be read
    in_progress: dict[str, int | None]


@dataclass(frozen=True)
class RunStatus:
    """Every data set and seed found in a run's output directory."""

    out: Path
    running: bool  # a defdistill run holds the directory's lock now
    seeds: list[SeedStatus]


def _order(name: str) -> tuple[bool, bool, bool, float, str]:
    """The baseline, the teachers (the first phase), the students by temperature, the rest."""
    number = _NUMBER.search(name)
    return (not (name == "baseline" or name.endswith("/teacher")), name != "baseline", not number,
            float(number.group(1)) if number else 0.0, name)  # fmt: skip


def _trained(directory: Path, name: str) -> NetworkStatus:
    try:
        meta = read_json_object(directory / META, MAX_META_BYTES)
        history = meta.get("history") or []
        epochs = int((meta.get("config") or {}).get("epochs") or len(history))
        return NetworkStatus(name, len(history) or epochs, epochs, float(meta.get("train_seconds") or 0.0),
                             float(meta["test_accuracy"]))  # fmt: skip
    except (ValueError, OSError, KeyError, TypeError) as err:
        return NetworkStatus(name, 0, 0, 0.0, problem=str(err))


def _training(directory: Path, name: str) -> NetworkStatus:
    try:
        found = read_progress(directory / STATE_FILE)
    except (ValueError, OSError) as err:
        return NetworkStatus(name, 0, 0, 0.0, problem=str(err))
    return NetworkStatus(name, found.epoch, found.epochs, found.seconds)


def _networks(models: Path) -> list[NetworkStatus]:
    found = {}
    for path in sorted(models.rglob(META)):
        found[path.parent] = _trained(path.parent, path.parent.relative_to(models).as_posix())
    for path in sorted(models.rglob(STATE_FILE)):
        if path.parent not in found:  # a state beside a saved model is left over, not in training
            found[path.parent] = _training(path.parent, path.parent.relative_to(models).as_posix())
    return sorted(found.values(), key=lambda n: _order(n.name))


def _seed(dataset: str, seed: int, directory: Path) -> SeedStatus | None:
    models, units = directory / "models", directory / "units"
    if not models.is_dir() and not units.is_dir():
        return None
    networks = _networks(models) if models.is_dir() else []
    measurements = sorted(p.stem for p in units.glob("*.json")) if units.is_dir() else []
    records = sorted((units / IN_PROGRESS).glob("*.json")) if units.is_dir() else []
    in_progress = {p.stem: _steps_done(p) for p in records if p.stem not in measurements}
    return SeedStatus(dataset, seed, networks, measurements, in_progress)


def _steps_done(record: Path) -> int | None:
    try:
        steps = read_json_object(record).get("steps")
    except (ValueError, OSError):
        return None
    return len(steps) if isinstance(steps, dict) else None


def run_status(out: str | Path) -> RunStatus:
    """What :func:`defdistill.experiments.pipeline.reproduce` has left in ``out`` so far.

    Raises:
        ValueError: ``out`` is not a directory, or holds no run.
    """
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"{out} is not a directory; name the --out of a `defdistill reproduce` run")
    seeds = []
    for dataset in (*DATASETS, "synthetic"):
        root = out / dataset
        if not root.is_dir():
            continue
        found = [(0, root), *sorted((int(m.group(1)), p) for p in root.iterdir()
                                    if p.is_dir() and (m := _SEED_DIR.fullmatch(p.name)))]  # fmt: skip
        seeds += [s for seed, directory in found if (s := _seed(dataset, seed, directory))]
    if not seeds:
        raise ValueError(f"{out} holds no `defdistill reproduce` run (no <dataset>/models or "
                         "<dataset>/units below it); name the run's --out")  # fmt: skip
    return RunStatus(out, held_by_another(out), seeds)

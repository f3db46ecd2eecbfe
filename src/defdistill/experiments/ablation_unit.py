"""The two ablations of the mechanism (:mod:`defdistill.evaluation.ablations`) as a resumable unit
of the sweep.

Per seed, when the profile has a distilled model: *scale alone* on the baseline with its
logits multiplied by the highest temperature ``T_max`` and *precision alone* on the student
distilled at ``T_max`` (Carlini & Wagner 2016, arXiv:1607.04311, against Papernot et al.
2016, arXiv:1511.04508). The images are drawn at random with the run's seed among those
both networks classify correctly
(:func:`defdistill.evaluation.samples.random_common_correct`): ``attack_samples`` of them
for the gradients, the first :data:`JSMA_IMAGES` (at most) for JSMA, which runs 13 times
per image and target (5 rows on F, 4 on Z, 4 in exact arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from defdistill.data import Dataset
from defdistill.devices import resolve_device
from defdistill.evaluation.ablations import run_ablations
from defdistill.evaluation.samples import random_common_correct
from defdistill.experiments.tasks import load_exact
from defdistill.experiments.units import UnitStore

# Bump when what the unit computes changes: stored units are then recomputed.
ABLATION_VERSION = 1
JSMA_IMAGES = 10  # JSMA's images per row: 10 x 9 targets = 90 attempts per rate


@dataclass(frozen=True)
class AblationTask:
    """The ablations of one seed.

    Attributes:
        seed: the run's seed (the draw of the images).
        root: the seed's directory (where ``units/`` lives).
        baseline, student: the baseline's and the hottest student's directories.
        temperature: the hottest student's temperature, the factor of *scale alone*.
        images: images drawn (gradients); JSMA runs on the first ``min(images, JSMA_IMAGES)``.
        key: what the result depends on (both weight digests, the data set, the seed, the
            counts, :data:`ABLATION_VERSION`).
        device, force: where to compute, and whether to recompute a stored result.
    """

    seed: int
    root: str
    baseline: str
    student: str
    temperature: float
    images: int
    key: dict[str, Any]
    device: str
    force: bool


def ablation_task(
    seed: int, root: str, baseline: str, student: str, temperature: float, images: int,
    weights: tuple[str, str], dataset: dict, device: str, force: bool,
) -> AblationTask:  # fmt: skip
    """The task, with its key (``weights``: the baseline's and the student's digests)."""
    key = {"ablation_version": ABLATION_VERSION, "weights": list(weights), "dataset": dataset,
           "seed": seed, "images": images, "jsma_images": min(images, JSMA_IMAGES),
           "temperature": temperature}  # fmt: skip
    return AblationTask(seed, root, baseline, student, temperature, images, key, device, force)


def ablation_unit(ds: Dataset, task: AblationTask) -> dict[str, Any]:
    """Run (or reuse) the ablations of one seed.

    Returns:
        ``{"measured", "reused"}``: :func:`run_ablations`'s dict with the drawn ``indices``
        and ``seed``.
    """
    dev = resolve_device(task.device)
    store = UnitStore(task.root, force=task.force)

    def compute() -> dict[str, Any]:
        baseline = load_exact(task.baseline, task.key["weights"][0], dev)
        student = load_exact(task.student, task.key["weights"][1], dev)
        x, y = ds.x_test.to(dev), ds.y_test.to(dev)
        index = random_common_correct([baseline, student], x, y, task.images, task.seed)
        measured = run_ablations(baseline, student, x[index], y[index], task.temperature,
                                 jsma_images=JSMA_IMAGES, seed=task.seed)  # fmt: skip
        return {**measured, "seed": task.seed, "indices": index.cpu().tolist()}

    measured = store.run("ablations", task.key, compute)
    return {"measured": measured, "reused": "ablations" in store.reused}

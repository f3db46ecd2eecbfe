"""Benchmark: samples/s and quality of defdistill's attacks against ART and torchattacks.

Every row attacks the same model with the same samples (``--samples`` MNIST test images the
model classifies correctly, drawn at random with ``--seed`` as ``defdistill attack`` draws them)
in one process. Each side is timed ``--repeats``
times, alternating which side goes first, and the best time counts. Both sides do the same
work: ours is timed through ``Attack.perturb``, which like the peers returns the images
only; success is then measured the same way for both sides, with the model, on the returned
images. The "equal work" ratio adds that success check (one forward pass, what our
``attack(model, x, y)`` also returns) to both times.

* JSMA vs ART ``SaliencyMapMethod`` (theta = +1, gamma = 0.145), targeted toward the next
  class ``(y + 1) mod 10`` (``--targets next``) or every other class (``--targets all``):
  ours on the softmax (the paper's) and on the target logit (ART's map on a logit model).
  Goal: >= 10x the samples/s, equal or better success rate and L0 (mean fraction of
  pixels changed over the successful attempts).
* JSMA, the whole process (``--only process``): the command a user runs, ``defdistill
  attack --model M --attack jsma --samples N --targets T --json FILE``, timed as a
  subprocess from its start until it has written its JSON and exited (start-up and
  imports, model and data loading, the sample search, the attack, the summary, the
  write), against ART's ``generate`` on the same attempts (the same images and targets;
  the subprocess gets ``OMP_NUM_THREADS`` etc. = ``--threads``). The in-process JSMA row on
  the softmax is timed in the same alternation, so the table shows the whole-process
  ratio beside the attack-only one against the same ART times. The subprocess' success
  rate and L0 come from its JSON, whose per-attempt labels, targets and outcomes must equal
  the in-process run's (same images). Goal: >= 8x.
* C&W L2 vs ART ``CarliniL2Method``, targeted toward the next class, same
  ``max_iter``/``binary_search_steps``/learning rate/initial constant, confidence 0.
  Goal: >= 1x the samples/s and equal or higher success rate. Run on the baseline and,
  with ``--distilled DIR``, on a T = 100 distilled student.
* APGD-CE, APGD-DLR, APGD-T and Square (L-inf) vs torchattacks, untargeted, same eps, steps
  and queries; goal: success within 2 pp of theirs or better, samples/s at least theirs.
* FGSM and PGD (L-inf, random start) vs torchattacks, untargeted, same eps/alpha/steps;
  PGD with our default early stop (each sample stops at its first adversarial iterate)
  and once with ``early_stop=False``. Goal: our time <= 1.2x torchattacks' time (samples/s
  ratio >= 0.83).

    python benchmarks/attacks.py [--model DIR|NAME] [--distilled DIR|NAME] [--samples 100]
        [--repeats 3] [--threads 1] [--seed 0] [--targets next|all] [--only jsma process ...]

``--model`` is a model directory or a shipped model's name (``defdistill models``). Without
it the paper's MNIST network is trained for one epoch in a temporary directory. Needs the
peers (``make bench``, or ``pip install -c constraints.txt adversarial-robustness-toolbox``
and ``pip install --no-deps torchattacks``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from defdistill.attacks import APGD, FGSM, JSMA, PGD, CarliniWagnerL2, Square
from defdistill.checkpoint import CheckpointError, load_model
from defdistill.data import load_dataset
from defdistill.evaluation.battery import apgd_targeted
from defdistill.evaluation.distances import l0_fraction, l2
from defdistill.evaluation.protocol import all_targets
from defdistill.evaluation.samples import random_correct_indices
from defdistill.inference import predict
from defdistill.models import paper_architecture
from defdistill.pretrained import resolve_model
from defdistill.training.config import paper_config
from defdistill.training.runs import train_model

NUM_CLASSES = 10
PROCESS_GOAL = 8.0  # whole-process JSMA: at least this many times ART's generate samples/s
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
T = TypeVar("T")
INSTALL_HINT = (
    "benchmarks/attacks.py compares against adversarial-robustness-toolbox (ART) and torchattacks, "
    "and one of them is not installed.\nInstall both with `make bench`, or:\n"
    "  .venv/bin/pip install -c constraints.txt adversarial-robustness-toolbox\n"
    "  .venv/bin/pip install --no-deps torchattacks"
)


@dataclass
class Side:
    """One library's figures on one row."""

    seconds: float
    success: float
    distance: float  # mean over successful samples (L0 fraction for JSMA, L2 otherwise)


@dataclass
class Row:
    attack: str
    model: str
    samples: int
    distance: str
    ours: Side
    theirs: Side
    peer: str
    goal: str
    met: bool
    check_seconds: float = math.nan  # one forward pass + argmax over the samples (success check)

    @property
    def ratio(self) -> float:
        """Samples/s of ours over theirs (= their time / our time)."""
        return self.theirs.seconds / self.ours.seconds

    @property
    def equal_work_ratio(self) -> float:
        """As :attr:`ratio` with a success check added to both sides (what ``attack(...)`` returns)."""
        return (self.theirs.seconds + self.check_seconds) / (self.ours.seconds + self.check_seconds)


def best_of(sides: dict[str, Callable[[], T]], repeats: int) -> dict[str, tuple[float, T]]:
    """Best wall time and last output of each side; every other repeat runs them in reverse order."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    outputs: dict[str, T] = {}
    order = list(sides.items())
    for r in range(repeats):
        for name, fn in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (min(times[name]), outputs[name]) for name in sides}


def best_times(
    ours: Callable[[], torch.Tensor], theirs: Callable[[], torch.Tensor], repeats: int
) -> tuple[float, torch.Tensor, float, torch.Tensor]:
    """Best wall time and last output of each side, alternating which side runs first."""
    best = best_of({"ours": ours, "theirs": theirs}, repeats)
    return (*best["ours"], *best["theirs"])


def quality(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    distance: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[float, float]:
    """Success rate (measured with the model) and mean distance over successful samples."""
    x_adv = x_adv.detach()  # some peers return tensors that still require grad
    pred = predict(model, x_adv)
    success = pred != y if target is None else pred == target
    dist = distance(x_adv - x)[success]
    return float(success.float().mean()), float(dist.mean()) if len(dist) else math.nan


def art_classifier(model: nn.Module, input_shape: tuple[int, ...]) -> object:
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=input_shape,
        nb_classes=NUM_CLASSES,
        clip_values=(0.0, 1.0),
        channels_first=True,
        device_type="cpu",
    )


def check_time(model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Best time of the success check that our attacks return and the peers do not."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(model, x)
        times.append(time.perf_counter() - start)
    return min(times)


def one_hot(t: torch.Tensor) -> np.ndarray:
    return F.one_hot(t, NUM_CLASSES).numpy().astype(np.float32)


@dataclass
class JsmaCase:
    """The attempts of a JSMA row (one per sample and target) and the two sides to time."""

    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor
    ours: Callable[[], torch.Tensor]
    theirs: Callable[[], torch.Tensor]


def jsma_case(model: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace,
              on: str = "probs") -> JsmaCase:  # fmt: skip
    """Expand the samples to the ``--targets`` attempts (``all``: the 9 other classes, sample-major
    as ``defdistill attack --targets all`` orders them; ``next``: ``(y + 1) mod 10``)."""
    from art.attacks.evasion import SaliencyMapMethod

    if args.targets == "all":
        x, y, target = all_targets(x, y, NUM_CLASSES)
    else:
        target = (y + 1) % NUM_CLASSES
    ours_attack = JSMA(theta=1.0, gamma=0.145, on=on)
    art = SaliencyMapMethod(art_classifier(model, tuple(x.shape[1:])), theta=1.0, gamma=0.145,
                            batch_size=len(x), verbose=False)  # fmt: skip
    x_np, t_np = x.numpy(), one_hot(target)
    return JsmaCase(x, y, target, lambda: ours_attack.perturb(model, x, y, target),
                    lambda: torch.from_numpy(art.generate(x_np, y=t_np)))  # fmt: skip


def jsma_row(model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace,
             on: str = "probs") -> Row:  # fmt: skip
    """``on="probs"``: the paper's saliency on F vs ART's on the model's outputs (here logits:
    another map); ``on="target_logit"``: the same map as ART's, success and L0 should agree."""
    case = jsma_case(model, x, y, args, on)
    t_ours, adv_ours, t_art, adv_art = best_times(case.ours, case.theirs, args.repeats)
    return jsma_result(model, name, case, args, on, t_ours, adv_ours, t_art, adv_art)


def jsma_result(
    model: nn.Module, name: str, case: JsmaCase, args: argparse.Namespace, on: str,
    t_ours: float, adv_ours: torch.Tensor, t_art: float, adv_art: torch.Tensor,
) -> Row:  # fmt: skip
    x, y, target = case.x, case.y, case.target
    s_o, d_o = quality(model, x, adv_ours, y, target, l0_fraction)
    s_a, d_a = quality(model, x, adv_art, y, target, l0_fraction)
    ours, theirs = Side(t_ours, s_o, d_o), Side(t_art, s_a, d_a)
    met = t_art / t_ours >= 10 and s_o >= s_a and d_o <= d_a
    return Row(f"JSMA on {on} θ=+1 γ=0.145 ({args.targets})", name, len(x), "L0 %", ours, theirs,
               "ART SaliencyMapMethod", ">= 10x, succ >=, L0 <=", met,
               check_time(model, x, args.repeats))  # fmt: skip


@dataclass
class ProcessRow:
    """The whole ``defdistill attack`` process against ART's ``generate`` on the same attempts."""

    model: str
    samples: int  # images; attempts = samples x targets per image
    targets: str
    seconds: float  # best wall time of the subprocess, start to exit (its JSON written)
    run_seconds: float  # the CLI's own timer (sample search, attack, summary) in the fastest run
    success: float  # the subprocess' success rate, from its JSON
    distance: float  # its mean L0 fraction over successful attempts, from its JSON
    same_attempts: bool  # its per-attempt labels, targets, outcomes, L0 equal the in-process run's
    attack_only: Row  # the in-process JSMA on F, timed in the same alternation (same ART times)
    load: tuple[float, float]  # 1-minute load average before and after the row

    @property
    def ratio(self) -> float:
        """ART's generate time over the whole process' time."""
        return self.attack_only.theirs.seconds / self.seconds

    @property
    def met(self) -> bool:
        return self.ratio >= PROCESS_GOAL


def defdistill_executable() -> Path:
    """The ``defdistill`` entry point of this interpreter's environment."""
    exe = Path(sys.executable).parent / ("defdistill.exe" if os.name == "nt" else "defdistill")
    if not exe.is_file():
        raise SystemExit(f"{exe}: not found; install defdistill in this environment (pip install -e .)")
    return exe


def cli_jsma(
    model_dir: Path, samples: int, args: argparse.Namespace, out: Path
) -> tuple[list[str], Callable[[], bytes]]:
    """The ``defdistill attack`` command line and a function that runs it once, returning its JSON.

    The subprocess gets the in-process side's thread count through the environment. Its
    exit code is checked; the JSON is removed before each run so a stale one cannot count.
    The JSON is read back inside the timing (well under a millisecond for a few hundred
    attempts) so that each run's own can be kept.
    """
    cmd = [str(defdistill_executable()), "attack", "--model", str(model_dir), "--attack", "jsma",
           "--samples", str(samples), "--targets", args.targets, "--dataset", args.dataset,
           "--seed", str(args.seed), "--device", "cpu", "--json", str(out)]  # fmt: skip
    env = {**os.environ, **dict.fromkeys(THREAD_VARS, str(args.threads))}

    def run() -> bytes:
        out.unlink(missing_ok=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not out.is_file():
            raise SystemExit(f"`{' '.join(cmd)}` exited with {done.returncode} "
                             f"({'no' if not out.is_file() else 'a'} JSON):\n{done.stderr}")  # fmt: skip
        return out.read_bytes()

    return cmd, run


def same_attempts(result: dict, case: JsmaCase, adv_ours: torch.Tensor, model: nn.Module) -> bool:
    """Whether the subprocess made the in-process run's attempts: same labels and targets in the
    same order, and (JSMA being deterministic) the same outcome and L0 on each, so the same images."""
    attempts = result["attempts"]
    if len(attempts) != len(case.x):
        return False
    success = (predict(model, adv_ours) == case.target).tolist()
    l0 = (100 * l0_fraction(adv_ours - case.x)).tolist()
    return all(
        (a["label"], a["target"], a["success"]) == (int(yi), int(ti), si) and abs(a["l0_percent"] - li) < 1e-3
        for a, yi, ti, si, li in zip(attempts, case.y, case.target, success, l0, strict=True)
    )


def process_row(model: nn.Module, name: str, model_dir: Path, x: torch.Tensor, y: torch.Tensor,
                args: argparse.Namespace, tmp: str) -> ProcessRow:  # fmt: skip
    """Time the whole ``defdistill attack --attack jsma`` process, our in-process JSMA on F and
    ART's ``generate`` on the same attempts, in turn (reversed every other repeat), best of
    ``--repeats``. ``x, y``: samples the model classifies correctly, drawn as the command
    draws them (:func:`defdistill.evaluation.samples.random_correct_indices`, ``--seed``)."""
    load_before = os.getloadavg()[0]
    case = jsma_case(model, x, y, args, "probs")
    cmd, cli = cli_jsma(model_dir, len(x), args, Path(tmp) / "process-jsma.json")
    print("whole process: " + " ".join(cmd), file=sys.stderr)
    runs: list[tuple[float, bytes]] = []  # (wall time, JSON) of each subprocess run

    def timed_cli() -> bytes:
        start = time.perf_counter()
        raw = cli()
        runs.append((time.perf_counter() - start, raw))
        return raw

    best = best_of({"process": timed_cli, "ours": case.ours, "theirs": case.theirs}, args.repeats)
    t_cli, (t_ours, adv_ours), (t_art, adv_art) = best["process"][0], best["ours"], best["theirs"]
    result = json.loads(min(runs, key=lambda run: run[0])[1])  # the fastest run's JSON
    summary = result["summary"]
    attack_only = jsma_result(model, name, case, args, "probs", t_ours, adv_ours, t_art, adv_art)
    l0 = summary["mean_l0_percent"]
    return ProcessRow(name, len(x), args.targets, t_cli, summary["seconds"], summary["success_rate"],
                      math.nan if l0 is None else l0 / 100, same_attempts(result, case, adv_ours, model),
                      attack_only, (load_before, os.getloadavg()[0]))  # fmt: skip


def cw_row(model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> Row:
    from art.attacks.evasion import CarliniL2Method

    target = (y + 1) % NUM_CLASSES
    budget = {"binary_search_steps": args.cw_steps, "learning_rate": args.cw_lr,
              "initial_const": args.cw_const}  # fmt: skip
    ours_attack = CarliniWagnerL2(confidence=0.0, max_iterations=args.cw_iter, **budget)
    art = CarliniL2Method(art_classifier(model, tuple(x.shape[1:])), confidence=0.0, targeted=True,
                          max_iter=args.cw_iter, batch_size=len(x), verbose=False, **budget)  # fmt: skip
    x_np, t_np = x.numpy(), one_hot(target)
    t_ours, adv_ours, t_art, adv_art = best_times(
        lambda: ours_attack.perturb(model, x, y, target),
        lambda: torch.from_numpy(art.generate(x_np, y=t_np)),
        args.cw_repeats,
    )
    s_o, d_o = quality(model, x, adv_ours, y, target, l2)
    s_a, d_a = quality(model, x, adv_art, y, target, l2)
    ours, theirs = Side(t_ours, s_o, d_o), Side(t_art, s_a, d_a)
    label = f"C&W L2 ({args.cw_steps}x{args.cw_iter} it, lr {args.cw_lr:g}, c0 {args.cw_const:g})"
    return Row(label, name, len(x), "L2", ours, theirs, "ART CarliniL2Method", ">= 1x, succ >=",
               t_art / t_ours >= 1 and s_o >= s_a, check_time(model, x, args.repeats))  # fmt: skip


def gradient_rows(
    model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace
) -> list[Row]:
    import torchattacks

    rows = []
    # PGD rows: each --pgd-eps with our default early stop, then the first one without it
    # (every sample runs every step, like torchattacks).
    configs = [("FGSM", args.eps, None, True)]
    configs += [("PGD", eps, args.pgd_steps, True) for eps in args.pgd_eps]
    configs += [("PGD", args.pgd_eps[0], args.pgd_steps, False)]
    for attack, eps, steps, early_stop in configs:
        if steps is None:
            ours_attack = FGSM(eps=eps)
            peer = torchattacks.FGSM(model, eps=eps)
            label = f"FGSM eps={eps:g}"
        else:
            alpha = args.pgd_alpha
            ours_attack = PGD(eps=eps, steps=steps, step_size=alpha, random_start=True, early_stop=early_stop)
            peer = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
            label = f"PGD eps={eps:g} α={alpha:g} {steps} steps" + ("" if early_stop else ", no early stop")
        t_ours, adv_ours, t_ta, adv_ta = best_times(
            lambda a=ours_attack: a.perturb(model, x, y), lambda p=peer: p(x, y), args.repeats
        )
        s_o, d_o = quality(model, x, adv_ours, y, None, l2)
        s_t, d_t = quality(model, x, adv_ta, y, None, l2)
        ours, theirs = Side(t_ours, s_o, d_o), Side(t_ta, s_t, d_t)
        met = t_ours <= 1.2 * t_ta
        check = check_time(model, x, args.repeats)
        rows.append(Row(label, name, len(x), "L2", ours, theirs, f"torchattacks.{attack}",
                        "time <= 1.2x", met, check))  # fmt: skip
    return rows


def auto_rows(
    model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace
) -> list[Row]:
    """APGD-CE, APGD-DLR, APGD-T and Square against torchattacks, untargeted L-inf.

    Goal (issue #14): success within 2 pp of the peer's or better, samples/s at least the
    peer's. Each side's success is measured with the model, the same way.
    """
    import torchattacks

    eps, steps, queries = args.auto_eps, args.apgd_steps, args.square_queries
    targets = 9  # torchattacks' APGDT default: every other class of 10
    configs = [
        (f"APGD-CE eps={eps:g} {steps} steps", lambda: APGD(eps=eps, loss="ce", steps=steps).perturb,
         torchattacks.APGD(model, eps=eps, steps=steps, loss="ce"), "torchattacks.APGD (ce)"),
        (f"APGD-DLR eps={eps:g} {steps} steps", lambda: APGD(eps=eps, loss="dlr", steps=steps).perturb,
         torchattacks.APGD(model, eps=eps, steps=steps, loss="dlr"), "torchattacks.APGD (dlr)"),
        (f"Square eps={eps:g} {queries} queries", lambda: Square(eps=eps, queries=queries).perturb,
         torchattacks.Square(model, eps=eps, n_queries=queries), "torchattacks.Square"),
    ]  # fmt: skip
    rows = []
    for label, make, peer, peer_name in configs:
        ours_fn = make()
        t_ours, adv_ours, t_ta, adv_ta = best_times(lambda f=ours_fn: f(model, x, y), lambda p=peer: p(x, y),
                                                    args.repeats)  # fmt: skip
        rows.append(_auto_row(model, name, x, y, label, peer_name, t_ours, adv_ours, t_ta, adv_ta))
    peer = torchattacks.APGDT(model, eps=eps, steps=steps, n_classes=10)
    t_ours, adv_ours, t_ta, adv_ta = best_times(
        lambda: apgd_targeted(model, x, y, eps, steps=steps, targets=targets), lambda: peer(x, y),
        args.repeats,
    )
    rows.append(_auto_row(model, name, x, y, f"APGD-T (DLR, {targets} targets) eps={eps:g} {steps} steps",
                          "torchattacks.APGDT", t_ours, adv_ours, t_ta, adv_ta))  # fmt: skip
    return rows


def _auto_row(model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor, label: str, peer: str,
              t_ours: float, adv_ours: torch.Tensor, t_ta: float, adv_ta: torch.Tensor) -> Row:  # fmt: skip
    s_o, d_o = quality(model, x, adv_ours, y, None, l2)
    s_t, d_t = quality(model, x, adv_ta, y, None, l2)
    met = s_o >= s_t - 0.02 and t_ours <= t_ta
    return Row(label, name, len(x), "L2", Side(t_ours, s_o, d_o), Side(t_ta, s_t, d_t), peer,
               "succ >= -2 pp, time <= 1x", met, check_time(model, x, 1))  # fmt: skip


def drawn_correct(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, seed: int
) -> tuple[torch.Tensor, ...]:
    """``n`` test images ``model`` classifies correctly, drawn at random with ``seed`` as
    ``defdistill attack`` draws them (:func:`defdistill.evaluation.samples.random_correct_indices`)."""
    idx = random_correct_indices(model, x, y, n, seed)
    if len(idx) < n:
        raise SystemExit(f"only {len(idx)} correctly classified test images, asked for {n}")
    return x[idx].contiguous(), y[idx].contiguous()


def fmt(v: float, scale: float = 1.0, digits: int = 3) -> str:
    return "—" if math.isnan(v) else f"{v * scale:.{digits}f}"


def print_table(rows: list[Row]) -> None:
    print("| attack | model | N | ours samples/s | peer | peer samples/s | ratio | ratio, equal work | "
          "success ours / peer | distance | ours / peer | goal | met |")  # fmt: skip
    print("|---|---|--:|--:|---|--:|--:|--:|--:|---|--:|---|---|")
    for r in rows:
        scale, digits = (100.0, 2) if r.distance == "L0 %" else (1.0, 3)
        print(
            f"| {r.attack} | {r.model} | {r.samples} | {r.samples / r.ours.seconds:.1f} | {r.peer} | "
            f"{r.samples / r.theirs.seconds:.1f} | {r.ratio:.2f}x | {r.equal_work_ratio:.2f}x | "
            f"{100 * r.ours.success:.1f} % / {100 * r.theirs.success:.1f} % | {r.distance} | "
            f"{fmt(r.ours.distance, scale, digits)} / {fmt(r.theirs.distance, scale, digits)} | "
            f"{r.goal} | {'yes' if r.met else 'NO'} |"
        )


def print_process_table(rows: list[ProcessRow]) -> None:
    print("\n| JSMA θ=+1 γ=0.145, whole process | model | samples × targets | whole process s "
          "(of it the CLI's run_attack) | in-process attack s | ART generate s | ratio, whole process | "
          "ratio, attack only | success process / in-process / ART | L0 % process / ART | same attempts | "
          "load (1 min) before / after | goal | met |")  # fmt: skip
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|---|---|")
    for r in rows:
        a = r.attack_only
        per = a.samples // r.samples
        print(
            f"| `defdistill attack --targets {r.targets}` vs ART SaliencyMapMethod | {r.model} | "
            f"{r.samples} × {per} = {a.samples} | {r.seconds:.2f} ({r.run_seconds:.2f}) | "
            f"{a.ours.seconds:.2f} | {a.theirs.seconds:.2f} | {r.ratio:.2f}x | {a.ratio:.2f}x | "
            f"{100 * r.success:.1f} % / {100 * a.ours.success:.1f} % / {100 * a.theirs.success:.1f} % | "
            f"{fmt(r.distance, 100, 2)} / {fmt(a.theirs.distance, 100, 2)} | "
            f"{'yes' if r.same_attempts else 'NO'} | {r.load[0]:.2f} / {r.load[1]:.2f} | "
            f">= {PROCESS_GOAL:g}x | {'yes' if r.met else 'NO'} |"
        )


@contextlib.contextmanager
def thread_limit(threads: int) -> Iterator[None]:
    """Limit torch and, when threadpoolctl is present, numpy's BLAS to ``threads`` threads."""
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=threads):
        yield


def load_or_train(spec: str | None, tmp: str, dataset: str = "mnist") -> tuple[nn.Module, str, Path]:
    """The model, its name for the tables and its directory; ``spec``: a directory or a shipped name."""
    if spec:
        try:
            path = resolve_model(spec)
            model, meta = load_model(path)
        except CheckpointError as err:
            raise SystemExit(f"--model/--distilled {spec}: {err}") from None
        return model, f"{spec} (T={meta.get('temperature', 1)})", path
    print(f"no --model given: training the paper's {dataset} network for 1 epoch ...", file=sys.stderr)
    ds = load_dataset(dataset)
    arch = paper_architecture(ds.input_shape[0])
    model, _ = train_model(ds, arch, paper_config(dataset, epochs=1), tmp, "baseline", progress=False)
    return model.eval(), f"{dataset} baseline, 1 epoch (trained now)", Path(tmp)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory or shipped name (default: train 1 epoch now)")
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "cifar10-subset"),
                        help="test images (and the network trained without --model); default mnist")
    parser.add_argument("--distilled", help="a distilled (e.g. T=100) model dir or name: 2nd C&W row")
    parser.add_argument("--samples", type=int, default=100, help="JSMA (and process) samples (default 100)")
    parser.add_argument("--cw-samples", type=int, default=30, help="C&W samples (default 30)")
    parser.add_argument("--gradient-samples", type=int, default=500, help="FGSM/PGD samples (default 500)")
    parser.add_argument("--targets", choices=("next", "all"), default="next", help="JSMA targets")
    parser.add_argument("--repeats", type=int, default=3, help="timings per side, best counts")
    parser.add_argument("--cw-repeats", type=int, default=1, help="C&W timings per side (ART's is slow)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random draw of the test images (default 0)")
    parser.add_argument("--cw-steps", type=int, default=5, help="binary search steps (default 5)")
    parser.add_argument("--cw-iter", type=int, default=100, help="iterations per step (default 100)")
    parser.add_argument("--cw-lr", type=float, default=0.1, help="learning rate (default 0.1)")
    parser.add_argument("--cw-const", type=float, default=1.0, help="initial constant (default 1)")
    parser.add_argument("--eps", type=float, default=0.3, help="FGSM eps (default 0.3)")
    parser.add_argument("--pgd-eps", type=float, nargs="+", default=[0.3, 0.1])
    parser.add_argument("--pgd-alpha", type=float, default=0.01)
    parser.add_argument("--pgd-steps", type=int, default=40)
    parser.add_argument("--auto-samples", type=int, default=200, help="APGD/Square samples (default 200)")
    parser.add_argument("--auto-eps", type=float, default=0.3, help="APGD/Square L-inf eps (default 0.3)")
    parser.add_argument("--apgd-steps", type=int, default=100, help="APGD steps (default 100)")
    parser.add_argument("--square-queries", type=int, default=1000, help="Square queries (default 1000)")
    parser.add_argument("--only", nargs="+", choices=("jsma", "process", "cw", "gradient", "auto"),
                        default=["jsma", "process", "cw", "gradient", "auto"],
                        help="rows to run (process: the whole `defdistill attack` JSMA process vs ART; "
                             "it also gives the JSMA-on-F row)")  # fmt: skip
    args = parser.parse_args()
    try:
        import art
        import torchattacks
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    with thread_limit(args.threads), tempfile.TemporaryDirectory() as tmp:
        model, name, model_dir = load_or_train(args.model, tmp, args.dataset)
        ds = load_dataset(args.dataset, limit_train=1)
        n_max = max(args.samples, args.cw_samples, args.gradient_samples, args.auto_samples)
        x, y = ds.x_test, ds.y_test
        rows: list[Row] = []
        process_rows: list[ProcessRow] = []

        def drawn(m: nn.Module, n: int) -> tuple[torch.Tensor, ...]:
            return drawn_correct(m, x, y, n, args.seed)

        if "process" in args.only:  # times the in-process JSMA on F too: the "jsma" row on probs
            process_rows.append(process_row(model, name, model_dir, *drawn(model, args.samples),
                                            args, tmp))  # fmt: skip
            rows.append(process_rows[-1].attack_only)
        if "jsma" in args.only:
            for on in ("probs", "target_logit"):
                if on == "probs" and process_rows:
                    continue  # measured with the process row, in the same alternation
                rows.append(jsma_row(model, name, *drawn(model, args.samples), args, on))
        if "cw" in args.only:
            rows.append(cw_row(model, name, *drawn(model, args.cw_samples), args))
            if args.distilled:
                student, sname, _ = load_or_train(args.distilled, tmp, args.dataset)
                rows.append(cw_row(student, sname, *drawn(student, args.cw_samples), args))
        if "gradient" in args.only:
            rows += gradient_rows(model, name, *drawn(model, args.gradient_samples), args)
        if "auto" in args.only:
            rows += auto_rows(model, name, *drawn(model, args.auto_samples), args)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), ART {art.__version__}, "
              f"torchattacks {torchattacks.__version__}, best of {args.repeats}, "
              f"up to {n_max} samples drawn at random with seed {args.seed}")  # fmt: skip
        print("command: python " + " ".join(sys.argv))
        print_table(rows)
        if process_rows:
            print_process_table(process_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

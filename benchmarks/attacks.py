"""Benchmark: samples/s and quality of defdistill's attacks against ART and torchattacks.

Every row attacks the same model with the same samples (the first ``--samples`` MNIST test
images the model classifies correctly) in one process. Each side is timed ``--repeats``
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

    python benchmarks/attacks.py [--model DIR] [--distilled DIR] [--samples 100]
        [--repeats 3] [--threads 1] [--targets next|all]

Without ``--model`` the paper's MNIST network is trained for one epoch in a temporary
directory. Needs the peers (``make bench``, or ``pip install -c constraints.txt
adversarial-robustness-toolbox`` and ``pip install --no-deps torchattacks``).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from defdistill.attacks import APGD, FGSM, JSMA, PGD, CarliniWagnerL2, Square
from defdistill.checkpoint import load_model
from defdistill.data import load_dataset
from defdistill.evaluation.battery import apgd_targeted
from defdistill.evaluation.distances import l0_fraction, l2
from defdistill.evaluation.protocol import all_targets
from defdistill.inference import correct_mask, predict
from defdistill.models import paper_architecture
from defdistill.training.config import paper_config
from defdistill.training.runs import train_model

NUM_CLASSES = 10
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


def best_times(
    ours: Callable[[], torch.Tensor], theirs: Callable[[], torch.Tensor], repeats: int
) -> tuple[float, torch.Tensor, float, torch.Tensor]:
    """Best wall time and last output of each side, alternating which side runs first."""
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    outputs: dict[str, torch.Tensor] = {}
    for r in range(repeats):
        order = [("ours", ours), ("theirs", theirs)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - start)
    return min(times["ours"]), outputs["ours"], min(times["theirs"]), outputs["theirs"]


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


def jsma_row(model: nn.Module, name: str, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace,
             on: str = "probs") -> Row:  # fmt: skip
    """``on="probs"``: the paper's saliency on F vs ART's on the model's outputs (here logits:
    another map); ``on="target_logit"``: the same map as ART's, success and L0 should agree."""
    from art.attacks.evasion import SaliencyMapMethod

    if args.targets == "all":
        x, y, target = all_targets(x, y, NUM_CLASSES)
    else:
        target = (y + 1) % NUM_CLASSES
    ours_attack = JSMA(theta=1.0, gamma=0.145, on=on)
    art = SaliencyMapMethod(art_classifier(model, tuple(x.shape[1:])), theta=1.0, gamma=0.145,
                            batch_size=len(x), verbose=False)  # fmt: skip
    x_np, t_np = x.numpy(), one_hot(target)
    t_ours, adv_ours, t_art, adv_art = best_times(
        lambda: ours_attack.perturb(model, x, y, target),
        lambda: torch.from_numpy(art.generate(x_np, y=t_np)),
        args.repeats,
    )
    s_o, d_o = quality(model, x, adv_ours, y, target, l0_fraction)
    s_a, d_a = quality(model, x, adv_art, y, target, l0_fraction)
    ours, theirs = Side(t_ours, s_o, d_o), Side(t_art, s_a, d_a)
    met = t_art / t_ours >= 10 and s_o >= s_a and d_o <= d_a
    return Row(f"JSMA on {on} θ=+1 γ=0.145 ({args.targets})", name, len(x), "L0 %", ours, theirs,
               "ART SaliencyMapMethod", ">= 10x, succ >=, L0 <=", met,
               check_time(model, x, args.repeats))  # fmt: skip


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


def first_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    idx = correct_mask(model, x, y).nonzero().flatten()[:n]
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


def load_or_train(path: str | None, tmp: str, dataset: str = "mnist") -> tuple[nn.Module, str]:
    if path:
        model, meta = load_model(path)
        return model, f"{path} (T={meta.get('temperature', 1)})"
    print(f"no --model given: training the paper's {dataset} network for 1 epoch ...", file=sys.stderr)
    ds = load_dataset(dataset)
    arch = paper_architecture(ds.input_shape[0])
    model, _ = train_model(ds, arch, paper_config(dataset, epochs=1), tmp, "baseline", progress=False)
    return model.eval(), f"{dataset} baseline, 1 epoch (trained now)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="defdistill model directory (default: train 1 epoch now)")
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "cifar10-subset"),
                        help="test images (and the network trained without --model); default mnist")
    parser.add_argument("--distilled", help="a distilled (e.g. T=100) model directory for a 2nd C&W row")
    parser.add_argument("--samples", type=int, default=100, help="JSMA samples (default 100)")
    parser.add_argument("--cw-samples", type=int, default=30, help="C&W samples (default 30)")
    parser.add_argument("--gradient-samples", type=int, default=500, help="FGSM/PGD samples (default 500)")
    parser.add_argument("--targets", choices=("next", "all"), default="next", help="JSMA targets")
    parser.add_argument("--repeats", type=int, default=3, help="timings per side, best counts")
    parser.add_argument("--cw-repeats", type=int, default=1, help="C&W timings per side (ART's is slow)")
    parser.add_argument("--threads", type=int, default=1)
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
    parser.add_argument("--only", nargs="+", choices=("jsma", "cw", "gradient", "auto"),
                        default=["jsma", "cw", "gradient", "auto"])  # fmt: skip
    args = parser.parse_args()
    try:
        import art
        import torchattacks
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    with thread_limit(args.threads), tempfile.TemporaryDirectory() as tmp:
        model, name = load_or_train(args.model, tmp, args.dataset)
        ds = load_dataset(args.dataset, limit_train=1)
        n_max = max(args.samples, args.cw_samples, args.gradient_samples, args.auto_samples)
        x, y = ds.x_test, ds.y_test
        rows: list[Row] = []
        if "jsma" in args.only:
            for on in ("probs", "target_logit"):
                rows.append(jsma_row(model, name, *first_correct(model, x, y, args.samples), args, on))
        if "cw" in args.only:
            rows.append(cw_row(model, name, *first_correct(model, x, y, args.cw_samples), args))
            if args.distilled:
                student, sname = load_or_train(args.distilled, tmp, args.dataset)
                rows.append(cw_row(student, sname, *first_correct(student, x, y, args.cw_samples), args))
        if "gradient" in args.only:
            rows += gradient_rows(model, name, *first_correct(model, x, y, args.gradient_samples), args)
        if "auto" in args.only:
            rows += auto_rows(model, name, *first_correct(model, x, y, args.auto_samples), args)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), ART {art.__version__}, "
              f"torchattacks {torchattacks.__version__}, best of {args.repeats}, "
              f"up to {n_max} samples")  # fmt: skip
        print("command: python " + " ".join(sys.argv))
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Measurement: the same networks trained in float32 and in bfloat16 autocast, side by side.

For each precision, from the same run seed on the first ``--limit-train`` MNIST training
images: the baseline (T = 1) and defensive distillation at each ``--temperatures`` (the
teacher and the student). Prints, per model, the test accuracy on the 10,000 test images
and the deployed mean max logit (each with its 95 % interval), the soft labels' mean
entropy, and the success rate of the paper's JSMA on F (Papernot et al. 2016,
arXiv:1511.04508) with its Wilson interval over attempts, so that a temperature where
bfloat16 training changes what the reproduction concludes shows up.

    OMP_NUM_THREADS=1 python benchmarks/precision.py --limit-train 6000 --epochs 4 \\
        --temperatures 100 --jsma-samples 30 --out /tmp/precision
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from defdistill.attacks import JSMA
from defdistill.checkpoint import load_model
from defdistill.data.mnist import load_mnist
from defdistill.evaluation import paper_success_rate
from defdistill.evaluation.stats import MeanEstimate, Proportion
from defdistill.inference import predict_logits
from defdistill.training.config import paper_config, role_seed
from defdistill.training.distill import distill
from defdistill.training.runs import train_model


def describe(name: str, model: torch.nn.Module, ds, jsma_samples: int, extra: str) -> None:
    logits = predict_logits(model, ds.x_test)
    accuracy = Proportion.from_mask(logits.argmax(1) == ds.y_test)
    scale = MeanEstimate.of(logits.max(1).values)
    first = (logits.argmax(1) == ds.y_test).nonzero().flatten()[:jsma_samples]  # first correct images
    jsma = paper_success_rate(model, JSMA(on="probs"), ds.x_test[first], ds.y_test[first])
    success = Proportion.of(jsma.successes, jsma.attempts)
    print(f"{name:<28} accuracy {accuracy.rate:.2%} [{accuracy.low:.2%}, {accuracy.high:.2%}] "
          f"(n {accuracy.n}); mean max logit {scale.mean:.1f} [{scale.low:.1f}, {scale.high:.1f}]; "
          f"JSMA on F {success.rate:.1%} [{success.low:.1%}, {success.high:.1%}] "
          f"({success.k}/{success.n} attempts){extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-train", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--temperatures", default="100")
    parser.add_argument("--jsma-samples", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    ds = load_mnist(limit_train=args.limit_train)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {len(ds.x_train)} training "
          f"images, {args.epochs} epochs, seed {args.seed}", flush=True)
    for precision in args.precisions.split(","):
        start = time.process_time()
        baseline_config = paper_config("mnist", epochs=args.epochs, precision=precision,
                                       seed=role_seed(args.seed, "baseline"))  # fmt: skip
        model, meta = train_model(ds, "mnist_cnn", baseline_config, args.out / precision / "baseline",
                                  "baseline", device="cpu", progress=False)  # fmt: skip
        describe(f"{precision} baseline", model, ds, args.jsma_samples,
                 f"; trained in {time.process_time() - start:.0f} CPU s ({meta['precision']})")
        for t in (float(v) for v in args.temperatures.split(",")):
            start = time.process_time()
            config = paper_config("mnist", epochs=args.epochs, seed=args.seed, precision=precision,
                                  temperature=t)  # fmt: skip
            meta = distill(ds, "mnist_cnn", config, args.out / precision / f"T{t:g}", device="cpu",
                           progress=False, allow_untrained=True)  # fmt: skip
            student, _ = load_model(args.out / precision / f"T{t:g}")
            entropy = meta["soft_labels"]["mean_entropy"]
            describe(f"{precision} student T = {t:g}", student, ds, args.jsma_samples,
                     f"; teacher {meta['teacher']['test_accuracy']:.2%}; soft-label entropy "
                     f"{entropy:.4f} nats; trained in {time.process_time() - start:.0f} CPU s")


if __name__ == "__main__":
    main()

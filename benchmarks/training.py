"""Benchmark: images/s of defdistill's training loop against a bare PyTorch loop.

Both train the paper's MNIST network on the same embedded MNIST images, with the same
optimiser, batch size and number of steps, in the same process; each is timed
``--repeats`` times, alternating, and the best time counts. Prints both figures and the
ratio (goal >= 0.90).

    python benchmarks/training.py [--samples 6000] [--repeats 3] [--temperature 100]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from defdistill.data.mnist import load_mnist
from defdistill.models import build_model
from defdistill.training.config import TrainConfig
from defdistill.training.loop import train


def bare_loop(x: torch.Tensor, y: torch.Tensor, temperature: float, batch_size: int) -> float:
    """The reference: the simplest correct PyTorch loop doing the same steps."""
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, 10).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    order = torch.randperm(len(x))
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        idx = order[i : i + batch_size]
        loss = F.cross_entropy(model(x[idx]) / temperature, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def our_loop(x: torch.Tensor, y: torch.Tensor, temperature: float, batch_size: int) -> float:
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, 10)
    cfg = TrainConfig(epochs=1, batch_size=batch_size, temperature=temperature)
    start = time.perf_counter()
    # evaluation on a single test image keeps the end-of-training evaluation out of the timing
    train(model, x, y, x[:1], y[:1], cfg, device="cpu", progress=False, allow_untrained=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=100.0)
    args = parser.parse_args()
    ds = load_mnist(limit_train=args.samples, limit_test=1)
    x, y = ds.x_train, ds.y_train
    ours, bare = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(x, y, args.temperature, args.batch_size))
        ours.append(our_loop(x, y, args.temperature, args.batch_size))
    ours_ips, bare_ips = len(x) / min(ours), len(x) / min(bare)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(x)} images, "
          f"batch {args.batch_size}, T={args.temperature:g}")
    print(f"bare PyTorch loop   {bare_ips:8.0f} images/s")
    print(f"defdistill.training {ours_ips:8.0f} images/s")
    print(f"ratio               {ours_ips / bare_ips:8.3f}  (goal >= 0.90)")


if __name__ == "__main__":
    main()

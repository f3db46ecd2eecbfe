"""Benchmark: images/s of defdistill's training loop against a bare PyTorch loop.

Both train the paper's MNIST network on the same embedded MNIST images, with the same
optimiser, batch size and number of steps, in the same process; each is timed
``--repeats`` times, alternating, and the best time counts. Prints both figures and the
ratio (goal >= 0.90), and the bare loop once more in the standard (channels-first) layout:
the speed-up of the layout training uses (channels-last on a CPU,
:func:`defdistill.training.loop.training_layout`).

    python benchmarks/training.py [--samples 6000] [--repeats 3] [--temperature 100] [--precision bf16]
                                  [--compile]

``--precision bf16`` times the loops under bfloat16 autocast (the bare loop does it by hand);
``--compile`` the bare loop under ``torch.compile`` as well.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from defdistill.data.mnist import load_mnist
from defdistill.models import build_model
from defdistill.training.config import TrainConfig
from defdistill.training.loop import LAYOUT_NAMES, train, training_layout


def bare_loop(
    x: torch.Tensor, y: torch.Tensor, temperature: float, batch_size: int, precision: str,
    layout: torch.memory_format, compiled: bool = False,
) -> float:  # fmt: skip
    """The reference: the simplest correct PyTorch loop doing the same steps in ``layout``;
    ``compiled``: the network under ``torch.compile``. One untimed step first (the compilation,
    for a compiled network)."""
    torch.manual_seed(0)
    bf16 = precision == "bf16"
    model = build_model("mnist_cnn", 1, 28, 10).train().to(memory_format=layout)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    order = torch.randperm(len(x))

    def step(idx: torch.Tensor) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = forward(x[idx].contiguous(memory_format=layout))
        loss = F.cross_entropy(logits.float() / temperature, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(order[:batch_size])
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        step(order[i : i + batch_size])
    return time.perf_counter() - start


def our_loop(x: torch.Tensor, y: torch.Tensor, temperature: float, batch_size: int, precision: str) -> float:
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, 10)
    cfg = TrainConfig(epochs=1, batch_size=batch_size, temperature=temperature, precision=precision)
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
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--compile", action="store_true",
                        help="also time the bare loop with torch.compile (compilation untimed)")
    args = parser.parse_args()
    ds = load_mnist(limit_train=args.samples, limit_test=1)
    x, y = ds.x_train, ds.y_train
    layout = training_layout(args.precision, torch.device("cpu"))
    ours, bare, standard = [], [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(x, y, args.temperature, args.batch_size, args.precision, layout))
        ours.append(our_loop(x, y, args.temperature, args.batch_size, args.precision))
        standard.append(bare_loop(x, y, args.temperature, args.batch_size, args.precision,
                                  torch.contiguous_format))  # fmt: skip
    ours_ips, bare_ips, standard_ips = (len(x) / min(t) for t in (ours, bare, standard))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(x)} images, "
          f"batch {args.batch_size}, T={args.temperature:g}, {args.precision}, {LAYOUT_NAMES[layout]}")
    print(f"bare PyTorch loop   {bare_ips:8.0f} images/s")
    print(f"defdistill.training {ours_ips:8.0f} images/s")
    print(f"ratio               {ours_ips / bare_ips:8.3f}  (goal >= 0.90)")
    print(f"bare loop, channels-first {standard_ips:8.0f} images/s: the layout's speed-up "
          f"{bare_ips / standard_ips:.3f}")
    if args.compile:
        compiled = [bare_loop(x, y, args.temperature, args.batch_size, args.precision, layout, compiled=True)
                    for _ in range(args.repeats)]  # fmt: skip
        compiled_ips = len(x) / min(compiled)
        print(f"bare loop, torch.compile {compiled_ips:8.0f} images/s: "
              f"{compiled_ips / bare_ips:.3f} of eager")


if __name__ == "__main__":
    main()

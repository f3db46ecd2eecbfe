"""Benchmark: peak memory of JSMA on CIFAR-10-sized inputs, and how ``batch_size`` bounds it.

The paper's CIFAR-10 network (``build_model("cifar10_cnn", 3, 32, 10)``, untrained, seed
0) is attacked by the paper's JSMA (on the softmax, gamma 14.5 %, every sample toward
the next class) on ``--samples`` random 3x32x32 inputs, with ``JSMA(batch_size=B)``, the
``defdistill attack --batch-size B`` option, for each ``B`` of ``--batch-sizes``.

Each configuration runs in a fresh child process, because the peak resident set size
(``VmHWM`` in ``/proc/self/status``) only grows within a process. The child builds the
model and the inputs, runs a 2-sample warm-up attack (so that libraries and code paths
are loaded), resets ``VmHWM`` to the current RSS when the kernel allows it (writing 5 to
``/proc/self/clear_refs``), then runs the attack and reports the peak increase
``VmHWM(after) - VmRSS(before)``. ``tracemalloc`` is reported too: it only sees
allocations made through Python's allocator, not tensor storage, so it stays small;
the RSS figure is the one that counts. The run fails (exit 1) if a peak exceeds
``--limit-gib`` (default 2 GiB).

``--what predict`` measures instead the step that precedes every ``defdistill attack``:
predicting the ``--samples`` test images to keep the correctly classified ones
(``correct_mask`` with ``batch_size=B``; ``all`` = the default, chunks of
``inference.PREDICT_BATCH``; ``B = --samples`` is one forward pass over everything).

    python benchmarks/memory.py [--samples 100] [--batch-sizes all,100,25] [--threads 1]
    python benchmarks/memory.py --what predict --samples 10000 --batch-sizes 10000,all --limit-gib 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

MIB = 2**20


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not permitted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(args: argparse.Namespace) -> dict:
    """Measure one configuration in this (fresh) process; return the figures."""
    import torch

    from defdistill.attacks import JSMA
    from defdistill.inference import correct_mask
    from defdistill.models import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("cifar10_cnn", 3, 32, 10).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.samples, 3, 32, 32, generator=g)
    batch = None if args.batch_size == "all" else int(args.batch_size)
    with torch.no_grad():
        y = torch.cat([model(x[i : i + 500]).argmax(1) for i in range(0, len(x), 500)])
    target = (y + 1) % 10
    attack = JSMA(gamma=args.gamma, on=args.on, batch_size=batch)
    attack(model, x[:2], y[:2], target[:2])  # warm-up: code paths and libraries loaded
    correct_mask(model, x[:2], y[:2])

    reset = reset_peak()
    rss_before, hwm_before = status_kib("VmRSS"), status_kib("VmHWM")
    tracemalloc.start()
    start = time.perf_counter()
    if args.what == "jsma":
        result = attack(model, x, y, target)
        extra = {
            "success_rate": result.success_rate,
            "mean_iterations": float(result.info["iterations"].float().mean()),
        }
    else:
        correct = correct_mask(model, x, y, batch_size=batch)
        extra = {"correct": int(correct.sum())}
    seconds = time.perf_counter() - start
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm_after = status_kib("VmHWM")
    base = rss_before if reset else max(rss_before, hwm_before)
    return {
        "what": args.what,
        "samples": args.samples,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "peak_reset": reset,
        "rss_before_mib": rss_before / 1024,
        "peak_rss_mib": hwm_after / 1024,
        "peak_increase_mib": max(0, hwm_after - base) / 1024,
        "tracemalloc_peak_mib": py_peak / MIB,
        "seconds": seconds,
        **extra,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=["jsma", "predict"], default="jsma")
    parser.add_argument("--samples", type=int, default=100, help="inputs attacked (default 100)")
    parser.add_argument("--batch-sizes", default="all,100,25",
                        help="comma-separated JSMA batch sizes; 'all' = no batching")
    parser.add_argument("--gamma", type=float, default=0.145, help="JSMA gamma (paper: 0.145)")
    parser.add_argument("--on", choices=["probs", "logits"], default="probs")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--limit-gib", type=float, default=2.0, help="fail above this peak")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", default="all", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0

    rows = []
    for batch in args.batch_sizes.split(","):
        cmd = [sys.executable, __file__, "--child", "--what", args.what, "--samples", str(args.samples),
               "--batch-size", batch, "--gamma", str(args.gamma), "--on", args.on,
               "--threads", str(args.threads)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{args.what} samples={r['samples']:<5} batch_size={r['batch_size']:<5} "
              f"peak RSS increase {r['peak_increase_mib']:8.1f} MiB  (peak RSS {r['peak_rss_mib']:7.1f} MiB, "
              f"tracemalloc peak {r['tracemalloc_peak_mib']:5.2f} MiB, {r['seconds']:6.1f} s"
              + (f", success {100 * r['success_rate']:.0f} %, mean {r['mean_iterations']:.1f} iterations"
                 if "success_rate" in r else "")
              + ")", flush=True)  # fmt: skip
    worst = max(r["peak_increase_mib"] for r in rows)
    limit = args.limit_gib * 1024
    verdict = "OK" if worst <= limit else "TOO MUCH"
    print(f"largest peak increase {worst:.1f} MiB (limit {limit:.0f} MiB): {verdict}; "
          f"VmHWM reset before measuring: {all(r['peak_reset'] for r in rows)}")
    return 0 if worst <= limit else 1


if __name__ == "__main__":
    sys.exit(main())

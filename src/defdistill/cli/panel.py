"""``defdistill audit-panel``: the blind audit on defences the literature broke (issue 29)."""

from __future__ import annotations

import argparse
from pathlib import Path

from defdistill.cli.options import positive_int, seed

MEMBERS = ("bit-depth", "thermometer", "resize-pad", "noise", "k-wta", "distilled", "adv-pgd",
           "adv-trades")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit-panel", help="audit a panel of broken and robust MNIST defences")
    p.add_argument("--out", type=Path, default=Path("docs/audit-panel"),
                   help="where panel.json and report.md go (default docs/audit-panel)")
    p.add_argument("--cache", type=Path, default=Path("results/audit-panel/models"),
                   help="trained members (thermometer, k-WTA, TRADES) are cached here")
    p.add_argument("--members", nargs="+", choices=MEMBERS, default=list(MEMBERS),
                   help="which members, in this order (default all)")
    p.add_argument("--samples", type=positive_int, default=100,
                   help="test images drawn at random, the same for every member (default 100)")
    p.add_argument("--apgd-steps", type=positive_int, default=50, help="APGD iterations (default 50)")
    p.add_argument("--square-queries", type=positive_int, default=2000,
                   help="Square's query budget per image (default 2000)")
    p.add_argument("--resume", action="store_true",
                   help="keep the members of OUT/panel.json (same settings) and run only the others")
    p.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="warnings only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from defdistill.data import load_dataset
    from defdistill.experiments.panel import PanelConfig, report_markdown, run_panel
    from defdistill.experiments.panel_members import members

    torch.set_num_threads(1)
    ds = load_dataset("mnist")
    config = PanelConfig(samples=args.samples, seed=args.seed, apgd_steps=args.apgd_steps,
                         square_queries=args.square_queries)  # fmt: skip
    done = None
    if args.resume and (args.out / "panel.json").is_file():
        done = json.loads((args.out / "panel.json").read_text())
    todo = [m for m in args.members if not done or m not in {r["name"] for r in done["members"]}]
    panel = run_panel(members(ds, args.cache, todo, args.seed), ds, config, out=args.out, done=done)
    print(report_markdown(panel))
    return 0

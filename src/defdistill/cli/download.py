"""``defdistill download``: fetch a data set and verify its checksums."""

from __future__ import annotations

import argparse
from pathlib import Path

from defdistill.cli.options import add_common
from defdistill.data.names import DATASETS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download a data set (needs the network)")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--data-dir", type=Path, required=True, help="destination directory")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defdistill.data.download import download

    path = download(args.dataset, args.data_dir)
    print(f"{args.dataset} verified in {path}")
    return 0

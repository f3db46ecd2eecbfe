"""``defdistill download``: fetch a data set and verify its checksums."""

from __future__ import annotations

import argparse

from defdistill.cli.options import add_common, output_path
from defdistill.data.names import DATASETS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download a data set (needs the network)")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--data-dir", type=output_path, required=True, help="destination directory")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defdistill.cli.outputs import check_output_dir
    from defdistill.data.download import download

    check_output_dir(args.data_dir, "--data-dir")
    path = download(args.dataset, args.data_dir)
    print(f"{args.dataset} verified in {path}")
    return 0

"""``defdistill models``: the pretrained models shipped with the package, usable by name."""

from __future__ import annotations

import argparse

from defdistill.cli.options import add_common, printable


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the pretrained models shipped with the package")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from defdistill.pretrained import available, describe

    names = available()
    if not names:
        print("no pretrained model is shipped with this defdistill; train one with "
              "`defdistill train --out DIR` and pass --model DIR")  # fmt: skip
        return 0
    print(f"{len(names)} shipped model(s); pass a name to any --model or --reference:")
    width = max(map(len, names))
    for name in names:
        d = describe(name)
        accuracy = d["test_accuracy"]
        shown = f"{accuracy:.2%}" if isinstance(accuracy, int | float) else "accuracy ?"
        print(f"  {printable(name):<{width}}  {printable(d['dataset'])}  {printable(d['role'])}  "
              f"T={d['temperature']:g}  test accuracy {shown}")  # fmt: skip
        p = d["provenance"]
        seconds = p.get("training_seconds")
        took = f"{seconds:.0f} s" if isinstance(seconds, int | float) else "? s"
        print(
            f"      trained by `{printable(p.get('command', '?'))}` at commit "
            f"{printable(p.get('commit', '?'))}, {took} on {printable(p.get('cpu', '?'))}"
        )
    return 0

"""Running the command line in-process and checking its one-line errors (the CLI tests)."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from defdistill.cli import main
from defdistill.models import build_model, output_layer

META_BASE = {
    "architecture": "mnist_cnn", "input_shape": [1, 28, 28], "num_classes": 10,
    "dataset": {"name": "mnist"}, "role": "baseline", "temperature": 1.0,
}  # fmt: skip


def run_cli(argv: list, capsys) -> tuple[int, str, str]:
    """``main(argv)`` in-process; argparse errors (SystemExit) count as return codes."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


WHOLE = 64 * 2**20  # files up to this size are hashed whole; larger ones by size, mtime and both ends


def digest(path: Path) -> str:
    """A fingerprint that changes when the file does: its sha256, or for a file above
    :data:`WHOLE` (the 3 GB sparse files of the reliability tests) its size, modification
    time and the sha256 of its first and last MiB, without reading gigabytes."""
    stat = path.stat()
    with open(path, "rb") as f:
        if stat.st_size <= WHOLE:
            return hashlib.file_digest(f, "sha256").hexdigest()
        head = f.read(2**20)
        f.seek(-(2**20), 2)
        ends = hashlib.sha256(head + f.read()).hexdigest()
    return f"{stat.st_size}:{stat.st_mtime_ns}:{ends}"


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` (or ``roots`` themselves, when files) with its sha256."""
    files = [p for root in map(Path, roots) for p in ([root] if root.is_file() else sorted(root.rglob("*")))]
    return {str(p): digest(p) for p in files if p.is_file()}


def assert_user_error(capsys, argv: list, *fragments: str, protect: tuple[Path, ...] = ()) -> str:
    """Exit 2, one stderr line with every fragment, no traceback, ``protect`` untouched."""
    before = snapshot(*protect)
    code, _, err = run_cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert lines[0].startswith("defdistill") and ": error: " in lines[0], lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert snapshot(*protect) == before, "a file written earlier was changed"
    return lines[0]


def constant_model(cls: int) -> torch.nn.Module:
    """The paper's MNIST network that predicts class ``cls`` for every input."""
    torch.manual_seed(0)
    model = build_model("mnist_cnn", 1, 28, 10)
    head = output_layer(model)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[cls] = 10.0
    return model.eval()


def replace_loader(monkeypatch, load: Callable) -> None:
    """Make every sub-command load its data with ``load`` (same signature as ``load_dataset``)."""
    modules = [m for name, m in sys.modules.items() if name.startswith("defdistill.cli.")]
    patched = [m for m in modules if hasattr(m, "load_dataset")]
    assert patched, "no defdistill.cli module imports load_dataset any more: update replace_loader"
    for module in patched:
        monkeypatch.setattr(module, "load_dataset", load)

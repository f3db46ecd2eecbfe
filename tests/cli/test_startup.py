"""Start-up: parsing the command line (``--help`` included) imports no torch.

Checked in a fresh interpreter, since this test session has imported torch long ago. Times
are never asserted (they depend on the machine); what makes ``defdistill --help`` slow
is importing torch (over a second), and that is what is checked.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_help_of_every_command_and_a_full_parse_import_no_torch(tmp_path: Path) -> None:
    proc = _python(f"""
        import contextlib, io, sys
        from defdistill.cli.main import build_parser, main

        def heavy():
            return sorted(m for m in ("torch", "numpy", "safetensors") if m in sys.modules)

        parser = build_parser()
        commands = list(parser._subparsers._group_actions[0].choices)
        assert len(commands) == 10 and "audit-panel" in commands, commands  # one per module, train: 2
        for argv in [["--help"], *([c, "--help"] for c in commands)]:
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                main(argv)
            assert "usage: defdistill" in out.getvalue(), (argv, out.getvalue())
            assert not heavy(), (argv, heavy())
        args = parser.parse_args(["train", "--out", {str(tmp_path / "m")!r}, "--dataset", "mnist",
                                  "--arch", "mnist_cnn", "--adversarial", "pgd"])
        args = parser.parse_args(["attack", "--model", "m", "--attack", "pgd", "--norm", "l2",
                                  "--targets", "next"])
        args = parser.parse_args(["reproduce", "--executor", "ray"])
        assert not heavy(), heavy()
        import defdistill, defdistill.cli  # the package and the console script's module
        assert not heavy(), heavy()
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_the_vocabulary_agrees_with_the_modules_that_use_it() -> None:
    """:mod:`defdistill.names` is torch-free so that parsing stays fast: the names it holds
    for torch modules (built-in architectures, the model file) must be theirs, and the
    library must use its enums rather than copies (in a fresh interpreter: tests register
    extra models)."""
    proc = _python("""
        from defdistill import names
        from defdistill.attacks.base import Norm
        from defdistill.checkpoint import META
        from defdistill.devices import PRECISIONS
        from defdistill.evaluation.threats import TargetMode
        from defdistill.experiments.executors import EXECUTORS
        from defdistill.models import available_models
        from defdistill.training.config import ADVERSARIAL_METHODS, ROLES

        assert names.values(names.Architecture) == tuple(available_models())
        assert names.META == META
        assert Norm is names.Norm and TargetMode is names.TargetMode
        assert EXECUTORS == names.values(names.ExecutorKind)
        assert ADVERSARIAL_METHODS == names.values(names.AdversarialMethod)
        assert ROLES == names.values(names.Role)
        assert PRECISIONS == names.values(names.Precision)
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_the_package_exports_its_api_on_first_use() -> None:
    proc = _python("""
        import sys
        import defdistill
        assert "torch" not in sys.modules
        from defdistill import CheckpointError, DataError, load_model, softmax_at
        from defdistill.checkpoint import load_model as original
        assert load_model is original and "torch" in sys.modules
        assert set(defdistill.__all__) <= set(dir(defdistill))
        assert all(getattr(defdistill, name) is not None for name in defdistill.__all__)
        assert defdistill.io.atomic_write_json  # sub-modules the package used to import
        try:
            defdistill.no_such_name
        except AttributeError as err:
            assert "no_such_name" in str(err)
        else:
            raise AssertionError("no AttributeError")
        print("ok")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr

"""``paper-run/carry.sh`` carries a run's output directory between machines through git."""

import shutil
import subprocess
from pathlib import Path

import pytest

from defdistill.io import exclusive

SCRIPT = Path(__file__).resolve().parents[1] / "paper-run" / "carry.sh"
pytestmark = pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock (util-linux)")


def carry(script, *args):
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def script(tmp_path):
    """The script in a directory of its own: it keeps the state beside itself, in ``out/``."""
    copy = tmp_path / "repo" / "carry.sh"
    copy.parent.mkdir()
    shutil.copy(SCRIPT, copy)
    return copy


def a_run(out):
    """An output directory as a stopped run leaves it: models, a training state, units, the
    lock file and an interrupted write's temporary."""
    model = out / "mnist" / "models" / "distilled-T100" / "teacher"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights")
    (model / ".training-state.safetensors").write_bytes(b"state")
    (out / "mnist" / "units").mkdir()
    (out / "mnist" / "units" / "eval-baseline.json").write_text("{}")
    (out / ".defdistill.lock").write_text("")
    (out / "mnist" / ".defdistill-1a2b3c4d.partial").write_text("half")
    return out


def files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_save_then_restore_gives_back_the_run_without_its_lock_or_temporaries(script, tmp_path):
    out = a_run(tmp_path / "run")
    assert carry(script, "save", str(out)).returncode == 0
    kept = ["mnist/models/distilled-T100/teacher/.training-state.safetensors",
            "mnist/models/distilled-T100/teacher/model.safetensors", "mnist/units/eval-baseline.json"]
    assert files(script.parent / "out") == kept
    restored = tmp_path / "elsewhere"
    assert carry(script, "restore", str(restored)).returncode == 0
    assert files(restored) == kept
    assert (restored / "mnist/models/distilled-T100/teacher/model.safetensors").read_bytes() == b"weights"
    # a later save replaces the state: a unit the run no longer has is gone
    (out / "mnist" / "units" / "eval-baseline.json").unlink()
    assert carry(script, "save", str(out)).returncode == 0
    assert "mnist/units/eval-baseline.json" not in files(script.parent / "out")


def test_save_refuses_a_running_run_and_restore_an_existing_directory(script, tmp_path):
    out = a_run(tmp_path / "run")
    with exclusive(out):  # as `defdistill reproduce --out run` holds it
        refused = carry(script, "save", str(out))
    assert refused.returncode == 1 and "stop it" in refused.stderr
    assert not (script.parent / "out").exists()  # nothing half-saved
    assert carry(script, "save", str(out)).returncode == 0
    before = files(out)
    refused = carry(script, "restore", str(out))
    assert refused.returncode == 1 and "exists" in refused.stderr and files(out) == before
    assert carry(script, "sideways", str(out)).returncode == 2

"""Issue 26, class by class: what a careless or hostile user does, and what the CLI answers.

Each case builds its files under ``tmp_path``, runs one command in-process, and asserts the
exit code, stderr's last line and that the files it names are byte for byte what they were
before (``kept``); some cases check what must appear or remain after. docs/reliability.md
lists the same cases.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import META_BASE, constant_model, run_cli, snapshot
from safetensors.torch import save as save_safetensors

from defdistill.checkpoint import META, WEIGHTS, save_model
from defdistill.io import LOCK_FILE, exclusive

TRAIN = ["train", "--epochs", "1", "--batch-size", "32", "--allow-untrained", "--quiet"]


@dataclass
class Case:
    """``build(tmp)`` makes the files and returns the arguments; ``kept``: paths (relative to
    ``tmp``) that must be unchanged; ``after(tmp)``: a further check of the disk."""

    build: Callable[[Path], list]
    code: int
    last_line: str
    kept: tuple[str, ...] = ()
    after: Callable[[Path], bool] = field(default=lambda tmp: True)


def run_case(case: Case, tmp: Path, capsys, name: str = "") -> None:
    argv = case.build(tmp)
    before = snapshot(*(tmp / k for k in case.kept))
    code, _, err = run_cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == case.code, err
    assert "Traceback" not in err
    assert case.last_line in (lines[-1] if lines else ""), err
    assert snapshot(*(tmp / k for k in case.kept)) == before
    assert case.after(tmp)
    if os.environ.get("RELIABILITY_TABLE"):  # the rows of docs/reliability.md
        with open(os.environ["RELIABILITY_TABLE"], "a") as table:
            shown = (lines[-1] if lines else "").replace(str(tmp), "T").replace("|", "\\|")
            table.write(f"| {name} | {code} | `{shown}` |\n")


def model_dir(tmp: Path, name: str = "m", **meta) -> Path:
    save_model(tmp / name, constant_model(0), {**META_BASE, **meta})
    return tmp / name


def edit_meta(path: Path, text: Callable[[str], str]) -> Path:
    (path / META).write_text(text((path / META).read_text()))
    return path


# ---------------------------------------------------------------- 1. files that are not ours
def planted_lock(kind: str) -> Callable[[Path], list]:
    def build(tmp: Path) -> list:
        out = tmp / "out"
        out.mkdir()
        (tmp / "victim.txt").write_text("precious\n")
        lock = out / LOCK_FILE
        if kind == "symlink":
            lock.symlink_to(tmp / "victim.txt")
        elif kind == "devnull":
            lock.symlink_to("/dev/null")
        elif kind == "fifo":
            os.mkfifo(lock)
        elif kind == "hardlink":
            os.link(tmp / "victim.txt", lock)
        else:
            lock.write_text("precious\n")
        return [*TRAIN, "--out", out]

    return build


def user_tmp_file(tmp: Path) -> list:
    (tmp / "shared" / "notes").mkdir(parents=True)
    (tmp / "shared" / "notes" / ".draft.md.tmp").write_text("precious\n")
    (tmp / "shared" / ".results.json.k2j3_x.tmp").write_text("precious\n")
    return [*TRAIN, "--out", tmp / "shared"]


NOT_OURS = "not a defdistill lock file"
OWN_FILES = {
    "user-tmp-files-survive-the-sweep": Case(user_tmp_file, 0, "",
                                             kept=("shared/notes", "shared/.results.json.k2j3_x.tmp")),
    "lock-symlink-to-another-file": Case(planted_lock("symlink"), 2, f"{NOT_OURS} (a symbolic link)",
                                         kept=("victim.txt",)),
    "lock-symlink-to-dev-null": Case(planted_lock("devnull"), 2, f"{NOT_OURS} (a symbolic link)"),
    "lock-fifo": Case(planted_lock("fifo"), 2, f"{NOT_OURS} (not a regular file)"),
    "lock-hard-link-to-a-user-file": Case(planted_lock("hardlink"), 2, "(a file with several links)",
                                          kept=("victim.txt",)),
    "lock-a-user-file": Case(planted_lock("text"), 2, "(a file that holds something else than a pid)",
                             kept=("out/.defdistill.lock",)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(OWN_FILES))
def test_only_our_own_files_are_touched(tmp_path, capsys, synthetic_cli, case):
    run_case(OWN_FILES[case], tmp_path, capsys, case)


def test_the_sweep_never_enters_a_directory_another_run_holds(tmp_path, capsys, synthetic_cli):
    pending = tmp_path / "out" / "sub" / ".defdistill-abcd1234.partial"  # the other run's write
    pending.parent.mkdir(parents=True)
    pending.write_text("half")
    stale = tmp_path / "out" / ".defdistill-zzzz9999.partial"  # ours, from a killed run
    stale.write_text("half")
    with exclusive(tmp_path / "out" / "sub"):
        assert run_cli([*TRAIN, "--out", tmp_path / "out"], capsys)[0] == 0
        assert pending.read_text() == "half" and not stale.exists()


# ---------------------------------------------------------------- 3. bounded reads
def sparse(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)


def huge_meta(tmp: Path) -> list:
    sparse(model_dir(tmp) / META, 3 * 2**30)
    return ["evaluate", "--model", tmp / "m"]


def huge_weights(tmp: Path) -> list:
    sparse(model_dir(tmp) / WEIGHTS, 3 * 2**30)
    return ["evaluate", "--model", tmp / "m"]


def cifar_dir(tmp: Path, batch: object) -> list:
    root = tmp / "cifar"
    root.mkdir()
    for name in ("test_batch", *(f"data_batch_{i}" for i in range(1, 6))):
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    return [*TRAIN, "--dataset", "cifar10", "--data-dir", root, "--out", tmp / "o"]


def many_members(tmp: Path) -> list:
    import tarfile

    root = tmp / "cifar"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        for i in range(200):
            tar.addfile(tarfile.TarInfo(f"empty-{i}"))
    return [*TRAIN, "--dataset", "cifar10", "--data-dir", root, "--out", tmp / "o"]


ONE_BUFFER = np.zeros((1000, 3072), dtype=np.uint8)  # pickled once, referenced by every key
MEMO_REFERENCES = {f"k{i}".encode(): ONE_BUFFER for i in range(500)}  # 500 x 3 MB from one 3 MB buffer
BOUNDED = {
    "meta-json-3-GB": Case(huge_meta, 2, "more than any JSON file (1,048,576 at most)", kept=("m",)),
    "weights-3-GB": Case(huge_weights, 2, "more than any weights file of a mnist_cnn", kept=("m",)),
    "cifar-archive-of-200-empty-members": Case(many_members, 2, "more than 64 members; not the CIFAR-10",
                                               after=lambda tmp: not (tmp / "o").exists()),
    "pickled-batch-data-a-list": Case(lambda tmp: cifar_dir(tmp, {b"data": [b"x" * 3072] * 1000,
                                                                  b"labels": [0] * 1000}),
                                      2, "'data' is list, not a numpy array"),
    "pickled-batch-memo-arrays": Case(lambda tmp: cifar_dir(tmp, {b"data": ONE_BUFFER, b"labels": [0] * 1000,
                                                                  **MEMO_REFERENCES}),
                                      2, "arrays larger than the pickle"),
    "pickled-batch-nested-labels": Case(lambda tmp: cifar_dir(tmp, {b"data": ONE_BUFFER,
                                                                    b"labels": [[[0] * 100] * 100] * 100}),
                                        2, "'labels' must be a list of integer class indices"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BOUNDED))
def test_every_file_is_read_within_a_cap(tmp_path, capsys, case):
    run_case(BOUNDED[case], tmp_path, capsys, case)


# ---------------------------------------------------------------- 4. no traceback, right exit code
def factory(tmp: Path, body: str, name: str) -> list:
    (tmp / f"{name}.py").write_text(body)
    torch.manual_seed(0)
    weights = {"weight": torch.zeros(10, 784), "bias": torch.zeros(10)}
    (tmp / "w.safetensors").write_bytes(save_safetensors(weights))
    return ["audit", "--factory", f"{name}:build", "--weights", tmp / "w.safetensors", "--dataset", "mnist"]


NO_TRACEBACK = {
    "meta-num-classes-2-63": Case(lambda tmp: ["evaluate", "--model", edit_meta(
        model_dir(tmp), lambda t: t.replace('"num_classes": 10', f'"num_classes": {2**63}'))],
        2, "num_classes or weights_sha256 missing or invalid", kept=("m",)),
    "meta-input-shape-huge": Case(lambda tmp: ["evaluate", "--model", edit_meta(
        model_dir(tmp), lambda t: t.replace("28,", "100000000000000000000,", 1))],
        2, "num_classes or weights_sha256 missing or invalid", kept=("m",)),
    "meta-temperature-1e400": Case(lambda tmp: ["evaluate", "--model", edit_meta(
        model_dir(tmp), lambda t: t.replace('"temperature": 1.0', '"temperature": 1e400'))],
        2, "temperature must be a number in (0, 3.403e+38], found inf", kept=("m",)),
    "meta-temperature-an-int-of-400-digits": Case(lambda tmp: ["evaluate", "--model", edit_meta(
        model_dir(tmp), lambda t: t.replace('"temperature": 1.0', f'"temperature": {10**400}'))],
        2, "temperature must be a number in", kept=("m",)),
    "eps-1e39": Case(lambda tmp: ["attack", "--model", model_dir(tmp), "--attack", "pgd", "--eps", "1e39"],
                     2, "argument --eps: 1e39 is beyond float32's range", kept=("m",)),
    "factory-without-parameters": Case(lambda tmp: factory(
        tmp, "import torch\ndef build():\n    return torch.nn.Flatten()\n", "noparams"),
        2, "--factory 'noparams:build': returned a module without parameters"),
    "factory-calls-sys-exit": Case(lambda tmp: factory(
        tmp, "import sys\ndef build():\n    sys.exit(0)\n", "exits"),
        2, "--factory 'exits:build': raised SystemExit: 0"),
    "factory-exits-on-import": Case(lambda tmp: factory(tmp, "raise SystemExit(3)\n", "exits_on_import"),
                                    2, "importing exits_on_import raised SystemExit: 3"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(NO_TRACEBACK))
def test_hostile_numbers_and_user_code_are_one_line(tmp_path, capsys, monkeypatch, cached_mnist, case):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    run_case(NO_TRACEBACK[case], tmp_path, capsys, case)


# ---------------------------------------------------------------- 5. outputs checked first
def dangling(tmp: Path) -> list:
    (tmp / "gone").symlink_to(tmp / "nowhere")
    return [*TRAIN, "--out", tmp / "gone"]


def reproduce_over_a_file(tmp: Path) -> list:
    (tmp / "D").mkdir()
    (tmp / "D" / "mnist").write_text("a file\n")
    return ["reproduce", "--out", tmp / "D", "--limit-train", "64", "--limit-test", "32"]


OUTPUTS = {
    "attack-json-a-directory": Case(lambda tmp: ["attack", "--model", model_dir(tmp), "--attack", "fgsm",
                                                 "--json", tmp], 2, "--json", kept=("m",)),
    "attack-save-examples-a-directory": Case(lambda tmp: ["attack", "--model", model_dir(tmp), "--attack",
                                                          "fgsm", "--save-examples", tmp],
                                             2, "is a directory; give a file name"),
    "attack-json-the-models-meta": Case(lambda tmp: ["attack", "--model", model_dir(tmp), "--attack", "fgsm",
                                                     "--json", tmp / "m" / META],
                                        2, "is an input of this command", kept=("m",)),
    "audit-json-a-directory": Case(lambda tmp: ["audit", "--model", model_dir(tmp), "--json", tmp / "m"],
                                   2, "is a directory; give a file name", kept=("m",)),
    "audit-json-under-a-file": Case(lambda tmp: ["audit", "--model", model_dir(tmp), "--json",
                                                 tmp / "m" / WEIGHTS / "x.json"],
                                    2, "model.safetensors is a file, not a directory", kept=("m",)),
    "reproduce-out-with-a-file-for-the-dataset": Case(reproduce_over_a_file, 2,
                                                      "is a file where a directory is written", kept=("D",)),
    "train-out-empty": Case(lambda tmp: [*TRAIN, "--out", ""], 2, "argument --out: must not be empty"),
    "train-out-a-dangling-symlink": Case(dangling, 2, "does not exist; remove the link or choose another",
                                         after=lambda tmp: not (tmp / "nowhere").exists()),
    "attack-json-255-characters": Case(lambda tmp: ["attack", "--model", model_dir(tmp), "--attack", "fgsm",
                                                    "--samples", "2", "--limit-test", "100",
                                                    "--json", tmp / ("j" * 255)],
                                       0, "", kept=("m",), after=lambda tmp: (tmp / ("j" * 255)).is_file()),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(OUTPUTS))
def test_outputs_are_checked_before_the_work(tmp_path, capsys, monkeypatch, cached_mnist, case):
    import defdistill.cli.attack as attack_command
    import defdistill.cli.options as options

    if OUTPUTS[case].code == 2:  # refused before any data is loaded or attack built
        monkeypatch.setattr(options, "load_dataset", lambda *a, **k: pytest.fail("data loaded"))
        monkeypatch.setattr(attack_command, "build_attack", lambda *a, **k: pytest.fail("attack built"))
    run_case(OUTPUTS[case], tmp_path, capsys, case)


# ---------------------------------------------------------------- 6. damaged models, raw text
def nan_weights(tmp: Path) -> list:
    model = constant_model(0)
    with torch.no_grad():
        next(model.parameters())[0].fill_(float("nan"))
    save_model(tmp / "m", model, META_BASE)
    return ["evaluate", "--model", tmp / "m"]


def int8_weights(tmp: Path) -> list:
    import hashlib

    path = model_dir(tmp)
    state = constant_model(0).state_dict()
    state = {k: v.to(torch.int8) if k.endswith("bias") else v for k, v in state.items()}
    blob = save_safetensors(state)
    (path / WEIGHTS).write_bytes(blob)
    meta = json.loads((path / META).read_text())
    (path / META).write_text(json.dumps({**meta, "weights_sha256": hashlib.sha256(blob).hexdigest()}))
    return ["evaluate", "--model", path]


DAMAGED = {
    "evaluate-nan-weights": Case(nan_weights, 2, "holds NaN or infinite values; the model is damaged",
                                 kept=("m",)),
    "evaluate-int8-weights": Case(int8_weights, 2, "is torch.int8, the model's is torch.float32",
                                  kept=("m",)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_damaged_models_are_refused_by_every_command(tmp_path, capsys, cached_mnist, case):
    run_case(DAMAGED[case], tmp_path, capsys, case)


def test_text_from_files_is_printed_with_control_characters_escaped(tmp_path, capsys, cached_mnist):
    path = model_dir(tmp_path, role="baseline\n  accuracy 99.99%\x1b[2J")
    code, out, err = run_cli(["evaluate", "--model", path, "--limit-test", "50"], capsys)
    assert code == 0, err
    assert "\x1b" not in out and "\\x1b[2J" in out and "baseline\\n  accuracy 99.99%" in out
    assert len(out.splitlines()) == 4  # the usual lines, none faked


# ---------------------------------------------------------------- 8. small things
def shadowing_dir(tmp: Path) -> list:
    (tmp / "mnist-baseline").mkdir()
    return ["evaluate", "--model", "mnist-baseline"]


SMALL_THINGS = {
    "empty-local-dir-named-like-a-shipped-model": Case(
        shadowing_dir, 2, "a local directory without meta.json hides the shipped model of that name"),
    "tiny-training-temperature": Case(lambda tmp: [*TRAIN, "--temperature", "1e-30", "--out", tmp / "o"],
                                      2, "too small to train at", after=lambda tmp: not (tmp / "o").exists()),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SMALL_THINGS))
def test_small_things(tmp_path, capsys, monkeypatch, cached_mnist, case):
    monkeypatch.chdir(tmp_path)
    run_case(SMALL_THINGS[case], tmp_path, capsys, case)


def test_library_errors_name_parameters_and_the_cli_shows_flags(tmp_path):
    from defdistill.cli.main import describe
    from defdistill.data import DataError, load_dataset

    with pytest.raises(DataError) as caught:
        load_dataset("mnist", limit_train=0)
    assert str(caught.value) == "limit_train must be a positive number of samples, got 0"
    assert describe(caught.value) == "--limit-train must be a positive number of samples, got 0"


# ---------------------------------------------------------------- the terminal: pipes, full devices, Ctrl-C
def defdistill(*args: str, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "defdistill.cli", *args]
    return subprocess.Popen(command, stdout=kwargs.pop("stdout", subprocess.PIPE),
                            stderr=subprocess.PIPE, text=True, **kwargs)  # fmt: skip


def test_a_closed_pipe_ends_quietly(tmp_path):
    command = f"{shlex.quote(sys.executable)} -m defdistill.cli models | true; echo ${{PIPESTATUS[0]}}"
    result = subprocess.run(command, shell=True,
                            executable="/bin/bash", capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.stdout.strip() == "141" and result.stderr == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("command", [["models"], ["--help"], ["audit", "--help"]])
def test_a_full_stdout_is_one_line_and_exit_1(command):
    with open("/dev/full", "w") as full:  # --help: argparse swallows its own write error
        proc = defdistill(*command, stdout=full)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and err.strip() == (
        "defdistill: error: cannot write to standard output (No space left on device)")


def test_ctrl_c_pressed_several_times_exits_130_without_a_traceback(tmp_path):
    import signal
    import time

    proc = defdistill("train", "--epochs", "50", "--limit-train", "20000", "--out", str(tmp_path / "o"))
    deadline = time.monotonic() + 60
    while not (tmp_path / "o" / LOCK_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # training has started: the handler is installed, the lock is held
    for _ in range(5):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "defdistill: interrupted"
    assert not (tmp_path / "o").exists()  # the run had written nothing: it leaves nothing


def _entry_running(tmp_path: Path, run_body: str) -> subprocess.Popen:
    """``python -m`` on the CLI's entry point with its command replaced by ``run_body`` (the
    body of ``_run(argv)``), the way ``python -m defdistill.cli`` runs it."""
    (tmp_path / "patched_cli.py").write_text(
        "import sys, time\nimport defdistill.cli.main\n"
        "cli = sys.modules['defdistill.cli.main']\n"
        "def _run(argv):\n" + "".join(f"    {line}\n" for line in run_body.splitlines())
        + "cli._run = _run\ncli.entry()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    return subprocess.Popen([sys.executable, "-m", "patched_cli"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_an_interrupt_raised_inside_exec_still_exits_130(tmp_path):
    # where Ctrl-C lands in an import that builds a dataclass (measured: torch._dynamo,
    # imported lazily by the optimiser), CPython marked the caught interrupt as unhandled
    # and `python -m` died of SIGINT (-2) after printing the message
    proc = _entry_running(tmp_path, 'exec("raise KeyboardInterrupt")')
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "defdistill: interrupted"


def test_ctrl_c_again_after_a_lost_interrupt_stops_the_run(tmp_path):
    import signal
    import time

    # library code that loses the first interrupt, then would run on for a minute
    body = ("try:\n    print('started', flush=True)\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
            "    pass\nprint('lost', flush=True)\ntime.sleep(60)\nreturn 0")  # fmt: skip
    proc = _entry_running(tmp_path, body)
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(signal.SIGINT)
    assert proc.stdout.readline().strip() == "lost"
    time.sleep(1.2)  # past the burst a first press ignores
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert err.strip() == "defdistill: interrupted"


def test_an_interrupt_of_main_called_in_process_leaves_the_callers_ctrl_c_alone(monkeypatch, capsys):
    import importlib
    import signal

    cli = importlib.import_module("defdistill.cli.main")  # the module, not the function

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run", interrupted)
    before = signal.getsignal(signal.SIGINT)
    assert cli.main([]) == 130  # a notebook's kernel, say: its own handler must survive
    assert signal.getsignal(signal.SIGINT) is before
    assert capsys.readouterr().err.strip() == "defdistill: interrupted"

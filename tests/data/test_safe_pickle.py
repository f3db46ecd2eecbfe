"""The restricted unpickler: CIFAR-10 batches load, nothing else is ever imported or run."""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_files import write_cifar
from synthetic import cifar_batch

import defdistill
from defdistill.data import DataError
from defdistill.data import safe_pickle as safe_pickle_module
from defdistill.data.cifar10 import load_cifar10, parse_cifar_batch
from defdistill.data.safe_pickle import safe_unpickle

UNSAFE = re.compile(
    r"torch\.load\(|pickle\.loads?\(|(?<![\w.])(np|numpy)\.load\(|allow_pickle\s*=\s*True|"
    r"(?<![\w.])(eval|exec)\(|marshal\.loads?\(|shelve\.|yaml\.load\(|joblib\.load\(|dill\."
)

# The one exec: of the empty string, which clears CPython's unhandled-interrupt mark (cli/main.py).
HARMLESS = {("main.py", 'exec("")')}


def test_no_unsafe_loading_anywhere_in_the_library():
    """No pickle, torch.load, np.load or eval of anything; the only unpickler is restricted."""
    src = Path(defdistill.__file__).parent
    files = sorted(src.rglob("*.py"))
    assert len(files) > 30  # the whole package, not one sub-package
    hits = [f"{p.name}:{n}: {line.strip()}" for p in files
            for n, line in enumerate(p.read_text().splitlines(), 1)
            if UNSAFE.search(line) and (p.name, line.strip()) not in HARMLESS]  # fmt: skip
    assert hits == []
    unpicklers = [p.name for p in files if "Unpickler" in p.read_text()]
    assert unpicklers == ["safe_pickle.py"]
    assert safe_pickle_module._RestrictedUnpickler.find_class is not pickle.Unpickler.find_class


class _Touch:
    """Unpickling this runs ``os.system("touch PWNED_BY_PICKLE")`` in the current directory."""

    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_malicious_pickle_is_refused_and_would_really_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blob = pickle.dumps({b"data": _Touch(), b"labels": []}, protocol=2)
    write_cifar(tmp_path / "c", test_batch=blob)
    with pytest.raises(DataError, match=r"test_batch: unsafe or corrupt pickle \(refusing to load global "
                                        r"(posix|os)\.system\)"):  # fmt: skip
        load_cifar10(tmp_path / "c")
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()
    # the same bytes, given to plain pickle, do run the command: the test is meaningful
    pickle.loads(blob)
    assert (tmp_path / "PWNED_BY_PICKLE").exists()


@pytest.mark.parametrize("payload", [
    (open, ("planted", "w")),  # creates a file
    (eval, ("1 + 1",)),
    (subprocess.Popen, (["true"],)),
    (np.load, ("x.npy",)),
    (getattr, ("text", "upper")),
], ids=["open", "eval", "popen", "np.load", "getattr"])  # fmt: skip
def test_other_gadgets_are_refused(tmp_path, monkeypatch, payload):
    class Gadget:
        def __reduce__(self):
            return payload

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="b: unsafe or corrupt pickle .*refusing to load global"):
        safe_unpickle(pickle.dumps({b"data": Gadget(), b"labels": []}, protocol=2), "b")
    assert not (tmp_path / "planted").exists()


def _malformed_dtype_pickle() -> bytes:
    """A batch whose numpy dtype state is malformed (a None popped from its state tuple)."""
    blob = pickle.dumps(cifar_batch(), protocol=2)
    assert blob.count(b"NNNJ\xff\xff\xff\xff") == 1
    return blob.replace(b"NNNJ\xff\xff\xff\xff", b"NN0J\xff\xff\xff\xff")


def test_malformed_numpy_state_is_refused_where_plain_pickle_crashes():
    """numpy's own ``dtype.__setstate__`` segfaults on this state; numpy never sees it."""
    with pytest.raises(DataError, match="b: unsafe or corrupt pickle .*numpy dtype"):
        safe_unpickle(_malformed_dtype_pickle(), "b")
    # why the stand-ins exist: plain pickle.loads of the same bytes does not survive them
    proc = subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                          input=_malformed_dtype_pickle(), capture_output=True, timeout=60)  # fmt: skip
    assert proc.returncode != 0, f"plain pickle loaded the malformed dtype state (numpy {np.__version__})"
    assert proc.returncode == -signal.SIGSEGV or b"Error" in proc.stderr, (proc.returncode, proc.stderr)


@pytest.mark.parametrize("blob", [
    b"\x80\x02]r\xff\xff\xff\x7f.",  # LONG_BINPUT 2**31 - 1: the C unpickler would size its memo so
    b"\x80\x05\x96" + (2**40).to_bytes(8, "little") + b"x.",  # a 1 TiB bytearray
    b"\x80\x02]q\x00h\x00\x86\x94" * 1 + b"\x80",  # truncated garbage
    b"\x80\x04\x95" + (2**62).to_bytes(8, "little") + b"}.",  # absurd frame length
], ids=["memo-index", "bytearray8", "truncated", "frame"])  # fmt: skip
def test_hostile_pickle_streams_are_data_errors(blob):
    with pytest.raises(DataError, match="b: (unsafe|truncated) or corrupt pickle"):
        safe_unpickle(blob, "b")


def test_python2_style_batch_still_loads():
    """The official batches were written by Python 2: str -> bytes, dtype name as bytes."""
    raw = bytes(range(256)) * 12 * 2  # 2 images of 3072 bytes
    blob = (
        b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\n"
        b"q\x03K\x00\x85U\x01b\x87Rq\x04(K\x01K\x02M\x00\x0c\x86cnumpy\ndtype\nq\x05U\x02u1K\x00K\x01"
        b"\x87Rq\x06(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T"
        + len(raw).to_bytes(4, "little") + raw
        + b"tbU\x06labels]q\x07(K\x03K\teu."
    )  # fmt: skip
    images, labels = parse_cifar_batch(blob, "py2")
    assert images.shape == (2, 3, 32, 32) and images.dtype == np.uint8
    assert images.tobytes() == raw and labels.tolist() == [3, 9]
    assert images.flags.writeable  # a copy, not a view of the untrusted buffer

"""Resumable units: a stored result is reused only for the same key, and a damaged or
unwritable one never replaces a good result."""

from __future__ import annotations

import errno
import json
import os
import tempfile

import pytest

from defdistill.experiments.units import UnitStore
from defdistill.io import OutputError


def test_unit_store_refuses_results_of_another_configuration(tmp_path):
    store = UnitStore(tmp_path)
    assert store.run("eval-x", {"eps": 0.3, "samples": 4}, lambda: {"value": 1}) == {"value": 1}
    # the same key is reused, any changed field recomputes
    assert UnitStore(tmp_path).run("eval-x", {"eps": 0.3, "samples": 4}, lambda: {"value": 2}) == {"value": 1}
    changed = UnitStore(tmp_path)
    assert changed.run("eval-x", {"eps": 0.3, "samples": 5}, lambda: {"value": 3}) == {"value": 3}
    assert changed.computed == ["eval-x"] and changed.reused == []
    # a stored key digest that does not match (an edited or foreign file) is not trusted
    stored = json.loads((tmp_path / "units" / "eval-x.json").read_text())
    stored["key_sha256"] = "0" * 64
    (tmp_path / "units" / "eval-x.json").write_text(json.dumps(stored))
    assert UnitStore(tmp_path).run("eval-x", {"eps": 0.3, "samples": 5}, lambda: {"value": 4}) == {"value": 4}


def test_truncated_unit_result_is_recomputed(tmp_path):
    store = UnitStore(tmp_path)
    store.run("eval-a", {"k": 1}, lambda: {"v": 1})
    path = tmp_path / "units" / "eval-a.json"
    path.write_bytes(path.read_bytes()[:20])
    again = UnitStore(tmp_path)
    assert again.run("eval-a", {"k": 1}, lambda: {"v": 2}) == {"v": 2}
    assert again.computed == ["eval-a"]


def test_unit_store_write_failure_keeps_the_previous_result(tmp_path, monkeypatch):
    store = UnitStore(tmp_path)
    store.run("eval-a", {"k": 1}, lambda: {"v": 1})
    before = (tmp_path / "units" / "eval-a.json").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(OutputError, match=r"eval-a.json: cannot write \(No space left on device\)"):
        UnitStore(tmp_path).run("eval-a", {"k": 2}, lambda: {"v": 2})
    monkeypatch.undo()
    assert (tmp_path / "units" / "eval-a.json").read_bytes() == before


@pytest.mark.parametrize("content", [b"[]", b"[1]", b"3", b'{"key_sha256": "x"}', b"\xff\xfe",
                                     b"[" * 50_000 + b"]" * 50_000])  # fmt: skip
def test_a_unit_file_of_the_wrong_shape_is_recomputed(tmp_path, content):
    (tmp_path / "units").mkdir()
    (tmp_path / "units" / "eval-baseline.json").write_bytes(content)
    store = UnitStore(tmp_path)
    assert store.run("eval-baseline", {"k": 1}, lambda: {"v": 2}) == {"v": 2}
    assert store.computed == ["eval-baseline"]
    assert UnitStore(tmp_path).run("eval-baseline", {"k": 1}, lambda: {"v": 3}) == {"v": 2}


def test_a_stored_result_that_is_not_an_object_is_recomputed(tmp_path):
    store = UnitStore(tmp_path)
    store.run("eval-a", {"k": 1}, lambda: {"v": 1})
    path = tmp_path / "units" / "eval-a.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, "result": []}))
    assert UnitStore(tmp_path).run("eval-a", {"k": 1}, lambda: {"v": 5}) == {"v": 5}


def test_a_units_finished_steps_are_kept_for_its_key_only(tmp_path):
    key = {"weights": "a", "samples": 4}
    steps = UnitStore(tmp_path).steps("eval-x", key)
    steps.save("jsma-f", {"samples": 4, "rate": float("nan")})
    steps.save("pgd-margin", {"samples": 4, "rate": 0.5})
    record = tmp_path / "units" / "in-progress" / "eval-x.json"
    again = UnitStore(tmp_path).steps("eval-x", key)
    assert again.load("jsma-f") == {"samples": 4, "rate": None}  # as it reads back: NaN -> null
    assert again.load("pgd-margin") == {"samples": 4, "rate": 0.5} and again.load("cw-l2") is None
    assert UnitStore(tmp_path).steps("eval-x", {**key, "weights": "b"}).load("jsma-f") is None
    assert UnitStore(tmp_path, force=True).steps("eval-x", key).load("jsma-f") is None
    stored = json.loads(record.read_text())
    stored["steps"]["pgd-margin"]["rate"] = 1.0  # edited by hand: its sha256 no longer matches
    record.write_text(json.dumps(stored))
    assert UnitStore(tmp_path).steps("eval-x", key).load("jsma-f") is None
    record.write_bytes(b'{"key_sha2')  # truncated
    assert UnitStore(tmp_path).steps("eval-x", key).steps == {}
    # the unit's stored result ends the record; finished units are never read from it
    UnitStore(tmp_path).run("eval-x", key, lambda: {"value": 1})
    assert not record.exists() and (tmp_path / "units" / "eval-x.json").is_file()


def test_a_step_log_names_the_machines_that_computed_its_steps(tmp_path, monkeypatch):
    from defdistill.experiments import units

    key = {"k": 1}
    monkeypatch.setattr(units, "machine_label", lambda: "CPU A (2 CPUs)")
    UnitStore(tmp_path).steps("eval-x", key).save("jsma-f", {"samples": 4})
    monkeypatch.setattr(units, "machine_label", lambda: "CPU B (16 CPUs)")
    resumed = UnitStore(tmp_path).steps("eval-x", key)
    assert resumed.machines == ["CPU A (2 CPUs)"]
    resumed.save("jsma-z", {"samples": 4})
    resumed.save("cw-l2", {"samples": 4})
    assert UnitStore(tmp_path).steps("eval-x", key).machines == ["CPU A (2 CPUs)", "CPU B (16 CPUs)"]

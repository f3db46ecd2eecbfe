"""``defdistill reproduce``: bad temperatures, seeds and executor options are refused before
any work, with one line naming the option."""

from __future__ import annotations

import sys

import pytest
from cli_helpers import assert_user_error


def test_reproduce_bad_temperature_list(tmp_path, capsys):
    for value in ("a,b", "0,1", ","):
        assert_user_error(capsys, ["reproduce", "--temperatures", value, "--out", tmp_path / "r"],
                          "--temperatures")  # fmt: skip
    assert not (tmp_path / "r").exists()


REPRODUCE_OPTIONS = [
    (["--seeds", "0,a"], "--seeds: expected seeds like 0,1,2"),
    (["--seeds", "0,-1"], "--seeds: seeds must be integers"),
    (["--seeds", "1,1"], "--seeds: a seed is repeated"),
    (["--seeds", "0,1", "--seed", "2"], "give --seed N or --seeds N,M,..., not both"),
    (["--executor", "dask"], "argument --executor: invalid choice"),
    (["--address", "auto"], "--address: only used with --executor ray"),
    (["--cpus-per-task", "2", "--max-retries", "0"],
     "--cpus-per-task, --max-retries: only used with --executor ray"),
    (["--executor", "ray", "--cpus-per-task", "0"], "--cpus-per-task: must be a positive integer"),
    (["--executor", "ray", "--max-retries", "-1"], "--max-retries: must be an integer >= 0"),
    (["--gpus-per-task", "0.5"], "--gpus-per-task: only used with --executor ray"),
    (["--executor", "ray", "--gpus-per-task", "0"], "--gpus-per-task: must be a number in (0, 1], got 0"),
    (["--executor", "ray", "--gpus-per-task", "2"], "--gpus-per-task: must be a number in (0, 1], got 2"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "fragment"), REPRODUCE_OPTIONS,
                         ids=[" ".join(a) for a, _ in REPRODUCE_OPTIONS])  # fmt: skip
def test_reproduce_bad_seeds_and_executor_options(tmp_path, capsys, argv, fragment):
    assert_user_error(capsys, ["reproduce", *argv, "--out", tmp_path / "r"], fragment)
    assert not (tmp_path / "r").exists()


def test_reproduce_on_ray_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert_user_error(capsys, ["reproduce", "--executor", "ray", "--out", tmp_path / "r"],
                      "install the ray extra: pip install 'defdistill[ray]'")  # fmt: skip
    assert not (tmp_path / "r").exists()  # refused before any work


@pytest.mark.parametrize(("address", "fragment"), [
    ("nohost", "--address must be auto or HOST:PORT, got 'nohost'"),
    ("127.0.0.1:1", "cannot reach the Ray cluster at 127.0.0.1:1"),  # refused at once
])  # fmt: skip
@pytest.mark.heavy
def test_reproduce_on_an_unreachable_ray_cluster(tmp_path, capsys, address, fragment):
    pytest.importorskip("ray", reason="no ray: pip install 'defdistill[ray]'")
    assert_user_error(capsys, ["reproduce", "--executor", "ray", "--address", address,
                               "--out", tmp_path / "r"], fragment)  # fmt: skip
    assert not (tmp_path / "r").exists()

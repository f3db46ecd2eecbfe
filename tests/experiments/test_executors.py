"""Executors: Ray gives the local executor's results, retries transient failures only, and a
failed task leaves every other unit saved for the next run."""

import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from pipeline_runner import TINY, comparable, tiny_dataset

from defdistill.experiments.executors import LocalExecutor, RayExecutor, gpu_request, make_executor
from defdistill.experiments.pipeline import reproduce_on
from defdistill.io import OutputError


@pytest.fixture(scope="module")
def ray_instance():
    """A private Ray instance with 2 CPUs, on the loopback interface only (tests/conftest.py)."""
    ray = pytest.importorskip("ray", reason="no ray: pip install 'defdistill[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    # the task functions of this test module are shipped by value (workers cannot import it)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def _flaky(directory: str, task: tuple[str, int]) -> int:
    """Fails with ``kind`` the first time it runs for ``task``; counts its attempts on disk."""
    kind, value = task
    attempts = Path(directory) / f"{kind}-{value}"
    with attempts.open("a") as handle:
        handle.write("x")
    if attempts.read_text() == "x":
        raise (OSError if kind == "transient" else ValueError)(f"first attempt of {value}")
    return 2 * value


def _attempts(directory: Path, kind: str, value: int) -> int:
    return len((directory / f"{kind}-{value}").read_text())


def test_local_executor_runs_in_order_and_lazily():
    calls = []
    results = LocalExecutor().map(lambda shared, t: calls.append(t) or shared + t, [1, 2, 3], shared=10)
    assert calls == []  # nothing runs before a result is asked for
    assert next(results) == 11 and calls == [1]
    assert list(results) == [12, 13]


def test_make_executor_rejects_unknown_names_and_stray_options():
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(ValueError, match="--executor must be one of local, ray"):
        make_executor("dask")
    with pytest.raises(ValueError, match="--address needs --executor ray"):
        make_executor("local", address="auto")


def test_a_task_asks_for_its_share_of_a_gpu_only_where_it_may_use_one():
    assert gpu_request("auto", cluster_gpus=1, gpus_per_task=0.25) == 0.25  # four units per GPU
    assert gpu_request("cuda", cluster_gpus=2) == 1.0
    assert gpu_request("cpu", cluster_gpus=1, gpus_per_task=0.25) == 0.0  # told to stay on the CPU
    assert gpu_request("auto", cluster_gpus=0, gpus_per_task=0.25) == 0.0  # no GPU in the cluster
    pytest.importorskip("ray", reason="no ray: pip install 'defdistill[ray]'")
    for share in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="--gpus-per-task must be in"):
            RayExecutor(gpus_per_task=share)


@pytest.mark.heavy
def test_ray_sweep_gives_the_same_results_json_as_local(ray_instance, tiny_run, tmp_path):
    executor = RayExecutor(cpus_per_task=1)
    reproduce_on(tiny_dataset(), TINY, tmp_path, progress=False, executor=executor)
    executor.close()
    assert ray_instance.is_initialized()  # an instance the executor did not start is left running
    got = json.loads((tmp_path / "synthetic" / "results.json").read_text())
    assert comparable(got) == comparable(tiny_run[3])  # same weights, same measurements
    assert got["config"]["units_computed"] == tiny_run[3]["config"]["units_computed"]
    # one row in each of the four tables: summary, what T does, where the time went, robustness
    assert (tmp_path / "report.md").read_text().count("| distilled-T50 |") == 4


@pytest.mark.heavy
def test_ray_retries_transient_failures_only(ray_instance, tmp_path):
    results = RayExecutor(max_retries=1).map(_flaky, [("transient", 1), ("transient", 2)], str(tmp_path))
    assert list(results) == [2, 4]
    assert _attempts(tmp_path, "transient", 1) == 2
    with pytest.raises(ValueError, match="first attempt of 3"):  # the task's own exception
        list(RayExecutor(max_retries=3).map(_flaky, [("deterministic", 3)], str(tmp_path)))
    assert _attempts(tmp_path, "deterministic", 3) == 1  # it would fail again: not retried
    with pytest.raises(OSError, match="first attempt of 4"):
        list(RayExecutor(max_retries=0).map(_flaky, [("transient", 4)], str(tmp_path)))


def _signal(directory: str, name: str) -> str:
    (Path(directory) / name).touch()
    return name


def _wait_for_signal(directory: str, name: str) -> str:
    """Returns ``name`` once the file exists, ``"never"`` after 60 s."""
    deadline = time.monotonic() + 60
    while not (Path(directory) / name).exists():
        if time.monotonic() > deadline:
            return "never"
        time.sleep(0.05)
    return name


def test_ray_starts_a_second_maps_tasks_before_the_first_ones_results_are_read(ray_instance, tmp_path):
    executor = RayExecutor()
    first = executor.map(_wait_for_signal, ["from the second map"], str(tmp_path))
    second = executor.map(_signal, ["from the second map"], str(tmp_path))
    # the first map's task ends only once the second map's has run on the other worker
    assert list(first) == ["from the second map"]
    assert list(second) == ["from the second map"]


def _late_signal(directory: str, name: str) -> str:
    time.sleep(2)
    return _signal(directory, name)


def test_a_ray_failure_awaits_the_tasks_of_every_map_submitted(ray_instance, tmp_path):
    executor = RayExecutor(max_retries=0)
    failing = executor.map(_flaky, [("deterministic", 5)], str(tmp_path))
    later = executor.map(_late_signal, ["late"], str(tmp_path))
    with pytest.raises(ValueError, match="first attempt of 5"):
        list(failing)
    assert (tmp_path / "late").exists()  # the other map's task finished before the failure was raised
    assert list(later) == ["late"]


@pytest.mark.heavy  # the Ray variant starts a cluster; the local one trains a tiny sweep (about 50 s)
@pytest.mark.parametrize("executor_name", ["local", "ray"])
def test_resume_after_a_failed_task(request, tiny_run, tmp_path, executor_name):
    """The baseline's evaluation fails (its unit file cannot be written) in the phase it shares
    with the positive control's; a rerun computes it and whatever the failure left undone, and
    nothing else."""
    if executor_name == "ray":
        request.getfixturevalue("ray_instance")
    out = tmp_path / "out"
    shutil.copytree(tiny_run[0], out)
    units = out / "synthetic" / "units"
    (units / "eval-adversarial-pgd.json").unlink()  # still to do when the failure happens
    (units / "eval-baseline.json").unlink()
    (units / "eval-baseline.json").mkdir()  # os.replace onto a directory fails
    executor = LocalExecutor() if executor_name == "local" else RayExecutor(max_retries=0)
    with pytest.raises(OutputError, match="eval-baseline.json"):
        reproduce_on(tiny_dataset(), TINY, out, progress=False, executor=executor)
    # Ray runs the phase's other units anyway; in process, the sweep stops at the failure
    assert (units / "eval-adversarial-pgd.json").exists() == (executor_name == "ray")
    (units / "eval-baseline.json").rmdir()
    reproduce_on(tiny_dataset(), TINY, out, progress=False, executor=executor)
    got = json.loads((out / "synthetic" / "results.json").read_text())
    expected = ["eval-baseline"] + (["eval-adversarial-pgd"] if executor_name == "local" else [])
    assert got["config"]["units_computed"] == expected
    assert comparable(got)["models"] == comparable(tiny_run[3])["models"]


def _task_name(task) -> str:
    return getattr(task, "name", type(task).__name__)


class RecordingExecutor(LocalExecutor):
    """The local executor, recording the function and the task names of every phase, and the
    order in which phases are submitted and their results read."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, list[str]]] = []
        self.events: list[str] = []

    def map(self, fn, tasks, shared=None):
        self.phases.append((fn.__name__, [_task_name(task) for task in tasks]))
        self.events.append(f"submit {fn.__name__}")
        return self._read(fn, tasks, super().map(fn, tasks, shared))

    def _read(self, fn, tasks, results):
        for task, result in zip(tasks, results, strict=True):
            self.events.append(f"read {fn.__name__} {_task_name(task)}")
            yield result


def test_the_sweep_runs_in_three_phases_each_longest_first(tiny_run, tmp_path):
    """Every teacher and undistilled model; the students, then the undistilled models'
    measurements; the students' measurements. Parallel workers finish a phase soonest when the
    longest task starts first: the positive control (2 epochs x 3 passes: PGD-2 and the update)
    before the one-network units of 2 epochs, the hottest of those first."""
    out = tmp_path / "out"
    shutil.copytree(tiny_run[0], out)
    executor = RecordingExecutor()
    reproduce_on(tiny_dataset(), TINY, out, progress=False, executor=executor)
    assert executor.phases == [
        ("teacher_unit", ["adversarial-pgd", "distilled-T50", "distilled-T5", "baseline"]),
        # the undistilled models' measurements beside the students
        ("second_phase_unit", ["distilled-T50", "distilled-T5", "baseline", "adversarial-pgd"]),
        ("measurement_unit", ["AblationTask", "distilled-T5", "distilled-T50"]),
    ]
    # the students' measurements are submitted once the students are trained, before the
    # undistilled models' measurements are read: no worker waits for those
    events = executor.events
    assert events.index("submit measurement_unit") == events.index("read second_phase_unit distilled-T5") + 1
    assert events.index("submit measurement_unit") < events.index("read second_phase_unit baseline")
    models = json.loads((out / "synthetic" / "results.json").read_text())["models"]
    assert [m["name"] for m in models] == [m["name"] for m in tiny_run[3]["models"]]  # the report's order


class _StudentWaveError(Exception):
    pass


class StopAtTheStudents(LocalExecutor):
    """The local executor, stopping the sweep where its students would start (their tasks kept)."""

    def map(self, fn, tasks, shared=None):
        if fn.__name__ == "second_phase_unit":
            self.students = [t for t in tasks if type(t).__name__ == "TrainTask"]
            raise _StudentWaveError
        return super().map(fn, tasks, shared)


def test_every_teacher_is_trained_before_any_student_and_force_retrains_each_network_once(tmp_path):
    from defdistill.checkpoint import read_meta
    from defdistill.experiments.tasks import student_unit, teacher_unit

    ds, executor = tiny_dataset(), StopAtTheStudents()
    with pytest.raises(_StudentWaveError):
        reproduce_on(ds, replace(TINY, adversarial=None), tmp_path, progress=False, executor=executor)
    models = tmp_path / "synthetic" / "models"
    teachers = sorted(p.parent.parent.name for p in models.glob("*/teacher/model.safetensors"))
    assert teachers == ["distilled-T5", "distilled-T50"]
    assert (models / "baseline" / "model.safetensors").is_file()
    assert not list(models.glob("distilled-*/model.safetensors"))  # no student yet
    # the teachers' soft labels are written out then, one row per teacher, with the figure
    teachers = (tmp_path / "synthetic" / "teachers.md").read_text()
    rows = [line.split(" | ")[0] for line in teachers.splitlines() if line.startswith("| 5")]
    assert rows == ["| 5", "| 50"]
    assert "![teachers](soft_label_convergence.png)" in teachers
    assert (tmp_path / "synthetic" / "soft_label_convergence.png").stat().st_size > 0
    task = replace(executor.students[0], force=True)
    teacher = read_meta(Path(task.path) / "teacher")
    student = student_unit(ds, task)["meta"]  # --force: the student trains, its teacher is kept
    assert read_meta(Path(task.path) / "teacher") == teacher
    assert student["teacher"]["weights_sha256"] == teacher["weights_sha256"]
    retrained = teacher_unit(ds, task)["meta"]  # --force in the first wave: the teacher trains again
    assert retrained["train_seconds"] != teacher["train_seconds"]
    assert teacher_unit(ds, replace(task, force=False))["meta"] == retrained  # otherwise reused


def test_the_cost_of_a_training_counts_the_passes_of_its_adversarial_recipe():
    """Passes over the training set per epoch: 1 plain; + steps for PGD; + 1 for FGSM-RS;
    + steps + 1 for TRADES (its KL steps, and the update's second forward-backward on x')."""
    from types import SimpleNamespace

    from defdistill.experiments.sweep import training_cost
    from defdistill.training.config import TrainConfig

    def cost(distilled=False, **config):
        return training_cost(SimpleNamespace(deployed_config=TrainConfig(epochs=2, **config).to_dict(),
                                             distilled=distilled))  # fmt: skip

    assert cost() == 2 and cost(distilled=True) == 4
    assert cost(adversarial="pgd", adversarial_steps=5) == 2 * 6
    assert cost(adversarial="fgsm-rs") == 2 * 2
    assert cost(adversarial="trades", adversarial_steps=5) == 2 * 7

"""The tiny synthetic sweep, run once and shared by the pipeline and executor tests."""

import json
import time

import pytest
from pipeline_runner import TINY, tiny_dataset

from defdistill.experiments.pipeline import reproduce_on


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """``(out, paths, seconds, <out>/synthetic/results.json)`` of the local executor's run.

    Tests must not write into ``out``: copy it first.
    """
    out = tmp_path_factory.mktemp("tiny")
    start = time.perf_counter()
    paths = reproduce_on(tiny_dataset(), TINY, out, progress=False)
    seconds = time.perf_counter() - start
    return out, paths, seconds, json.loads((out / "synthetic" / "results.json").read_text())

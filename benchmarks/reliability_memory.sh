#!/usr/bin/env bash
# Peak memory (max RSS, /usr/bin/time -v) of defdistill refusing each hostile file of issue 26.
# Big files are sparse (truncate): they take no disk. Usage: bash benchmarks/reliability_memory.sh [DIR]
set -u
DIR=${1:-$(mktemp -d)}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$DIR" && cd "$DIR" || exit 1
peak() {  # name, command...: one table row: case | exit code | peak MB | stderr's last line
    local name=$1; shift
    /usr/bin/time -v "$@" >/dev/null 2>"$name.err"
    local rss code line
    rss=$(grep "Maximum resident" "$name.err" | awk '{print $NF}')
    code=$(grep "Exit status" "$name.err" | awk '{print $NF}')
    line=$(grep -v "^\s" "$name.err" | grep -v "^Command\|Exit status" | tail -1)
    printf '| %s | %s | %d | %s |\n' "$name" "$code" "$((rss / 1024))" "$line"
}
python - <<'PY'
import gzip, pickle, tarfile, zlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as save_st

from defdistill.checkpoint import save_model
from defdistill.models import build_model

meta = {"architecture": "mnist_cnn", "input_shape": [1, 28, 28], "num_classes": 10,
        "dataset": {"name": "mnist"}, "role": "baseline", "temperature": 1.0}
for name in ("meta", "weights"):
    save_model(name, build_model("mnist_cnn", 1, 28, 10), meta)
Path("meta/meta.json").open("wb").truncate(3 * 2**30)
Path("weights/model.safetensors").open("wb").truncate(3 * 2**30)
Path("res/mnist").mkdir(parents=True, exist_ok=True)
Path("res/mnist/results.json").open("wb").truncate(3 * 2**30)

# 3 million empty members, gzip-compressed: about 6.7 MB
Path("members").mkdir(exist_ok=True)
header = tarfile.TarInfo("empty").tobuf()
with open("members/cifar-10-python.tar.gz", "wb") as raw:
    gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9)
    for _ in range(30):
        gz.write(header * 100_000)
    gz.close()

def batches(root, batch):
    Path(root).mkdir(exist_ok=True)
    blob = pickle.dumps(batch, protocol=2)
    for name in ("test_batch", *(f"data_batch_{i}" for i in range(1, 6))):
        Path(root, name).write_bytes(blob)
    return len(blob)

one = np.zeros((1000, 3072), dtype=np.uint8)
print("memo-arrays pickle bytes", batches("memo-arrays", {b"data": one, b"labels": [0] * 1000,
                                          **{f"k{i}".encode(): one for i in range(3000)}}))
level = [0] * 1000
for _ in range(3):
    level = [level] * 1000  # 10^12 labels once converted, a 30 kB pickle
print("nested-labels pickle bytes", batches("nested-labels", {b"data": one, b"labels": level}))
print("list-data pickle bytes", batches("list-data", {b"data": [b"x" * 3072] * 3_000_000, b"labels": [0]}))
Path("big-batch").mkdir(exist_ok=True)
Path("big-batch/test_batch").open("wb").truncate(3 * 2**30)
# a gzip bomb for MNIST: 2 GB of zeros, 2 MB compressed
Path("mnist-bomb").mkdir(exist_ok=True)
with gzip.open("mnist-bomb/train-images-idx3-ubyte.gz", "wb", compresslevel=9) as gz:
    chunk = b"\0" * 2**24
    for _ in range(128):
        gz.write(chunk)
Path("mnist-big").mkdir(exist_ok=True)
Path("mnist-big/train-images-idx3-ubyte").open("wb").truncate(3 * 2**30)
PY
ls -la members/ nested-labels/test_batch list-data/test_batch memo-arrays/test_batch mnist-bomb/ | grep -v "^total\|^d"
echo "| case | exit code | peak MB | last line of stderr |"
echo "|---|---|---|---|"
peak meta-json-3GB defdistill evaluate --model meta
peak weights-3GB defdistill evaluate --model weights
peak results-json-3GB python -c "import logging, pathlib; logging.basicConfig(); \
from defdistill.experiments.pipeline import collect_results as c; assert c(pathlib.Path('res')) == {}"
peak cifar-3M-empty-members defdistill train --dataset cifar10 --data-dir members --out o1
peak cifar-memo-arrays defdistill train --dataset cifar10 --data-dir memo-arrays --out o2
peak cifar-nested-labels defdistill train --dataset cifar10 --data-dir nested-labels --out o3
peak cifar-list-data defdistill train --dataset cifar10 --data-dir list-data --out o4
peak cifar-batch-3GB defdistill train --dataset cifar10 --data-dir big-batch --out o5
peak mnist-gzip-bomb-2GB defdistill train --data-dir mnist-bomb --out o6
peak mnist-file-3GB defdistill train --data-dir mnist-big --out o7
peak baseline-models-listing defdistill models

#!/usr/bin/env bash
# The paper profile, MNIST then the CIFAR-10 subset into the same OUT (one report with both
# data sets, as in the paper), in the background of a sitting; resumable: rerun to continue.
#
#   paper-run/run.sh OUT [LOG]     (from a checkout of its own: editing another leaves the run alone)
#
# Two one-thread Ray workers at the lowest priority, so that tests beside it slow it, not
# stop it. Stop it with Ctrl-C or `pkill -INT -f "defdistill reproduce"` (the epoch or the
# attack in progress is lost, nothing else).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: paper-run/run.sh OUT [LOG]" >&2; exit 2; }
out="$1"
log="${2:-/dev/stdout}"
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
for dataset in mnist cifar10-subset; do
  nice -n 19 .venv/bin/defdistill reproduce --dataset "$dataset" --profile paper --out "$out" \
    --executor ray >> "$log" 2>&1
done

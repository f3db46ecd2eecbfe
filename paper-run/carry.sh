#!/usr/bin/env bash
# Carry the paper profile's run (issue 28) between machines through git.
#
#   paper-run/carry.sh restore OUT   copy the committed state into OUT (OUT must not exist)
#   paper-run/carry.sh save OUT      replace the committed state by OUT's (stop the run first)
#
# The state is the run's output directory as `defdistill reproduce --out OUT` leaves it:
# finished networks, the training state of the ones in progress (resumed at their last
# finished epoch), the units' results. Its lock and half-written temporaries are left out.
set -euo pipefail
state="$(cd "$(dirname "$0")" && pwd)/out"
usage() { echo "usage: paper-run/carry.sh restore|save OUT" >&2; exit 2; }
[ $# -eq 2 ] || usage
out="$2"
case "$1" in
  restore)
    [ -d "$state" ] || { echo "paper-run: no committed state in $state; start the run afresh" >&2; exit 1; }
    [ ! -e "$out" ] || { echo "paper-run: $out exists; resume the run there or remove it first" >&2; exit 1; }
    cp -r "$state" "$out"
    ;;
  save)
    [ -d "$out" ] || { echo "paper-run: $out is not a directory; name the run's --out" >&2; exit 1; }
    if [ -e "$out/.defdistill.lock" ] && ! flock -n -s "$out/.defdistill.lock" true; then
      echo "paper-run: a defdistill run holds $out; stop it (Ctrl-C) before saving" >&2; exit 1
    fi
    rm -rf "$state.new"
    cp -r "$out" "$state.new"
    find "$state.new" \( -name '.defdistill.lock' -o -name '.defdistill-*.partial' \) -delete
    rm -rf "$state"
    mv "$state.new" "$state"
    ;;
  *) usage ;;
esac

#!/bin/sh
# dream audit in N shards under GNU parallel, then the merge.
#
#   scripts/dist/parallel-audit.sh [-j JOBS] [-S SSHLOGINS] N DIR REPORT_DIR [audit options]
#
# runs `dream audit [audit options] --shard I/N DIR REPORT_DIR.parts/I` for I = 1..N (JOBS at a
# time, over the -S machines as in parallel-batch.sh), then
# `dream audit --merge REPORT_DIR.parts/1 ... REPORT_DIR.parts/N REPORT_DIR` here, which
# refuses parts made from different folders, models or options.  The merge runs whatever the
# shards' status: a shard that found unreadable images exits 1 yet writes its part (they are
# listed in it, and in the merged report), and one that failed outright left no part, which
# the merge names (every part's old report.json is removed before the shards run, so none is
# taken from an earlier run).  Exit status: the merge's (0; 1 when images were unreadable or a
# part is missing).
set -eu
usage() {
  echo "usage: $0 [-j JOBS] [-S SSHLOGINS] N DIR REPORT_DIR [audit options]" >&2
  exit 2
}
jobs=
logins=
while getopts j:S: opt; do
  case $opt in
    j) jobs=$OPTARG ;;
    S) logins=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 3 ] || usage
n=$1 dir=$2 report=$3
shift 3
case $n in
  '' | *[!0-9]* | 0) echo "$0: N must be a positive integer, got '$n'" >&2; exit 2 ;;
esac
if ! command -v parallel >/dev/null; then
  echo "$0: GNU parallel is not installed (apt-get install parallel)" >&2
  exit 1
fi
dream=${DREAM:-dream}
parts=$report.parts
mkdir -p "$parts"
for i in $(seq "$n"); do rm -f "$parts/$i/report.json"; done
parallel --will-cite -q --halt never ${jobs:+-j "$jobs"} \
  ${logins:+-S "$logins" --env OMP_NUM_THREADS --env OPENBLAS_NUM_THREADS} \
  "$dream" audit "$@" --shard "{}/$n" "$dir" "$parts/{}" ::: $(seq "$n") ||
  echo "$0: a shard exited non-zero (unreadable images, or a failure); merging what there is" >&2
set --
for i in $(seq "$n"); do set -- "$@" "$parts/$i"; done
"$dream" audit --merge "$@" "$report"

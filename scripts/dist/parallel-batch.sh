#!/bin/sh
# dream batch in N shards under GNU parallel, on this machine or over ssh.
#
#   scripts/dist/parallel-batch.sh [-j JOBS] [-S SSHLOGINS] N IN_DIR OUT_DIR [dream options]
#
# runs `dream batch [dream options] --shard I/N IN_DIR OUT_DIR` for I = 1..N, JOBS at a time
# (default: parallel's, one per core; give -j with dream's own threads in mind:
# OMP_NUM_THREADS x JOBS <= cores).  -S host1,host2 (parallel's --sshlogin; ':' is this
# machine) spreads the shards over those machines: each must have `dream` on its PATH (or
# DREAM set to the same path) and see IN_DIR and OUT_DIR at the same absolute paths (a shared
# file system).  The shards' files are disjoint and together make the unsharded run byte for
# byte (on machines of one kind, with one build and the same thread counts: README,
# "Reproducible").  A failed shard leaves its finished files; running the script again
# resumes.  Exit status: 0 when every shard succeeded, 1 otherwise.
set -eu
usage() {
  echo "usage: $0 [-j JOBS] [-S SSHLOGINS] N IN_DIR OUT_DIR [dream options]" >&2
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
n=$1 in=$2 out=$3
shift 3
case $n in
  '' | *[!0-9]* | 0) echo "$0: N must be a positive integer, got '$n'" >&2; exit 2 ;;
esac
if ! command -v parallel >/dev/null; then
  echo "$0: GNU parallel is not installed (apt-get install parallel)" >&2
  exit 1
fi
dream=${DREAM:-dream}
# -q quotes every argument for the shell parallel runs (paths with spaces stay whole);
# --halt never: the other shards go on when one fails.  OUT_DIR is made first, so that the
# shards do not race to make it.
mkdir -p "$out"
status=0
parallel --will-cite -q --halt never ${jobs:+-j "$jobs"} \
  ${logins:+-S "$logins" --env OMP_NUM_THREADS --env OPENBLAS_NUM_THREADS} \
  "$dream" batch "$@" --shard "{}/$n" "$in" "$out" ::: $(seq "$n") || status=1
exit $status

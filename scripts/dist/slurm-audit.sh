#!/bin/sh
# dream audit on Slurm: a job array of N shards, then the merge as a job that waits for it.
#
#   scripts/dist/slurm-audit.sh N DIR REPORT_DIR [audit options]
#
# submits `dream audit [audit options] --shard $SLURM_ARRAY_TASK_ID/N DIR REPORT_DIR.parts/I`
# as --array=1-N, and `dream audit --merge REPORT_DIR.parts/1 ... REPORT_DIR` with
# --dependency=afterany on the whole array: a shard that found unreadable images exits 1 but
# writes its part (the images are listed in it and in the merged report); one that failed
# outright left no part, and the merge fails naming it (every part's old report.json is
# removed at submission, so none is taken from an earlier run).  SBATCH_* variables (SBATCH_PARTITION, SBATCH_TIMELIMIT...) pass sbatch's
# options; DREAM names the binary (default `dream`).  Prints the two job ids.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 N DIR REPORT_DIR [audit options]" >&2; exit 2; }
n=$1 dir=$2 report=$3
shift 3
case $n in
  '' | *[!0-9]* | 0) echo "$0: N must be a positive integer, got '$n'" >&2; exit 2 ;;
esac
dream=${DREAM:-dream}
parts=$report.parts
mkdir -p "$parts"
for i in $(seq "$n"); do rm -f "$parts/$i/report.json"; done
# The jobs' command lines, for their shell: q ARG prints 'ARG' (each ' as '\''), one word.
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
opts=
for a in "$@"; do opts="$opts $(q "$a")"; done
shard="$(q "$dream") audit$opts --shard \"\$SLURM_ARRAY_TASK_ID/$n\" $(q "$dir")"
shard="$shard $(q "$parts")/\"\$SLURM_ARRAY_TASK_ID\""
array=$(sbatch --parsable --array="1-$n" --job-name=dream-audit --output="$parts/%a.log" \
  --wrap="$shard")
list=
for i in $(seq "$n"); do list="$list $(q "$parts/$i")"; done
merge=$(sbatch --parsable --dependency="afterany:${array%%;*}" --job-name=dream-audit-merge \
  --output="$parts/merge.log" --wrap="$(q "$dream") audit --merge$list $(q "$report")")
echo "array job $array, merge job $merge"

#!/bin/sh
# A one-node Slurm on this machine, from Debian's slurm-wlm, running slurm-batch.sbatch as a
# job array: the array's outputs must be exactly those of one unsharded `dream batch`.
#
#   DREAM=build/dream DREAM_SHARED=../shared scripts/dist/slurm-test.sh
#
# Then slurm-audit.sh's plumbing (an array, then a merge job afterany) with a stand-in for
# `dream audit` that records its arguments.
#
# Needs root (slurmd runs the jobs as the submitting user) and no other Slurm on the ports
# it picks.  slurmctld and slurmd run from a temporary folder with their own slurm.conf (SLURM_CONF;
# AuthType=auth/none, so no munge daemon: a test cluster only), and are stopped on exit, also
# on failure or Ctrl-C.  Exit status 0 when the outputs match; it takes about 15 s.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if ! dream=$(command -v "${DREAM:-dream}"); then
  echo "slurm-test: no dream binary (set DREAM)" >&2
  exit 1
fi
shared=${DREAM_SHARED:-$here/../../../shared}
export DREAM_MODEL_PATH=${DREAM_MODEL_PATH:-$shared/models}
for tool in slurmctld slurmd sbatch sinfo scontrol; do
  if ! command -v $tool >/dev/null; then
    echo "slurm-test: $tool missing (apt-get install slurm-wlm)" >&2
    exit 1
  fi
done
[ "$(id -u)" = 0 ] || { echo "slurm-test: run as root (slurmd must be)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/dream-slurm.XXXXXX)
ctld_pid=
d_pid=
stop() {
  status=$?
  # Our own daemons only, by the process ids we started.
  [ -n "$d_pid" ] && kill "$d_pid" 2>/dev/null && wait "$d_pid" 2>/dev/null || true
  [ -n "$ctld_pid" ] && kill "$ctld_pid" 2>/dev/null && wait "$ctld_pid" 2>/dev/null || true
  if [ $status -ne 0 ]; then
    echo "slurm-test: failed; the daemons' logs:" >&2
    tail -n 20 "$tmp/slurmctld.log" "$tmp/slurmd.log" "$tmp"/job-*.log 2>/dev/null >&2 || true
  fi
  rm -rf "$tmp"
  exit $status
}
trap stop EXIT
trap 'exit 130' INT TERM

host=$(hostname -s)
base=$((20000 + $$ % 20000))
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/in/sub dir"
export SLURM_CONF=$tmp/slurm.conf
cat >"$SLURM_CONF" <<CONF
ClusterName=dreamtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$base
SlurmdPort=$((base + 1))
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=10 State=UP
CONF

slurmctld -D -i >"$tmp/slurmctld.out" 2>&1 &
ctld_pid=$!
slurmd -D -N "$host" >"$tmp/slurmd.out" 2>&1 &
d_pid=$!
i=0
until sinfo -h -o %t 2>/dev/null | grep -qx idle; do
  i=$((i + 1))
  [ $i -le 60 ] || { echo "slurm-test: the node did not come up in 30 s" >&2; exit 1; }
  sleep 0.5
done

for f in dog.jpg kite.jpg; do cp "$shared/images/$f" "$tmp/in/"; done
for f in eagle.jpg horses.jpg person.jpg; do cp "$shared/images/$f" "$tmp/in/sub dir/"; done
opts="--max-side 48 --octaves 2 --iters 3 --seed 5"
mkdir "$tmp/array"
# Each task with one thread, as the reference below: the same bytes need the same counts.
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 DREAM=$dream \
  sbatch --wait --array=1-3 --cpus-per-task=1 --output="$tmp/job-%a.log" \
  "$here/slurm-batch.sbatch" "$tmp/in" "$tmp/array" $opts >"$tmp/sbatch.out"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$dream" batch -q $opts "$tmp/in" "$tmp/one"
n=$(find "$tmp/array" -type f | wc -l)
[ "$n" = 5 ] || { echo "slurm-test: the array wrote $n files, not 5" >&2; exit 1; }
if ! diff -r "$tmp/one" "$tmp/array"; then
  echo "slurm-test: the array's outputs differ from one run" >&2
  exit 1
fi
for a in 1 2 3; do
  if ! grep -q "[12] done" "$tmp/job-$a.log"; then
    echo "slurm-test: task $a did nothing" >&2
    exit 1
  fi
done
echo "slurm-test: a 3-task array on a one-node Slurm gave the 5 files of one unsharded run"

# slurm-audit.sh's plumbing, with a stand-in for `dream audit` that records its arguments
# (the real one is on another branch): 2 shard tasks, then the merge once both are done.
cat >"$tmp/fake-dream" <<'STUB'
#!/bin/sh
line=""
for a in "$@"; do line="$line[$a]"; done
printf '%s\n' "$line" >>"$STUB_LOG"
STUB
chmod +x "$tmp/fake-dream"
mkdir "$tmp/my photos"
STUB_LOG=$tmp/calls.log DREAM=$tmp/fake-dream \
  "$here/slurm-audit.sh" 2 "$tmp/my photos" "$tmp/the report" --labels "Joe's list.csv" \
  >"$tmp/audit.out"
i=0
while [ -n "$(squeue -h 2>/dev/null)" ]; do
  i=$((i + 1))
  [ $i -le 120 ] || { echo "slurm-test: the audit jobs did not finish in 60 s" >&2; exit 1; }
  sleep 0.5
done
r="$tmp/the report"
expected="[audit][--merge][$r.parts/1][$r.parts/2][$r]"
for k in 1 2; do
  want="[audit][--labels][Joe's list.csv][--shard][$k/2][$tmp/my photos][$r.parts/$k]"
  if ! grep -qxF "$want" "$tmp/calls.log"; then
    echo "slurm-test: audit shard $k was not run as expected:" >&2
    cat "$tmp/calls.log" >&2
    exit 1
  fi
done
if [ "$(wc -l <"$tmp/calls.log")" != 3 ] || [ "$(tail -n 1 "$tmp/calls.log")" != "$expected" ]; then
  echo "slurm-test: the audit merge was not the last call:" >&2
  cat "$tmp/calls.log" >&2
  exit 1
fi
echo "slurm-test: slurm-audit.sh ran 2 shards, then the merge (with a stand-in for dream audit)"

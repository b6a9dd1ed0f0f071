#!/usr/bin/env bash
# ckpt-job.sh DIR -- PROG ARGS...: a batch job that survives its time limit.
#
# The first run starts PROG under ckpt; a later run restarts it from the
# newest image in DIR.  When the scheduler warns with SIGUSR2 (Slurm:
# --signal=B:USR2@120), the job checkpoints PROG, stops it, asks to be
# requeued and exits 99; the next run goes on where it stopped.  When PROG
# ends by itself, the job exits with its status.  See docs/batch.md.
#
#SBATCH --signal=B:USR2@120
#SBATCH --requeue
#SBATCH --open-mode=append
set -u
dir=$1
shift
[[ ${1:-} == -- ]] && shift
ckpt=${CKPT:-ckpt}
mkdir -p "$dir"

if compgen -G "$dir/*.ckpt" >/dev/null; then
	rm -f "$dir/.pid"
	"$ckpt" restart --pid-file "$dir/.pid" --dir "$dir" &
	job=$!
	program() { cat "$dir/.pid" 2>/dev/null; }
else
	"$ckpt" run --dir "$dir" -- "$@" &
	job=$!
	program() { pgrep -P "$job"; }
fi

on_warning() {
	local pid
	for _ in $(seq 100); do pid=$(program) && [[ -n $pid ]] && break; sleep 0.1; done
	echo "ckpt-job: time is nearly up: checkpointing process $pid" >&2
	"$ckpt" checkpoint --kill "$pid" >&2 || echo "ckpt-job: the checkpoint failed" >&2
	wait "$job"
	if [[ -n ${SLURM_JOB_ID:-} ]]; then
		scontrol requeue "$SLURM_JOB_ID"
	fi
	exit 99
}
trap on_warning USR2

# wait returns early when the trap runs; loop until the job itself ends.
while :; do
	wait "$job"
	status=$?
	kill -0 "$job" 2>/dev/null || exit "$status"
done

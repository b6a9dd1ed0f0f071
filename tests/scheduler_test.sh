#!/usr/bin/env bash
# scheduler_test.sh CKPT HELLO JOBSCRIPT
#
# Plays a batch scheduler for tools/ckpt-job.sh: starts the job, sends
# SIGUSR2 a while later as Slurm does before a time limit, expects exit 99
# (requeue), and runs it again, three times in all.  The program's output,
# appended across the runs as with --open-mode=append, must count on
# without skipping; lines printed between a checkpoint and the kill that
# follows it are printed again by the next run, as the restored program
# redoes those ticks.
set -euo pipefail
source "$(dirname "$0")/testlib.sh"
ckpt=$(realpath "$1")
hello=$(realpath "$2")
job=$(realpath "$3")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/sched.XXXXXX")
cd "$work"
for run in 1 2 3; do
	before=$(count . job.out)
	CKPT=$ckpt "$job" "$work/images" -- "$hello" 100 >>job.out 2>>job.err &
	jpid=$!
	pids+=("$jpid")
	wait_for at_least . job.out $((before + 10)) || fail "run $run did not make progress"
	kill -USR2 "$jpid"
	rc=0
	wait "$jpid" || rc=$?
	((rc == 99)) || fail "run $run exited $rc, want 99 (requeue)"
done
# Forward by one, or back by the few ticks a requeued run redoes (at most
# once per requeue); never a skip, never back to the start.
awk 'NR>1 && ($1 > prev+1 || $1 < 2) {exit 1} NR>1 && $1 <= prev {backs++} {prev=$1}
	END {exit backs > 2}' job.out || fail "the count skipped, started over, or went back too often"

echo "PASS: 3 runs of the job script, each warned, checkpointed and requeued; the count reached $(awk 'END {print $1}' job.out) without a gap"

#!/usr/bin/env bash
# roundtrip_test.sh LIBCKPT RESTART PROG [ARGS...]
#
# Runs PROG under libckpt.so, checkpoints it with a real signal, kills it
# with SIGKILL, restarts it from the image and checks that:
#   - the image is mode 0600 and the library reported it on stderr;
#   - the restarted copy's first tick follows a tick the original printed at
#     or after the checkpoint (it neither starts over nor skips ahead);
#   - its ticks stay consecutive and it never prints FAIL (each program
#     checks its own state: clocks, FPU mode, stack, heap checksum);
#   - a checkpoint request in the restored process is refused with a message
#     and does not disturb it (checkpointing after restart is not done yet);
#   - with RESTARTS=N, the same image restarts N times, each the same way.
# PROG prints one line per tick whose first field is the tick number.
set -euo pipefail

lib=$(realpath "$1")
restart=$(realpath "$2")
shift 2
prog=("$@")
# The test runs in its own directory: make paths to runfiles absolute.
for i in "${!prog[@]}"; do
	if [[ ${prog[i]} == */* && -e ${prog[i]} ]]; then prog[i]=$(realpath "${prog[i]}"); fi
done

work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/roundtrip.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; for f in "$work"/*.out "$work"/*.err; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done; exit 1; }

# wait_for CMD...: retry CMD for up to 30 s.
wait_for() {
	local deadline=$((SECONDS + 30))
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
}
lines_at_least() { [[ -f $1 ]] && (($(grep -c . "$1") >= $2)); }
first_field() { awk 'NR==1 {print $1}' "$1"; }
last_field() { awk 'END {print $1}' "$1"; }
# consecutive FILE: every line's tick is the one before plus one.
consecutive() { awk 'NR>1 && $1 != prev+1 {bad=1} {prev=$1} END {exit bad}' "$1"; }

cd "$work"
CKPT_DIR=$work LD_PRELOAD=$lib "${prog[@]}" >orig.out 2>orig.err &
pid=$!
pids+=("$pid")
wait_for lines_at_least orig.out 3 || fail "the program did not start ticking under the library"
grep -q FAIL orig.out && fail "the program failed before any checkpoint"
# Only the program's threads may take the trigger: every other thread (the
# Go runtime's) must have SIGUSR2 blocked from birth.
for status in /proc/"$pid"/task/*/status; do
	[[ $status == /proc/$pid/task/$pid/status ]] && continue
	blocked=$(awk '/^SigBlk:/ {print $2}' "$status")
	(((16#$blocked >> 11) & 1)) || fail "thread ${status%/status} has SIGUSR2 unblocked (SigBlk $blocked)"
done
before=$(last_field orig.out)

kill -USR2 "$pid"
wait_for grep -q "ckpt: wrote" orig.err || fail "no checkpoint was reported"
kill -9 "$pid"
{ wait "$pid"; } 2>/dev/null || true
after=$(last_field orig.out)
image=$(sed -n 's/^ckpt: wrote \(.*\) (.*$/\1/p' orig.err | tail -n 1)
[[ -f $image ]] || fail "the reported image $image does not exist"
[[ $(stat -c %a "$image") == 600 ]] || fail "image mode is $(stat -c %a "$image"), want 600"
ls -A "$work" | grep -q '\.tmp' && fail "a temporary file was left behind"

# Restart from the same image RESTARTS times (default once): each copy must
# go on from the same point.
for ((r = 1; r <= ${RESTARTS:-1}; r++)); do
	out=restored$r.out err=restored$r.err
	"$restart" "$image" >"$out" 2>"$err" &
	rpid=$!
	pids+=("$rpid")
	wait_for lines_at_least "$out" 3 || fail "restart $r: the restored program did not tick"
	first=$(first_field "$out")
	((first - 1 >= before && first - 1 <= after)) ||
		fail "restart $r: starts at $first; the original printed $before before and $after after the checkpoint"
	kill -USR2 "$rpid"
	wait_for grep -q "not supported yet" "$err" || fail "restart $r: a checkpoint request after restart was not refused"
	n=$(grep -c . "$out")
	wait_for lines_at_least "$out" $((n + 2)) || fail "restart $r: the program stopped after a refused checkpoint"
	kill -9 "$rpid"
	{ wait "$rpid"; } 2>/dev/null || true
	grep -q FAIL "$out" && fail "restart $r: the restored program reports a bad state"
	consecutive "$out" || fail "restart $r: the restored program's ticks are not consecutive"
done
echo "PASS: ${prog[*]}: checkpoint after tick $before, restored ${RESTARTS:-1} time(s) from tick $first; image $(stat -c %s "$image") bytes"

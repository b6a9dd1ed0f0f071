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
#   - the restored process is checkpointed again, killed and restarted,
#     GENERATIONS times (default 3), each going on from its checkpoint;
#     restart passes signals on and exits 137 when the program is killed;
#   - with RESTARTS=N, the first image restarts N times, each the same way;
#   - with CKPT_COMPRESS=1 (passed to the program), every image is
#     compressed;
#   - with EARLY=1, each restored process is also checkpointed as soon as it
#     exists (the request waits, blocked, until it runs), while restart is
#     still loading its memory: the snapshot child is a fork the loader
#     must serve too;
#   - with RESTART_ARGS, restart gets those options too; with FILLED=yes
#     or no, restart must have written the memory into the restored process
#     itself (go/restart/fill.go), or have tried and left it to the stub.
# PROG prints one line per tick whose first field is the tick number.
set -euo pipefail
source "$(dirname "$0")/testlib.sh"

lib=$(realpath "$1")
restart=$(realpath "$2")
shift 2
prog=("$@")
# The test runs in its own directory: make paths to runfiles absolute.
for i in "${!prog[@]}"; do
	if [[ ${prog[i]} == */* && -e ${prog[i]} ]]; then prog[i]=$(realpath "${prog[i]}"); fi
done

work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/roundtrip.XXXXXX")
# consecutive FILE: every line's tick is the one before plus one.
consecutive() { awk 'NR>1 && $1 != prev+1 {bad=1} {prev=$1} END {exit bad}' "$1"; }

cd "$work"
CKPT_DIR=$work LD_PRELOAD=$lib "${prog[@]}" >orig.out 2>orig.err &
pid=$!
pids+=("$pid")
wait_for at_least . orig.out 3 || fail "the program did not start ticking under the library"
grep -q FAIL orig.out && fail "the program failed before any checkpoint"
# Only the program's threads may take the trigger or signals sent to the
# program: in a single-threaded program (SINGLE_THREADED=1), every other
# thread is the Go runtime's and must have SIGUSR2, SIGALRM and SIGTERM
# blocked from birth.  (Go unblocks SIGCHLD, SIGURG and SIGPROF on its own
# threads.)
for status in /proc/"$pid"/task/*/status; do
	[[ ${SINGLE_THREADED:-0} == 1 ]] || break
	[[ $status == /proc/$pid/task/$pid/status ]] && continue
	blocked=$(awk '/^SigBlk:/ {print $2}' "$status")
	for sig in 12 14 15; do
		(((16#$blocked >> (sig - 1)) & 1)) ||
			fail "thread ${status%/status} has signal $sig unblocked (SigBlk $blocked)"
	done
done
# The library's Go runtime keeps no files of its own open in the program
# (cgroup files: their paths differ between machines).
if ls -l /proc/"$pid"/fd | grep -q /sys/fs/cgroup; then fail "the library keeps cgroup files open"; fi
before=$(last_field orig.out)

kill -USR2 "$pid"
wait_for grep -q "ckpt: wrote" orig.err || fail "no checkpoint was reported"
kill -9 "$pid"
{ wait "$pid"; } 2>/dev/null || true
after=$(last_field orig.out)
image=$(image_in orig.err)
[[ -f $image ]] || fail "the reported image $image does not exist"
[[ $(stat -c %a "$image") == 600 ]] || fail "image mode is $(stat -c %a "$image"), want 600"
ls -A "$work" | grep -q '\.tmp' && fail "a temporary file was left behind"
# compressed ERR: with CKPT_COMPRESS=1, the image ERR reports is compressed.
compressed() {
	[[ ${CKPT_COMPRESS:-0} != 1 ]] || grep -q "ckpt: wrote .* zstd" "$1" ||
		fail "CKPT_COMPRESS=1, but $1 reports no compressed image"
}
compressed orig.err

# restore NAME IMAGE: restart IMAGE, wait for 3 ticks and check that it goes
# on from the checkpoint; leaves rpid (restart) and hpid (the program).
restore() {
	local name=$1 img=$2
	out=$name.out err=$name.err
	# shellcheck disable=SC2086 # RESTART_ARGS are words
	CKPT_LAZY_DEBUG=${FILLED:+1} "$restart" ${RESTART_ARGS:-} --pid-file "$name.pid" "$img" >"$out" 2>"$err" &
	rpid=$!
	pids+=("$rpid")
	wait_for test -s "$name.pid" || fail "$name: restart --pid-file wrote nothing"
	hpid=$(cat "$name.pid")
	[[ ${EARLY:-0} == 1 ]] && kill -USR2 "$hpid"
	wait_for at_least . "$out" 3 || fail "$name: the restored program did not tick"
	pids+=("$hpid")
	first=$(first_field "$out")
	((first - 1 >= before && first - 1 <= after)) ||
		fail "$name: starts at $first; before that it printed $before before and $after after the checkpoint"
	case ${FILLED:-} in
	yes) grep -q "restart: fill: process [0-9]*: <nil> (filled: true" "$err" || fail "$name: restart did not fill the memory" ;;
	no) grep -q "restart: fill: process [0-9]*: <nil> (filled: false" "$err" || fail "$name: restart did not leave the memory to the stub" ;;
	esac
	# Restored memory is copied, never mapped from the image.
	if grep -qF "$(realpath "$img")" "/proc/$hpid/maps"; then fail "$name: memory is mapped from the image"; fi
}

# finish NAME: kill what restore started and check its output.
finish() {
	kill -9 "$hpid" 2>/dev/null || true
	local rc=0
	wait "$rpid" 2>/dev/null || rc=$?
	((rc == 137)) || fail "$1: restart exited $rc, not 137, when the program was killed by SIGKILL"
	grep -q FAIL "$out" && fail "$1: the restored program reports a bad state"
	consecutive "$out" || fail "$1: the restored program's ticks are not consecutive"
}

# With RESTARTS=N, the first image is restarted N-1 more times first: each
# copy must go on from the same point.
for ((r = 2; r <= ${RESTARTS:-1}; r++)); do
	restore "again$r" "$image"
	finish "again$r"
done

# Generations: restart, let it run, checkpoint the restored process, kill
# it, restart the new image.  The first generation's request goes to the
# restart command, which must pass it on.
gens=${GENERATIONS:-3}
for ((g = 1; g <= gens; g++)); do
	restore "gen$g" "$image"
	before=$(last_field "$out")
	target=$hpid
	((g == 1)) && target=$rpid
	kill -USR2 "$target" || fail "gen$g: the restored process is gone before its checkpoint"
	wait_for at_least "ckpt: wrote" "$err" $((${EARLY:-0} == 1 ? 2 : 1)) ||
		fail "gen$g: the restored process wrote no image"
	compressed "$err"
	after=$(last_field "$out")
	finish "gen$g"
	after=$(last_field "$out")
	image=$(image_in "$err")
done
echo "PASS: ${prog[*]}: $gens generations, each restored where the last checkpoint left it (last from tick $first); image $(stat -c %s "$image") bytes"

#!/usr/bin/env bash
# stress_test.sh LIBCKPT RESTART PROG [CHECKPOINTS [MODE]]
#
# Checkpoints a busy multi-threaded program (PROG 100 MODE) CHECKPOINTS
# times (default 50)
# in a row, each at a random moment while it runs, then sends a burst of 20
# trigger signals at once.  No checkpoint may fail, the program must keep
# running, and after SIGKILL the last image must restart, go on, and be
# checkpointed again (twice per generation, two generations).
set -euo pipefail
source "$(dirname "$0")/testlib.sh"
lib=$(realpath "$1")
restart=$(realpath "$2")
prog=$(realpath "$3")
n=${4:-50}
mode=${5:-}
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/stress.XXXXXX")
cd "$work"
written() { count "ckpt: wrote" orig.err; }

CKPT_DIR=$work LD_PRELOAD=$lib "$prog" 100 $mode >orig.out 2>orig.err &
pid=$!
pids+=("$pid")
wait_for grep -q . orig.out || fail "the program did not start"
start=$SECONDS
for ((i = 1; i <= n; i++)); do
	sleep "0.0$((RANDOM % 10))"
	kill -USR2 "$pid"
	wait_for at_least "ckpt: wrote" orig.err "$i" || fail "checkpoint $i was not written"
done
elapsed=$((SECONDS - start))
for _ in $(seq 20); do kill -USR2 "$pid"; done
wait_for at_least "ckpt: wrote" orig.err $((n + 1)) || fail "the burst wrote no image"
sleep 1
kill -0 "$pid" || fail "the program died"
grep -v "ckpt: wrote" orig.err && fail "unexpected messages"
grep -q FAIL orig.out && fail "the program reports a bad state"
kill -9 "$pid"
image=$(image_in orig.err)
# By now the Go runtime in the library has started its netpoller (an epoll
# instance and an eventfd): the restored process must checkpoint again, and
# its image restart.
for gen in 1 2; do
	"$restart" --pid-file "gen$gen.pid" "$image" >"gen$gen.out" 2>"gen$gen.err" &
	pids+=($!)
	wait_for test -s "gen$gen.pid" || fail "generation $gen did not start"
	hpid=$(cat "gen$gen.pid")
	pids+=("$hpid")
	for k in 1 2; do
		sleep 1
		kill -USR2 "$hpid"
		wait_for at_least "ckpt: wrote" "gen$gen.err" "$k" ||
			fail "generation $gen wrote no image"
	done
	sleep 0.5
	kill -9 "$hpid"
	grep -q FAIL "gen$gen.out" && fail "generation $gen reports a bad state"
	at_least . "gen$gen.out" 10 || fail "generation $gen stopped ticking"
	image=$(image_in "gen$gen.err")
done
pauses=$(sed -n 's/.*paused \([0-9.]*\) ms.*/\1/p' orig.err | sort -n | awk '{a[NR]=$1} END {print "pause median " a[int((NR+1)/2)] " ms, max " a[NR] " ms"}')
echo "PASS: $n checkpoints in ${elapsed}s plus a burst of 20 ($(written) images in all), $pauses; the last image restarts and checkpoints again for 2 generations"

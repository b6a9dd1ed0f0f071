#!/usr/bin/env bash
# cycles_test.sh LIBCKPT RESTART PROG [CYCLES]
#
# CYCLES (default 50) checkpoint/restart cycles of one program: each cycle
# restarts the last image, lets it run, checkpoints the restored process,
# kills it with SIGKILL and checks that its ticks went on from the previous
# cycle's checkpoint without a gap or a FAIL.  Any failure stops the test.
set -euo pipefail
source "$(dirname "$0")/testlib.sh"
lib=$(realpath "$1")
restart=$(realpath "$2")
prog=$(realpath "$3")
cycles=${4:-50}
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/cycles.XXXXXX")
cd "$work"

CKPT_DIR=$work LD_PRELOAD=$lib "$prog" 50 >c0.out 2>c0.err &
pid=$!
pids+=("$pid")
wait_for at_least . c0.out 3 || fail "the program did not start"
kill -USR2 "$pid"
wait_for at_least 'ckpt: wrote' c0.err 1 || fail "no first image"
kill -9 "$pid"
last=$(awk 'END {print $1}' c0.out)
image=$(image_in c0.err)
start=$SECONDS
for ((c = 1; c <= cycles; c++)); do
	FAIL_PREFIX="cycle $c: "
	"$restart" --pid-file "c$c.pid" "$image" >"c$c.out" 2>"c$c.err" &
	rpid=$!
	pids+=("$rpid")
	wait_for at_least . "c$c.out" 2 || fail "the restored program did not tick"
	wait_for test -s "c$c.pid" || fail "no --pid-file"
	hpid=$(cat "c$c.pid")
	first=$(awk 'NR==1 {print $1}' "c$c.out")
	((first >= 2 && first - 1 <= last)) || fail "restored at tick $first after a checkpoint at or before $last"
	kill -USR2 "$hpid"
	wait_for at_least "ckpt: wrote" "c$c.err" 1 || fail "the restored process wrote no image"
	kill -9 "$hpid"
	wait "$rpid" 2>/dev/null || true
	grep -q FAIL "c$c.out" && fail "the program reports a bad state"
	awk 'NR>1 && $1 != prev+1 {exit 1} {prev=$1}' "c$c.out" || fail "ticks are not consecutive"
	last=$(awk 'END {print $1}' "c$c.out")
	rm -f "c$((c - 1)).out" "c$((c - 1)).err"
done
echo "PASS: $cycles checkpoint/restart cycles in $((SECONDS - start)) s, $prog ended at tick $last"

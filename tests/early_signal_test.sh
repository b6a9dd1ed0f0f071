#!/usr/bin/env bash
# early_signal_test.sh LIBCKPT RESTART BIGHEAP
#
# restart catches signals from its start, to forward them once the program
# runs (go/restart/signals.go).  While the image is still being checked:
#   - SIGTERM ends restart as it would any Go program, and the program
#     never runs;
#   - SIGUSR2, a checkpoint request, reaches the program once it runs,
#     which writes a new image.
set -euo pipefail
source "$(dirname "$0")/testlib.sh"
lib=$(realpath "$1")
restart=$(realpath "$2")
bigheap=$(realpath "$3")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/early.XXXXXX")
cd "$work"

# 256 MiB to check: a few hundred milliseconds before the program could run.
LD_PRELOAD=$lib CKPT_DIR=$work "$bigheap" 200 256 full >prog.out 2>prog.err &
pid=$!
pids+=("$pid")
wait_for at_least '^[0-9]' prog.out 1 || fail "bigheap did not start"
kill -USR2 "$pid"
wait_for at_least '^ckpt: wrote' prog.err 1 || fail "no checkpoint"
kill -9 "$pid"
img=$(image_in prog.err)

# started SIGNAL: start restart and send it SIGNAL while it checks the
# image, a few hundred milliseconds before the program can run: 20 ms after
# it opened it (reading the metadata of this image takes under 1 ms; the
# signals are caught before the check starts).
started() {
	# Out of the page cache, the check takes long enough to be caught
	# (from the cache it can take 20 ms, shorter than a poll).
	dd if="$img" iflag=nocache count=0 status=none
	"$restart" -q "$img" >"restored.$1.out" 2>"restored.$1.err" &
	rpid=$!
	pids+=("$rpid")
	wait_for opened "$rpid" || fail "restart never opened the image"
	sleep 0.02
	kill -"$1" "$rpid"
}
opened() { ls -l /proc/"$1"/fd 2>/dev/null | grep -q "$(basename "$img")"; }
ended() { [[ ! -e /proc/$1 ]] || grep -q '^[0-9]* (.*) Z' /proc/"$1"/stat; }

started TERM
wait_for ended "$rpid" || fail "SIGTERM while checking: restart went on"
rc=0
wait "$rpid" || rc=$?
((rc == 143)) || fail "SIGTERM while checking: restart exited $rc, want 143 (killed by it)"
[[ ! -s restored.TERM.out ]] || fail "SIGTERM while checking: the program ran anyway"

started USR2
wait_for at_least '^[0-9]' restored.USR2.out 1 || fail "the program did not run after a SIGUSR2 to restart"
wait_for at_least '^ckpt: wrote' restored.USR2.err 1 ||
	fail "the checkpoint request sent while restart was checking was lost"
kill -9 "$rpid"
echo "PASS: SIGTERM during the check ends restart; SIGUSR2 reaches the program once it runs"

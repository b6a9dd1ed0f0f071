#!/usr/bin/env bash
# precopy_test.sh LIBCKPT RESTART SCRIBBLE CHURN BIGHEAP READCKPT REMAP
#
# Runs marked (check) set CKPT_PRECOPY=check: the snapshot keeps the areas
# copied before the pause too, and every page of the image is compared with
# it; a page that differs is reported, which fails the test.
#
# Copying memory before the pause (go/lib/precopy.go, cc_shim/precopy.c):
#   - scribble, which rewrites 128 MiB page by page all the time and a 1 MiB
#     area flat out, is checkpointed five times; each report says areas were
#     copied before the pause; the last image restarts and the program's
#     check of every word passes for five ticks;
#   - the restored process copies before its pauses too, and its image
#     restarts in turn;
#   - with CKPT_PRECOPY=0 no report says so, and the image restarts;
#   - compressed checkpoints (CKPT_COMPRESS=1) copy before the pause too,
#     and their image restarts with the checks passing (check);
#   - incremental checkpoints (CKPT_INCREMENTAL=4) of scribble copy before
#     the pause too, the first the whole areas, the next three only what
#     the kernel saw written since the image before; the newest restarts
#     with the checks passing, and the restored process does the same
#     (check);
#   - churn, with CKPT_PRECOPY=all, CKPT_INCREMENTAL=4 and
#     CKPT_TRACK_WRITES=check: incremental images copied before the pause
#     while areas change shape; no miss, and the newest restarts (check);
#   - churn, with CKPT_PRECOPY=all, unmaps, maps, moves and reprotects parts
#     of its areas every tick, so pauses find areas changed and leave them
#     to the fork: no checkpoint fails in 20 and the last image restarts with
#     churn's checks passing (check).  A stopped thread that wrote its stack
#     after the pause looked (before it slept: cc_shim/handler.c) showed as a
#     miss here about once in 150 checkpoints;
#   - an area a pause found changed is forked at the next checkpoint only:
#     remap, whose thread remaps pages of its area every millisecond until
#     SIGUSR1, has its area changed at the first checkpoint, left to the
#     fork at the second, copied before the pause at the third (more areas
#     copied than at the second), and the image restarts (check);
#   - a program with little memory (churn's 16 MiB) does not copy before the
#     pause by default;
#   - a compressed image holds no more page data than a plain one of the
#     same program (bigheap, 64 MiB that compress 2:1), give or take 4 MiB:
#     the compressors' encoders, whose tables of hashes are megabytes that
#     do not compress, are gone from the library's heap before the pause.
#     Usually 0.2-0.6 MiB more; one run in ten or so 2.5-3 MiB more, freed
#     heap pages that Go 1.26's runtime keeps even through a second
#     FreeOSMemory (its MemStats: HeapIdle - HeapReleased 3.2 MB).  The
#     encoders kept one collection longer (no runtime.GC before
#     FreeOSMemory) make it 5.5-5.9 MiB.
set -euo pipefail
source "$(dirname "$0")/testlib.sh"
lib=$(realpath "$1")
restart=$(realpath "$2")
scribble=$(realpath "$3")
churn=$(realpath "$4")
bigheap=$(realpath "$5")
readckpt=$(realpath "$6")
remap=$(realpath "$7")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/precopy.XXXXXX")
cd "$work"

# quiet ERR: ERR has nothing but reports of images written.
quiet() { if grep -v "^ckpt: wrote" "$1"; then fail "unexpected messages in $1"; fi; }
# run NAME PROG ARGS...: start PROG under the library, wait for 3 ticks.
run() {
	local name=$1
	shift
	CKPT_DIR=$work LD_PRELOAD=$lib "$@" >"$name.out" 2>"$name.err" &
	pid=$!
	pids+=("$pid")
	wait_for at_least . "$name.out" 3 || fail "$name did not start"
}

# generations NAME N M: scribble started by run NAME, checkpointed N times,
# each copying before the pause, is killed and its image restarted; the
# restored process, checkpointed M times the same way (NAME-restored.err),
# is killed and its image restarted.
generations() {
	local name=$1 n=$2 m=$3 rpid
	checkpoints "$pid" "$name.err" "$n"
	quiet "$name.err"
	[[ $(count "areas copied before the pause" "$name.err") == "$n" ]] ||
		fail "$name: not every checkpoint copied before the pause"
	kill -9 "$pid"
	restore_checked "$name-restored" "$work/scribble.$pid.ckpt"
	rpid=$(cat "$name-restored.pid")
	checkpoints "$rpid" "$name-restored.err" "$m"
	quiet "$name-restored.err"
	[[ $(count "areas copied before the pause" "$name-restored.err") == "$m" ]] ||
		fail "$name: the restored process did not copy before the pause"
	kill -9 "$rpid"
	restore_checked "$name-again" "$work/scribble.$pid.ckpt"
	kill -9 "$(cat "$name-again.pid")"
}

run orig "$scribble" 100 128 20
generations orig 5 2

CKPT_PRECOPY=0 run off "$scribble" 100 128 20
checkpoints "$pid" off.err 2
quiet off.err
[[ $(count "copied before the pause" off.err) == 0 ]] || fail "CKPT_PRECOPY=0 copied before the pause"
kill -9 "$pid"
restore_checked offrestored "$work/scribble.$pid.ckpt"
kill -9 "$(cat offrestored.pid)"

CKPT_PRECOPY=check CKPT_COMPRESS=1 run zstd "$scribble" 100 128 20
checkpoints "$pid" zstd.err 2
quiet zstd.err
[[ $(grep " zstd" zstd.err | grep -c "areas copied before the pause") == 2 ]] ||
	fail "compressed checkpoints did not copy before the pause"
kill -9 "$pid"
restore_checked zstdrestored "$work/scribble.$pid.ckpt"
kill -9 "$(cat zstdrestored.pid)"

CKPT_PRECOPY=check CKPT_INCREMENTAL=4 run inc "$scribble" 100 128 20
generations inc 4 2
[[ $(count " incremental, " inc.err) == 3 ]] || fail "want 3 incremental images in inc.err"
[[ $(count " incremental, " inc-restored.err) == 1 ]] || fail "the restored process wrote no incremental image"

CKPT_PRECOPY=all,check CKPT_INCREMENTAL=4 CKPT_TRACK_WRITES=check run incchurn "$churn" 30
checkpoints "$pid" incchurn.err 4
quiet incchurn.err
[[ $(count " incremental, " incchurn.err) == 3 ]] || fail "want 3 incremental images in incchurn.err"
[[ $(grep " incremental, " incchurn.err | grep -c "areas copied before the pause") -ge 1 ]] ||
	fail "churn's incremental images never copied before the pause"
kill -9 "$pid"
restore_checked incchurnrestored "$work/churn.$pid.ckpt"
kill -9 "$(cat incchurnrestored.pid)"

CKPT_PRECOPY=all,check run churn "$churn" 30
checkpoints "$pid" churn.err 20
quiet churn.err
at_least "areas copied before the pause" churn.err 1 || fail "churn never copied before the pause"
kill -9 "$pid"
restore_checked churnrestored "$work/churn.$pid.ckpt"
kill -9 "$(cat churnrestored.pid)"

CKPT_PRECOPY=all,check run remap "$remap" 50 16
checkpoints "$pid" remap.err 1
grep -Eq "[0-9]+ (changed|untracked)" remap.err || fail "the first pause did not find remap's area changed"
kill -USR1 "$pid"
checkpoints "$pid" remap.err 2
quiet remap.err
# copied N: how many areas checkpoint N copied before the pause.
copied() { sed -n 's/.* \([0-9]*\) of [0-9]* areas copied before the pause.*/\1/p' remap.err | sed -n "$1p"; }
(($(copied 3) > $(copied 2))) ||
	fail "remap's area, changed at the first checkpoint only, was not copied before the pause at the third: $(cat remap.err)"
kill -9 "$pid"
restore_checked remaprestored "$work/remap.$pid.ckpt"
kill -9 "$(cat remaprestored.pid)"

run small "$churn" 30
checkpoints "$pid" small.err 1
quiet small.err
[[ $(count "copied before the pause" small.err) == 0 ]] || fail "16 MiB copied before the pause by default"
kill -9 "$pid"

# stored NAME COMPRESS: sets pages to the bytes of page data in the image
# of bigheap started by run NAME with CKPT_COMPRESS=COMPRESS, checkpointed
# once.
stored() {
	CKPT_COMPRESS=$2 run "$1" "$bigheap" 300 64 text
	checkpoints "$pid" "$1.err" 1
	quiet "$1.err"
	at_least "areas copied before the pause" "$1.err" 1 || fail "$1: bigheap did not copy before the pause"
	kill -9 "$pid"
	"$readckpt" "$(image_in "$1.err")" >"$1.txt" || fail "readckpt refused $1's image"
	pages=$(sed -n 's/^areas: *[0-9]*, \([0-9]*\) bytes of page data.*/\1/p' "$1.txt")
}
stored textplain 0
plain=$pages
stored textzstd 1
((plain > 64 << 20 && pages <= plain + (4 << 20))) ||
	fail "the compressed image holds $pages bytes of pages, the plain one $plain"
echo PASS

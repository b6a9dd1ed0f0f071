#!/usr/bin/env bash
# tracking_test.sh LIBCKPT RESTART CHURN
#
# Incremental checkpoints with the kernel's write tracking (go/lib/tracking.go)
# of a program that changes its memory in every way the tracking must see
# (tests/progs/churn.c: its own writes, read(2) into pages, MADV_DONTNEED,
# mmap over pages, mprotect, mremap, a forked child's writes):
#   - with CKPT_TRACK_WRITES=check every page the kernel calls unwritten is
#     read anyway and compared: no checkpoint may report a miss, and every
#     incremental one must have taken pages without reading them;
#   - the newest incremental image restarts and the program's check of all
#     its memory passes; the restored process tracks again from scratch
#     (a full image, then incremental ones) and restarts again;
#   - when the kernel's report does not fit (CKPT_TRACK_REGIONS=2), the
#     checkpoint says so and compares hashes, and the next ones use the
#     tracking again: still no miss;
#   - after a checkpoint that failed (the image directory replaced by a
#     file), the next image compares hashes: the kernel's answer starts at
#     the failed one's snapshot, not at the last image's; no miss;
#   - a program with an asynchronous I/O context (io_setup), which could
#     write its memory without a fault, is told so once and its incremental
#     images compare hashes;
#   - with CKPT_TRACK_WRITES=0 incremental images compare hashes only.
set -euo pipefail
source "$(dirname "$0")/testlib.sh"
lib=$(realpath "$1")
restart=$(realpath "$2")
churn=$(realpath "$3")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/tracking.XXXXXX")
cd "$work"

# tracked ERR N: ERR reports no miss, N incremental images, each of which
# took pages without reading them.
tracked() {
	if grep -q "missed" "$1"; then fail "write tracking missed changes: $(grep missed "$1")"; fi
	[[ $(count " incremental, " "$1") == "$2" ]] || fail "want $2 incremental images in $1"
	[[ $(count "unwritten not read" "$1") == "$2" ]] || fail "not every incremental image used the kernel's tracking"
	if grep -v "^ckpt: wrote" "$1"; then fail "unexpected messages in $1"; fi
}

CKPT_INCREMENTAL=4 CKPT_TRACK_WRITES=check CKPT_DIR=$work LD_PRELOAD=$lib "$churn" 30 >orig.out 2>orig.err &
pid=$!
pids+=("$pid")
wait_for at_least . orig.out 3 || fail "churn did not start"
# A chain of four (full, three incremental), then a full one and one more.
checkpoints "$pid" orig.err 6
tracked orig.err 4
kill -9 "$pid"
{ wait "$pid"; } 2>/dev/null || true
image=$work/churn.$pid.ckpt

restore_checked first "$image"
rpid=$(cat first.pid)
checkpoints "$rpid" first.err 3
tracked first.err 2
kill -9 "$rpid"
restore_checked second "$image"
kill -9 "$(cat second.pid)"

# A report buffer for 2 stretches: churn writes hundreds per tick.
CKPT_INCREMENTAL=20 CKPT_TRACK_REGIONS=2 CKPT_TRACK_WRITES=check CKPT_DIR=$work LD_PRELOAD=$lib "$churn" 30 >small.out 2>small.err &
pid=$!
pids+=("$pid")
wait_for at_least . small.out 3 || fail "churn did not start"
checkpoints "$pid" small.err 12
if grep -q "missed" small.err; then fail "write tracking missed changes: $(grep missed small.err)"; fi
grep -q "more than 2 stretches of written pages" small.err || fail "a report too big for its buffer was not noticed"
grep "ckpt: wrote" small.err | tail -n 1 | grep -q "unwritten not read" || fail "the tracking did not come back once its buffer grew"
kill -9 "$pid"
{ wait "$pid"; } 2>/dev/null || true

# A checkpoint that fails between two that work.
mkdir failing
CKPT_INCREMENTAL=20 CKPT_TRACK_WRITES=check CKPT_DIR=$work/failing LD_PRELOAD=$lib "$churn" 30 >failing.out 2>failing.err &
pid=$!
pids+=("$pid")
wait_for at_least . failing.out 3 || fail "churn did not start"
checkpoints "$pid" failing.err 2
mv failing failing.away
touch failing
kill -USR2 "$pid"
wait_for grep -q "checkpoint failed" failing.err || fail "no failure reported for a file in place of the directory"
wait_for at_least . failing.out $(($(count . failing.out) + 3)) || fail "churn stopped after a failed checkpoint"
rm failing
mv failing.away failing
checkpoints "$pid" failing.err 2
if grep -q "missed" failing.err; then fail "write tracking missed changes after a failed checkpoint: $(grep missed failing.err)"; fi
after=$(grep "ckpt: wrote" failing.err | sed -n 3p)
[[ $after == *" incremental, "* ]] || fail "the image after a failed checkpoint is not incremental: $after"
[[ $after == *"unwritten not read"* ]] && fail "the image after a failed checkpoint trusted the kernel's answer"
grep "ckpt: wrote" failing.err | sed -n 4p | grep -q "unwritten not read" || fail "the tracking did not come back after a failed checkpoint"
kill -9 "$pid"
{ wait "$pid"; } 2>/dev/null || true
restore_checked failed "$work/failing/churn.$pid.ckpt"
kill -9 "$(cat failed.pid)"

CKPT_INCREMENTAL=20 CKPT_TRACK_WRITES=check CKPT_DIR=$work LD_PRELOAD=$lib "$churn" 30 aio >aio.out 2>aio.err &
pid=$!
pids+=("$pid")
wait_for at_least . aio.out 3 || fail "churn did not start"
checkpoints "$pid" aio.err 3
[[ $(count "asynchronous I/O context" aio.err) == 1 ]] || fail "the asynchronous I/O context was not reported once"
[[ $(count " incremental, " aio.err) == 2 ]] || fail "want 2 incremental images in aio.err"
if grep -q "unwritten not read\|missed" aio.err; then fail "the kernel's tracking was trusted next to an asynchronous I/O context"; fi
kill -9 "$pid"
{ wait "$pid"; } 2>/dev/null || true

CKPT_INCREMENTAL=4 CKPT_TRACK_WRITES=0 CKPT_DIR=$work LD_PRELOAD=$lib "$churn" 30 >hashed.out 2>hashed.err &
pid=$!
pids+=("$pid")
wait_for at_least . hashed.out 3 || fail "churn did not start"
checkpoints "$pid" hashed.err 2
[[ $(count " incremental, " hashed.err) == 1 ]] || fail "CKPT_TRACK_WRITES=0: no incremental image"
if grep -q "unwritten not read" hashed.err; then fail "CKPT_TRACK_WRITES=0 still used the kernel's tracking"; fi
echo "PASS: $(grep -c 'unwritten not read' orig.err first.err | tr '\n' ' ')incremental images from the kernel's tracking, no miss"

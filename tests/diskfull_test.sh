#!/usr/bin/env bash
# diskfull_test.sh LIBCKPT RESTART HELLO
#
# A checkpoint into a full file system: inside a private user and mount
# namespace, a 12 MiB tmpfs holds one image of hello (about 8 MiB) but not a
# second one beside it.  The second checkpoint must fail with a message, the
# first image must still verify and restart, no temporary file may be left,
# and the program must keep running.
set -euo pipefail
if [[ ${1:-} != --inside ]]; then
	exec unshare --user --map-root-user --mount "$0" --inside "$(realpath "$1")" "$(realpath "$2")" "$(realpath "$3")"
fi
source "$(dirname "$0")/testlib.sh"
lib=$2 restart=$3 hello=$4
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/diskfull.XXXXXX")
cd "$work"
mkdir small
mount -t tmpfs -o size=12m tmpfs small

CKPT_DIR=$work/small LD_PRELOAD=$lib "$hello" 100 >hello.out 2>hello.err &
pid=$!
pids+=("$pid")
wait_for at_least . hello.out 2 || fail "hello did not start"
kill -USR2 "$pid"
wait_for at_least "ckpt: wrote" hello.err 1 || fail "the first checkpoint failed"
image=$(ls small/*.ckpt)
sum1=$(md5sum <"$image")
kill -USR2 "$pid"
wait_for at_least "checkpoint failed" hello.err 1 || fail "no failure reported on a full disk"
grep "checkpoint failed" hello.err | grep -qi "no space" || fail "the message does not say the disk is full"
n=$(count . hello.out)
wait_for at_least . hello.out $((n + 3)) || fail "hello stopped after the failed checkpoint"
[[ $(md5sum <"$image") == "$sum1" ]] || fail "the previous image changed"
[[ $(ls -A small) == $(basename "$image") ]] || fail "left behind: $(ls -A small)"
"$restart" --verify-only "$image" >/dev/null || fail "the previous image does not verify"
kill -9 "$pid"
"$restart" "$image" >restored.out 2>restored.err &
pids+=($!)
wait_for at_least . restored.out 2 || fail "the previous image does not restart"
echo "PASS: a full disk failed the second checkpoint cleanly; the first image still verifies and restarts"

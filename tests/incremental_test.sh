#!/usr/bin/env bash
# incremental_test.sh LIBCKPT RESTART CKPT BIGHEAP
#
# Incremental checkpoints (CKPT_INCREMENTAL=3) of a 128 MiB heap that
# changes one word in every 64th page per tick:
#   - the first image is full, the next two are incremental: much smaller,
#     referring to their parents, kept as PROG.PID.<ID>.ckpt; the fourth is
#     full again and the old chain's files are removed;
#   - the newest incremental image restarts where it was taken and the
#     program's check of all its memory passes; so does each parent;
#   - with --lazy the chain is loaded from the parents where they are;
#   - inspect shows the chain, and the half-zero heap in runs that skip
#     its zero pages;
#   - ckpt verify checks the parents' pages; a parent with damaged pages, a
#     missing one, or another image in its place makes verify and restart
#     refuse the image (exit 2, naming the parent) without running anything.
set -euo pipefail
source "$(dirname "$0")/testlib.sh"
lib=$(realpath "$1")
restart=$(realpath "$2")
ckpt=$(realpath "$3")
bigheap=$(realpath "$4")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/chain.XXXXXX")
cd "$work"

CKPT_INCREMENTAL=3 CKPT_DIR=$work LD_PRELOAD=$lib "$bigheap" 100 128 >orig.out 2>orig.err &
pid=$!
pids+=("$pid")
wait_for at_least . orig.out 3 || fail "bigheap did not start"
image=$work/bigheap.$pid.ckpt
# checkpoint N: the Nth checkpoint; sets size and from (the tick before it).
checkpoint() {
	from=$(awk 'END {print $1}' orig.out)
	kill -USR2 "$pid"
	wait_for at_least "ckpt: wrote" orig.err "$1" || fail "checkpoint $1 was not reported"
	size=$(stat -c %s "$image")
	wait_for at_least . orig.out $(($(count . orig.out) + 2)) || fail "bigheap stopped after checkpoint $1"
}
checkpoint 1
full=$size
grep -q " incremental, " orig.err && fail "the first image is incremental"
checkpoint 2
checkpoint 3
from3=$from
inc=$size
[[ $(grep -c " incremental, " orig.err) == 2 ]] || fail "checkpoints 2 and 3 are not both incremental"
((inc * 3 < full)) || fail "an incremental image is $inc bytes, the full one $full"
links=(bigheap."$pid".*[0-9a-f].ckpt)
((${#links[@]} == 2)) || fail "want the two parents kept, found: ${links[*]}"
cp "$image" inc3.ckpt
for l in "${links[@]}"; do cp "$l" "kept-$l"; done
"$ckpt" inspect --json inc3.ckpt >inc3.json || fail "inspect failed on an incremental image"
python3 - inc3.json "${links[@]}" <<'PY' || fail "inspect does not show the chain"
import json, sys
d = json.load(open(sys.argv[1]))
names = sorted(p["name"] for p in d["parents"])
if names != sorted(sys.argv[2:]) or not all(p["bytes"] > 0 for p in d["parents"]):
    sys.exit(f"parents {d['parents']}, want {sys.argv[2:]}")
# Every other page of the heap is zero: its runs skip them (format 5), a
# run per 64 pages but where a page of this image's own cuts a parent's.
heap = max(d["areas"], key=lambda a: a["stored_bytes"])
if heap["runs"] * 4 > heap["stored_bytes"] // 4096:
    sys.exit(f"the heap's {heap['stored_bytes']} bytes take {heap['runs']} runs")
PY
"$ckpt" verify inc3.ckpt >/dev/null || fail "verify refused the incremental image"

checkpoint 4
grep "ckpt: wrote" orig.err | tail -n 1 | grep -q " incremental, " && fail "the fourth image is incremental"
for l in "${links[@]}"; do [[ -e $l ]] && fail "the old chain's $l was not removed"; done
kill -9 "$pid"
{ wait "$pid"; } 2>/dev/null || true

# Restore the third image with its chain back in place.
for l in "${links[@]}"; do cp "kept-$l" "$l"; done
mv inc3.ckpt "$image"
# restore NAME IMAGE LO HI: restart IMAGE; its first tick must follow one
# in LO..HI and the memory check must pass for 3 ticks.
restore() {
	"$restart" --pid-file "$1.pid" "$2" >"$1.out" 2>"$1.err" &
	local r=$!
	pids+=("$r")
	wait_for at_least . "$1.out" 3 || fail "$1: the restored program did not tick"
	wait_for test -s "$1.pid" || fail "$1: restart --pid-file wrote nothing"
	kill -9 "$(cat "$1.pid")" 2>/dev/null || true
	wait "$r" 2>/dev/null || true
	if grep -q "FAIL\|mismatch" "$1.out"; then fail "$1: the restored memory is wrong"; fi
	local first
	first=$(awk 'NR==1 {print $1}' "$1.out")
	((first - 1 >= $3 && first - 1 <= $4)) || fail "$1: restarted at tick $first, want after one of $3..$4"
}
restore inc3 "$image" "$from3" $((from3 + 4))
# The parents are the first two images, taken before the third.
for l in "${links[@]}"; do restore "parent-$l" "$l" 1 "$from3"; done

# refuse WHY: verify and restart both exit 2 naming a parent.
refuse() {
	for cmd in "$ckpt verify" "$restart"; do
		local rc=0
		$cmd "$image" >refuse.out 2>refuse.err || rc=$?
		((rc == 2)) || fail "$cmd exited $rc for $1, want 2: $(cat refuse.err)"
		grep -q "parent" refuse.err || fail "$cmd's message for $1 names no parent: $(cat refuse.err)"
		if grep -q . refuse.out; then fail "$cmd ran the program for $1"; fi
	done
}
# The full image: most of its heap pages (63 of every 64) are unchanged
# in the third, which takes them from it.
victim=$(ls -S "${links[@]}" | head -n 1)
other=$(ls -S "${links[@]}" | tail -n 1)
size=$(stat -c %s "$victim")
head -c 1M /dev/urandom | dd of="$victim" bs=1M seek=$((size / 3 / 1048576)) conv=notrunc status=none
refuse "a parent with damaged pages"
# With --lazy the pages of the chain are loaded from the parents where they
# are and each run is checked as it is loaded: the program may start, but
# it is killed once the damaged pages are reached (all are, in the
# background), and restart names the parent.
rc=0
timeout 60 "$restart" --lazy "$image" >lazy.out 2>lazy.err || rc=$?
((rc == 2)) || fail "restart --lazy exited $rc with a damaged parent, want 2: $(cat lazy.err)"
grep -q "parent \"$(basename "$victim")\"" lazy.err || fail "restart --lazy does not name the damaged parent: $(cat lazy.err)"
rm "$victim"
refuse "a missing parent"
cp "$other" "$victim"
refuse "another image in a parent's place"
# A compressed full image (ckpt checkpoint --compress) under a plain
# incremental one: restart reads the parent from the memory file it is
# unpacked into, by default and with --lazy, and the program's check of
# all its memory passes.
mkdir mixed
CKPT_INCREMENTAL=3 CKPT_DIR=$work/mixed LD_PRELOAD=$lib "$bigheap" 100 64 >mixed.out 2>mixed.err &
pid=$!
pids+=("$pid")
wait_for at_least . mixed.out 3 || fail "bigheap did not start"
"$ckpt" checkpoint --compress "$pid" >/dev/null || fail "ckpt checkpoint --compress failed"
wait_for at_least "ckpt: wrote" mixed.err 1 || fail "the compressed checkpoint was not reported"
grep -q " zstd" mixed.err || fail "the first image is not compressed"
wait_for at_least . mixed.out $(($(count . mixed.out) + 2)) || fail "bigheap stopped"
kill -USR2 "$pid"
wait_for at_least " incremental, " mixed.err 1 || fail "no incremental image after the compressed one"
kill -9 "$pid"
for mode in --verify-then-run --lazy; do
	flag=$mode
	[[ $mode == --verify-then-run ]] && flag=
	"$restart" $flag --pid-file "mixed$mode.pid" "mixed/bigheap.$pid.ckpt" >"mixed$mode.out" 2>"mixed$mode.err" &
	pids+=($!)
	wait_for at_least . "mixed$mode.out" 3 || fail "restart $flag of the mixed chain: the program did not tick"
	if grep -q "FAIL\|mismatch" "mixed$mode.out"; then fail "restart $flag of the mixed chain: the memory is wrong"; fi
	wait_for test -s "mixed$mode.pid" && kill -9 "$(cat "mixed$mode.pid")" 2>/dev/null || true
done

echo "PASS: full $full bytes, incremental $inc bytes; the chain restarts, damage to it is refused"

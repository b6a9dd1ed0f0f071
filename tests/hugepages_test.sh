#!/usr/bin/env bash
# hugepages_test.sh LIBCKPT RESTART BIGHEAP
#
# After a checkpoint the library collapses the program's fully populated
# private memory into huge pages, so that the next fork (the pause) copies
# fewer page table entries (go/lib/hugepages.go; CKPT_HUGEPAGES=1 runs the
# pass after every checkpoint, not only after long pauses):
#   - a 64 MiB heap with every page written is in huge pages after the first
#     checkpoint; the second checkpoint, taken from huge pages, restarts and
#     the program's check of all its memory passes;
#   - a heap with every other 4 KiB page never touched is left alone: its
#     resident size does not grow.
set -euo pipefail
source "$(dirname "$0")/testlib.sh"
lib=$(realpath "$1")
restart=$(realpath "$2")
bigheap=$(realpath "$3")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/huge.XXXXXX")
cd "$work"

if ! grep -q '\[madvise\]\|\[always\]' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null; then
	# Not a pass: say so in the log, as the test cannot run here.
	echo "transparent huge pages are off on this machine; nothing to check" >&2
	exit 1
fi

# heap KEY PID: KEY (kB) of the program's 64 MiB heap mapping in smaps.
heap() {
	python3 - "$1" "$2" <<'PY'
import re, sys
key, pid = sys.argv[1], sys.argv[2]
maps, cur = [], None
for line in open(f"/proc/{pid}/smaps"):
    if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
        cur = {}
        maps.append(cur)
    elif ":" in line and cur is not None:
        k, v = line.split(":", 1)
        cur[k] = v.split()[0] if k != "VmFlags" else v
big = [m for m in maps if int(m.get("Size", 0)) >= 64 * 1024 and int(m.get("Rss", 0)) >= 24 * 1024]
if len(big) != 1:
    sys.exit(f"want one 64 MiB heap mapping with pages in it, found {len(big)}")
print(big[0][key])
PY
}

CKPT_HUGEPAGES=1 CKPT_DIR=$work LD_PRELOAD=$lib "$bigheap" 100 64 full >full.out 2>full.err &
pid=$!
pids+=("$pid")
wait_for at_least . full.out 3 || fail "bigheap did not start"
kill -USR2 "$pid"
wait_for at_least "ckpt: wrote" full.err 1 || fail "the first checkpoint was not reported"
# collapsed: at least 60 of the heap's 64 MiB are in huge pages.
collapsed() { huge=$(heap AnonHugePages "$pid") && ((huge >= 60 * 1024)); }
wait_for collapsed || fail "the heap has ${huge:-?} kB in huge pages, want at least 60 MiB"
ticks=$(count . full.out)
kill -USR2 "$pid"
wait_for at_least "ckpt: wrote" full.err 2 || fail "the second checkpoint was not reported"
wait_for at_least . full.out $((ticks + 2)) || fail "bigheap stopped after the second checkpoint"
image=$(image_in full.err)
kill -9 "$pid"
{ wait "$pid"; } 2>/dev/null || true

"$restart" "$image" >restored.out 2>restored.err &
pids+=("$!")
wait_for at_least . restored.out 3 || fail "the restored program did not tick"
if grep -q "FAIL\|mismatch" restored.out; then fail "the restored memory is wrong"; fi
first=$(awk 'NR==1 {print $1}' restored.out)
((first > ticks)) || fail "restarted at tick $first, before the second checkpoint (tick $ticks)"

CKPT_HUGEPAGES=1 CKPT_DIR=$work LD_PRELOAD=$lib "$bigheap" 100 64 sparse >sparse.out 2>sparse.err &
pid=$!
pids+=("$pid")
wait_for at_least . sparse.out 3 || fail "sparse bigheap did not start"
rss=$(heap Rss "$pid") || fail "reading smaps"
kill -USR2 "$pid"
wait_for at_least "ckpt: wrote" sparse.err 1 || fail "the sparse heap's checkpoint was not reported"
# The pass runs right after the report; 64 MiB take milliseconds.
wait_for at_least . sparse.out $(($(count . sparse.out) + 5)) || fail "sparse bigheap stopped"
after=$(heap Rss "$pid") || fail "reading smaps"
sparse=$(heap AnonHugePages "$pid")
((sparse == 0 && after <= rss + 1024)) ||
	fail "the sparse heap grew from $rss to $after kB resident ($sparse kB in huge pages)"
echo "PASS: 64 MiB heap collapsed ($huge kB); restarted from huge pages; sparse heap left at $after kB"

#!/usr/bin/env bash
# cli_test.sh CKPT HELLO
#
# Every `ckpt` subcommand on a real process:
#   - run --interval 1s --keep 2 leaves exactly two images while it runs;
#   - checkpoint --wait prints the new image; inspect --json agrees with
#     /proc/PID/maps read just before (for the file mappings, which do not
#     move); verify accepts the image; checkpoint --compress writes a
#     compressed one, which inspect describes; checkpoint --kill ends the program
#     and run exits 137;
#   - restart --dir picks the newest image and the count goes on;
#   - errors: no such process, a process without the library, a file that
#     is not an image, a missing library, an unknown command.
set -euo pipefail
source "$(dirname "$0")/testlib.sh"
ckpt=$(realpath "$1")
hello=$(realpath "$2")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/cli.XXXXXX")
cd "$work"
mkdir images

"$ckpt" run --dir images --interval 1s --keep 2 -- "$hello" 100 >run.out 2>run.err &
rpid=$!
pids+=("$rpid")
wait_for compgen -G "images/*.ckpt.1" >/dev/null || fail "no second periodic image"
sleep 2.2
[[ $(ls images | wc -l) == 2 ]] || fail "--keep 2 left $(ls images | tr '\n' ' ')"
pid=$(pgrep -P "$rpid")
pids+=("$pid")

grep -v '^$' /proc/"$pid"/maps >maps.txt
img=$("$ckpt" checkpoint --wait "$pid") || fail "checkpoint --wait failed"
[[ $img == "$work/images/hello.$pid.ckpt" ]] || fail "checkpoint --wait printed $img"
"$ckpt" inspect --json "$img" >inspect.json || fail "inspect --json failed"
python3 - maps.txt inspect.json <<'PY' || fail "inspect --json disagrees with /proc/PID/maps"
import json, sys
maps = [l.split() for l in open(sys.argv[1])]
areas = {(int(a["start"], 16), int(a["end"], 16)): a for a in json.load(open(sys.argv[2]))["areas"]}
checked = 0
for f in maps:
    if len(f) < 6 or not f[5].startswith("/"):
        continue  # anonymous memory moves as the program runs
    start, end = (int(x, 16) for x in f[0].split("-"))
    a = areas.get((start, end))
    if a is None or a["perms"] != f[1] or a["name"] != f[5] or a["inode"] != int(f[4]):
        sys.exit(f"no matching area for {' '.join(f)}")
    checked += 1
if checked < 5:
    sys.exit(f"only {checked} file mappings compared")
PY
"$ckpt" verify "$img" >/dev/null || fail "verify refused a good image"
# One compressed checkpoint on request; restart --dir below restores it.
img=$("$ckpt" checkpoint --wait --compress "$pid") || fail "checkpoint --compress failed"
"$ckpt" inspect --json "$img" >zstd.json || fail "inspect --json failed on a compressed image"
python3 - zstd.json <<'PY' || fail "checkpoint --compress wrote no compressed image"
import json, sys
d = json.load(open(sys.argv[1]))
if "zstd" not in d["compression"] or not 0 < d["file_bytes"] < d["stored_bytes"]:
    sys.exit(f"compression {d['compression']}, {d['file_bytes']} bytes for {d['stored_bytes']}")
PY
"$ckpt" verify "$img" >/dev/null || fail "verify refused a compressed image"
"$ckpt" checkpoint --kill "$pid" >/dev/null || fail "checkpoint --kill failed"
rc=0
wait "$rpid" || rc=$?
((rc == 137)) || fail "ckpt run exited $rc after its program was killed, want 137"
last=$(awk 'END {print $1}' run.out)

"$ckpt" restart --dir images >restored.out 2>restored.err &
pids+=($!)
wait_for at_least . restored.out 3 || fail "restart --dir did not restart"
first=$(awk 'NR==1 {print $1}' restored.out)
((first >= 2 && first - 1 <= last)) || fail "restart --dir went on from $first; the program ended at $last"

expect() { # expect STATUS PATTERN CMD...: CMD exits STATUS saying PATTERN.
	local want=$1 pattern=$2 rc=0
	shift 2
	"$@" >err.out 2>&1 || rc=$?
	((rc == want)) || fail "$* exited $rc, want $want: $(cat err.out)"
	grep -q -- "$pattern" err.out || fail "$* said $(cat err.out), want $pattern"
}
expect 1 "no process 999999" "$ckpt" checkpoint 999999
sleep 100 &
pids+=($!)
expect 1 "does not run libckpt.so" "$ckpt" checkpoint $!
expect 2 "bad magic" "$ckpt" inspect run.out
expect 2 "bad magic" "$ckpt" verify run.out
expect 1 "CKPT_LIB" env CKPT_LIB=/nonexistent "$ckpt" run -- true
expect 2 "unknown command" "$ckpt" frobnicate
expect 0 "usage: ckpt restart" "$ckpt" restart --help
echo "PASS: ckpt run/checkpoint/inspect/verify/restart on a live process, 7 error cases"

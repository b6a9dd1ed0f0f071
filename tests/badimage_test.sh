#!/usr/bin/env bash
# badimage_test.sh LIBCKPT RESTART READCKPT HELLO FILES
#
# Takes a real image of hello, plain and compressed (CKPT_COMPRESS=1), then
# damages copies of each in every way a disk, a network copy or a user can: missing, empty, a directory, garbage,
# cut at each area's data and at random offsets, single bit flips in the
# header, metadata and page data.  restart (as by default, and with --eager,
# where it checks the pages as it writes them into the new process) and
# readckpt must refuse each with exit status 2 and one line naming the file,
# and restart must never run the program (no tick is printed).
set -euo pipefail
source "$(dirname "$0")/testlib.sh"

lib=$(realpath "$1")
restart=$(realpath "$2")
readckpt=$(realpath "$3")
hello=$(realpath "$4")
files=$(realpath "$5")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/badimage.XXXXXX")
cd "$work"


# checkpoint NAME [ENV...]: an image of hello, run with ENV.
checkpoint() {
	local name=$1 pid
	shift
	env "$@" CKPT_DIR=$work LD_PRELOAD=$lib "$hello" 100 >"$name.out" 2>"$name.err" &
	pid=$!
	for _ in $(seq 600); do grep -q . "$name.out" 2>/dev/null && break; sleep 0.05; done
	kill -USR2 "$pid"
	for _ in $(seq 600); do grep -q "ckpt: wrote" "$name.err" && break; sleep 0.05; done
	kill -9 "$pid"
	{ wait "$pid"; } 2>/dev/null || true
	image=$(image_in "$name.err")
	[[ -f $image ]] || fail "no $name image was written"
	mv "$image" "$name.ckpt"
}
checkpoint plain
checkpoint zstd CKPT_COMPRESS=1
[[ $("$readckpt" zstd.ckpt) == *$'\n'"data: "*zstd* ]] || fail "CKPT_COMPRESS=1 wrote no compressed image"

# restart --eager as one command.
printf '#!/bin/sh\nexec "%s" --eager "$@"\n' "$restart" >eager
chmod +x eager
eager=$work/eager

tried=0
# refuse FILE WHY [TOOL...]: each tool (default: restart, restart --eager
# and readckpt) must exit 2 with a message naming FILE.
refuse() {
	local f=$1 why=$2 rc tools=("${@:3}")
	((${#tools[@]})) || tools=("$restart" "$eager" "$readckpt")
	for tool in "${tools[@]}"; do
		rc=0
		timeout 20 "$tool" "$f" >tool.out 2>tool.err || rc=$?
		[[ $rc == 2 ]] || { cat tool.err >&2; fail "$(basename "$tool") exited $rc for $why, want 2"; }
		[[ $(wc -l <tool.err) == 1 ]] || { cat tool.err >&2; fail "$(basename "$tool") printed more than one line for $why"; }
		grep -qF "\"$f\"" tool.err || { cat tool.err >&2; fail "$(basename "$tool")'s message for $why does not name the file"; }
		if [[ $tool != "$readckpt" ]] && grep -q . tool.out; then fail "$(basename "$tool") ran the program for $why"; fi
	done
	tried=$((tried + 1))
}

refuse "$work/missing.ckpt" "a missing file"
: >empty.ckpt
refuse "$work/empty.ckpt" "an empty file"
mkdir dir.ckpt
refuse "$work/dir.ckpt" "a directory"
head -c 100000 /dev/urandom >garbage.ckpt
refuse "$work/garbage.ckpt" "random bytes"

# damage GOOD: cuts and bit flips of the image GOOD.
damage() {
	local good=$1 size off
	size=$(stat -c %s "$good")
	# Cut in the header, at page boundaries, where each area's data ends, and
	# at random offsets.
	bounds=$("$readckpt" "$good" | awk '/ stored [0-9]+$/ {sum += $NF; if ($NF > 0) print 4096 + sum}' | sort -un)
	for off in 1 63 64 4095 4096 8192 $bounds $((size / 2)) $((size - 4096)) $((size - 1)); do
		((off < size)) || continue
		head -c "$off" "$good" >cut.ckpt
		refuse "$work/cut.ckpt" "a copy cut at byte $off"
	done
	for _ in $(seq 10); do
		off=$((RANDOM * 32768 + RANDOM))
		off=$((off % size))
		head -c "$off" "$good" >cut.ckpt
		refuse "$work/cut.ckpt" "a copy cut at byte $off"
	done

	# Single bit flips: in the header, at 200 random places, and near the end
	# (metadata).
	flip() {
		cp "$good" flip.ckpt
		local byte
		byte=$(od -An -tu1 -j "$1" -N1 "$good" | tr -d ' ')
		printf "$(printf '\\%03o' $((byte ^ (1 << $2))))" | dd of=flip.ckpt bs=1 seek="$1" conv=notrunc status=none
		refuse "$work/flip.ckpt" "bit $2 of byte $1 flipped"
	}
	for off in 0 7 8 16 40 60; do flip "$off" 3; done
	for _ in $(seq 200); do
		off=$(((RANDOM * 32768 + RANDOM) % size))
		# Skip the header's zero padding, which no reader looks at.
		((off >= 64 && off < 4096)) && continue
		flip "$off" $((RANDOM % 8))
	done
	for i in 1 2 3 4 5 6 7 8; do flip $((size - i * 13)) $((i % 8)); done
}
for good in "$work/plain.ckpt" "$work/zstd.ckpt"; do
	damage "$good"
done

"$restart" >/dev/null 2>&1 && fail "restart without an argument succeeded"

# The good image passes --verify-only; owned by someone else, it is refused
# unless forced (only root can give a file away).
good=$work/zstd.ckpt
"$restart" --verify-only "$good" >verify.out || fail "--verify-only refused the good image"
if [[ $(id -u) == 0 ]]; then
	cp "$good" other.ckpt
	chown 65534 other.ckpt
	refuse "$work/other.ckpt" "an image owned by another user" "$restart"
	"$restart" --verify-only --force "$work/other.ckpt" >/dev/null || fail "--force did not accept another user's image"
fi
# --lazy starts the program before the data is checked; a damaged page is
# found as it is loaded (at the latest by the background load), and the
# program is killed: exit 2, naming the file.  --eager restores a good
# image as the default does; killing restart kills the program.
cp "$work/plain.ckpt" lazy.ckpt
printf '\x5a' | dd of=lazy.ckpt bs=1 seek=$((4096 + 100)) conv=notrunc status=none
rc=0
timeout 20 "$restart" --lazy "$work/lazy.ckpt" >lazy.out 2>lazy.err || rc=$?
((rc == 2)) || fail "restart --lazy of a damaged image exited $rc, want 2: $(cat lazy.err)"
grep -q "checksum mismatch" lazy.err && grep -qF "\"$work/lazy.ckpt\"" lazy.err ||
	fail "restart --lazy said $(cat lazy.err)"
# An image cut short while --lazy still loads it: the program runs on
# answered faults (the background load held back), the file is cut under
# it, and the next read past the cut kills the program: exit 2, naming the
# file.
cp "$work/plain.ckpt" loading.ckpt
CKPT_LAZY_HOLD_MS=2000 timeout 20 "$restart" --lazy "$work/loading.ckpt" >loading.out 2>loading.err &
cpid=$!
pids+=("$cpid")
for _ in $(seq 600); do grep -q . loading.out && break; sleep 0.05; done
grep -q . loading.out || fail "restart --lazy did not run the program: $(cat loading.err)"
truncate -s 8192 loading.ckpt
rc=0
wait "$cpid" || rc=$?
((rc == 2)) || fail "restart --lazy of an image cut while loading exited $rc, want 2: $(cat loading.err)"
grep -q "cut short" loading.err && grep -qF "\"$work/loading.ckpt\"" loading.err ||
	fail "restart --lazy of an image cut while loading said $(cat loading.err)"
# Where restart may not write into the new process, it checks the image
# before the stub copies it.
rc=0
CKPT_RESTART_FILL=refused timeout 20 "$eager" "$work/lazy.ckpt" >refused.out 2>refused.err || rc=$?
((rc == 2)) || fail "restart --eager, refused writing, of a damaged image exited $rc, want 2: $(cat refused.err)"
grep -q . refused.out && fail "restart --eager, refused writing, ran the program from a damaged image"
"$restart" --eager --pid-file eager.pid "$work/plain.ckpt" >eager.out 2>eager.err &
rpid=$!
pids+=("$rpid")
for _ in $(seq 600); do [[ $(grep -c . eager.out) -ge 2 ]] && break; sleep 0.05; done
[[ $(grep -c . eager.out) -ge 2 ]] || fail "restart --eager did not run the program"
# When restart dies, the program it restored dies with it.
epid=$(cat eager.pid)
kill -9 "$rpid"
gone() { ! kill -0 "$epid" 2>/dev/null; }
wait_for gone || fail "the restored program outlived restart"
# A file the program appends to is cut back to its size at the checkpoint
# when it restarts, but only once the image is known to be good: with
# --eager the pages are checked while they are written into the new
# process, after the files were reopened.
mkdir filesrun
(cd filesrun && CKPT_DIR=$work/filesrun LD_PRELOAD=$lib exec "$files" 50 >out 2>err) &
fpid=$!
pids+=("$fpid")
wait_for at_least . filesrun/out 3 || fail "files did not tick"
kill -USR2 "$fpid"
wait_for grep -q "ckpt: wrote" filesrun/err || fail "files wrote no image"
sleep 0.3 # more lines in its log
kill -9 "$fpid"
{ wait "$fpid"; } 2>/dev/null || true
log=filesrun/files.wd/log.txt
grown=$(stat -c %s "$log")
fimg=$(image_in filesrun/err)
cp "$fimg" filesbad.ckpt
size=$(stat -c %s filesbad.ckpt)
printf '\x5a' | dd of=filesbad.ckpt bs=1 seek=$((size / 2)) conv=notrunc status=none
rc=0
timeout 20 "$eager" "$work/filesbad.ckpt" >fbad.out 2>fbad.err || rc=$?
((rc == 2)) || fail "restart --eager of a damaged image of files exited $rc, want 2: $(cat fbad.err)"
grep -q . fbad.out && fail "restart --eager ran files from a damaged image"
[[ $(stat -c %s "$log") == "$grown" ]] || fail "restart --eager of a damaged image cut the log ($grown -> $(stat -c %s "$log") bytes)"
"$eager" --pid-file fgood.pid "$fimg" >fgood.out 2>fgood.err &
rpid=$!
pids+=("$rpid")
wait_for at_least . fgood.out 2 || fail "restart --eager did not run files: $(cat fgood.err)"
grep -q "removed .* bytes written after the checkpoint" fgood.err || fail "restart --eager did not cut the log: $(cat fgood.err)"
grep -q FAIL fgood.out && fail "files restored with --eager reports: $(grep FAIL fgood.out)"
kill -9 "$(cat fgood.pid)"
{ wait "$rpid"; } 2>/dev/null || true

echo "PASS: $tried damaged images, plain and compressed, refused by restart and readckpt; --lazy kills on damage and on an image cut while loading; --eager restores; the program dies with restart; a damaged image leaves files uncut"

#!/usr/bin/env bash
# checkpoint_again_test.sh LIBCKPT RESTART HELLO
#
# Checkpoints that fail or repeat:
#   - with CKPT_DIR missing, a checkpoint fails with one message and the
#     program keeps running;
#   - a second checkpoint replaces the first image (same name, still 0600,
#     no temporary file left) and a restart resumes from the later point;
#   - a temporary file left by a checkpoint killed half-way is removed by
#     the next checkpoint;
#   - CKPT_QUIET=1 silences the report but still writes the image;
#   - a program that installs its own SIGUSR2 handler gets one warning;
#   - with CKPT_SAVE_FILES=1 a small file's contents come back at restart;
#   - a checkpoint of a restored process that restart still loads (held
#     back by CKPT_LAZY_HOLD_MS) waits for the loading, says so once, and
#     writes an image that restarts.
set -euo pipefail
source "$(dirname "$0")/testlib.sh"
lib=$(realpath "$1")
restart=$(realpath "$2")
hello=$(realpath "$3")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/again.XXXXXX")
cd "$work"

# A missing directory.
CKPT_DIR=$work/missing LD_PRELOAD=$lib "$hello" 100 >missing.out 2>missing.err &
pids+=($!)
wait_for at_least . missing.out 2 || fail "hello did not start"
kill -USR2 "${pids[0]}"
wait_for grep -q "checkpoint failed" missing.err || fail "no failure reported for a missing directory"
n=$(count . missing.out)
wait_for at_least . missing.out $((n + 3)) || fail "hello stopped after a failed checkpoint"
[[ $(grep -c . missing.err) == 1 ]] || fail "more than one line of error"
ls -A "$work"/missing 2>/dev/null && fail "the missing directory appeared"

# Two checkpoints of one process.
CKPT_DIR=$work LD_PRELOAD=$lib "$hello" 100 >twice.out 2>twice.err &
pid=$!
pids+=("$pid")
wait_for at_least . twice.out 3 || fail "hello did not start"
# What a checkpoint killed half-way leaves behind; the next one removes it.
touch ".hello.$pid.ckpt.tmp4242"
kill -USR2 "$pid"
wait_for at_least . twice.err 1 || fail "first checkpoint not reported"
wait_for at_least . twice.out $(($(count . twice.out) + 5)) || fail "hello stopped"
second_from=$(awk 'END {print $1}' twice.out)
kill -USR2 "$pid"
wait_for at_least . twice.err 2 || fail "second checkpoint not reported"
kill -9 "$pid"
image=$(sed -n 's/^ckpt: wrote \(.*\) (.*$/\1/p' twice.err | sort -u)
[[ $(wc -l <<<"$image") == 1 ]] || fail "the two checkpoints wrote different files: $image"
[[ $(stat -c %a "$image") == 600 ]] || fail "image mode is not 0600"
ls -A | grep -q '\.tmp' && fail "a temporary file was left behind: $(ls -A | grep '\.tmp')"
"$restart" "$image" >restored.out 2>restored.err &
pids+=($!)
wait_for at_least . restored.out 1 || fail "the restored hello did not tick"
first=$(awk 'NR==1 {print $1}' restored.out)
((first > second_from)) || fail "restored from tick $first, the second checkpoint came after tick $second_from"

# Quiet.
CKPT_QUIET=1 CKPT_DIR=$work/quiet LD_PRELOAD=$lib "$hello" 100 >quiet.out 2>quiet.err &
pid=$!
pids+=("$pid")
mkdir quiet
wait_for at_least . quiet.out 2 || fail "hello did not start"
kill -USR2 "$pid"
wait_for compgen -G "quiet/*.ckpt" >/dev/null || fail "no quiet image"
[[ -s quiet.err ]] && fail "CKPT_QUIET=1 still printed: $(cat quiet.err)"
# A program that takes SIGUSR2 for itself is told, once, on stderr.
LD_PRELOAD=$lib python3 -c 'import signal; signal.signal(signal.SIGUSR2, lambda *a: None); signal.signal(signal.SIGUSR2, signal.SIG_DFL)' \
	2>takeover.err || fail "python3 under the library failed"
[[ $(count "own handler for the checkpoint signal" takeover.err) == 1 ]] ||
	fail "no single warning when the program takes SIGUSR2: $(cat takeover.err)"

# CKPT_SAVE_FILES=1: a small open file changed after the checkpoint comes
# back as it was (without it, a shorter file is refused).
cat >saver.py <<'PY'
import os, sys, time
fd = os.open("data.txt", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"the state at the start\n")
i = 0
while True:
    i += 1
    if os.pread(fd, 100, 0) != b"the state at the start\n":
        print("FAIL data.txt changed", flush=True)
        sys.exit(1)
    print(i, flush=True)
    time.sleep(0.1)
PY
CKPT_SAVE_FILES=1 checkpoint_once saver "$work" python3 saver.py
echo "changed" >data.txt
"$restart" "$(image_in saver.err)" >saved.out 2>saved.err &
pids+=($!)
wait_for at_least . saved.out 3 || fail "saver.py did not restart with its saved file"
grep -q FAIL saved.out && fail "data.txt was not put back"
grep -q "contents put back" saved.err || fail "no word that data.txt was put back"

# A checkpoint while restart still loads the restored memory: the loader
# answers faults only, for 8 s; the checkpoint cannot read missing pages.
mkdir held
checkpoint_once held "$work/held" "$hello" 100
CKPT_LAZY_HOLD_MS=8000 "$restart" --pid-file loading.pid "$(image_in held.err)" >loading.out 2>loading.err &
pids+=($!)
wait_for at_least . loading.out 2 || fail "hello did not run on answered faults alone"
wait_for test -s loading.pid || fail "restart --pid-file wrote nothing"
kill -USR2 "$(cat loading.pid)"
wait_for grep -q "waits until restart has loaded" loading.err || fail "a checkpoint while loading did not say it waits"
at_least "ckpt: wrote" loading.err 1 && fail "the checkpoint did not wait for the loading: $(cat loading.err)"
wait_for at_least "ckpt: wrote" loading.err 1 || fail "no image once the loading ended"
[[ $(count "waits until" loading.err) == 1 ]] || fail "the wait was reported more than once"
kill -9 "$(cat loading.pid)"
"$restart" "$(image_in loading.err)" >loaded.out 2>loaded.err &
pids+=($!)
wait_for at_least . loaded.out 2 || fail "the image taken while loading did not restart"

echo "PASS: failed checkpoint survived, second image replaced the first (restored from tick $first > $second_from), quiet mode silent"

# testlib.sh: what every end-to-end test script shares.  Source it first:
#   source "$(dirname "$0")/testlib.sh"
# Processes whose PIDs are added to pids are killed when the script exits.

pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done' EXIT

# fail MESSAGE: say why, show the end of every output in the current
# directory, and exit 1.
fail() {
	echo "FAIL: ${FAIL_PREFIX:-}$*" >&2
	for f in ./*.out ./*.err; do
		[[ -f $f ]] || continue
		echo "--- $f" >&2
		tail -n 20 "$f" >&2
	done
	exit 1
}

# wait_for CMD...: retry CMD every 20 ms for up to WAIT_S seconds (30).
wait_for() {
	local deadline=$((SECONDS + ${WAIT_S:-30}))
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.02
	done
}

# count PATTERN FILE: the number of lines of FILE matching PATTERN (0 if
# FILE does not exist yet).
count() {
	local n
	n=$(grep -c -- "$1" "$2" 2>/dev/null) || true
	echo "${n:-0}"
}

# at_least PATTERN FILE N: FILE has at least N lines matching PATTERN.
at_least() { (($(count "$1" "$2") >= $3)); }

# first_field FILE, last_field FILE: the first field of FILE's first or
# last line (a tick number).
first_field() { awk 'NR==1 {print $1}' "$1"; }
last_field() { awk 'END {print $1}' "$1"; }

# image_in FILE: the last image the library reported writing in FILE.
image_in() { sed -n 's/^ckpt: wrote \(.*\) (.*$/\1/p' "$1" | tail -n 1; }

# checkpoints PID ERR N: N checkpoints of PID, each reported in ERR and
# followed by two more ticks of its output (ERR with .out for .err).
checkpoints() {
	local out=${2%.err}.out n
	for _ in $(seq "$3"); do
		n=$(count "ckpt: wrote" "$2")
		kill -USR2 "$1"
		wait_for at_least "ckpt: wrote" "$2" $((n + 1)) || fail "checkpoint $((n + 1)) of $1 was not reported"
		wait_for at_least . "$out" $(($(count . "$out") + 2)) || fail "$1 stopped after checkpoint $((n + 1))"
	done
}

# checkpoint_once NAME DIR PROG ARGS...: PROG under the library ($lib),
# its images in DIR, output in NAME.out and NAME.err, checkpointed once
# after two ticks and killed.
checkpoint_once() {
	local name=$1 dir=$2 pid
	shift 2
	CKPT_DIR=$dir LD_PRELOAD=$lib "$@" >"$name.out" 2>"$name.err" &
	pid=$!
	pids+=("$pid")
	wait_for at_least . "$name.out" 2 || fail "$name did not start"
	kill -USR2 "$pid"
	wait_for at_least "ckpt: wrote" "$name.err" 1 || fail "$name was not checkpointed"
	kill -9 "$pid"
}

# restore_checked NAME IMAGE: restart IMAGE with $restart, let it run 5
# ticks with its own checks (which print FAIL or what reads wrong), and
# leave its PID in NAME.pid.
restore_checked() {
	"$restart" --pid-file "$1.pid" "$2" >"$1.out" 2>"$1.err" &
	pids+=($!)
	wait_for at_least . "$1.out" 5 || fail "$1: the restored program did not tick"
	if grep -q "FAIL\|not version\|not round\|reads" "$1.out"; then fail "$1: the restored memory is wrong"; fi
	wait_for test -s "$1.pid" || fail "$1: restart --pid-file wrote nothing"
}

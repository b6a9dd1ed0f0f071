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

# wait_for CMD...: retry CMD every 20 ms for up to 30 s.
wait_for() {
	local deadline=$((SECONDS + 30))
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

# image_in FILE: the last image the library reported writing in FILE.
image_in() { sed -n 's/^ckpt: wrote \(.*\) (.*$/\1/p' "$1" | tail -n 1; }

#!/usr/bin/env bash
# nonroot_test.sh LIBCKPT RESTART BIGHEAP
#
# What most users see: checkpoint and restart as a user who is not root,
# without /dev/userfaultfd.  Run as root, the test drops to nobody with
# setpriv (the binaries are copied where nobody can reach them); run as
# anyone else, as that user.  bigheap (256 MiB, half the pages zero) is
# checkpointed, killed and restarted twice in a row (the second time from
# the restored process's image): restart must write the pages into the new
# process itself (go/restart/fill.go), and the program must go on from the
# checkpoint with its memory intact (it checks a checksum of it every tick).
# Where no user namespace can be made, restart fails with one line.
set -euo pipefail
source "$(dirname "$0")/testlib.sh"

# Outside the sandbox's tree, which is under root's home.
work=$(mktemp -d /tmp/ckpt-nonroot.XXXXXX)
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
cp "$1" "$work/libckpt.so"
cp "$2" "$work/restart"
cp "$3" "$work/bigheap"
chmod 755 "$work" "$work/libckpt.so" "$work/restart" "$work/bigheap"
as_user=()
if [[ $(id -u) == 0 ]]; then
	command -v setpriv >/dev/null || fail "setpriv (util-linux) is needed to run as nobody"
	as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
	chown 65534:65534 "$work"
fi
cd "$work"
# user ENV... CMD...: run in the background (&) only, as the user: it execs,
# so that $! is the program's PID.
user() { exec "${as_user[@]}" env "$@"; }

user CKPT_DIR="$work" LD_PRELOAD="$work/libckpt.so" "$work/bigheap" 200 256 >orig.out 2>orig.err &
pid=$!
pids+=("$pid")
wait_for at_least '^[0-9]' orig.out 2 || fail "bigheap did not start under the library as $("${as_user[@]}" id -un)"
before=$(last_field orig.out)
kill -USR2 "$pid"
wait_for grep -q "ckpt: wrote" orig.err || fail "no checkpoint as an unprivileged user"
kill -9 "$pid"
after=$(last_field orig.out)
img=$(image_in orig.err)

for gen in 1 2; do
	user CKPT_LAZY_DEBUG=1 "$work/restart" --pid-file "gen$gen.pid" "$img" >"gen$gen.out" 2>"gen$gen.err" &
	rpid=$!
	pids+=("$rpid")
	wait_for at_least '^[0-9]' "gen$gen.out" 3 || fail "gen$gen: the restored program did not tick"
	grep -q "restart: fill: process [0-9]*: <nil> (filled: true" "gen$gen.err" ||
		fail "gen$gen: restart did not write the memory into the new process"
	grep -q "restart: lazy:" "gen$gen.err" && fail "gen$gen: an unprivileged restart loaded lazily"
	first=$(first_field "gen$gen.out")
	((first - 1 >= before && first - 1 <= after)) ||
		fail "gen$gen: starts at tick $first; the checkpoint was taken between ticks $before and $after"
	grep -q FAIL "gen$gen.out" && fail "gen$gen: the restored program reports a bad state"
	hpid=$(cat "gen$gen.pid")
	pids+=("$hpid")
	before=$(last_field "gen$gen.out")
	kill -USR2 "$hpid"
	wait_for grep -q "ckpt: wrote" "gen$gen.err" || fail "gen$gen: the restored process wrote no image"
	kill -9 "$hpid"
	after=$(last_field "gen$gen.out")
	{ wait "$rpid"; } 2>/dev/null || true
	img=$(image_in "gen$gen.err")
done

# Where no user namespace can be made (a limit of 0, set inside one of our
# own), restart fails before the program runs: exit 1, one line saying why.
rc=0
"${as_user[@]}" unshare -Ur sh -c 'echo 0 >/proc/sys/user/max_user_namespaces && exec "$0" "$1"' "$work/restart" "$img" \
	>nons.out 2>nons.err || rc=$?
((rc == 1)) || fail "restart without user namespaces exited $rc, want 1: $(cat nons.err)"
[[ $(wc -l <nons.err) == 1 ]] && grep -q "user namespaces may be disabled" nons.err ||
	fail "restart without user namespaces said: $(cat nons.err)"
grep -q . nons.out && fail "restart without user namespaces ran the program"
echo "PASS: checkpointed and restarted twice as $("${as_user[@]}" id -un), memory written by restart; refused without user namespaces"

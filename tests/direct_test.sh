#!/usr/bin/env bash
# direct_test.sh LIBCKPT RESTART BIGHEAP
#
# Page data goes to the disk past the page cache where the file system
# allows (go/dump/direct.go):
#   - bigheap's image (64 MiB, half zero) is hardly in the page cache after
#     its checkpoint (under a sixteenth: writes of less than 128 KiB, the
#     small areas and the metadata, go through it; 1.4 of 43 MB here), and
#     restarts with every page right (bigheap checks
#     all its memory every tick);
#   - with CKPT_DIRECT=0 it is written through the page cache, and
#     restarts too;
#   - in a tmpfs directory (no direct writes there) it goes through the
#     cache, and restarts too.
set -euo pipefail
source "$(dirname "$0")/testlib.sh"
lib=$(realpath "$1")
restart=$(realpath "$2")
bigheap=$(realpath "$3")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/direct.XXXXXX")
cd "$work"
case $(stat -f -c %T "$work") in
ext2/ext3 | xfs) ;;
*) fail "$work is on $(stat -f -c %T "$work"), not ext4 or xfs: nothing here writes directly" ;;
esac

# cached IMAGE: the bytes of IMAGE in the page cache.
cached() { fincore --bytes --noheadings --output RES "$1" | tr -d ' '; }

mkdir direct buffered
checkpoint_once direct direct "$bigheap" 100 64
image=$(image_in direct.err)
size=$(stat -c %s "$image")
((size > 32 << 20)) || fail "the image is only $size bytes"
res=$(cached "$image")
((res < size / 16)) || fail "$res of the image's $size bytes are in the page cache"
restore_checked direct_restored "$image"

CKPT_DIRECT=0 checkpoint_once buffered buffered "$bigheap" 100 64
image=$(image_in buffered.err)
size=$(stat -c %s "$image")
res=$(cached "$image")
((res > size / 2)) || fail "CKPT_DIRECT=0: only $res of the image's $size bytes are in the page cache"
restore_checked buffered_restored "$image"

shm=$(mktemp -d /dev/shm/ckpt-direct.XXXXXX)
trap 'rm -rf "$shm"; for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done' EXIT
checkpoint_once tmpfs "$shm" "$bigheap" 100 64
restore_checked tmpfs_restored "$(image_in tmpfs.err)"
echo PASS

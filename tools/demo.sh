#!/usr/bin/env bash
# tools/demo.sh: the assignment's demo.  Builds everything, runs hello under
# libckpt.so, checkpoints it with `kill -12`, kills it with SIGKILL, and
# restarts it from the image: the count goes on where it was.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh
bazel build //:libckpt //:restart //:hello
lib=$PWD/bazel-bin/libckpt.so
dir=$(mktemp -d)

echo "== hello under the library (image directory $dir)"
CKPT_DIR=$dir LD_PRELOAD=$lib bazel-bin/hello &
pid=$!
sleep 3.5
echo "== kill -12 $pid  (checkpoint)"
kill -12 "$pid"
for _ in $(seq 100); do ls "$dir"/*.ckpt >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1.2
echo "== kill -9 $pid"
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
image=$(ls "$dir"/*.ckpt)
echo "== bazel-bin/restart $image  (runs 4 s, then stopped)"
timeout 4 bazel-bin/restart "$image" || true
echo "== done: the restarted hello went on from the number after the checkpoint"

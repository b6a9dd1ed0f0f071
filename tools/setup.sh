#!/bin/bash
# Idempotent setup for the offline Bazel build (Debian 12).
#  - installs Debian's Bazel 4.2.3 and the rule sets it needs, only if missing
#    ("apt-get update" runs only when a package is missing and apt cannot
#    find it in its current lists);
#  - checks the host Go SDK that go_local_sdk uses (/usr/local/go);
#  - writes .bazelrc.local (not committed) with the Go module proxy that
#    `go env GOPROXY` reports, for gazelle's go_repository rules.
set -euo pipefail

cd "$(dirname "$0")/.."

GO=${GO:-/usr/local/go/bin/go}

# Debian packages: bazel + rules + what the C/C++ toolchain autoconfig,
# our repository rules (patch) and the probes (readelf) need.
PKGS=(bazel-bootstrap bazel-skylib bazel-platforms bazel-rules-java
      gcc g++ libc6-dev binutils patch
      python3 procps util-linux util-linux-extra)  # the tests use python3, pgrep, unshare, fincore

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=
  [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  # Update the package lists only when apt does not know a missing package.
  need_update=
  for p in "${missing[@]}"; do
    if ! apt-cache show "$p" >/dev/null 2>&1; then need_update=1; break; fi
  done
  [ -z "$need_update" ] || $SUDO apt-get update
  if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
    # Stale lists (404 on a superseded .deb): refresh once and retry.
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
  fi
else
  echo "setup: Debian packages present" >&2
fi

if [ ! -x "$GO" ]; then
  echo "setup: $GO not found; the build uses the host Go SDK at /usr/local/go (go_local_sdk in WORKSPACE)" >&2
  exit 1
fi

# Host-specific Bazel settings. go_repository (gazelle) only sees GOPROXY
# through the environment; repository rules otherwise get an empty proxy list.
proxy=$("$GO" env GOPROXY)
new=$(cat <<EOT
# Written by tools/setup.sh; host-specific, do not commit.
build --repo_env=GOPROXY=$proxy
fetch --repo_env=GOPROXY=$proxy
query --repo_env=GOPROXY=$proxy
sync --repo_env=GOPROXY=$proxy
EOT
)
if [ ! -f .bazelrc.local ] || [ "$(cat .bazelrc.local)" != "$new" ]; then
  printf '%s\n' "$new" > .bazelrc.local
  echo "setup: wrote .bazelrc.local" >&2
fi

bazel --version >/dev/null 2>&1 || { echo "setup: bazel does not run" >&2; exit 1; }
echo "setup: ok ($(bazel --version 2>/dev/null | tail -1), $("$GO" version))" >&2

#!/usr/bin/env bash
# stub_elf_test.sh STUB: the restore stub must be a static ELF executable at
# its fixed address, with no dynamic section and no relocations (so that it
# runs unchanged when it copies itself elsewhere), and small.
set -euo pipefail
stub=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
hdr=$(readelf -h "$stub")
grep -q 'EXEC (Executable file)' <<<"$hdr" || fail "not an ELF EXEC"
grep -q 'Entry point address: *0x10000000000$' <<<"$hdr" || fail "entry is not at 0x10000000000"
readelf -l "$stub" | grep -q INTERP && fail "has an interpreter"
readelf -d "$stub" | grep -q 'Dynamic section' && fail "has a dynamic section"
readelf -r "$stub" | grep -q 'There are no relocations' || fail "has relocations"
size=$(stat -c %s "$stub")
((size < 65536)) || fail "is $size bytes"
echo "PASS: static stub at 0x10000000000, no relocations, $size bytes"

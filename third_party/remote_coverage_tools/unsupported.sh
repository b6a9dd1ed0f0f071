#!/bin/sh
echo "remote_coverage_tools is a stub in this offline workspace; bazel coverage is unsupported" >&2
exit 1

#!/usr/bin/env bash
# Builds berth, builds the demo image from examples/demo/Dockerfile with
# `berth build`, and runs it with `berth run-image`.
# Usage: bash scripts/demo-build.sh [--build-arg GREETING=...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prepare-demo.sh
work=$(mktemp -d /tmp/berth-demo-build.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
store="${BERTH_DEMO_STORE:-$work/store}"
mkdir -p "$work/context"
cp examples/demo/Dockerfile "$work/context/"
cp /bin/busybox "$work/context/busybox"
"$berth" build --image-root "$store" -t berth-demo:latest "$@" "$work/context"
"$berth" run-image --image-root "$store" --rm berth-demo:latest

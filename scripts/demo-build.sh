#!/usr/bin/env bash
# Builds berth, builds the demo image from examples/demo/Dockerfile with
# `berth build`, and runs it with `berth run-image`.
# Usage: bash scripts/demo-build.sh [--build-arg GREETING=...]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
  echo "installing busybox-static..." >&2
  apt-get install -y -qq busybox-static >/dev/null 2>&1 || {
    apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
  }
fi
cargo build --release -q -p berth-shim
berth="${CARGO_TARGET_DIR:-target}/release/berth"
work=$(mktemp -d /tmp/berth-demo-build.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
store="${BERTH_DEMO_STORE:-$work/store}"
mkdir -p "$work/context"
cp examples/demo/Dockerfile "$work/context/"
cp /bin/busybox "$work/context/busybox"
"$berth" build --image-root "$store" -t berth-demo:latest "$@" "$work/context"
"$berth" run-image --image-root "$store" --rm berth-demo:latest

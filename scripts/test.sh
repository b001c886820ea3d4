#!/usr/bin/env bash
# Runs Berth's whole test suite: unit tests and real containers (as root).
# Installs what the tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
command -v runc >/dev/null || need+=(runc)
command -v crun >/dev/null || need+=(crun)
command -v buildah >/dev/null || need+=(buildah)
command -v umoci >/dev/null || need+=(umoci)
command -v ps >/dev/null || need+=(procps)
command -v dmesg >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
  }
fi
# Tests put their containers under /berth-test/<unique>; the shared parent
# stays until the last one is gone, so remove it (when empty) at the end.
trap 'rmdir /sys/fs/cgroup/*/berth-test 2>/dev/null || true' EXIT
cargo test --workspace --no-fail-fast -- --test-threads 2

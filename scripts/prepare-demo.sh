# Sourced by the demo scripts: installs busybox-static when /bin/busybox
# is missing or dynamic, builds berth in release mode, and sets $berth.
if ! [ -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
  echo "installing busybox-static..." >&2
  apt-get install -y -qq busybox-static >/dev/null 2>&1 || {
    apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
  }
fi
cargo build --release -q -p berth-shim
berth="${CARGO_TARGET_DIR:-target}/release/berth"

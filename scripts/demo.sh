#!/usr/bin/env bash
# Builds berth, makes a busybox bundle and runs a container from it.
# Usage: bash scripts/demo.sh [command...]   (default: a short tour of the container)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/prepare-demo.sh
bundle=$(mktemp -d /tmp/berth-demo.XXXXXX)
id="demo-$$"
cleanup() {
  "$berth" delete --force "$id" >/dev/null 2>&1 || true
  rm -rf "$bundle"
}
trap cleanup EXIT
[ -n "${BERTH_DEMO_KEEP:-}" ] && trap - EXIT
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/etc"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$bundle/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$bundle/rootfs/etc/passwd"
echo 'root:x:0:' > "$bundle/rootfs/etc/group"
"$berth" spec --bundle "$bundle"
if [ $# -eq 0 ]; then
  set -- sh -c 'echo "hello from $(hostname), pid $$ in its own namespaces"; id; uname -a; ls /'
fi
python3 - "$bundle/config.json" "$@" <<'PY'
import json, sys
path, args = sys.argv[1], sys.argv[2:]
c = json.load(open(path))
c["process"]["terminal"] = False
c["process"]["args"] = args
c["linux"]["cgroupsPath"] = "/berth-demo/" + path.split("/")[2]
json.dump(c, open(path, "w"), indent=2)
PY
"$berth" run --bundle "$bundle" "$id"

#!/usr/bin/env python3
"""Lifecycle benchmark: `run` + `delete` of /bin/true from a busybox bundle.

berth, runc and crun are timed interleaved in one run (berth, runc, crun,
berth, ...), so machine noise hits all three alike. Prints medians, p90s,
each runtime's peak RSS (GNU time's %M for the `run` process, which
includes the children it waited for) and ratios against runc and crun.
Needs /usr/bin/time (Debian `time`).

Usage (as root): python3 benches/lifecycle.py [--iterations N]
        [--berth PATH] [--runc PATH] [--crun PATH]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def make_bundle(top):
    bundle = os.path.join(top, "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(os.path.join(rootfs, "bin"))
    for d in ("proc", "sys", "dev", "etc", "tmp"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    for applet in ("true", "sh"):
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    with open(path, "w") as f:
        json.dump(config, f)
    return bundle


def set_cgroup(bundle, cgroup):
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["linux"]["cgroupsPath"] = cgroup
    with open(path, "w") as f:
        json.dump(config, f)


def timed(argv, rss_file):
    """Runs argv under GNU time; returns (seconds, peak RSS KiB).

    The peak RSS is GNU time's %M: the runtime process's own high-water
    mark (a process forked from this Python program would report Python's
    size, so the fork happens in the small `time` process instead)."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file] + argv,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {err}")
    with open(rss_file) as f:
        rss = int(f.read().split()[-1])
    return elapsed, rss


def remove_cgroups(name):
    base = "/sys/fs/cgroup"
    for ctrl in os.listdir(base):
        top = os.path.join(base, ctrl, name)
        if not os.path.isdir(top):
            continue
        for dirpath, dirs, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def hide_unified_hierarchy():
    """crun refuses hybrid hosts (v1 controllers plus a cgroup2 mount), so
    all three runtimes run in one private mount namespace without the
    cgroup2 mount: the same conditions for each."""
    unified = "/sys/fs/cgroup/unified"
    if os.environ.get("BERTH_BENCH_NS") or not os.path.ismount(unified):
        return
    os.environ["BERTH_BENCH_NS"] = "1"
    argv = [sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    script = f"umount {unified} && exec \"$@\""
    os.execvp("unshare", ["unshare", "-m", "--propagation", "private",
                          "sh", "-c", script, "sh"] + argv)


def main():
    hide_unified_hierarchy()
    if not os.access("/usr/bin/time", os.X_OK):
        sys.exit("needs GNU time: apt-get install time")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(here, "..", "target"))
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--berth", default=os.environ.get("BERTH", os.path.join(target, "release", "berth")))
    p.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    p.add_argument("--crun", default=shutil.which("crun") or "/usr/bin/crun")
    args = p.parse_args()

    runtimes = []
    for name, path in (("berth", args.berth), ("runc", args.runc), ("crun", args.crun)):
        if os.access(path, os.X_OK):
            runtimes.append((name, path))
        else:
            print(f"{name}: not installed ({path})")
    top = tempfile.mkdtemp(prefix="berth-bench.")
    cg = f"berth-bench-{os.getpid()}"
    results = {name: ([], []) for name, _ in runtimes}
    try:
        bundle = make_bundle(top)
        for i in range(args.iterations):
            for name, path in runtimes:
                root = os.path.join(top, "root-" + name)
                cid = f"{name}-{i}"
                set_cgroup(bundle, f"/{cg}/{cid}")
                secs, rss = timed([path, "--root", root, "run", "--bundle", bundle, cid],
                                  os.path.join(top, "rss"))
                subprocess.run([path, "--root", root, "delete", "-f", cid],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                results[name][0].append(secs * 1000)
                results[name][1].append(rss)
    finally:
        for name, path in runtimes:
            root = os.path.join(top, "root-" + name)
            if os.path.isdir(root):
                for cid in os.listdir(root):
                    subprocess.run([path, "--root", root, "delete", "-f", cid],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        remove_cgroups(cg)
        shutil.rmtree(top, ignore_errors=True)

    med = {n: statistics.median(r[0]) for n, r in results.items()}
    rss = {n: statistics.median(r[1]) for n, r in results.items()}
    print(f"{args.iterations} iterations of run + delete of /bin/true, interleaved")
    print(f"{'runtime':8} {'median ms':>10} {'p90 ms':>8} {'peak RSS KiB':>13}"
          f" {'time/runc':>10} {'time/crun':>10} {'RSS/runc':>9} {'RSS/crun':>9}")
    for name, (times, _) in results.items():
        p90 = sorted(times)[int(len(times) * 0.9) - 1] if times else 0
        ratio = lambda d, o: f"{d[name] / d[o]:.2f}" if o in d and d[o] else "-"
        print(f"{name:8} {med[name]:10.1f} {p90:8.1f} {rss[name]:13.0f}"
              f" {ratio(med, 'runc'):>10} {ratio(med, 'crun'):>10}"
              f" {ratio(rss, 'runc'):>9} {ratio(rss, 'crun'):>9}")


if __name__ == "__main__":
    sys.exit(main())

"""benchlib.contenders: the programs measured and how one is run.

This module owns: the Release build of this tree (build_rtu), a contender
(Contender: its argv, the appName its MongoDB commands are counted under, the
stdout line saying it was assigned partitions), its environment
(contender_env: the servers, a fresh group and database, --batch-size, --env),
a started contender (Running: its stdout, when it was assigned, its CPU time and
peak RSS read just before SIGTERM, the errors it logged), the Node.js peer
(find_peer, setup_peer: copied to the temporary folder and installed with npm
ci) and a second rtu from another commit (build_baseline).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from .proc import ROOT, fail, read_proc, reap, say, spawn


def build_rtu(build):
    """Builds rtu and the benchmark's tools (Release, no sanitizers) in BUILD."""
    say("building rtu (Release, no sanitizers) in %s" % build)
    for c in (["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
               "-DRTU_SANITIZE=OFF"],
              ["cmake", "--build", build, "-j%d" % (os.cpu_count() or 2),
               "--target", "rtu", "rtu-lua", "rtu-kafka-dev", "rtu-produce", "rtu-offsets"]):
        p = subprocess.run(c, capture_output=True, text=True)
        if p.returncode != 0:
            fail("build failed: %s\n%s" % (" ".join(c), (p.stdout + p.stderr)[-3000:]))


class Contender:
    """One program measured: rtu, a second rtu binary, or the Node.js peer."""

    def __init__(self, name, cmd, app, marker=None, cwd=None):
        self.name = name          # printed as contender=NAME
        self.cmd = cmd            # argv
        self.app = app            # the appName its MongoDB commands are counted under
        self.marker = marker      # a stdout line saying it was assigned partitions
        self.cwd = cwd


def contender_env(a, c, env_base, servers, group, dbname):
    env = dict(env_base)
    url = servers.mongo_url
    if c.app != "rtu":
        url += "/?appName=" + c.app
    env.update({"KAFKA_BROKERS": servers.brokers, "MONGODB_URL": url,
                "KAFKA_GROUP_ID": group, "PROJECTIONS_DATABASE_NAME": dbname,
                "KAFKA_SESSION_TIMEOUT_MS": "6000", "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
                "HTTP_PORT": "0", "HTTP_HOST": "127.0.0.1", "LOG_LEVEL": "info", "TZ": "UTC",
                "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    if a.batch_size:
        env["KAFKA_CONSUMER_MAX_BATCH_SIZE"] = str(a.batch_size)
    for item in a.env:
        k, v = item.split("=", 1)
        env[k] = v
    return env


class Running:
    """A started contender: its process, its stdout lines, when it was assigned."""

    def __init__(self, a, c, env, servers, tag):
        self.c = c
        self.log_path = os.path.join(servers.tmp, "%s.log" % tag)
        self.log = open(self.log_path, "wb")
        cmd = (a.wrap.split() if a.wrap and c.app == "rtu" else []) + c.cmd
        self.t_start = time.monotonic()
        self.proc = spawn(cmd, env=env, stdout=subprocess.PIPE, stderr=self.log, cwd=c.cwd)
        self.assigned = []
        self.cpu_assigned = None   # CPU seconds when it logged its assignment
        self.http_port = None      # rtu's metrics endpoint, from its log
        self.lines = []
        self.th = threading.Thread(target=self._read, daemon=True)
        self.th.start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.append(raw)
            if self.http_port is None and b'"http listening"' in raw:
                try:
                    self.http_port = int(json.loads(raw)["port"])
                except (ValueError, KeyError):
                    pass
            if not self.assigned and self.c.marker and self.c.marker in raw:
                self.assigned.append(time.monotonic())
                try:   # what the start cost, for --verbose
                    self.cpu_assigned = read_proc(self.proc.pid)[0]
                except OSError:
                    pass

    def metric(self, name):
        """The sum of a counter over its labels from rtu's /-/metrics, or None
        (not rtu, or no answer)."""
        if self.http_port is None:
            return None
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/metrics" % self.http_port,
                                        timeout=10) as f:
                text = f.read().decode()
        except OSError:
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def tail(self):
        return b"".join(self.lines[-40:]).decode("utf-8", "replace")

    def abort(self, msg):
        reap(self.proc, signal.SIGKILL)
        self.th.join(5)
        self.log.close()
        sys.stderr.write(self.tail())
        try:
            with open(self.log_path, "rb") as f:
                sys.stderr.write(f.read()[-3000:].decode("utf-8", "replace"))
        except OSError:
            pass
        fail(msg)

    def stop(self, run_no):
        """SIGTERM; returns (cpu s, VmHWM MiB, split) read just before it."""
        cpu_s, hwm, split = read_proc(self.proc.pid)
        rc = reap(self.proc, signal.SIGTERM, timeout=60)
        self.th.join(10)
        self.log.close()
        if rc != 0:
            sys.stderr.write(self.tail())
            fail("run %d: %s exited with %s after SIGTERM" % (run_no, self.c.name, rc))
        with open(self.log_path, "ab") as f:
            f.write(b"".join(self.lines))
        errors = [l for l in self.lines if b'"level":50' in l or b'"level":60' in l]
        if errors:
            fail("run %d: %s logged errors, e.g. %s" % (run_no, self.c.name, errors[0][:400]))
        return cpu_s, hwm, split


def find_peer(a):
    """The peer's folder: --peer, else the nearest shared/peer-node above the
    repository (the project keeps it in ../shared/peer-node); None to skip."""
    if a.peer == "none":
        return None
    if a.peer != "auto":
        return a.peer if os.path.isfile(os.path.join(a.peer, "peer.js")) else None
    d = ROOT
    while True:
        d = os.path.dirname(d)
        cand = os.path.join(d, "shared", "peer-node")
        if os.path.isfile(os.path.join(cand, "peer.js")):
            return cand
        if d == os.path.dirname(d):
            return None


def setup_peer(a, tmp):
    """Copies the peer to tmp and installs it with npm ci (its README's way);
    returns the Contender, or None after saying why the comparison is skipped."""
    src = find_peer(a)
    if a.peer == "none":
        return None
    if src is None:
        say("no peer (%s): comparison skipped" % (
            "no peer.js in %s" % a.peer if a.peer != "auto"
            else "shared/peer-node not found above %s" % ROOT))
        return None
    if a.scenario != "basic":
        say("the peer does the basic adapter only: comparison skipped for %s" % a.scenario)
        return None
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        say("node or npm not installed: comparison with %s skipped" % src)
        return None
    dst = os.path.join(tmp, "peer-node")
    shutil.copytree(src, dst)
    for base, dirs, files in os.walk(dst):   # shared/ may be read-only
        for f in dirs + files:
            os.chmod(os.path.join(base, f), 0o755 if f in dirs else 0o644)
    os.chmod(dst, 0o755)
    t = time.monotonic()
    p = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=dst, capture_output=True,
                       text=True)
    if p.returncode != 0:
        say("npm ci failed in %s: comparison skipped\n%s" % (dst, (p.stdout + p.stderr)[-2000:]))
        return None
    say("peer from %s installed in %.1f s (%s)" % (
        src, time.monotonic() - t, subprocess.run([node, "--version"], capture_output=True,
                                                  text=True).stdout.strip()))
    return Contender("peer", [node, os.path.join(dst, "peer.js")], "peer", None, dst)


def build_baseline(a):
    """--baseline: an rtu binary, or a commit built (Release) once in
    build-bench-base/<commit> beside its own source tree (the binary finds its
    Lua runtime at the source path recorded at build time)."""
    ref = a.baseline
    if os.path.isfile(ref) and os.access(ref, os.X_OK):
        return os.path.abspath(ref)
    p = subprocess.run(["git", "-C", ROOT, "rev-parse", "--verify", ref + "^{commit}"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        fail("--baseline %s: neither an executable nor a commit" % ref)
    sha = p.stdout.strip()
    base = os.path.join(ROOT, "build-bench-base", sha[:12])
    binary = os.path.join(base, "build", "rtu")
    if os.access(binary, os.X_OK):
        return binary
    src = os.path.join(base, "src")
    os.makedirs(src, exist_ok=True)
    say("building the baseline %s in %s" % (sha[:12], base))
    arch = subprocess.Popen(["git", "-C", ROOT, "archive", sha], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", src], stdin=arch.stdout, check=True)
    if arch.wait() != 0:
        fail("git archive %s failed" % sha)
    for c in (["cmake", "-S", src, "-B", os.path.join(base, "build"),
               "-DCMAKE_BUILD_TYPE=Release", "-DRTU_SANITIZE=OFF"],
              ["cmake", "--build", os.path.join(base, "build"), "-j%d" % (os.cpu_count() or 2),
               "--target", "rtu"]):
        p = subprocess.run(c, capture_output=True, text=True)
        if p.returncode != 0:
            fail("baseline build failed: %s\n%s" % (" ".join(c), (p.stdout + p.stderr)[-3000:]))
    return binary


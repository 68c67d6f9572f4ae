"""benchlib.proc: the processes the benchmark starts and what it reads of them.

This module owns: the repository's paths (ROOT, the Python that runs the test
server), starting a child that dies with the benchmark (spawn), stopping it
(reap, kill_children), the benchmark's messages on stderr (say, fail), and
reading a process's CPU time, peak RSS and per-thread times from /proc
(read_proc, rss_mib). It knows nothing of rtu, Kafka or MongoDB.
"""

import ctypes
import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"

try:
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _libc = None
CLK_TCK = os.sysconf("SC_CLK_TCK")
CHILDREN = []


def _die_with_parent():
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def spawn(args, **kw):
    p = subprocess.Popen(args, preexec_fn=_die_with_parent, stdin=subprocess.DEVNULL, **kw)
    CHILDREN.append(p)
    return p


def reap(p, sig=signal.SIGTERM, timeout=30):
    if p.poll() is None:
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in CHILDREN:
        CHILDREN.remove(p)
    return p.returncode


def say(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def fail(msg):
    say(msg)
    sys.exit(1)


def kill_children():
    """SIGKILL whatever the benchmark started and has not reaped (on exit)."""
    for p in list(CHILDREN):
        reap(p, signal.SIGKILL)


def _stat_times(path):
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK   # utime, stime (14, 15)


def read_proc(pid):
    """(CPU seconds of the process, VmHWM MiB, where the CPU went: user/system time
    and the time of each thread name, as --verbose prints it)."""
    user, system = _stat_times("/proc/%d/stat" % pid)
    with open("/proc/%d/stat" % pid) as f:
        minflt = int(f.read().rsplit(")", 1)[1].split()[7])   # field 10
    hwm, switches = None, 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024.0
            elif "ctxt_switches:" in line:
                switches += int(line.split()[1])
    threads = {}
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                    name = f.read().strip()
                u, s = _stat_times("/proc/%d/task/%s/stat" % (pid, tid))
            except OSError:
                continue
            threads[name] = threads.get(name, 0.0) + u + s
    except OSError:
        pass
    split = {"user_s": user, "system_s": system, "minor_faults": minflt,
             "context_switches_main_thread": switches,
             "threads_s": {k: round(v, 2) for k, v in sorted(threads.items())}}
    return user + system, hwm, split

"""End-to-end test harness for rtu.

One development Kafka (librdkafka mock cluster, `rtu-kafka-dev`) and one MongoDB
test server (`mongo-test-server.py`) per test file; the real `rtu` binary driven
through its environment; documents read back with pymongo.

Typical use in a test file:

    import harness
    from harness import E2ETestCase, wait_for

    TOPICS = {"basic.soft": 1, "basic.hard": 2}   # created when Kafka starts
    S, R = {}, {}

    @harness.report_on_error
    def setUpModule():
        c = harness.start_module(TOPICS)           # one Kafka + one MongoDB per file
        S["soft"] = c.scenario("soft", {"basic.soft": "pr_items"}, MAP_TABLE,
                               casts={"name": "return function(v, f, log) ... end"},
                               env={"DELETE_MECHANISM": "soft"})
        c.produce([{"topic": "basic.soft", "partition": 0, "key": {"ID": 1},
                    "value": {"ID": 1}, "timestamp": 1700000000000}])
        R["soft"] = S["soft"].start()              # start every scenario at once:
                                                   # the 3 s group joins overlap

    def tearDownModule():
        harness.stop_module()

    class Soft(E2ETestCase):
        @classmethod
        def tearDownClass(cls):
            R["soft"].stop()                       # SIGTERM, asserts exit 0 within 10 s

        def test_insert(self):
            d = wait_for(lambda: S["soft"].coll("items").find_one({"id": 1}), 20,
                         "id 1", R["soft"])      # fails early if rtu exits

    if __name__ == "__main__":
        harness.main()                             # unittest summary, exit 1 on failure

Every scenario gets its own consumer group and database (topics are declared per
file when the Kafka cluster starts: give each scenario its own topics).  Every
child process is started with PR_SET_PDEATHSIG=SIGKILL and is killed and waited
for at the end of the module (and at interpreter exit), also on failure.  When a
test (or a set-up) fails, the log of every rtu started in the file is printed on
stderr.

Outage and inspection helpers: Cluster.committed(group, topic) (committed
offsets and watermarks, through rtu-offsets), Cluster.read_topic(topic)
(every message of a topic, through kcat), Cluster.kafka_down()/kafka_up()
(every mock broker down/up: SIGUSR1/SIGUSR2 to rtu-kafka-dev),
tcp_proxy(host, port) (tools/tcp-proxy.py: a loopback proxy that can be cut
and restored), rss_kib(pid).

Environment: RTU_BIN (default /work/main/build/rtu), RTU_TOOLS_DIR (default
/work/main/build/tools), RTU_E2E_VERBOSE=1 prints rtu logs of passing tests too.
"""

import atexit
import ctypes
import importlib.util
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import pymongo

RTU_BIN = os.environ.get("RTU_BIN", "/work/main/build/rtu")
TOOLS_DIR = os.environ.get("RTU_TOOLS_DIR", "/work/main/build/tools")
PYTHON = "/usr/bin/python3"
VERBOSE = os.environ.get("RTU_E2E_VERBOSE") == "1"

# Every process this module started and has not yet reaped.
_CHILDREN = []
_CHILDREN_LOCK = threading.Lock()
# Every rtu process started (in order), for the failure report.
_ALL_RTUS = []
_CLUSTER = None

_libc = None
try:
    _libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # pragma: no cover
    _libc = None


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: if the test process dies (even by SIGKILL, e.g. a
    # ctest timeout), the children go too instead of lingering.
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def _spawn(args, **kw):
    p = subprocess.Popen(args, preexec_fn=_die_with_parent, **kw)
    with _CHILDREN_LOCK:
        _CHILDREN.append(p)
    return p


def _reap(p, sig=signal.SIGKILL, timeout=10):
    """Signals p (unless it has exited) and waits for it; returns its exit code."""
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
    with _CHILDREN_LOCK:
        if p in _CHILDREN:
            _CHILDREN.remove(p)
    return p.returncode


def kill_all_children():
    with _CHILDREN_LOCK:
        procs = list(_CHILDREN)
    for p in procs:
        _reap(p, signal.SIGKILL)


atexit.register(kill_all_children)


def _on_term(signum, frame):
    kill_all_children()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)


def _wait_file(path, proc, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                text = f.read().strip()
            if text:
                return text
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s before it was ready" % (what, proc.returncode))
        time.sleep(0.05)
    raise RuntimeError("%s not ready after %ss" % (what, timeout))


def wait_for(predicate, timeout=30, what="condition", rtu=None, interval=0.1):
    """Polls predicate() until it returns a truthy value, which is returned.
    Fails (AssertionError) after timeout seconds, or as soon as `rtu` (an Rtu or a
    list of them) has exited."""
    rtus = [] if rtu is None else (list(rtu) if isinstance(rtu, (list, tuple)) else [rtu])
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        for r in rtus:
            if r.proc.poll() is not None:
                raise AssertionError("rtu %s exited (code %s) while waiting for %s; last value: %r"
                                     % (r.label, r.proc.returncode, what, last))
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %ss waiting for %s; last value: %r"
                                 % (timeout, what, last))
        time.sleep(interval)


def wait_or_note(predicate, timeout=30, what="condition", rtu=None, interval=0.1):
    """wait_for, but a timeout is only written on stderr (and False returned):
    the test methods then assert the exact state and show what differs. An rtu
    that exited still fails at once."""
    try:
        return wait_for(predicate, timeout, what, rtu, interval)
    except AssertionError as e:
        if "exited" in str(e):
            raise
        sys.stderr.write("note: %s\n" % e)
        return False


def _encode(v):
    """A key or value for rtu-produce: str = raw bytes, None = null, else JSON text."""
    if v is None or isinstance(v, str):
        return v
    return json.dumps(v, separators=(",", ":"))


class Rtu:
    """One `rtu run` process; its stdout is read line by line into self.logs
    (parsed JSON, or {"raw": line} when a line is not JSON)."""

    def __init__(self, scenario, args=("run",), extra_env=None):
        self.scenario = scenario
        self.label = "%s#%d" % (scenario.name, scenario.runs)
        self.logs = []
        self.stderr_lines = []
        self._lock = threading.Lock()
        env = dict(scenario.env)
        if extra_env:
            env.update(extra_env)
        self.started_at = time.monotonic()
        self.proc = _spawn([RTU_BIN] + list(args), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True),
        ]
        for t in self._threads:
            t.start()
        _ALL_RTUS.append(self)

    def _read(self, stream, is_stdout):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if is_stdout:
                try:
                    entry = json.loads(line)
                    if not isinstance(entry, dict):
                        entry = {"raw": line}
                except ValueError:
                    entry = {"raw": line}
                with self._lock:
                    self.logs.append(entry)
            else:
                with self._lock:
                    self.stderr_lines.append(line)
        stream.close()

    # -- logs ---------------------------------------------------------------

    def log_lines(self):
        with self._lock:
            return list(self.logs)

    def find_logs(self, pred):
        return [l for l in self.log_lines() if pred(l)]

    def wait_error(self, partition, timeout=20, what="an error line"):
        """wait_log for an error line (level 50 or more) of that partition."""
        return self.wait_log(lambda l: l.get("level", 0) >= 50 and l.get("partition") == partition,
                             timeout, what)

    def wait_log(self, pred, timeout=20, what="a log line"):
        return wait_for(lambda: self.find_logs(pred), timeout, what, self)

    def wait_assigned(self, timeout=20):
        """Waits for the first partition assignment (the mock cluster's first join
        takes about 3 s)."""
        return self.wait_log(lambda l: l.get("msg") == "partitions assigned", timeout,
                             "partitions assigned")

    def report(self):
        out = ["----- rtu %s (%s), exit code %s -----" % (self.label, RTU_BIN, self.proc.returncode)]
        for l in self.log_lines():
            out.append(json.dumps(l) if "raw" not in l else l["raw"])
        with self._lock:
            if self.stderr_lines:
                out.append("----- stderr -----")
                out.extend(self.stderr_lines)
        out.append("----- end of rtu %s -----" % self.label)
        return "\n".join(out)

    # -- stopping -------------------------------------------------------------

    # -- HTTP -------------------------------------------------------------------

    def http_port(self, timeout=20):
        """The port of rtu's HTTP routes (HTTP_PORT=0: from the `http listening` line)."""
        lines = self.wait_log(lambda l: l.get("msg") == "http listening" and "port" in l,
                              timeout, "http listening")
        return int(lines[0]["port"])

    def http(self, path, method="GET", timeout=10):
        """(status, content type, body text) of one request to rtu's routes; status is
        the text of the error when the connection fails."""
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.http_port(), path),
                                     method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read().decode("utf-8")
        except OSError as e:
            return "error: %s" % e, "", ""

    def metrics(self):
        """{'name{labels}': value} of /-/metrics."""
        status, _, body = self.http("/-/metrics")
        if status != 200:
            raise AssertionError("/-/metrics answered %s" % status)
        return metric_samples(body)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=10):
        """SIGTERM; asserts a clean exit (code 0) within `timeout` seconds."""
        if self.proc.poll() is not None:
            raise AssertionError("rtu %s had already exited with code %s"
                                 % (self.label, self.proc.returncode))
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _reap(self.proc, signal.SIGKILL)
            raise AssertionError("rtu %s did not exit within %ss of SIGTERM" % (self.label, timeout))
        _reap(self.proc)
        self._join()
        if rc != 0:
            raise AssertionError("rtu %s exited with code %s after SIGTERM (%.1fs)"
                                 % (self.label, rc, time.monotonic() - t0))
        return time.monotonic() - t0

    def kill(self):
        """SIGKILL, and wait."""
        rc = _reap(self.proc, signal.SIGKILL)
        self._join()
        return rc

    def wait_exit(self, timeout=20):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("rtu %s still running after %ss" % (self.label, timeout))
        _reap(self.proc)
        self._join()
        return self.proc.returncode

    def _join(self):
        for t in self._threads:
            t.join(5)


class Scenario:
    """A configuration of rtu: its own consumer group, database, topics and
    configuration folder. start() runs `rtu run` with it (again and again: a
    restart keeps the group, hence the committed offsets)."""

    def __init__(self, cluster, name, topic_map, map_table, casts=None, adapter=None,
                 adapter_name=None, env=None, files=None):
        self.cluster = cluster
        self.name = name
        self.runs = 0
        self.dir = os.path.join(cluster.tmp, "cfg-" + name)
        os.makedirs(self.dir)
        self.map_table_dir = os.path.join(self.dir, "mapTable")
        os.makedirs(self.map_table_dir)
        with open(os.path.join(self.map_table_dir, "mapTable.json"), "w") as f:
            f.write(map_table if isinstance(map_table, str) else json.dumps(map_table, indent=2))
        suffix = "%s_%d" % (name.replace("-", "_").replace(".", "_"), next(cluster.counter))
        self.group = "g-" + suffix
        self.db_name = "db_" + suffix
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TZ": "UTC",
            "KAFKA_BROKERS": cluster.brokers,
            "KAFKA_GROUP_ID": self.group,
            "MONGODB_URL": cluster.mongo_url,
            "PROJECTIONS_DATABASE_NAME": self.db_name,
            "PROJECTIONS_CHANGES_ENABLED": "false",
            "SYSTEM_OF_RECORDS": "sor",
            "INVARIANT_TOPIC_MAP": json.dumps(topic_map),
            "MAP_TABLE_FOLDER": self.map_table_dir,
            "KAFKA_CONSUMER_MAX_WAIT_TIME": "100",
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "HTTP_PORT": "0",
            "HTTP_HOST": "127.0.0.1",
            "LOG_LEVEL": "info",
        }
        if casts:
            cast_dir = os.path.join(self.dir, "casts")
            os.makedirs(cast_dir)
            for cname, src in casts.items():
                with open(os.path.join(cast_dir, cname + ".lua"), "w") as f:
                    f.write(src)
            self.env["CAST_FUNCTIONS_FOLDER"] = cast_dir
        if adapter is not None:
            adapter_dir = os.path.join(self.dir, "adapter")
            os.makedirs(adapter_dir)
            with open(os.path.join(adapter_dir, "kafkaMessageAdapter.lua"), "w") as f:
                f.write(adapter)
            self.env["KAFKA_ADAPTER_FOLDER"] = adapter_dir
            self.env["KAFKA_MESSAGE_ADAPTER"] = "custom"
        if adapter_name is not None:
            self.env["KAFKA_MESSAGE_ADAPTER"] = adapter_name
        for rel, text in (files or {}).items():
            path = os.path.join(self.dir, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        if env:
            self.env.update(env)

    @property
    def db(self):
        return self.cluster.mongo[self.db_name]

    def coll(self, name):
        return self.db[name]

    def start(self, extra_env=None):
        self.runs += 1
        return Rtu(self, ("run",), extra_env)

    def check(self, extra_env=None, timeout=30):
        """Runs `rtu check`; returns (exit code, stdout lines, stderr lines)."""
        env = dict(self.env)
        if extra_env:
            env.update(extra_env)
        p = _spawn([RTU_BIN, "check"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   stdin=subprocess.DEVNULL)
        try:
            out, err = p.communicate(timeout=timeout)
        finally:
            _reap(p)
        return (p.returncode, out.decode("utf-8", "replace").splitlines(),
                err.decode("utf-8", "replace").splitlines())


class Cluster:
    """The development Kafka and the MongoDB test server of one test file."""

    def __init__(self, topics):
        self.topics = dict(topics)
        self.tmp = tempfile.mkdtemp(prefix="rtu-e2e-")
        self.counter = itertools.count(1)
        self.kafka = None
        self.mongod = None
        self.mongo = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self):
        for tool in ("rtu-kafka-dev", "rtu-produce", "mongo-test-server.py"):
            if not os.path.exists(os.path.join(TOOLS_DIR, tool)):
                raise RuntimeError("%s not found in RTU_TOOLS_DIR=%s (build first)" % (tool, TOOLS_DIR))
        if not os.access(RTU_BIN, os.X_OK):
            raise RuntimeError("RTU_BIN=%s is not an executable (build first)" % RTU_BIN)
        boot_file = os.path.join(self.tmp, "bootstrap")
        port_file = os.path.join(self.tmp, "mongo-port")
        args = [os.path.join(TOOLS_DIR, "rtu-kafka-dev"), "--bootstrap-file", boot_file]
        for t, n in self.topics.items():
            args += ["--topic", "%s:%d" % (t, n)]
        self._kafka_log = open(os.path.join(self.tmp, "kafka.log"), "wb")
        self._mongo_log = open(os.path.join(self.tmp, "mongo.log"), "wb")
        self.kafka = _spawn(args, stdout=self._kafka_log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
        self.mongod = _spawn([PYTHON, os.path.join(TOOLS_DIR, "mongo-test-server.py"),
                              "--port", "0", "--port-file", port_file],
                             stdout=self._mongo_log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        self.brokers = _wait_file(boot_file, self.kafka, "rtu-kafka-dev")
        port = int(_wait_file(port_file, self.mongod, "mongo-test-server.py"))
        self.mongo_url = "mongodb://127.0.0.1:%d" % port
        self.mongo = pymongo.MongoClient(self.mongo_url, directConnection=True,
                                         serverSelectionTimeoutMS=10000)
        self.mongo.admin.command("ping")

    def scenario(self, name, topic_map, map_table, **kw):
        for t in topic_map:
            if t not in self.topics:
                raise ValueError("topic %s is not declared for this file" % t)
        return Scenario(self, name, topic_map, map_table, **kw)

    def produce(self, lines, rate=None, background=False):
        """Produces JSON lines {"topic", "partition"?, "key", "value", "timestamp"?,
        "headers"?}; key/value: str = raw bytes, None = null, other = JSON text.
        Returns the number produced, or the Popen when background=True."""
        path = os.path.join(self.tmp, "produce-%d.jsonl" % next(self.counter))
        with open(path, "w") as f:
            for l in lines:
                l = dict(l)
                if "key" in l:
                    l["key"] = _encode(l["key"])
                if "value" in l:
                    l["value"] = _encode(l["value"])
                f.write(json.dumps(l) + "\n")
        args = [os.path.join(TOOLS_DIR, "rtu-produce"), "--brokers", self.brokers, "--file", path]
        if rate:
            args += ["--rate", str(rate)]
        if background:
            return _spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL)
        p = _spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            out, err = p.communicate(timeout=120)
        finally:
            _reap(p)
        if p.returncode != 0:
            raise RuntimeError("rtu-produce failed (%s): %s %s" % (p.returncode, out, err))
        return len(lines)

    # -- inspection and outages -------------------------------------------------

    def committed(self, group, topic):
        """{partition: (committed offset or -1, high watermark)} of `group` on
        `topic`, read without joining the group."""
        p = _spawn([os.path.join(TOOLS_DIR, "rtu-offsets"), "--brokers", self.brokers,
                    "--group", group, "--topic", topic],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            out, err = p.communicate(timeout=30)
        finally:
            _reap(p)
        if p.returncode != 0:
            raise RuntimeError("rtu-offsets failed (%s): %s" % (p.returncode, err))
        res = {}
        for line in out.decode().splitlines():  # TOPIC PARTITION LOW HIGH COMMITTED
            _, part, _, high, committed = line.split()
            res[int(part)] = (int(committed), int(high))
        return res

    def read_topic(self, topic, timeout=30):
        """Every message of `topic` (kcat, from the beginning to the end of every
        partition): [{"partition", "offset", "key", "value", "headers"}] with key
        and value as text (None for null), sorted by (partition, offset)."""
        p = _spawn(["kcat", "-b", self.brokers, "-C", "-t", topic, "-o", "beginning", "-e",
                    "-q", "-J"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   stdin=subprocess.DEVNULL)
        try:
            out, err = p.communicate(timeout=timeout)
        finally:
            _reap(p)
        if p.returncode != 0:
            raise RuntimeError("kcat failed on %s (%s): %s" % (topic, p.returncode, err))
        msgs = []
        for line in out.decode("utf-8").splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            msgs.append({"partition": d["partition"], "offset": d["offset"], "key": d.get("key"),
                         "value": d.get("payload"), "headers": d.get("headers")})
        msgs.sort(key=lambda m: (m["partition"], m["offset"]))
        return msgs

    def _kafka_signal(self, sig, word, timeout=10):
        log = os.path.join(self.tmp, "kafka.log")
        with open(log, "rb") as f:
            before = f.read().count(word)
        self.kafka.send_signal(sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(log, "rb") as f:
                if f.read().count(word) > before:
                    return
            time.sleep(0.02)
        raise RuntimeError("rtu-kafka-dev did not acknowledge %r" % word)

    def kafka_down(self):
        """Every mock broker down: connections closed, new ones refused."""
        self._kafka_signal(signal.SIGUSR1, b"rtu-kafka-dev: brokers down")

    def kafka_up(self):
        self._kafka_signal(signal.SIGUSR2, b"rtu-kafka-dev: brokers up")

    def close(self):
        for r in _ALL_RTUS:
            if r.proc.poll() is None:
                r.kill()
        if self.mongo is not None:
            self.mongo.close()
        for p in (self.kafka, self.mongod):
            if p is not None:
                _reap(p, signal.SIGTERM, timeout=5)
        kill_all_children()
        for f in ("_kafka_log", "_mongo_log"):
            if hasattr(self, f):
                getattr(self, f).close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _load_tcp_proxy():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "tools", "tcp-proxy.py")
    if not os.path.exists(path):
        path = os.path.join(TOOLS_DIR, "tcp-proxy.py")
    spec = importlib.util.spec_from_file_location("rtu_tcp_proxy", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_PROXIES = []


def tcp_proxy(host, port):
    """A started tools/tcp-proxy.py TcpProxy in front of host:port (closed at the
    end of the module): .port, .cut("refuse"|"blackhole"), .restore()."""
    p = _load_tcp_proxy().TcpProxy(host, port).start()
    _PROXIES.append(p)
    return p


def rss_kib(pid):
    """VmRSS of a process in KiB (None once it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def start_module(topics):
    global _CLUSTER
    _CLUSTER = Cluster(topics)
    return _CLUSTER


def stop_module():
    global _CLUSTER
    while _PROXIES:
        _PROXIES.pop().close()
    if _CLUSTER is not None:
        _CLUSTER.close()
        _CLUSTER = None
    kill_all_children()


def cluster():
    if _CLUSTER is None:
        raise RuntimeError("harness.start_module() was not called (setUpModule)")
    return _CLUSTER


def dump_logs(rtus, title):
    if not rtus:
        return
    sys.stderr.write("\n===== %s: rtu logs =====\n" % title)
    for r in rtus:
        sys.stderr.write(r.report() + "\n")
    sys.stderr.flush()


def report_on_error(func):
    """Decorator for setUpModule / setUpClass bodies: on an exception, prints the
    logs of every rtu started so far, then re-raises."""
    def wrapper(*a, **kw):
        try:
            return func(*a, **kw)
        except BaseException:
            dump_logs(list(_ALL_RTUS), "%s failed" % func.__name__)
            raise
    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


class E2ETestCase(unittest.TestCase):
    """Prints the log of every rtu started in this file when a test fails (or
    when its class set-up fails)."""

    maxDiff = None

    def one(self, key):
        """The only document of `key` in self.docs (a by_key() of the collection,
        set by the class set-up); fails unless there is exactly one."""
        self.assertEqual(len(self.docs.get(key, [])), 1, "exactly one document for %r" % (key,))
        return self.docs[key][0]

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        func = cls.setUpClass.__func__
        if func is unittest.TestCase.setUpClass.__func__ or getattr(func, "_e2e_wrapped", False):
            return

        def set_up_class(klass):
            try:
                func(klass)
            except BaseException:
                dump_logs(list(_ALL_RTUS), "setUpClass of %s failed" % klass.__name__)
                raise

        set_up_class._e2e_wrapped = True
        cls.setUpClass = classmethod(set_up_class)

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        t0 = time.monotonic()
        out = super().run(result)
        failed = len(result.failures) + len(result.errors) > before
        if failed or VERBOSE:
            dump_logs(list(_ALL_RTUS), "%s %s (%.1fs)" % (
                "FAILED" if failed else "passed", self.id(), time.monotonic() - t0))
        return out


def main():
    """unittest.main with a summary; exits non-zero on failure."""
    t0 = time.monotonic()
    prog = unittest.main(exit=False, verbosity=2)
    ok = prog.result.wasSuccessful()
    sys.stderr.write("e2e %s: %s in %.1fs\n" % (
        os.path.basename(sys.argv[0]), "OK" if ok else "FAILED", time.monotonic() - t0))
    stop_module()
    sys.exit(0 if ok else 1)


# -- helpers for assertions -----------------------------------------------------

def metric_samples(text):
    """{'name{labels}': value} of a Prometheus text exposition; a malformed line
    fails."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$', line)
        assert m, "malformed exposition line: %r" % line
        out[m.group(1)] = float(m.group(2))
    return out

def by_key(coll, field="id"):
    """{key value: [documents]} over the whole collection (to spot duplicates); a
    document without `field` fails (KeyError)."""
    out = {}
    for d in coll.find({}):
        out.setdefault(d[field], []).append(d)
    return out


# -- the "rows" tables of the error and operation tests --------------------------

# Low-code strategies over two projections: a row (collection lcrows: ID, NAME,
# REF) links its ref (lcrefs: ID) by row.REF = ref.ID; the single view sv_refs is
# identified from the refs reached, by a function refusing the ref "bad".
REFS_MAP = {
    "pr_rows": {"destination": "lcrows", "fieldsInKey": ["ID"], "conversion": {
        "ID": {"fieldName": "ID", "cast": "__fromFile__[defaultIdentity]"},
        "NAME": {"fieldName": "NAME", "cast": "__fromFile__[defaultCastToString]"},
        "REF": {"fieldName": "REF", "cast": "__fromFile__[defaultCastToString]"}}},
    "pr_refs": {"destination": "lcrefs", "fieldsInKey": ["ID"], "conversion": {
        "ID": {"fieldName": "ID", "cast": "__fromFile__[defaultCastToString]"}}},
}
REFS_ER = {"version": "1.0.0", "config": {
    "pr_rows": {"outgoing": {"pr_refs": {"conditions": {
        "row_to_ref": {"condition": {"ID": "REF"}}}}}},
    "pr_refs": {"outgoing": {"pr_rows": {"conditions": {
        "ref_to_rows": {"condition": {"REF": "ID"}, "oneToMany": True}}}}}}}
REFS_PC = {"version": "1.0.0", "config": {"sv_refs": {"paths": [
    {"path": ["pr_rows", "pr_refs"], "identifier": "__fromFile__[pickyRef]"}]}}}
PICKY_REF = r'''
return function(ref, db, log)
  if ref.ID == "bad" then error("pickyRef refuses ref " .. ref.ID) end
  return { { ID = ref.ID } }
end
'''


def refs_scenario(c, name, topic_map, env=None):
    """The low-code "refs" configuration above (projection changes in `pc`)."""
    sc = c.scenario(name, topic_map, REFS_MAP,
                    files={"er/erSchema.json": json.dumps(REFS_ER),
                           "pcs/projectionChangesSchema.json": json.dumps(REFS_PC),
                           "pcs/pickyRef.lua": PICKY_REF},
                    env=dict({"PROJECTIONS_CHANGES_ENABLED": "true",
                              "PROJECTIONS_CHANGES_COLLECTION_NAME": "pc",
                              "USE_AUTOMATIC_STRATEGIES": "true"}, **(env or {})))
    sc.env["ER_SCHEMA_FOLDER"] = os.path.join(sc.dir, "er")
    sc.env["PROJECTION_CHANGES_SCHEMA_FOLDER"] = os.path.join(sc.dir, "pcs")
    return sc


def ref_row(topic, part, id_, name, ref, ts):
    """A message of refs_scenario()'s pr_rows."""
    return {"topic": topic, "partition": part, "key": {"ID": id_},
            "value": {"ID": id_, "NAME": name, "REF": ref}, "timestamp": ts}


def rows_map_table(name_cast="defaultCastToString", changes=None):
    """mapTable.json of the small "rows" tests: topic records pr_rows go to the
    collection `rows`; ID -> id (defaultIdentity, the key), NAME -> name through
    the cast `name_cast` (a built-in or a file of the scenario's casts); with
    `changes` ({single view: strategy}) the pr_rows entry binds strategies."""
    entry = {
        "destination": "rows",
        "conversion": {
            "ID": {"fieldName": "id", "cast": "__fromFile__[defaultIdentity]"},
            "NAME": {"fieldName": "name", "cast": "__fromFile__[%s]" % name_cast},
        },
        "fieldsInKey": ["id"],
    }
    if changes is not None:
        entry["changes"] = changes
    return {"pr_rows": entry}


def row(topic, part, id_, ts, name=None, raw=None, key="auto"):
    """A message for rows_map_table(): key {"ID": id_} (or `key`; None = a null
    key), value {"ID": id_, "NAME": name or "n<id>"}, or `raw` as the value
    instead (str = raw bytes, e.g. text that is not JSON)."""
    if key == "auto":
        key = {"ID": id_}
    value = raw if raw is not None else {"ID": id_, "NAME": name or "n%d" % id_}
    return {"topic": topic, "partition": part, "key": key, "value": value, "timestamp": ts}


def ids(scenario, collection="rows"):
    """The sorted `id` of every document of a scenario's collection."""
    return sorted(d["id"] for d in scenario.coll(collection).find({}))


def error_logs(rtu):
    return rtu.find_logs(lambda l: l.get("level", 0) >= 50)


def stop_log(rtu, topic, partition):
    """The error log lines saying that topic/partition stopped."""
    return rtu.find_logs(lambda l: l.get("level", 0) >= 50 and l.get("topic") == topic
                         and l.get("partition") == partition and "offset" in l)


def committed_offsets(group, topic):
    """{partition: first offset not committed} of the partitions of topic that have
    messages left for group (read without joining the group)."""
    out = {}
    for part, (committed, high) in cluster().committed(group, topic).items():
        start = committed if committed >= 0 else 0  # test topics are never truncated
        if start < high:
            out[part] = start
    return out

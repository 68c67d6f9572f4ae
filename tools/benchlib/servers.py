"""benchlib.servers: the development Kafka and the MongoDB test server for the
whole benchmark, and what is asked of them.

This module owns: starting rtu-kafka-dev (librdkafka's mock cluster) and
tools/mongo-test-server.py on loopback (Servers), the test server's command
counts per appName (Servers.stats), producing a file of messages in sets of
--set-size (produce) and checking the mock cluster kept all of them, and the
partitions' watermarks and a group's committed offsets through rtu-offsets,
which never joins the group (offsets, wait_committed).
"""

import os
import signal
import subprocess
import time

from .proc import PYTHON, ROOT, fail, reap, say, spawn

FETCH_PARTITION_BYTES = 262144  # rtu's max.partition.fetch.bytes (consumer.c)


class Servers:
    def __init__(self, tools, tmp, topics, verbose):
        self.tmp = tmp
        boot = os.path.join(tmp, "bootstrap")
        port_file = os.path.join(tmp, "mongo.port")
        args = [os.path.join(tools, "rtu-kafka-dev"), "--bootstrap-file", boot]
        for t, p in topics:
            args += ["--topic", "%s:%d" % (t, p)]
        self.klog = open(os.path.join(tmp, "kafka.log"), "wb")
        self.mlog = open(os.path.join(tmp, "mongo.log"), "wb")
        self.kafka = spawn(args, stdout=self.klog, stderr=subprocess.STDOUT)
        self.mongod = spawn([PYTHON, os.path.join(ROOT, "tools", "mongo-test-server.py"),
                             "--port", "0", "--port-file", port_file],
                            stdout=self.mlog, stderr=subprocess.STDOUT)
        self.brokers = self._wait(boot, self.kafka, "rtu-kafka-dev")
        self.mongo_url = "mongodb://127.0.0.1:%s" % self._wait(port_file, self.mongod,
                                                               "mongo-test-server.py")
        import pymongo
        self.client = pymongo.MongoClient(self.mongo_url, directConnection=True,
                                          serverSelectionTimeoutMS=10000, appname="bench")
        self.client.admin.command("ping")

    @staticmethod
    def _wait(path, proc, what, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    text = f.read().strip()
                if text:
                    return text
            if proc.poll() is not None:
                fail("%s exited with %s during start" % (what, proc.returncode))
            time.sleep(0.05)
        fail("%s not ready after %ss" % (what, timeout))

    def stats(self, reset):
        """Command counts per appName."""
        r = self.client.admin.command({"rtuTestStats": 1, "reset": reset})
        return {k: dict(v) for k, v in r["apps"].items()}

    def close(self):
        try:
            self.client.close()
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        reap(self.mongod)
        reap(self.kafka)
        self.klog.close()
        self.mlog.close()


def offsets(tools, brokers, topics, group=None):
    args = [os.path.join(tools, "rtu-offsets"), "--brokers", brokers]
    if group:
        args += ["--group", group]
    for t in topics:
        args += ["--topic", t]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        fail("rtu-offsets failed: %s" % p.stderr.strip())
    rows = []
    for line in p.stdout.splitlines():
        t, part, low, high, com = line.split()
        rows.append((t, int(part), int(low), int(high), int(com)))
    return rows


def produce(tools, brokers, path, n, topics, compression, set_size):
    # Sets are closed by count (or by 256 KiB uncompressed), never by time: the
    # mock cluster answers a fetch with one set per partition, so set sizes are
    # rtu's run sizes, and with a linger they followed the producer's speed.
    args = [os.path.join(tools, "rtu-produce"), "--brokers", brokers, "--file", path,
            "-X", "batch.num.messages=%d" % set_size, "-X", "linger.ms=60000",
            "-X", "message.timeout.ms=600000", "-X", "queue.buffering.max.messages=2000000"]
    if compression == "none":
        args += ["-X", "batch.size=%d" % FETCH_PARTITION_BYTES]
    else:
        args += ["-X", "compression.codec=" + compression]
    t = time.monotonic()
    p = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        fail("rtu-produce failed (%s): %s %s" % (p.returncode, p.stdout, p.stderr[-2000:]))
    say("produced %d messages in %.1f s" % (n, time.monotonic() - t))
    rows = offsets(tools, brokers, topics)
    lost = [(t, part, low) for t, part, low, high, _ in rows if low != 0]
    total = sum(high - low for _, _, low, high, _ in rows)
    if lost or total != n:
        fail("does not fit: the mock cluster kept %d of %d messages (it keeps 5 MiB per "
             "partition; partitions that dropped their start: %s); use more partitions, "
             "fewer messages or --compression" % (total, n, lost[:5]))
    per = max(high for _, _, _, high, _ in rows)
    say("all %d messages kept (at most %d in one partition)" % (total, per))


def wait_committed(a, run, servers, tools, group, topics, run_no):
    wait_args = [os.path.join(tools, "rtu-offsets"), "--brokers", servers.brokers,
                 "--group", group, "--wait", str(a.timeout), "--interval-ms", "20"]
    for t in topics:
        wait_args += ["--topic", t]
    w = spawn(wait_args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while w.poll() is None and run.proc.poll() is None:
        time.sleep(0.02)
    t_done = time.monotonic()
    if w.poll() is None:
        reap(w, signal.SIGKILL)
    w_err = w.stderr.read()
    reap(w)
    if w.returncode != 0 or run.proc.poll() is not None:
        run.abort("run %d: %s did not commit everything (exit %s): %s"
                  % (run_no, run.c.name, run.proc.returncode, w_err.strip()))
    return t_done


#!/usr/bin/env python3
"""A loopback TCP proxy for outage tests.

Listens on 127.0.0.1 (port 0 = a free one) and forwards every connection to a
target. It can be told to cut the link and to restore it:

  cut("refuse")     every open connection is closed (both sides) and new ones
                    are reset as soon as they are accepted (the client sees
                    "connection reset/refused");
  cut("blackhole")  open connections stay open but nothing is forwarded any
                    more, and new connections are accepted and held without
                    an answer (the client sees timeouts);
  restore()         new connections are forwarded again; the black-holed
                    connections are closed (their streams lost bytes).

Use from Python (the e2e harness imports this file):

    p = TcpProxy("127.0.0.1", 27017); p.start(); ... p.port ...
    p.cut("refuse"); ...; p.restore(); p.close()

or as a program: tcp-proxy.py --target HOST:PORT [--port-file F] prints the
port on stdout and reads commands from stdin, one a line: `cut`,
`blackhole`, `restore`, `quit`; each is acknowledged with `ok <command>`.
"""

import argparse
import os
import socket
import struct
import sys
import threading

OPEN, REFUSE, BLACKHOLE = "open", "refuse", "blackhole"


def _hard_close(sock):
    try:
        # RST rather than FIN: the peer sees the connection break at once.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Conn:
    def __init__(self, client, upstream):
        self.client = client
        self.upstream = upstream
        self.blackholed = upstream is None
        self.closed = False
        self.lock = threading.Lock()

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        _hard_close(self.client)
        if self.upstream is not None:
            _hard_close(self.upstream)


class TcpProxy:
    def __init__(self, target_host, target_port, listen_host="127.0.0.1", listen_port=0):
        self.target = (target_host, int(target_port))
        self.mode = OPEN
        self._lock = threading.Lock()
        self._conns = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((listen_host, listen_port))
        self._listener.listen(128)
        self.host, self.port = self._listener.getsockname()
        self._closing = False
        self._thread = None
        self.accepted = 0
        self.refused = 0

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def start(self):
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self):
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self.mode
            self.accepted += 1
            if mode == REFUSE:
                self.refused += 1
                _hard_close(client)
                continue
            if mode == BLACKHOLE:
                conn = _Conn(client, None)
                with self._lock:
                    self._conns.add(conn)
                threading.Thread(target=self._pump, args=(conn, client, None), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _hard_close(client)
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(client, upstream)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._pump, args=(conn, client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(conn, upstream, client), daemon=True).start()

    def _pump(self, conn, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if conn.blackholed or dst is None:
                    continue  # swallowed
                dst.sendall(data)
        except OSError:
            pass
        if not conn.blackholed or conn.closed:
            conn.close()
            with self._lock:
                self._conns.discard(conn)

    def cut(self, mode=REFUSE):
        if mode not in (REFUSE, BLACKHOLE):
            raise ValueError("cut mode: refuse or blackhole")
        with self._lock:
            self.mode = mode
            conns = list(self._conns)
        for c in conns:
            if mode == REFUSE:
                c.close()
                with self._lock:
                    self._conns.discard(c)
            else:
                c.blackholed = True

    def restore(self):
        with self._lock:
            self.mode = OPEN
            held = [c for c in self._conns if c.blackholed]
        for c in held:
            c.close()
            with self._lock:
                self._conns.discard(c)

    def open_connections(self):
        with self._lock:
            return len(self._conns)

    def close(self):
        self._closing = True
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    a = ap.parse_args()
    host, _, port = a.target.rpartition(":")
    proxy = TcpProxy(host or "127.0.0.1", int(port), listen_port=a.port).start()
    if a.port_file:
        tmp = a.port_file + ".tmp.%d" % os.getpid()
        with open(tmp, "w") as f:
            f.write("%d\n" % proxy.port)
        os.rename(tmp, a.port_file)
    print(proxy.port, flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "cut":
            proxy.cut(REFUSE)
        elif cmd == "blackhole":
            proxy.cut(BLACKHOLE)
        elif cmd == "restore":
            proxy.restore()
        elif cmd == "quit":
            break
        elif cmd:
            print("unknown command %s" % cmd, flush=True)
            continue
        else:
            continue
        print("ok %s" % cmd, flush=True)
    proxy.close()


if __name__ == "__main__":
    main()

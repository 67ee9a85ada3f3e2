#!/usr/bin/env python3
"""Readiness probe for the local broker: sends a real Kafka Metadata request (v4).

Standard library only, so infra/kafka/kafka.sh can use it before the project venv exists.

    probe.py HOST:PORT                      one attempt; exit 0 if the broker answered with >= 1 broker
    probe.py HOST:PORT --wait 90 --pid N    retry until ready, the timeout, or process N exits

Exit codes: 0 ready, 1 not ready / timed out, 2 the watched process exited.
On success prints e.g. "cluster_id=abc brokers=1".
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time

METADATA_API_KEY = 3
METADATA_VERSION = 4  # Kafka 4.0 removed v0-v3; v4 is the oldest non-flexible version left.


def _string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return bytes(buf)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def nullable_string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        value = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return value


def metadata(host: str, port: int, timeout: float = 2.0) -> tuple[str | None, list[tuple[int, str, int]]]:
    """Return (cluster_id, [(node_id, host, port), ...]) from one Metadata v4 round trip."""
    correlation_id = 7
    header = struct.pack(">hhi", METADATA_API_KEY, METADATA_VERSION, correlation_id) + _string("pit-probe")
    body = struct.pack(">i", 0) + struct.pack(">b", 0)  # no topics, allow_auto_topic_creation=false
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        r = _Reader(_recv_exact(sock, size))
    if r.take(">i") != correlation_id:
        raise ConnectionError("unexpected correlation id")
    r.take(">i")  # throttle_time_ms
    brokers = []
    for _ in range(r.take(">i")):
        node_id = r.take(">i")
        node_host = r.nullable_string() or ""
        node_port = r.take(">i")
        r.nullable_string()  # rack
        brokers.append((node_id, node_host, node_port))
    cluster_id = r.nullable_string()
    return cluster_id, brokers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bootstrap", help="HOST:PORT")
    p.add_argument("--wait", type=float, default=0.0, help="keep trying for this many seconds")
    p.add_argument("--pid", type=int, default=0, help="give up as soon as this process is gone")
    p.add_argument("--interval", type=float, default=0.2)
    args = p.parse_args()
    host, _, port_s = args.bootstrap.rpartition(":")
    deadline = time.monotonic() + args.wait
    last_error = "no attempt"
    while True:
        try:
            cluster_id, brokers = metadata(host, int(port_s))
            if brokers:
                print(f"cluster_id={cluster_id} brokers={len(brokers)}")
                return 0
            last_error = "metadata response listed no brokers"
        except (OSError, struct.error) as e:
            last_error = f"{type(e).__name__}: {e}"
        if args.pid and not _alive(args.pid):
            print(f"process {args.pid} exited", file=sys.stderr)
            return 2
        if time.monotonic() >= deadline:
            print(f"broker at {args.bootstrap} not ready: {last_error}", file=sys.stderr)
            return 1
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())

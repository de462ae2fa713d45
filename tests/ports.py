"""Listening ports for the servers the tests start on loopback (Ray nodes, SeaweedFS).

A port found free by binding port 0 comes from the kernel's ephemeral range, where every outgoing
connection takes its local port. Between that check and the server's own bind (seconds for a Ray
node's agent on 2 busy cores) a connection from the other test process can take the port; the server
then cannot listen, and a Ray head whose agent lost its port never takes a job (a CI run failed so).
So ports come from below the ephemeral range and above Ray's worker ports, each test process
(pytest-xdist) from its own share, and none twice."""

from __future__ import annotations

import os
import random
import socket

_ABOVE_RAY_WORKER_PORTS = 20000  # Ray's default --max-worker-port is 19999
_given: set[int] = set()


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; macOS starts at 49152


def share() -> range:
    """This test process's ports: its slice of [20000, start of the ephemeral range)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    size = max(0, _ephemeral_start() - _ABOVE_RAY_WORKER_PORTS) // workers
    start = _ABOVE_RAY_WORKER_PORTS + index * size
    return range(start, start + size)


def free_port() -> int:
    """A port no process listens on now, from this process's share, not given before."""
    ports = share()
    if len(ports) < 100:  # an ephemeral range reaching down here: only the kernel's choice is left
        return _bound_by_kernel()
    first = random.SystemRandom().randrange(len(ports))  # not the tests' seeded generator
    for i in range(len(ports)):
        port = ports[(first + i) % len(ports)]
        if port not in _given and _bindable(port):
            _given.add(port)
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _bound_by_kernel() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

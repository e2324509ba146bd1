"""A sequence-numbered UDP flow between two namespaces, to count loss and
duplicates through a tunnel exactly.

    with Flow(src_ns, dst_ns, dst_addr, rate=200, seconds=30) as f:
        ...                     # rekey, restart, ... while it runs
    r = f.result()              # {"sent": N, "received": M, "lost": [...], "dups": [...]}

The sender and the receiver are small Python programs run with
`ip netns exec`; both stop by themselves (the receiver `grace` seconds
after the sender's last packet).
"""
from __future__ import annotations

import json
import subprocess
import time

from . import netns
from .netns import HarnessError

PYTHON = "/usr/bin/python3"

_RECEIVER = r"""
import json, socket, sys, time
port, limit = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("0.0.0.0", port))
s.settimeout(0.2)
print("ready", flush=True)
seen, dups, total, end_seen = set(), [], None, None
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        data = s.recv(2048)
    except socket.timeout:
        if end_seen is not None and time.monotonic() > end_seen:
            break
        continue
    kind, n = data[:3], int(data[3:13])
    if kind == b"END":
        total = n
        end_seen = time.monotonic() + float(sys.argv[3])
        continue
    if n in seen:
        dups.append(n)
    seen.add(n)
sent = total if total is not None else (max(seen) + 1 if seen else 0)
lost = [i for i in range(sent) if i not in seen]
print(json.dumps({"sent": sent, "end_seen": total is not None, "received": len(seen),
                  "lost": lost[:200], "lost_count": len(lost), "dups": dups[:200]}), flush=True)
"""

_SENDER = r"""
import socket, sys, time
dst, port, rate, count = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
start = time.monotonic()
for i in range(count):
    t = start + i / rate
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)
    s.sendto(b"SEQ%010d" % i + b"x" * 100, (dst, port))
for _ in range(5):   # the end marker, repeated: it may meet a loss too
    time.sleep(0.05)
    s.sendto(b"END%010d" % count, (dst, port))
"""


class Flow:
    def __init__(self, src_ns: str, dst_ns: str, dst_addr: str, rate: float = 200,
                 seconds: float = 10, port: int = 5555, grace: float = 2.0, rt_priority: int = 0):
        """rt_priority > 0 runs the sender as a SCHED_FIFO thread (`chrt -f`):
        it then wakes on time for each packet instead of waiting for a time
        slice and sending a burst (benchmarks that time the first packet)."""
        self.src_ns, self.dst_ns, self.dst_addr = src_ns, dst_ns, dst_addr
        self.rt_priority = rt_priority
        self.rate, self.count, self.port, self.grace = rate, int(rate * seconds), port, grace
        self.seconds = seconds
        self.receiver: subprocess.Popen | None = None
        self.sender: subprocess.Popen | None = None
        self._result: dict | None = None

    def start(self) -> "Flow":
        limit = self.seconds + 30
        self.receiver = subprocess.Popen(
            ["ip", "netns", "exec", self.dst_ns, PYTHON, "-c", _RECEIVER, str(self.port), str(limit),
             str(self.grace)], stdout=subprocess.PIPE, text=True, env=netns.owner_env(),
            preexec_fn=netns.die_with_parent)
        if self.receiver.stdout.readline().strip() != "ready":
            raise HarnessError("flow receiver did not start")
        chrt = ["chrt", "-f", str(self.rt_priority)] if self.rt_priority else []
        self.sender = subprocess.Popen(
            ["ip", "netns", "exec", self.src_ns, *chrt, PYTHON, "-c", _SENDER, self.dst_addr, str(self.port),
             str(self.rate), str(self.count)], env=netns.owner_env(), preexec_fn=netns.die_with_parent)
        self.started = time.monotonic()
        return self

    def running(self) -> bool:
        return self.sender is not None and self.sender.poll() is None

    def wait(self) -> dict:
        if self._result is not None:
            return self._result
        try:
            self.sender.wait(timeout=self.seconds + 20)
            out, _ = self.receiver.communicate(timeout=self.seconds + 40)
        except subprocess.TimeoutExpired:
            self.stop()
            raise HarnessError("flow did not finish in time") from None
        lines = [l for l in out.splitlines() if l.startswith("{")]
        if not lines:
            raise HarnessError(f"flow receiver printed no result: {out!r}")
        self._result = json.loads(lines[-1])
        return self._result

    result = wait

    def stop(self):
        for p in (self.sender, self.receiver):
            if p is not None and p.poll() is None:
                netns.stop_pids([p.pid], 2)

    def __enter__(self) -> "Flow":
        return self.start()

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.stop()
        return False


def assert_lossless(r: dict, what: str):
    assert r["sent"] > 0 and r["end_seen"], f"{what}: the flow did not complete: {r}"
    assert r["lost_count"] == 0, f"{what}: {r['lost_count']} of {r['sent']} lost, first {r['lost'][:20]}"
    assert not r["dups"], f"{what}: duplicates {r['dups'][:20]}"
    assert r["received"] == r["sent"], r


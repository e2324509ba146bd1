"""A small client for strongSwan's vici protocol (the socket swanctl talks to).

Used for queries whose text output would be ambiguous to parse (list-sas:
an identity such as "C=XX, O=x, CN=y" contains spaces, commas and '=').

Wire format (strongSwan's src/libcharon/plugins/vici/README.md):

  packet   = length(u32, big endian, of what follows) type(u8) [name] message
  name     = len(u8) bytes          (CMD_REQUEST, EVENT_REGISTER/UNREGISTER, EVENT)
  message  = element*
  element  = SECTION_START(1) name | SECTION_END(2)
           | KEY_VALUE(3) name value | LIST_START(4) name
           | LIST_ITEM(5) value | LIST_END(6)
  value    = len(u16, big endian) bytes

A message becomes a dict: sections -> dict, key/values -> str, lists ->
list of str. Every read has a deadline; sizes are checked before use.
"""
from __future__ import annotations

import socket
import struct
import time

CMD_REQUEST, CMD_RESPONSE, CMD_UNKNOWN = 0, 1, 2
EVENT_REGISTER, EVENT_UNREGISTER, EVENT_CONFIRM, EVENT_UNKNOWN, EVENT = 3, 4, 5, 6, 7
SECTION_START, SECTION_END, KEY_VALUE, LIST_START, LIST_ITEM, LIST_END = 1, 2, 3, 4, 5, 6
MAX_PACKET = 512 * 1024


class ViciError(RuntimeError):
    pass


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ViciError("truncated vici message")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("!H", self.take(2))[0]

    def name(self) -> str:
        return self.take(self.u8()).decode(errors="replace")

    def value(self) -> str:
        return self.take(self.u16()).decode(errors="replace")

    def done(self) -> bool:
        return self.pos >= len(self.data)


def decode_message(data: bytes) -> dict:
    r = _Reader(data)
    root: dict = {}
    stack = [root]
    current_list: list | None = None
    while not r.done():
        t = r.u8()
        if t == SECTION_START:
            sec: dict = {}
            stack[-1][r.name()] = sec
            stack.append(sec)
            if len(stack) > 64:
                raise ViciError("vici sections nested too deep")
        elif t == SECTION_END:
            if len(stack) == 1:
                raise ViciError("unbalanced vici section end")
            stack.pop()
        elif t == KEY_VALUE:
            k = r.name()
            stack[-1][k] = r.value()
        elif t == LIST_START:
            current_list = []
            stack[-1][r.name()] = current_list
        elif t == LIST_ITEM:
            if current_list is None:
                raise ViciError("vici list item outside a list")
            current_list.append(r.value())
        elif t == LIST_END:
            current_list = None
        else:
            raise ViciError(f"unknown vici element type {t}")
    if len(stack) != 1:
        raise ViciError("unterminated vici section")
    return root


def encode_message(msg: dict) -> bytes:
    out = bytearray()

    def name(n: str):
        b = n.encode()
        if len(b) > 255:
            raise ViciError(f"vici name too long: {n}")
        out.append(len(b))
        out.extend(b)

    def value(v):
        b = (v if isinstance(v, bytes) else str(v).encode())
        if len(b) > 0xFFFF:
            raise ViciError("vici value too long")
        out.extend(struct.pack("!H", len(b)))
        out.extend(b)

    def walk(d: dict):
        for k, v in d.items():
            if isinstance(v, dict):
                out.append(SECTION_START)
                name(k)
                walk(v)
                out.append(SECTION_END)
            elif isinstance(v, (list, tuple)):
                out.append(LIST_START)
                name(k)
                for item in v:
                    out.append(LIST_ITEM)
                    value(item)
                out.append(LIST_END)
            else:
                out.append(KEY_VALUE)
                name(k)
                value("yes" if v is True else "no" if v is False else v)

    walk(msg)
    return bytes(out)


class Session:
    """One connection to a vici socket (a filesystem path; works across
    network namespaces)."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise ViciError(f"cannot connect to vici socket {path}: {e}") from e

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, ptype: int, name: str | None, msg: dict | None = None):
        body = bytes([ptype])
        if name is not None:
            nb = name.encode()
            body += bytes([len(nb)]) + nb
        body += encode_message(msg or {})
        self.sock.sendall(struct.pack("!I", len(body)) + body)

    def _recv_exact(self, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ViciError("vici: timed out")
            self.sock.settimeout(left)
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ViciError("vici: connection closed")
            buf.extend(chunk)
        return bytes(buf)

    def _recv(self, deadline: float) -> tuple[int, str | None, dict]:
        (length,) = struct.unpack("!I", self._recv_exact(4, deadline))
        if length < 1 or length > MAX_PACKET:
            raise ViciError(f"vici: bad packet length {length}")
        r = _Reader(self._recv_exact(length, deadline))
        ptype = r.u8()
        name = r.name() if ptype == EVENT else None
        return ptype, name, decode_message(r.data[r.pos:])

    def request(self, command: str, msg: dict | None = None) -> dict:
        """A plain command; returns its response message."""
        deadline = time.monotonic() + self.timeout
        self._send(CMD_REQUEST, command, msg)
        ptype, _, resp = self._recv(deadline)
        if ptype == CMD_UNKNOWN:
            raise ViciError(f"vici: unknown command {command}")
        if ptype != CMD_RESPONSE:
            raise ViciError(f"vici: unexpected packet type {ptype}")
        return resp

    def streamed(self, command: str, event: str, msg: dict | None = None) -> tuple[list, dict]:
        """A command that streams `event` messages before its response
        (list-sas, list-conns, list-certs...). Returns (events, response)."""
        deadline = time.monotonic() + self.timeout
        self._send(EVENT_REGISTER, event)
        ptype, _, _ = self._recv(deadline)
        if ptype != EVENT_CONFIRM:
            raise ViciError(f"vici: cannot register for {event} (type {ptype})")
        self._send(CMD_REQUEST, command, msg)
        events = []
        while True:
            ptype, name, m = self._recv(deadline)
            if ptype == EVENT and name == event:
                events.append(m)
                if len(events) > 10000:
                    raise ViciError("vici: too many events")
            elif ptype == CMD_RESPONSE:
                resp = m
                break
            elif ptype == CMD_UNKNOWN:
                raise ViciError(f"vici: unknown command {command}")
            else:
                raise ViciError(f"vici: unexpected packet type {ptype}")
        self._send(EVENT_UNREGISTER, event)
        self._recv(deadline)
        return events, resp

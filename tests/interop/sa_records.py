"""The SA records ravelin-iked's standalone SA sink writes: one JSON object per
line, in a file, in the order the daemon installed and removed SAs.

    {"event": "install"|"remove", "connection": "gw", "child": "net",
     "reqid": 1, "direction": "in"|"out", "spi": "0x1234abcd",
     "mode": "tunnel"|"transport",
     "encr": "AES_GCM_16"|"AES_CBC"|"CHACHA20_POLY1305", "encr_key_bits": 256,
     "encr_key": "<hex; for AES_GCM_16 and CHACHA20_POLY1305 the 4-byte salt
                  is appended>",
     "integ": "HMAC_SHA2_256_128"|null, "integ_key": "<hex>"|null,
     "esn": false, "local": "198.18.10.1", "remote": "198.18.10.2",
     "udp_encap": true, "local_port": 4500, "remote_port": 4500,
     "local_ts": ["198.19.10.0/24"], "remote_ts": ["198.19.20.0/24"]}

"local" is always this gateway: for an "out" SA packets go local -> remote,
for an "in" SA they come remote -> local. A "remove" event repeats the
record of the SA it removes and is matched to it by direction and SPI.

The stand-in for the sink in the self-test (charon_keys.py) writes the same
format, so the reader here is exercised before the daemon exists.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path

# encryption: (key bits allowed, salt bytes appended, AEAD)
ENCR = {
    "AES_GCM_16": ((128, 192, 256), 4, True),
    "AES_CBC": ((128, 192, 256), 0, False),
    "CHACHA20_POLY1305": ((256,), 4, True),
}
# integrity: key bytes
INTEG = {
    "HMAC_SHA1_96": 20,
    "HMAC_SHA2_256_128": 32,
    "HMAC_SHA2_384_192": 48,
    "HMAC_SHA2_512_256": 64,
}
MAX_LINE = 64 * 1024
MAX_RECORDS = 100000


class SaRecordError(ValueError):
    pass


@dataclasses.dataclass
class SaRecord:
    event: str
    connection: str
    child: str
    reqid: int
    direction: str
    spi: int                        # as an int here; "0x%08x" in the file
    mode: str
    encr: str
    encr_key_bits: int
    encr_key: bytes
    integ: str | None
    integ_key: bytes | None
    esn: bool
    local: str
    remote: str
    udp_encap: bool
    local_port: int
    remote_port: int
    local_ts: list[str]
    remote_ts: list[str]

    @property
    def spi_hex(self) -> str:
        return f"0x{self.spi:08x}"

    @property
    def salt(self) -> bytes:
        return self.encr_key[len(self.encr_key) - ENCR[self.encr][1]:] if ENCR[self.encr][1] \
            else b""

    @property
    def aead(self) -> bool:
        return ENCR[self.encr][2]

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["spi"] = self.spi_hex
        d["encr_key"] = self.encr_key.hex()
        d["integ_key"] = self.integ_key.hex() if self.integ_key is not None else None
        return json.dumps(d)

    @classmethod
    def from_dict(cls, d: dict) -> "SaRecord":
        """Validate one record; SaRecordError names the first bad field."""
        if not isinstance(d, dict):
            raise SaRecordError("record is not a JSON object")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in d]
        if missing:
            raise SaRecordError(f"missing fields: {', '.join(missing)}")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise SaRecordError(f"unknown fields: {', '.join(unknown)}")

        def need(name, typ, choices=None):
            v = d[name]
            if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
                raise SaRecordError(f"{name}: expected {typ.__name__}, got {v!r}")
            if choices is not None and v not in choices:
                raise SaRecordError(f"{name}: {v!r} not one of {sorted(choices)}")
            return v

        def hexbytes(name):
            v = need(name, str)
            try:
                return bytes.fromhex(v)
            except ValueError:
                raise SaRecordError(f"{name}: not hex") from None

        def address(name):
            v = need(name, str)
            try:
                ipaddress.ip_address(v)
            except ValueError:
                raise SaRecordError(f"{name}: {v!r} is not an IP address") from None
            return v

        def port(name):
            v = need(name, int)
            if not 0 < v < 65536:
                raise SaRecordError(f"{name}: {v} out of range")
            return v

        def ts_list(name):
            v = need(name, list)
            for t in v:
                if not isinstance(t, str) or not t:
                    raise SaRecordError(f"{name}: bad selector {t!r}")
            return list(v)

        spi_text = need("spi", str)
        try:
            spi = int(spi_text, 16)
        except ValueError:
            raise SaRecordError(f"spi: {spi_text!r} is not hex") from None
        if not spi_text.startswith("0x") or not 0 < spi <= 0xFFFFFFFF:
            raise SaRecordError(f"spi: {spi_text!r} must be 0x followed by 1..8 hex digits, not 0")
        encr = need("encr", str, ENCR)
        bits = need("encr_key_bits", int, ENCR[encr][0])
        key = hexbytes("encr_key")
        want = bits // 8 + ENCR[encr][1]
        if len(key) != want:
            raise SaRecordError(f"encr_key: {len(key)} bytes, {encr}/{bits} needs {want}"
                                + (" (key + 4-byte salt)" if ENCR[encr][1] else ""))
        integ = d["integ"]
        integ_key = None
        if ENCR[encr][2]:
            if integ is not None or d["integ_key"] is not None:
                raise SaRecordError(f"integ: {encr} is an AEAD, integ and integ_key must be null")
        else:
            integ = need("integ", str, INTEG)
            integ_key = hexbytes("integ_key")
            if len(integ_key) != INTEG[integ]:
                raise SaRecordError(f"integ_key: {len(integ_key)} bytes, {integ} needs "
                                    f"{INTEG[integ]}")
        reqid = need("reqid", int)
        if reqid < 0:
            raise SaRecordError("reqid: negative")
        return cls(
            event=need("event", str, {"install", "remove"}),
            connection=need("connection", str), child=need("child", str), reqid=reqid,
            direction=need("direction", str, {"in", "out"}), spi=spi,
            mode=need("mode", str, {"tunnel", "transport"}), encr=encr, encr_key_bits=bits,
            encr_key=key, integ=integ, integ_key=integ_key, esn=need("esn", bool),
            local=address("local"), remote=address("remote"), udp_encap=need("udp_encap", bool),
            local_port=port("local_port"), remote_port=port("remote_port"),
            local_ts=ts_list("local_ts"), remote_ts=ts_list("remote_ts"))


def parse_sa_lines(text: str, name: str = "<sa sink>") -> list[SaRecord]:
    """All records of a sink file's text; SaRecordError says 'name:line: why'."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            raise SaRecordError(f"{name}:{n}: line longer than {MAX_LINE} bytes")
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise SaRecordError(f"{name}:{n}: not JSON: {e}") from None
        try:
            out.append(SaRecord.from_dict(d))
        except SaRecordError as e:
            raise SaRecordError(f"{name}:{n}: {e}") from None
        if len(out) > MAX_RECORDS:
            raise SaRecordError(f"{name}: more than {MAX_RECORDS} records")
    return out


def read_sa_file(path) -> list[SaRecord]:
    """Records of a sink file (missing file: no records yet). A last line
    without its newline is still being written and is left for later."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        return []
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    return parse_sa_lines(text, str(p))


def write_sa_file(path, records: list[SaRecord], append: bool = True):
    with open(path, "a" if append else "w") as f:
        for r in records:
            f.write(r.to_json() + "\n")


def installed(records: list[SaRecord]) -> list[SaRecord]:
    """The SAs installed and not removed, in install order."""
    live: dict[tuple[str, int], SaRecord] = {}
    for r in records:
        key = (r.direction, r.spi)
        if r.event == "install":
            live.pop(key, None)
            live[key] = r
        else:
            live.pop(key, None)
    return list(live.values())


def find(records: list[SaRecord], direction: str, connection: str | None = None,
         child: str | None = None, spi: int | None = None) -> SaRecord | None:
    """The newest installed (not removed) SA matching the filters."""
    for r in reversed(installed(records)):
        if r.direction == direction and (connection is None or r.connection == connection) \
                and (child is None or r.child == child) and (spi is None or r.spi == spi):
            return r
    return None

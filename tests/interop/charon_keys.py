"""CHILD_SA keys from a charon log written at level 4 (ike/chd = 4), turned
into SA records (sa_records.py) - the stand-in for ravelin-iked's SA sink.

Debian's 5.9.8 has no save-keys plugin, so the keys come from the hex dumps
charon logs while deriving them. What one worker thread logs for one
CHILD_SA, in this order (other threads' lines interleave, hence per-thread
state; "<gw|1>" is the IKE SA tag from ike_name = yes):

  13[ENC] <gw|1> parsed IKE_AUTH response 1 [ IDr AUTH SA TSi TSr ]
  13[CHD] <gw|1>   using AES_GCM_16 for encryption
  13[CHD] <gw|1> encryption initiator key => 36 bytes @ 0x...
  13[CHD] <gw|1>    0: E2 9D C5 12 ...  (16 bytes a line)
  13[CHD] <gw|1> encryption responder key => 36 bytes @ 0x...
  13[CHD] <gw|1> integrity initiator key => 32 bytes @ 0x...   (non-AEAD only)
  13[IKE] <gw|1> CHILD_SA net{1} established with SPIs f88201b3_i c6ebc868_o and TS ...
     (a rekey initiator logs "inbound CHILD_SA ..." and "outbound CHILD_SA ...")

"initiator"/"responder" refer to the exchange that created the CHILD_SA
(IKE_AUTH or CREATE_CHILD_SA), not to the IKE SA: the initiator's key
protects initiator -> responder traffic. The thread that parsed a
*response* initiated that exchange, so its outbound SA uses the initiator
keys; the thread that parsed a *request* is the responder and its outbound
SA uses the responder keys. AEAD keys are logged with the salt appended
(AES-GCM: key || 4-byte salt), the same layout as the SA record's encr_key.
"""
from __future__ import annotations

import dataclasses
import re

from .sa_records import SaRecord

_LINE = re.compile(r"^(?:\S+ )?(?P<thr>\d+)\[(?P<grp>[A-Z]+)\] (?:<(?P<tag>[^>]*)> )?(?P<msg>.*)$")
_PARSED = re.compile(r"^parsed (?P<xchg>\S+) (?P<kind>request|response) \d+")
_USING = re.compile(r"^\s*using (?P<alg>\S+) for (?P<what>encryption|integrity)")
_KEY = re.compile(r"^(?P<what>encryption|integrity) (?P<who>initiator|responder) key => "
                  r"(?P<len>\d+) bytes")
_HEX = re.compile(r"^\s+\d+: (?P<hex>(?:[0-9A-F]{2} ){1,16})")
_ESTABLISHED = re.compile(r"^(?:inbound |outbound )?CHILD_SA (?P<name>.+)\{(?P<uid>\d+)\} "
                          r"established with SPIs (?P<spi_i>[0-9a-f]+)_i (?P<spi_o>[0-9a-f]+)_o")


@dataclasses.dataclass
class ChildKeys:
    name: str
    uniqueid: int
    spi_in: int
    spi_out: int
    role: str                       # "initiator"/"responder" of the creating exchange
    encr_alg: str | None
    integ_alg: str | None
    encr_in: bytes
    encr_out: bytes
    integ_in: bytes | None
    integ_out: bytes | None


class _Thread:
    def __init__(self):
        self.role = None
        self.encr_alg = None
        self.integ_alg = None
        self.keys: dict[tuple[str, str], bytearray] = {}
        self.dump: tuple[bytearray, int] | None = None   # (buffer, bytes expected)


def parse_child_keys(log_text: str) -> list[ChildKeys]:
    """Every CHILD_SA whose keys were logged, in log order."""
    threads: dict[str, _Thread] = {}
    out: list[ChildKeys] = []
    seen: set[tuple[int, int, int]] = set()
    for line in log_text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        t = threads.setdefault(m["thr"], _Thread())
        msg = m["msg"]
        if t.dump is not None:
            buf, want = t.dump
            h = _HEX.match(msg)
            if h and len(buf) < want:
                buf.extend(bytes.fromhex(h["hex"].replace(" ", "")))
                if len(buf) >= want:
                    t.dump = None
                continue
            t.dump = None
        if p := _PARSED.match(msg):
            # a new message on this thread: forget keys of an earlier one
            t.role = "initiator" if p["kind"] == "response" else "responder"
            t.keys, t.encr_alg, t.integ_alg = {}, None, None
        elif u := _USING.match(msg):
            if u["what"] == "encryption":
                t.encr_alg = u["alg"]
            else:
                t.integ_alg = u["alg"]
        elif k := _KEY.match(msg):
            buf = bytearray()
            t.keys[(k["what"], k["who"])] = buf
            t.dump = (buf, int(k["len"]))
        elif e := _ESTABLISHED.match(msg):
            spi_in, spi_out = int(e["spi_i"], 16), int(e["spi_o"], 16)
            ident = (int(e["uid"]), spi_in, spi_out)
            if ident in seen:
                continue
            if t.role is None or ("encryption", "initiator") not in t.keys \
                    or ("encryption", "responder") not in t.keys:
                continue                   # keys not logged (level < 4)
            seen.add(ident)
            mine = "initiator" if t.role == "initiator" else "responder"
            theirs = "responder" if mine == "initiator" else "initiator"
            integ_out = t.keys.get(("integrity", mine))
            integ_in = t.keys.get(("integrity", theirs))
            out.append(ChildKeys(
                name=e["name"], uniqueid=ident[0], spi_in=spi_in, spi_out=spi_out, role=t.role,
                encr_alg=t.encr_alg, integ_alg=t.integ_alg,
                encr_in=bytes(t.keys[("encryption", theirs)]),
                encr_out=bytes(t.keys[("encryption", mine)]),
                integ_in=bytes(integ_in) if integ_in is not None else None,
                integ_out=bytes(integ_out) if integ_out is not None else None))
    return out


def sa_records(charon, conn: str, child: str, event: str = "install",
               child_sa: dict | None = None) -> dict[str, SaRecord]:
    """{"in": SaRecord, "out": SaRecord} for the newest INSTALLED CHILD_SA
    `child` of `conn` on this charon (or the given list-sas child dict),
    with keys from its level-4 log and the rest from list-sas."""
    from .netns import HarnessError
    ike = None
    for sa in charon.list_sas():
        if sa["name"] != conn:
            continue
        for c in sa["child-sas"]:
            if child_sa is not None:
                if c["uniqueid"] == child_sa["uniqueid"]:
                    ike, cs = sa, c
            elif c.get("name") == child and c.get("state") == "INSTALLED":
                if ike is None or c["uniqueid"] > cs["uniqueid"]:
                    ike, cs = sa, c
    if ike is None:
        raise HarnessError(f"{charon.name}: no CHILD_SA {conn}/{child} listed")
    spi_in, spi_out = int(cs["spi-in"], 16), int(cs["spi-out"], 16)
    keys = [k for k in parse_child_keys(charon.log_text())
            if k.spi_in == spi_in and k.spi_out == spi_out]
    if not keys:
        raise HarnessError(f"{charon.name}: keys of CHILD_SA {conn}/{child} "
                           f"({spi_in:08x}/{spi_out:08x}) not in the log (log_level 4?)")
    k = keys[-1]
    encr = cs["encr-alg"]
    bits = cs.get("encr-keysize")
    salt = 4 if encr in ("AES_GCM_16", "CHACHA20_POLY1305") else 0
    if not isinstance(bits, int):
        bits = (len(k.encr_out) - salt) * 8
    integ = cs.get("integ-alg")

    def record(direction: str) -> SaRecord:
        d = {
            "event": event, "connection": conn, "child": cs["name"], "reqid": cs["reqid"],
            "direction": direction,
            "spi": f"0x{spi_in if direction == 'in' else spi_out:08x}",
            "mode": cs["mode"].lower(), "encr": encr, "encr_key_bits": bits,
            "encr_key": (k.encr_in if direction == "in" else k.encr_out).hex(),
            "integ": integ,
            "integ_key": None if integ is None else
            (k.integ_in if direction == "in" else k.integ_out).hex(),
            "esn": cs.get("esn") == "1",
            "local": ike["local-host"], "remote": ike["remote-host"],
            "udp_encap": cs.get("encap") == "yes",
            "local_port": ike["local-port"], "remote_port": ike["remote-port"],
            "local_ts": list(cs.get("local-ts", [])), "remote_ts": list(cs.get("remote-ts", [])),
        }
        return SaRecord.from_dict(d)

    return {"in": record("in"), "out": record("out")}

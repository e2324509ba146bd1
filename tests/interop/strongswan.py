"""strongSwan 5.9.8 charon instances for interop tests, one per namespace.

Each Charon has its own directory with a private strongswan.conf (given to
charon and swanctl through STRONGSWAN_CONF, so nothing from /etc is read),
its own vici socket, log file, swanctl.conf and credential folders, and its
own /run (charon's pid file path, /var/run/charon.pid, is compiled in: a
bind mount in the mount namespace that `ip netns exec` creates keeps the
instances apart).

Facts this relies on (strongSwan 5.9.8 on a kernel without ESP):
* kernel-libipsec does ESP in user space through a TUN device and must be
  loaded before kernel-netlink (the first kernel-ipsec backend wins);
  kernel-netlink still does addresses and routes.
* libipsec forces UDP encapsulation (it fakes NAT-D): ESP always travels in
  UDP 4500, tunnel mode only, no ESN.
* 5.9.8 needs the kdf plugin when plugins are listed explicitly.
* charon takes ~1.5 s to exit after SIGTERM; stop_all() overlaps shutdowns.

Configuration trees (nested dicts) are rendered by render_conf() in the
swanctl.conf syntax that ravelin-iked also reads.
"""
from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from . import netns, vici
from .netns import HarnessError

CHARON = "/usr/lib/ipsec/charon"
SWANCTL = "/usr/sbin/swanctl"
PLUGINS = ("random nonce openssl aes sha1 sha2 hmac gcm chapoly kdf curve25519 mgf1 pem pkcs1 "
           "pkcs8 x509 pubkey revocation constraints kernel-libipsec kernel-netlink "
           "socket-default vici")
# every credential folder swanctl --load-all opens (it complains about missing ones)
SWANCTL_DIRS = ("x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private",
                "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12")
CLIENT_PLUGINS = "random nonce openssl sha1 sha2 mgf1 pem pkcs1 pkcs8 x509 pubkey"


# --- swanctl.conf syntax -------------------------------------------------------

_BARE = re.compile(r"^[A-Za-z0-9_.:/@%+*\-\[\]]+$")


def _scalar(v) -> str:
    if v is True:
        return "yes"
    if v is False:
        return "no"
    s = str(v)
    if _BARE.match(s):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_conf(tree: dict, indent: int = 0) -> str:
    """Nested dict -> strongswan.conf/swanctl.conf text. dict values become
    sections, lists comma-separated values, bools yes/no, None is skipped."""
    pad = "\t" * indent
    out = []
    for k, v in tree.items():
        if v is None:
            continue
        if isinstance(v, dict):
            out.append(f"{pad}{k} {{")
            out.append(render_conf(v, indent + 1))
            out.append(f"{pad}}}")
        elif isinstance(v, (list, tuple)):
            out.append(f"{pad}{k} = {', '.join(str(x) for x in v)}")
        else:
            out.append(f"{pad}{k} = {_scalar(v)}")
    return "\n".join(line for line in out if line != "")


def deep_merge(base: dict, extra: dict | None) -> dict:
    """A copy of `base` with `extra` merged in (sections merge, values replace)."""
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def child(local_ts, remote_ts, esp_proposals="aes256gcm16-x25519", mode="tunnel",
          start_action="none", rekey_time="1h", life_time=None, rand_time=None,
          dpd_action="clear", close_action="none", extra: dict | None = None) -> dict:
    """A children.<name> section. TS may be a string or a list."""
    c = {
        "mode": mode,
        "local_ts": local_ts if isinstance(local_ts, (list, tuple)) else [local_ts],
        "remote_ts": remote_ts if isinstance(remote_ts, (list, tuple)) else [remote_ts],
        "esp_proposals": esp_proposals,
        "rekey_time": rekey_time,
        "life_time": life_time,
        "rand_time": rand_time,
        "start_action": start_action,
        "dpd_action": dpd_action,
        "close_action": close_action,
    }
    return deep_merge(c, extra)


def connection(local_addrs, remote_addrs, local_id, remote_id, children: dict,
               auth="psk", proposals="aes256gcm16-prfsha256-x25519",
               local_certs=None, remote_cacerts=None, rekey_time="4h", reauth_time="0s",
               over_time=None, rand_time=None, dpd_delay="0s", fragmentation="yes",
               keyingtries=1, unique="no", encap=False, extra: dict | None = None) -> dict:
    """A connections.<name> section. auth: "psk" or "pubkey" (then
    local_certs are file names in x509/, remote_cacerts in x509ca/)."""
    local = {"auth": auth, "id": local_id}
    remote = {"auth": auth, "id": remote_id}
    if local_certs:
        local["certs"] = list(local_certs)
    if remote_cacerts:
        remote["cacerts"] = list(remote_cacerts)
    c = {
        "version": 2,
        "local_addrs": local_addrs,
        "remote_addrs": remote_addrs,
        "proposals": proposals,
        "encap": encap,
        "mobike": False,
        "fragmentation": fragmentation,
        "dpd_delay": dpd_delay,
        "keyingtries": keyingtries,
        "unique": unique,
        "rekey_time": rekey_time,
        "reauth_time": reauth_time,
        "over_time": over_time,
        "rand_time": rand_time,
        "local": local,
        "remote": remote,
        "children": children,
    }
    return deep_merge(c, extra)


def psk_secret(ids: list[str], secret: str) -> dict:
    """A secrets.ike-<x> section for these identities."""
    return {f"id-{i}": ident for i, ident in enumerate(ids)} | {"secret": secret}


def swanctl_conf(connections: dict, secrets: dict | None = None) -> dict:
    tree = {"connections": connections}
    if secrets:
        tree["secrets"] = secrets
    return tree


# --- list-sas ------------------------------------------------------------------

_INT_KEYS = {"uniqueid", "reqid", "version", "local-port", "remote-port", "encr-keysize",
             "integ-keysize", "established", "rekey-time", "reauth-time", "life-time",
             "install-time", "bytes-in", "bytes-out", "packets-in", "packets-out", "use-in",
             "use-out"}


def _normalise(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if k in _INT_KEYS and isinstance(v, str) and v.isdigit():
            out[k] = int(v)
        else:
            out[k] = v
    return out


def parse_list_sas(events: list[dict]) -> list[dict]:
    """vici list-sa events -> [IKE SA dict]. Each IKE SA dict has the vici keys
    (state, local-host, remote-host, local-port, initiator-spi, encr-alg,
    encr-keysize, integ-alg, prf-alg, dh-group, nat-remote, ...; numbers as
    int) plus "name", and "child-sas" as a list of child dicts (name,
    uniqueid, reqid, state, mode, encap, spi-in, spi-out, encr-alg,
    encr-keysize, integ-alg, dh-group, bytes-in/out, packets-in/out,
    local-ts, remote-ts, ...)."""
    sas = []
    for ev in events:
        for name, body in ev.items():
            if not isinstance(body, dict):
                continue
            ike = _normalise({k: v for k, v in body.items() if k != "child-sas"})
            ike["name"] = name
            children = body.get("child-sas") or {}
            ike["child-sas"] = [_normalise(c) | {"key": k} for k, c in children.items()
                                if isinstance(c, dict)]
            sas.append(ike)
    return sas


# --- charon --------------------------------------------------------------------

class Charon:
    """One charon in namespace `ns`, files under workdir/name.

    log_level applies to the ike and chd subsystems (4 logs the derived keys,
    which charon_keys.py reads). options are merged into the charon { }
    section of strongswan.conf (e.g. {"fragment_size": 1280})."""

    def __init__(self, ns: str, workdir: Path, name: str = "charon", log_level: int = 2,
                 options: dict | None = None):
        self.ns, self.name = ns, name
        self.dir = Path(workdir) / name
        self.conf = self.dir / "strongswan.conf"
        self.log_path = self.dir / "charon.log"
        self.stdout_path = self.dir / "charon.stdout"
        self.vici_path = self.dir / "charon.vici"
        self.run_dir = self.dir / "run"
        self.swanctl_dir = self.dir / "swanctl"
        self.swanctl_conf = self.swanctl_dir / "swanctl.conf"
        self.log_level = log_level
        self.options = options or {}
        self.proc: subprocess.Popen | None = None
        for sub in SWANCTL_DIRS:
            (self.swanctl_dir / sub).mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    # files

    def strongswan_conf_tree(self) -> dict:
        lvl = self.log_level
        charon = {
            "load_modular": False,
            "load": PLUGINS,
            "port": 500,
            "port_nat_t": 4500,
            "routing_table": 220,
            "routing_table_prio": 220,
            "send_vendor_id": False,
            # fail fast but bounded: 1 + 1.5 + 2.25 + 3.4 s before giving up
            "retransmit_timeout": 1.0,
            "retransmit_base": 1.5,
            "retransmit_tries": 3,
            "filelog": {
                "harness": {
                    "path": str(self.log_path),
                    "append": False,
                    "flush_line": True,
                    "time_format": "%H:%M:%S",
                    "time_add_ms": True,
                    "ike_name": True,
                    "default": 1,
                    "ike": lvl, "chd": lvl, "cfg": 2, "knl": 1, "net": 1, "enc": 1,
                    "esp": 1, "lib": 1,
                },
            },
            "plugins": {
                "vici": {"socket": f"unix://{self.vici_path}"},
                "kernel-libipsec": {"allow_peer_ts": False},
            },
        }
        return {
            "charon": deep_merge(charon, self.options),
            "swanctl": {"socket": f"unix://{self.vici_path}", "load": CLIENT_PLUGINS},
            "pki": {"load": CLIENT_PLUGINS},
        }

    def write_config(self, tree_or_text):
        """swanctl.conf from a tree (render_conf) or literal text."""
        text = tree_or_text if isinstance(tree_or_text, str) else render_conf(tree_or_text)
        self.swanctl_conf.write_text(text + "\n")

    def install_cert(self, path) -> str:
        """Copy a certificate into x509/; returns the name for local.certs."""
        return self._install(path, "x509")

    def install_ca(self, path) -> str:
        """Copy a CA (root or intermediate) into x509ca/; the name for cacerts."""
        return self._install(path, "x509ca")

    def install_key(self, path) -> str:
        return self._install(path, "private")

    def _install(self, path, sub: str) -> str:
        path = Path(path)
        shutil.copyfile(path, self.swanctl_dir / sub / path.name)
        return path.name

    # process

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 5.0) -> "Charon":
        if self.running():
            raise HarnessError(f"charon {self.name} already running")
        self.conf.write_text(render_conf(self.strongswan_conf_tree()) + "\n")
        self.vici_path.unlink(missing_ok=True)
        (self.run_dir / "charon.pid").unlink(missing_ok=True)
        out = open(self.stdout_path, "ab")
        # ip netns exec -> sh -> charon all exec in place: proc.pid is charon
        cmd = ["ip", "netns", "exec", self.ns, "sh", "-c",
               'mount --bind "$1" /run && exec "$2"', "charon-start", str(self.run_dir), CHARON]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT,
                                     env=netns.owner_env({"STRONGSWAN_CONF": str(self.conf)}),
                                     preexec_fn=netns.die_with_parent)
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"charon {self.name} exited with {self.proc.returncode}\n"
                                   + self.logs(40))
            if self.vici_path.exists():
                try:
                    with vici.Session(str(self.vici_path), timeout=2) as s:
                        s.request("version")
                    break
                except vici.ViciError:
                    pass
            time.sleep(0.02)
        else:
            self.stop()
            raise HarnessError(f"charon {self.name}: no vici socket within {timeout} s\n"
                               + self.logs(40))
        exe = os.readlink(f"/proc/{self.proc.pid}/exe")
        if not exe.endswith("/charon"):
            self.stop()
            raise HarnessError(f"pid {self.proc.pid} is {exe}, not charon")
        return self

    def stop(self, timeout: float = 5.0):
        stop_all([self], timeout)

    # swanctl

    def swanctl(self, command: str, *args: str, timeout: float = 20, check: bool = True
                ) -> subprocess.CompletedProcess:
        """`swanctl <command> --uri <ours> args...` (the command must come first)."""
        cmd = [SWANCTL, command, "--uri", f"unix://{self.vici_path}", *args]
        env = netns.owner_env({"STRONGSWAN_CONF": str(self.conf)})
        return netns.run(cmd, check=check, timeout=timeout, env=env)

    def load_all(self):
        p = self.swanctl("--load-all", "--noprompt", "--file", str(self.swanctl_conf),
                         check=False)
        if p.returncode != 0 or "failed" in p.stdout + p.stderr:
            raise HarnessError(f"swanctl --load-all ({self.name}) -> {p.returncode}\n"
                               f"{p.stdout}{p.stderr}")
        return p.stdout

    def initiate(self, child: str | None = None, ike: str | None = None, timeout: int = 10,
                 check: bool = True) -> subprocess.CompletedProcess:
        """swanctl --initiate; waits at most `timeout` s for the result."""
        args = (["--child", child] if child else []) + (["--ike", ike] if ike else [])
        p = self.swanctl("--initiate", *args, "--timeout", str(timeout), timeout=timeout + 10,
                         check=False)
        if check and p.returncode != 0:
            raise HarnessError(f"initiate {child or ike} on {self.name} failed "
                               f"(exit {p.returncode})\n{p.stdout}{p.stderr}\n" + self.logs(60))
        return p

    def terminate(self, ike: str | None = None, child: str | None = None, timeout: int = 5,
                  force: bool = False, check: bool = True) -> subprocess.CompletedProcess:
        args = (["--ike", ike] if ike else []) + (["--child", child] if child else [])
        if force:
            args.append("--force")
        return self.swanctl("--terminate", *args, "--timeout", str(timeout),
                            timeout=timeout + 10, check=check)

    def rekey(self, child: str | None = None, ike: str | None = None, reauth: bool = False,
              check: bool = True) -> subprocess.CompletedProcess:
        """Queue a rekey (swanctl returns at once); see wait_child()."""
        args = (["--child", child] if child else []) + (["--ike", ike] if ike else [])
        if reauth:
            args.append("--reauth")
        return self.swanctl("--rekey", *args, check=check)

    # state

    def list_sas(self, ike: str | None = None) -> list[dict]:
        """IKE SAs (see parse_list_sas), straight from vici."""
        msg = {"ike": ike} if ike else None
        with vici.Session(str(self.vici_path)) as s:
            events, _ = s.streamed("list-sas", "list-sa", msg)
        return parse_list_sas(events)

    def ike_sa(self, name: str, state: str | None = "ESTABLISHED") -> dict | None:
        """The newest IKE SA of connection `name` (in `state`, if given)."""
        found = [s for s in self.list_sas() if s["name"] == name
                 and (state is None or s.get("state") == state)]
        return max(found, key=lambda s: s["uniqueid"]) if found else None

    def child_sa(self, conn: str, child: str, state: str | None = "INSTALLED",
                 exclude_spis=()) -> dict | None:
        """The newest CHILD_SA `child` under an IKE SA of `conn`, ignoring
        those whose spi-in is in exclude_spis."""
        found = []
        for ike in self.list_sas():
            if ike["name"] != conn:
                continue
            for c in ike["child-sas"]:
                if c.get("name") == child and (state is None or c.get("state") == state) \
                        and c.get("spi-in") not in exclude_spis:
                    found.append(c)
        return max(found, key=lambda c: c["uniqueid"]) if found else None

    def wait_ike(self, name: str, timeout: float = 10, state: str = "ESTABLISHED") -> dict:
        sa = netns.wait_until(lambda: self.ike_sa(name, state), timeout)
        if not sa:
            raise HarnessError(f"{self.name}: no IKE SA {name} in {state} within {timeout} s\n"
                               + self.logs(60))
        return sa

    def wait_child(self, conn: str, child: str, timeout: float = 10,
                   exclude_spis=()) -> dict:
        """Wait for an INSTALLED CHILD_SA (a new one if exclude_spis names the old)."""
        c = netns.wait_until(lambda: self.child_sa(conn, child, exclude_spis=exclude_spis),
                             timeout)
        if not c:
            raise HarnessError(f"{self.name}: no CHILD_SA {conn}/{child} within {timeout} s\n"
                               + self.logs(60))
        return c

    def wait_gone(self, name: str, timeout: float = 10):
        if not netns.wait_until(lambda: self.ike_sa(name, None) is None, timeout):
            raise HarnessError(f"{self.name}: IKE SA {name} still present after {timeout} s")

    # logs

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 10) -> re.Match:
        rx = re.compile(pattern)
        m = netns.wait_until(lambda: rx.search(self.log_text()), timeout)
        if not m:
            raise HarnessError(f"{self.name}: /{pattern}/ not logged within {timeout} s")
        return m

    def logs(self, tail: int = 200) -> str:
        """Last lines of stdout and charon.log, for failure reports (key
        hexdumps are left out: they are noise here)."""
        parts = []
        for p in (self.stdout_path, self.log_path):
            try:
                lines = p.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                continue
            lines = [l for l in lines if not re.search(r">\s+\d+: [0-9A-F]{2} ", l)]
            parts.append(f"----- {self.name}: {p} (last {tail} lines) -----")
            parts.extend(lines[-tail:])
        return "\n".join(parts)


def stop_all(charons: list[Charon], timeout: float = 5.0):
    """Stop these charons (only processes this harness started, by PID) with
    overlapping shutdowns; SIGKILL after `timeout` s."""
    procs = [c.proc for c in charons if c.proc is not None]
    netns.stop_pids([p.pid for p in procs if p.poll() is None], timeout)
    for p in procs:
        try:
            p.wait(timeout=2)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"charon pid {p.pid} did not exit") from None
    for c in charons:
        c.proc = None
        c.vici_path.unlink(missing_ok=True)

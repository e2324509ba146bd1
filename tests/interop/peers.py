"""Matching swanctl-shaped configurations for the two gateways of a topology.

site_configs() returns (rav_tree, sw_tree): the Ravelin side's connection
(fed to a stand-in charon now, to ravelin-iked later via ravelin.iked_conf())
and the strongSwan side's, mirror images of each other. Both are nested
dicts for strongswan.render_conf().
"""
from __future__ import annotations

import dataclasses

from . import strongswan as ss
from .netns import Topology

PSK = "ravelin-interop-psk-0123456789abcdef"


@dataclasses.dataclass
class ChildSpec:
    name: str = "net"
    rav_ts: str | list[str] | None = None      # default: the topology's rav_net
    sw_ts: str | list[str] | None = None       # default: sw_net
    esp_proposals: str = "aes256gcm16-x25519"
    rav_extra: dict | None = None              # merged into the rav child section
    sw_extra: dict | None = None


def site_configs(topo: Topology, *, conn: str = "gw", children: list[ChildSpec] | None = None,
                 auth: str = "psk", psk: str = PSK,
                 proposals: str = "aes256gcm16-prfsha256-x25519",
                 rav_id: str | None = None, sw_id: str | None = None,
                 rav_certs=(), sw_certs=(), rav_cacerts=(), sw_cacerts=(),
                 rav_extra: dict | None = None, sw_extra: dict | None = None
                 ) -> tuple[dict, dict]:
    """Connection `conn` between rav and sw. IDs default to the outer
    addresses (rav's own address, even behind NAT). auth="pubkey" uses the
    cert/CA file names given (see pki.install). *_extra are merged into each
    side's connection section (e.g. {"dpd_delay": "2s"})."""
    children = children or [ChildSpec()]
    rav_id = rav_id or topo.rav_outer
    sw_id = sw_id or topo.sw_outer
    rav_children, sw_children = {}, {}
    for c in children:
        rts = c.rav_ts or topo.rav_net
        sts = c.sw_ts or topo.sw_net
        rav_children[c.name] = ss.child(rts, sts, esp_proposals=c.esp_proposals,
                                        extra=c.rav_extra)
        sw_children[c.name] = ss.child(sts, rts, esp_proposals=c.esp_proposals,
                                       extra=c.sw_extra)
    rav = ss.connection(topo.rav_outer, topo.sw_outer, rav_id, sw_id, rav_children, auth=auth,
                        proposals=proposals, local_certs=list(rav_certs) or None,
                        remote_cacerts=list(rav_cacerts) or None, extra=rav_extra)
    sw = ss.connection(topo.sw_outer, topo.rav_seen_as, sw_id, rav_id, sw_children, auth=auth,
                       proposals=proposals, local_certs=list(sw_certs) or None,
                       remote_cacerts=list(sw_cacerts) or None, extra=sw_extra)
    secrets = {f"ike-{conn}": ss.psk_secret([rav_id, sw_id], psk)} if auth == "psk" else None
    return (ss.swanctl_conf({conn: rav}, secrets), ss.swanctl_conf({conn: sw}, secrets))

"""`ravelinctl diagnose` against strongSwan 5.9.8: each failure an operator
meets is provoked with one side's configuration off, with Ravelin as
initiator and as responder, and the diagnosis must name the phase, the
exchange, the notify and who refused, show the peer's proposals or
selectors where Ravelin saw them, and carry the hint in the human output.

Ravelin's connection is configured with keyingtries = 1: one attempt, no
retries, so every test ends by itself. Waiting is polling with a bound.
"""
from __future__ import annotations

import copy
import json

import pytest

from . import netns, peers
from .ravelin import iked_conf

ROLES = ["rav_initiates", "sw_initiates"]
WAIT = 15   # seconds; a failure is seen within a second or two here


def start(pair, charons, ravelin, *, rav=None, sw=None):
    """Mirror-image configs, then `rav(tree)` / `sw(tree)` spoil one side."""
    rav_tree, sw_tree = peers.site_configs(pair)
    rav_tree, sw_tree = copy.deepcopy(rav_tree), copy.deepcopy(sw_tree)  # they share sections
    if rav:
        rav(rav_tree)
    if sw:
        sw(sw_tree)
    charon = charons(pair.sw, "sw")
    charon.write_config(sw_tree)
    charon.load_all()
    return ravelin(pair.rav, iked_conf(rav_tree)), charon


def initiate(role, rav, sw):
    if role == "rav_initiates":
        rav.ctl("initiate", "--ike", "gw", "--child", "net", check=False)
    else:
        sw.initiate("net", "gw", timeout=5, check=False)


def diagnosis(rav) -> dict:
    out = rav.ctl("diagnose", "gw", "--json").stdout
    doc = json.loads(out)
    assert len(doc["diagnoses"]) == 1, doc
    return doc["diagnoses"][0]


def wait_failure(rav, pred=lambda d: True) -> dict:
    """The diagnosis once it reports a failure that satisfies `pred`."""
    got = netns.wait_until(lambda: (lambda d: d if d["failed"] and pred(d) else None)(diagnosis(rav)),
                           WAIT)
    assert got, f"no matching failure within {WAIT} s: {diagnosis(rav)}\n{rav.logs(40)}"
    return got


def human(rav) -> str:
    return rav.ctl("diagnose", "gw").stdout


def expect(d, *, phase, exchange, notify, detected_by, role):
    f = d["failed"]
    assert (f["phase"], f["exchange"], f["notify"], f["detected_by"], f["role"]) == \
        (phase, exchange, notify, detected_by, role), d


def our_role(role):
    return "initiator" if role == "rav_initiates" else "responder"


def set_proposals(tree, value):
    tree["connections"]["gw"]["proposals"] = value


def set_child(tree, key, value):
    tree["connections"]["gw"]["children"]["net"][key] = value


@pytest.mark.parametrize("role", ROLES)
def test_ike_proposal_mismatch_is_phase1_no_proposal_chosen(pair, charons, ravelin, role):
    rav, sw = start(pair, charons, ravelin, sw=lambda t: set_proposals(t, "aes128-sha256-modp2048"))
    initiate(role, rav, sw)
    d = wait_failure(rav)
    refused_by_us = role == "sw_initiates"
    expect(d, phase=1, exchange="IKE_SA_INIT", notify="NO_PROPOSAL_CHOSEN",
           detected_by="local" if refused_by_us else "peer", role=our_role(role))
    assert d["phase1"] == "down" and d["phase2"] == "net: not installed", d
    assert d["proposals"]["ours"]["ike"] == "aes256gcm16-prfsha256-x25519", d
    text = human(rav)
    if refused_by_us:
        assert d["proposals"]["peer"] == {"ike": "aes128-sha256-modp2048", "ike_seen": "offered",
                                          "esp": None, "esp_seen": None}, d
        assert "peer proposed aes128-sha256-modp2048; we accept aes256gcm16-prfsha256-x25519: " \
               "align the IKE proposals" in text, text
    else:
        assert "the peer accepts none of our IKE proposals (aes256gcm16-prfsha256-x25519)" in text, text
    assert "phase 1, IKE_SA_INIT: NO_PROPOSAL_CHOSEN" in text, text


@pytest.mark.parametrize("role", ROLES)
def test_esp_proposal_mismatch_is_phase2_no_proposal_chosen(pair, charons, ravelin, role):
    rav, sw = start(pair, charons, ravelin, sw=lambda t: set_child(t, "esp_proposals", "aes128-sha256"))
    initiate(role, rav, sw)
    d = wait_failure(rav)
    refused_by_us = role == "sw_initiates"
    expect(d, phase=2, exchange="IKE_AUTH", notify="NO_PROPOSAL_CHOSEN",
           detected_by="local" if refused_by_us else "peer", role=our_role(role))
    assert d["failed"]["child"] == "net", d
    # Phase 1 is up, Phase 2 is not: the "tunnel up, no traffic" case.
    assert d["phase1"] == "established" and d["phase2"] == "net: not installed", d
    assert d["children"][0]["state"] == "not installed", d
    text = human(rav)
    if refused_by_us:
        assert d["proposals"]["peer"]["esp"] == "aes128-sha256", d
        assert "peer proposed aes128-sha256; we accept aes256gcm16-x25519 for 'net': " \
               "align the ESP proposals" in text, text
    else:
        assert "the peer accepts none of our ESP proposals for 'net' (aes256gcm16-x25519)" in text, text
    assert "phase 2, IKE_AUTH: NO_PROPOSAL_CHOSEN" in text, text


@pytest.mark.parametrize("role", ROLES)
def test_wrong_psk_is_phase1_authentication_failed(pair, charons, ravelin, role):
    def other_secret(t):
        t["secrets"]["ike-gw"]["secret"] = "not-the-same-secret-at-all"
    rav, sw = start(pair, charons, ravelin, sw=other_secret)
    initiate(role, rav, sw)
    d = wait_failure(rav)
    refused_by_us = role == "sw_initiates"   # the responder checks the initiator's AUTH first
    expect(d, phase=1, exchange="IKE_AUTH", notify="AUTHENTICATION_FAILED",
           detected_by="local" if refused_by_us else "peer", role=our_role(role))
    assert d["phase1"] == "down", d
    text = human(rav)
    if refused_by_us:
        assert d["failed"]["reason"] == "pre-shared key mismatch", d
        assert "the two sides' secrets differ" in text, text
    else:
        assert "the peer refused our authentication" in text, text
    assert "phase 1, IKE_AUTH: AUTHENTICATION_FAILED" in text, text


@pytest.mark.parametrize("role", ROLES)
def test_peer_identity_not_remote_id_is_phase1_authentication_failed(pair, charons, ravelin, role):
    """Ravelin expects another identity of the peer than strongSwan uses."""
    def expect_someone_else(t):
        t["connections"]["gw"]["remote"]["id"] = "somebody-else.example"
        t["secrets"]["ike-gw"]["id-9"] = "somebody-else.example"
    rav, sw = start(pair, charons, ravelin, rav=expect_someone_else)
    initiate(role, rav, sw)
    d = wait_failure(rav)
    assert d["failed"]["phase"] == 1 and d["failed"]["notify"] == "AUTHENTICATION_FAILED", d
    assert d["failed"]["exchange"] == "IKE_AUTH", d
    assert d["phase1"] == "down", d
    text = human(rav)
    if role == "sw_initiates":
        # Ravelin sees strongSwan's IDi and refuses it, naming both.
        expect(d, phase=1, exchange="IKE_AUTH", notify="AUTHENTICATION_FAILED", detected_by="local",
               role="responder")
        assert d["failed"]["reason"] == \
            f"identity '{pair.sw_outer}' is not the configured 'somebody-else.example'", d
        assert "make `remote.id` here and the peer's local id the same" in text, text
    else:
        # Ravelin asks for IDr somebody-else.example, an identity strongSwan
        # does not have: it finds no config and refuses Ravelin's IKE_AUTH.
        expect(d, phase=1, exchange="IKE_AUTH", notify="AUTHENTICATION_FAILED", detected_by="peer",
               role="initiator")
        assert "the peer refused our authentication" in text, text
        assert "remote id 'somebody-else.example'" in text, text


def test_our_identity_not_the_peers_remote_id_is_refused_by_the_peer(pair, charons, ravelin):
    """strongSwan (initiator) expects another identity of Ravelin: Ravelin
    answers, strongSwan refuses the answer and says so in an INFORMATIONAL."""
    def expect_someone_else(t):
        t["connections"]["gw"]["remote"]["id"] = "somebody-else.example"
        t["secrets"]["ike-gw"]["id-9"] = "somebody-else.example"
    rav, sw = start(pair, charons, ravelin, sw=expect_someone_else)
    initiate("sw_initiates", rav, sw)
    d = wait_failure(rav)
    expect(d, phase=1, exchange="IKE_AUTH", notify="AUTHENTICATION_FAILED", detected_by="peer",
           role="responder")
    # The IKE SA and its Child SA Ravelin had set up are gone again.
    assert netns.wait_until(lambda: not rav.list_sas()["sas"], WAIT), rav.list_sas()
    assert diagnosis(rav)["phase1"] == "down"
    assert "the peer refused our authentication" in human(rav)


@pytest.mark.parametrize("role", ROLES)
def test_disjoint_selectors_are_phase2_ts_unacceptable(pair, charons, ravelin, role):
    rav, sw = start(pair, charons, ravelin, sw=lambda t: set_child(t, "local_ts", ["198.19.99.0/24"]))
    initiate(role, rav, sw)
    d = wait_failure(rav)
    refused_by_us = role == "sw_initiates"
    expect(d, phase=2, exchange="IKE_AUTH", notify="TS_UNACCEPTABLE",
           detected_by="local" if refused_by_us else "peer", role=our_role(role))
    assert d["failed"]["child"] == "net", d
    assert d["phase1"] == "established" and d["phase2"] == "net: not installed", d
    text = human(rav)
    if refused_by_us:
        # strongSwan's TSi is its local_ts, its TSr Ravelin's network.
        assert d["peer_ts"] == f"198.19.99.0/24 === {pair.rav_net}", d
        assert f"peer proposed 198.19.99.0/24 === {pair.rav_net}; we have net: " in text, text
    else:
        assert "the peer accepts none of our selectors for 'net'" in text, text
    assert "phase 2, IKE_AUTH: TS_UNACCEPTABLE" in text, text
    assert "mirror" in text, text

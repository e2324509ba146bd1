// Diagnosis by phase (`ravelinctl diagnose`): the engine notes each
// connection's last failure where it happens (note_failure: phase, exchange,
// notify, who refused, our role, the child, what the peer offered or
// answered); diagnose() turns that and the configuration into one
// Diagnosis per connection, with a one-line hint an operator can act on.
//
// Hints name both sides' values in the configuration's own terms (proposal
// keywords, selectors, identities), so "align the proposals" comes with
// what to align.
#include "engine_impl.hh"

namespace ravelin::ike {

ConnStatus& Engine::Impl::note_failure(const std::string& conn, Phase phase, std::string_view exchange,
                                       Detected by, bool initiator, uint16_t notify, std::string detail,
                                       std::string child)
{
    auto& st = status[conn];
    st.failed_phase = phase;
    st.notify = notify ? std::string(notify_name(notify)) : std::string{};
    st.detail = std::move(detail);
    st.failure = st.notify.empty() ? st.detail : st.notify;
    st.exchange = std::string(exchange);
    st.child = std::move(child);
    st.detected = by;
    st.initiator = initiator;
    st.at = now_;
    if (phase != Phase::none) count_failure(phase, st.failure);  // a dead peer is not a negotiation failure
    return st;
}

void Engine::Impl::clear_failure(const std::string& conn)
{
    auto& st = status[conn];
    st.failed_phase = Phase::none;
    st.failure.clear();
    st.notify.clear();
    st.detail.clear();
    st.exchange.clear();
    st.child.clear();
}

namespace detail {

// verify_peer's reasons start with the notify they amount to; the rest is
// the detail ("pre-shared key mismatch").
std::string auth_failure_detail(std::string_view why)
{
    constexpr std::string_view prefix = "AUTHENTICATION_FAILED: ";
    if (why.starts_with(prefix)) why.remove_prefix(prefix.size());
    return std::string(why);
}

namespace {

std::string id_or_address(const Identity& id)
{
    if (id.any) return "%any";
    return id.text.empty() ? "(its IP address)" : "'" + id.text + "'";
}

std::string specs_keywords(const std::vector<ProposalSpec>& specs)
{
    std::vector<Proposal> v;
    for (const auto& s : specs) v.push_back(s.to_proposal(1, {}));
    return proposals_keywords(v);
}

std::string ts_config_text(const std::vector<TsConfig>& v)
{
    std::string s;
    for (const auto& t : v) s += (s.empty() ? "" : " ") + (t.dynamic ? std::string("dynamic") : ts_text(t.ts));
    return s.empty() ? "dynamic" : s;
}

const ChildConfig* find_child(const ConnectionConfig& conn, std::string_view name)
{
    for (const auto& c : conn.children)
        if (c.name == name) return &c;
    return nullptr;
}

std::string phase1_hint(const Diagnosis& d, const ConnectionConfig& conn)
{
    const std::string& n = d.notify;
    if (n == "NO_PROPOSAL_CHOSEN") {
        if (!d.by_peer && !d.peer_ike_keywords.empty())
            return fmt::format("peer proposed {}; we accept {}: align the IKE proposals (`proposals`)",
                               d.peer_ike_keywords, d.our_ike_keywords);
        return fmt::format("the peer accepts none of our IKE proposals ({}): align `proposals` with the peer's "
                           "(its log lists what it received and what it accepts)", d.our_ike_keywords);
    }
    if (n == "INVALID_KE_PAYLOAD")
        return d.reason + ": add that group to `proposals` or change the peer's";
    if (n == "AUTHENTICATION_FAILED") {
        std::string ids = fmt::format("local id {} / remote id {}", id_or_address(conn.local.id),
                                      id_or_address(conn.remote.id));
        if (d.by_peer)
            return fmt::format("the peer refused our authentication: check that both sides hold the same {} for "
                               "{}, and that the peer's remote id is our local id", 
                               conn.local.auth == AuthKind::psk ? "pre-shared key" : "trust anchors (our certificate's CA)",
                               ids);
        if (d.reason.starts_with("identity"))
            return d.reason + ": make `remote.id` here and the peer's local id the same";
        if (d.reason.starts_with("pre-shared key mismatch"))
            return "the peer's AUTH does not verify with our pre-shared key: the two sides' secrets differ for " + ids;
        if (d.reason.starts_with("no pre-shared key"))
            return d.reason + ": add a `secrets { ike-... }` entry with that id";
        if (d.reason.starts_with("certificate"))
            return "the peer's certificate did not validate (" + d.reason + "): check `remote.cacerts` and `authorities`";
        return d.reason + ": check the credentials and " + ids;
    }
    if (d.reason == "timeout")
        return d.exchange == "IKE_AUTH"
                   ? "IKE_SA_INIT worked but IKE_AUTH got no answer: UDP 4500 blocked, or large messages lost "
                     "(fragmentation = yes on both sides)"
                   : "no answer from the peer: check that it runs, remote_addrs, and that UDP 500/4500 pass "
                     "(firewall, routing)";
    if (d.reason == "peer dead (DPD)")
        return "the peer stopped answering (DPD): check reachability; dpd_action = restart or start_action "
               "brings the tunnel back";
    if (d.reason.starts_with("peer chose a proposal"))
        return fmt::format("the peer answered {}, which we did not offer ({}): a peer bug, or its configuration "
                           "changed mid-exchange", d.peer_ike_keywords, d.our_ike_keywords);
    if (d.reason.starts_with("no credentials"))
        return "nothing to authenticate with: check `secrets` (PSK for our id) or local.certs and the private key";
    if (!n.empty() && d.by_peer) return "the peer refused Phase 1 with " + n + ": its log says why";
    return d.reason;
}

std::string phase2_hint(const Diagnosis& d, const ConnectionConfig& conn)
{
    const ChildConfig* c = find_child(conn, d.child);
    std::string name = c ? "'" + c->name + "'" : std::string("any child");
    std::string ours_esp = c ? specs_keywords(c->esp_proposals) : std::string{};
    std::string ours_ts = c ? ts_config_text(c->local_ts) + " === " + ts_config_text(c->remote_ts) : d.our_ts;
    const std::string& n = d.notify;
    if (n == "NO_PROPOSAL_CHOSEN") {
        if (!d.by_peer && d.reason.starts_with("the peer offers no PFS"))
            return fmt::format("the peer rekeys {} without PFS, our esp_proposals ({}) require a DH group: "
                               "align the PFS groups", name, ours_esp);
        if (!d.by_peer && !d.peer_esp_keywords.empty())
            return fmt::format("peer proposed {}; we accept {} for {}: align the ESP proposals (`esp_proposals`)",
                               d.peer_esp_keywords, ours_esp, name);
        return fmt::format("the peer accepts none of our ESP proposals for {} ({}): align `esp_proposals` "
                           "(cipher, integrity, PFS group, esn)", name, ours_esp);
    }
    if (n == "TS_UNACCEPTABLE") {
        if (!d.by_peer && !d.peer_ts.empty())
            return fmt::format("peer proposed {}; we have {}: the selectors do not overlap, make local_ts/remote_ts "
                               "mirror the peer's", d.peer_ts, d.our_ts);
        return fmt::format("the peer accepts none of our selectors for {} ({}): its local_ts/remote_ts must "
                           "mirror ours", name, ours_ts);
    }
    if (d.reason.starts_with("peer narrowed") || d.reason.starts_with("peer widened"))
        return fmt::format("{} (peer answered {}; we proposed {}): align local_ts/remote_ts", d.reason,
                           d.peer_ts, ours_ts);
    if (d.reason.starts_with("peer chose an ESP proposal"))
        return fmt::format("the peer answered {}, which we did not offer for {} ({})", d.peer_esp_keywords, name,
                           ours_esp);
    if (!n.empty() && d.by_peer) return "the peer refused the Child SA " + name + " with " + n + ": its log says why";
    return d.reason;
}

// When nothing failed: what the states alone say.
std::string state_hint(const Diagnosis& d)
{
    if (d.phase1 == "down")
        return "no IKE SA: `ravelinctl initiate --ike " + d.connection +
               "`, start_action = start, or wait for the peer to initiate";
    if (d.phase1 == "connecting") return "negotiating: run diagnose again in a few seconds";
    for (const auto& c : d.children)
        if (c.state == "not installed")
            return "IKE SA up but child '" + c.name + "' has no SA: `ravelinctl initiate --ike " + d.connection +
                   " --child " + c.name + "`, or check its start_action";
    return {};
}

} // namespace

} // namespace detail

std::vector<Diagnosis> Engine::diagnose() const
{
    const auto& I = *impl_;
    std::vector<Diagnosis> out;
    for (const auto& conn : I.config.connections) {
        Diagnosis d;
        d.connection = conn.name;
        d.phase1 = "down";
        std::map<std::string, std::string> states;
        for (const auto& [k, sa] : I.sas) {
            if (sa->conn->name != conn.name || sa->state == IkeState::dead || sa->state == IkeState::rekeyed) continue;
            d.phase1 = sa->state == IkeState::established ? "established" : "connecting";
            for (const auto& c : sa->children)
                if (!states.count(c.cfg->name) || c.state == ChildState::installed)
                    states[c.cfg->name] = std::string(state_name(c.state));
        }
        d.our_proposals = "IKE " + specs_text(conn.proposals, ProtocolId::ike);
        d.our_ike_keywords = specs_keywords(conn.proposals);
        for (const auto& c : conn.children) {
            ChildDiagnosis cd;
            cd.name = c.name;
            auto it = states.find(c.name);
            cd.state = it != states.end() ? it->second : "not installed";
            cd.esp_proposals = specs_keywords(c.esp_proposals);
            cd.local_ts = ts_config_text(c.local_ts);
            cd.remote_ts = ts_config_text(c.remote_ts);
            d.phase2 += (d.phase2.empty() ? "" : ", ") + c.name + ": " + cd.state;
            d.our_proposals += "; ESP(" + c.name + ") " + specs_text(c.esp_proposals, ProtocolId::esp);
            d.our_ts += (d.our_ts.empty() ? "" : "; ") + c.name + ": " + cd.local_ts + " === " + cd.remote_ts;
            d.children.push_back(std::move(cd));
        }
        if (auto it = I.status.find(conn.name); it != I.status.end()) {
            const ConnStatus& st = it->second;
            d.failed_phase = st.failed_phase;
            d.failure = st.failure;
            d.peer_ts = st.peer_ts;
            d.peer_ike_keywords = proposals_keywords(st.peer_ike);
            d.peer_esp_keywords = proposals_keywords(st.peer_esp);
            d.peer_ike_answered = st.peer_ike_answered;
            d.peer_esp_answered = st.peer_esp_answered;
            // The peer's proposals of the phase that failed (IKE otherwise).
            d.peer_proposals = st.failed_phase == Phase::child || st.peer_ike.empty()
                                   ? proposals_text(st.peer_esp, ProtocolId::esp)
                                   : proposals_text(st.peer_ike, ProtocolId::ike);
            if (!st.failure.empty()) {
                d.phase_number = st.failed_phase == Phase::child ? 2 : 1;
                d.exchange = st.exchange;
                d.notify = st.notify;
                d.reason = st.detail.empty() ? st.notify : st.detail;
                d.by_peer = st.detected == Detected::peer;
                d.as_initiator = st.initiator;
                d.child = st.child;
                d.failed_at = st.at;
            }
        }
        if (d.phase_number == 1) d.hint = phase1_hint(d, conn);
        else if (d.phase_number == 2) d.hint = phase2_hint(d, conn);
        if (d.hint.empty()) d.hint = state_hint(d);
        out.push_back(std::move(d));
    }
    return out;
}

} // namespace ravelin::ike

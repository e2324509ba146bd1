// Child SAs: proposals and selectors (RFC 7296 §2.9), keys (§2.17),
// CREATE_CHILD_SA for new and rekeyed SAs with make-before-break and
// collisions (§2.8, §2.8.1), and INFORMATIONAL deletes (§1.4).
#include "engine_impl.hh"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace ravelin::ike {

// --- Child SAs ----------------------------------------------------------------------

std::vector<TrafficSelector> Engine::Impl::resolve_ts(const std::vector<TsConfig>& cfg, const IpAddress& self)
{
    std::vector<TrafficSelector> out;
    if (cfg.empty()) return {host_ts(self)};
    for (const auto& t : cfg) {
        TrafficSelector ts = t.ts;
        if (t.dynamic) ts.start = ts.end = self;
        if (ts.start.family == self.family || t.dynamic) out.push_back(ts);
    }
    return out;
}


// SA, [Ni, KEi], TSi, TSr (and USE_TRANSPORT_MODE) for a new Child SA.
std::vector<Payload> Engine::Impl::child_request_payloads(IkeSa& sa, const ChildConfig& c, uint32_t spi,
                                                          bool with_ke, Request* req)
{
    std::vector<Payload> p;
    SaPayload sap;
    uint8_t n = 1;
    auto specs = with_ke ? c.esp_proposals : without_dh(c.esp_proposals);
    for (const auto& spec : specs) sap.proposals.push_back(spec.to_proposal(n++, spi_bytes(spi)));
    p.push_back(Payload{PayloadType::sa, false, sap});
    if (with_ke) {
        req->nonce = new_nonce();
        p.push_back(Payload{PayloadType::nonce, false, NoncePayload{req->nonce}});
        uint16_t group = 0;
        for (const auto& spec : c.esp_proposals)
            if (!spec.dh.empty()) { group = spec.dh[0].id; break; }
        // The group the peer asked for with INVALID_KE_PAYLOAD, if we offer it.
        if (auto it = sa.child_dh.find(c.name); it != sa.child_dh.end())
            for (const auto& spec : c.esp_proposals)
                for (const auto& t : spec.dh)
                    if (t.id == it->second) group = t.id;
        if (group) {
            req->dh = new_dh(group);
            if (req->dh) p.push_back(Payload{PayloadType::ke, false, KePayload{group, req->dh->public_value()}});
        }
    }
    req->tsi = resolve_ts(c.local_ts, sa.local.addr);
    req->tsr = resolve_ts(c.remote_ts, sa.remote.addr);
    p.push_back(Payload{PayloadType::tsi, false, TsPayload{req->tsi}});
    p.push_back(Payload{PayloadType::tsr, false, TsPayload{req->tsr}});
    if (c.mode == ChildMode::transport) p.push_back(notify_payload(notify::use_transport_mode));
    req->child = c.name;
    req->new_spi = spi;
    return p;
}

ChildSa Engine::Impl::make_child(IkeSa& sa, std::shared_ptr<const ChildConfig> cfgp, const SelectedSuite& suite, uint32_t spi_in,
                                 uint32_t spi_out, const std::vector<TrafficSelector>& local_ts,
                                 const std::vector<TrafficSelector>& remote_ts, ByteView shared, ByteView ni,
                                 ByteView nr, bool we_initiated, TimePoint now)
{
    const ChildConfig& cfg = *cfgp;
    ChildKeys k = derive_child_keys(sa.suite.prf, view(sa.keys.sk_d), shared, ni, nr, suite.encr,
                                    suite.encr_key_bits, suite.integ);
    ChildSa c;
    c.unique_id = next_child_unique++;
    c.cfg = std::move(cfgp);
    c.we_initiated = we_initiated;
    c.nonce_i.assign(ni.begin(), ni.end());
    c.nonce_r.assign(nr.begin(), nr.end());
    c.installed_at = now;
    c.rekey_at = cfg.rekey_time_s
                     ? now + std::chrono::seconds(cfg.rekey_time_s) - jitter(std::min(cfg.rand_time_s, cfg.rekey_time_s / 2))
                     : TimePoint::max();
    c.expire_at = cfg.life_time_s ? now + std::chrono::seconds(cfg.life_time_s) : TimePoint::max();

    auto& r = c.record;
    r.connection = sa.conn->name;
    r.child = cfg.name;
    r.reqid = reqid_for(sa.conn->name, cfg);
    r.local_ts = local_ts;
    r.remote_ts = remote_ts;
    r.suite = suite;
    bool encap = sa.nat_local || sa.nat_remote || sa.nat_fake;
    std::size_t salt = is_aead(suite.encr) ? 4 : 0;
    auto fill = [&](SaDescriptor& d, uint32_t spi, SaDirection dir, const Bytes& ek, const Bytes& ik) {
        d.spi = Spi{spi};
        d.direction = dir;
        d.mode = cfg.mode == ChildMode::transport ? SaMode::transport : SaMode::tunnel;
        d.cipher = EspCipher(suite.encr);
        d.integ = EspInteg(suite.integ);
        d.cipher_key_len = uint8_t(ek.size() - salt);
        std::copy_n(ek.begin(), std::min(ek.size(), d.cipher_key.size()), d.cipher_key.begin());
        d.integ_key_len = uint8_t(ik.size());
        std::copy_n(ik.begin(), std::min(ik.size(), d.integ_key.size()), d.integ_key.begin());
        d.local = sa.local.addr;
        d.remote = sa.remote.addr;
        d.udp_encap = encap;
        d.encap_local_port = sa.local.port;
        d.encap_remote_port = sa.remote.port;
        d.esn = suite.esn;
        d.replay_window = uint16_t(std::min<uint32_t>(cfg.replay_window, max_replay_window));
        d.copy_dscp = cfg.copy_dscp;
        d.lifetime.hard_bytes = cfg.life_bytes;
        d.lifetime.hard_packets = cfg.life_packets;
        d.lifetime.soft_bytes = cfg.rekey_bytes ? cfg.rekey_bytes - std::min(cfg.rekey_bytes / 2, cfg.rand_bytes ? random_u64() % (cfg.rand_bytes + 1) : 0) : 0;
        d.lifetime.soft_packets = cfg.rekey_packets ? cfg.rekey_packets - std::min(cfg.rekey_packets / 2, cfg.rand_packets ? random_u64() % (cfg.rand_packets + 1) : 0) : 0;
        d.reqid = r.reqid;
    };
    if (we_initiated) {
        fill(r.outbound, spi_out, SaDirection::outbound, k.encr_i, k.integ_i);
        fill(r.inbound, spi_in, SaDirection::inbound, k.encr_r, k.integ_r);
    } else {
        fill(r.outbound, spi_out, SaDirection::outbound, k.encr_r, k.integ_r);
        fill(r.inbound, spi_in, SaDirection::inbound, k.encr_i, k.integ_i);
    }
    k.wipe();
    return c;
}

void Engine::Impl::install(ChildSa& c, bool outbound)
{
    if (!outbound) {
        spis_in_use.insert(c.spi_in());
        sink.install_inbound(c.record);
        wipe_keys(c.record.inbound);
        return;
    }
    if (c.outbound_installed) return;
    sink.install_outbound(c.record);
    wipe_keys(c.record.outbound);
    c.outbound_installed = true;
}

// A responder sends on the IKE_AUTH child as soon as its answer is out,
// and the answer reaches us half a round trip later. When traffic already
// flows (ravelin-iked restarted under adopted SAs, a reauthentication), the
// packets of that gap would find no inbound SA. Their keys come from SK_d
// and the IKE_SA_INIT nonces alone (RFC 7296 §2.17), so when our proposals
// leave the peer a single suite the SA can go in before we ask. The answer
// confirms it, or narrows the selectors and complete_child replaces it.
void Engine::Impl::install_early_inbound(TimePoint now, IkeSa& sa, const ChildConfig& cfg)
{
    auto suite = sole_suite(without_dh(cfg.esp_proposals));
    if (!suite) return;
    ChildSa c = make_child(sa, child_ptr(sa, &cfg, nullptr), *suite, sa.auth_child_spi, 0, sa.auth_tsi,
                           sa.auth_tsr, {}, view(sa.ni), view(sa.nr), true, now);
    --next_child_unique;              // not a child yet: the answer makes it one
    wipe_keys(c.record.outbound);     // the peer's SPI is still unknown
    install(c, false);
    sa.early_inbound = std::move(c.record);
}

void Engine::Impl::drop_early_inbound(IkeSa& sa)
{
    if (!sa.early_inbound) return;
    sink.remove_inbound(*sa.early_inbound);
    spis_in_use.erase(sa.early_inbound->inbound.spi.value);
    sa.early_inbound.reset();
}

namespace {

// Is the inbound SA installed before the request what the answer agreed?
bool same_inbound(const ChildSaRecord& early, const ChildSaRecord& agreed)
{
    const SaDescriptor& x = early.inbound;
    const SaDescriptor& y = agreed.inbound;
    return early.local_ts == agreed.local_ts && early.remote_ts == agreed.remote_ts && x.spi.value == y.spi.value &&
           x.mode == y.mode && x.cipher == y.cipher && x.integ == y.integ && x.cipher_key_len == y.cipher_key_len &&
           x.integ_key_len == y.integ_key_len && x.esn == y.esn && x.local == y.local && x.remote == y.remote &&
           x.udp_encap == y.udp_encap && x.encap_local_port == y.encap_local_port &&
           x.encap_remote_port == y.encap_remote_port;
}

} // namespace

void Engine::Impl::uninstall(ChildSa& c)
{
    if (c.outbound_installed) sink.remove_outbound(c.record);
    c.outbound_installed = false;
    sink.remove_inbound(c.record);
    spis_in_use.erase(c.spi_in());
    wipe_keys(c.record.inbound);
    wipe_keys(c.record.outbound);
}

// Forgets uninstalled children, by inbound SPI.
void Engine::Impl::erase_children(IkeSa& sa, const std::vector<uint32_t>& spis_in)
{
    std::erase_if(sa.children, [&](const ChildSa& c) {
        return std::find(spis_in.begin(), spis_in.end(), c.spi_in()) != spis_in.end();
    });
}

// Responder: pick a child config, a proposal and selectors for the peer's
// request, derive and install. On failure `out` holds the error notify.
std::optional<uint16_t> Engine::Impl::respond_child(TimePoint now, IkeSa& sa, const std::vector<Payload>& p,
                                                    ByteView ni, ByteView nr, bool in_auth,
                                                    std::vector<Payload>& out, ChildSa* rekeying)
{
    // `child`: the config concerned, when one is (none matched: the only one).
    auto error = [&](uint16_t type, Bytes data = {}, std::string detail = {},
                     const ChildConfig* child = nullptr) -> std::optional<uint16_t> {
        out.clear();
        out.push_back(notify_payload(type, std::move(data)));
        if (type != notify::invalid_ke_payload) {
            if (!child && sa.conn->children.size() == 1) child = &sa.conn->children.front();
            note_failure(sa.conn->name, Phase::child, in_auth ? "IKE_AUTH" : "CREATE_CHILD_SA", Detected::local,
                         false, type, std::move(detail), child ? child->name : std::string{});
        }
        return type;
    };
    const auto* sap = find_payload<SaPayload>(p, PayloadType::sa);
    const auto* tsi = find_payload<TsPayload>(p, PayloadType::tsi);
    const auto* tsr = find_payload<TsPayload>(p, PayloadType::tsr);
    if (!sap || !tsi || !tsr) return error(notify::invalid_syntax);
    bool transport_mode = find_notify(p, notify::use_transport_mode) != nullptr;
    auto& st = status[sa.conn->name];
    st.peer_ts = ts_list_text(tsi->selectors) + " === " + ts_list_text(tsr->selectors);
    st.peer_esp = sap->proposals;
    st.peer_esp_answered = false;

    const ChildConfig* cfg = nullptr;
    std::vector<TrafficSelector> local, remote;
    for (const auto& c : sa.conn->children) {
        if (rekeying && c.name != rekeying->cfg->name) continue;
        auto l = narrow(resolve_ts(c.local_ts, sa.local.addr), tsr->selectors);
        auto r = narrow(resolve_ts(c.remote_ts, sa.remote.addr), tsi->selectors);
        if (l.empty() || r.empty()) continue;
        if ((c.mode == ChildMode::transport) != transport_mode) continue;
        cfg = &c;
        local = std::move(l);
        remote = std::move(r);
        break;
    }
    if (!cfg && rekeying) {
        cfg = rekeying->cfg.get();   // the config changed under a live SA: keep its selectors
        local = rekeying->record.local_ts;
        remote = rekeying->record.remote_ts;
    }
    if (!cfg) {
        log_ike()->info("{}: no child matches traffic selectors {}", sa.conn->name, st.peer_ts);
        return error(notify::ts_unacceptable, {}, "no child's selectors overlap the peer's");
    }
    const auto* ke = find_payload<KePayload>(p, PayloadType::ke);
    std::optional<SelectedSuite> chosen;
    bool pfs_missing = false;
    if (in_auth || !ke) {
        auto specs = without_dh(cfg->esp_proposals);
        // Without a KE, a config that insists on PFS accepts nothing.
        bool pfs_required = !in_auth && std::all_of(cfg->esp_proposals.begin(), cfg->esp_proposals.end(),
                                                    [](const ProposalSpec& s) { return !s.dh.empty(); });
        if (!pfs_required) chosen = select_proposal(strip_dh(sap->proposals), specs);
        pfs_missing = pfs_required;
    } else {
        chosen = select_proposal(sap->proposals, cfg->esp_proposals);
        // We chose no DH group but the peer sent a KE: unless that proposal
        // also offers NONE, the peer insists on PFS and would refuse an
        // answer without a group (RFC 7296 §3.3.6).
        if (chosen && chosen->dh == 0)
            for (const auto& prop : sap->proposals) {
                if (prop.number != chosen->number) continue;
                bool has_dh = false, has_none = false;
                for (const auto& t : prop.transforms)
                    if (t.type == TransformType::dh) (t.id ? has_dh : has_none) = true;
                if (has_dh && !has_none) chosen.reset();
            }
    }
    if (!chosen || chosen->spi.size() != 4) {
        log_ike()->info("{}: no acceptable ESP proposal (offered {})", sa.conn->name,
                        proposals_text(sap->proposals, ProtocolId::esp));
        return error(notify::no_proposal_chosen, {},
                     pfs_missing ? "the peer offers no PFS, our esp_proposals all require a DH group"
                                     : "none of the peer's ESP proposals is acceptable",
                     cfg);
    }
    Bytes shared;
    std::unique_ptr<DhKey> dh;
    if (chosen->dh && !in_auth) {
        if (!ke || ke->group != chosen->dh) {
            Bytes g;
            put_u16(g, chosen->dh);
            return error(notify::invalid_ke_payload, g);
        }
        dh = new_dh(chosen->dh);
        auto s = dh ? dh->shared_secret(view(ke->data)) : std::nullopt;
        if (!s) return error(notify::invalid_syntax);
        shared = std::move(*s);
    } else {
        chosen->dh = 0;
    }
    uint32_t spi_out = get_u32(view(chosen->spi));
    uint32_t spi_in = new_child_spi();
    ChildSa c = make_child(sa, child_ptr(sa, cfg, rekeying), *chosen, spi_in, spi_out, local, remote, view(shared), ni, nr, false, now);
    wipe(shared);
    if (rekeying) c.replaces_spi = rekeying->spi_in();
    else forget_nonces(c);   // only rekeys can collide
    install(c, false);
    // A rekeyed SA's outbound half waits for the peer's delete of the old
    // one: until then the peer may not have the new inbound SA yet.
    if (!rekeying) install(c, true);

    out.clear();
    out.push_back(Payload{PayloadType::sa, false, SaPayload{{chosen->to_proposal(ProtocolId::esp, spi_bytes(spi_in))}}});
    if (!in_auth) {
        out.push_back(Payload{PayloadType::nonce, false, NoncePayload{Bytes(nr.begin(), nr.end())}});
        if (dh) out.push_back(Payload{PayloadType::ke, false, KePayload{dh->group(), dh->public_value()}});
    }
    out.push_back(Payload{PayloadType::tsi, false, TsPayload{remote}});
    out.push_back(Payload{PayloadType::tsr, false, TsPayload{local}});
    if (transport_mode) out.push_back(notify_payload(notify::use_transport_mode));
    log_ike()->info("{}: CHILD_SA {}{{{}}} established with SPIs {:08x}_i {:08x}_o and TS {} === {}", sa.conn->name,
                    cfg->name, c.unique_id, spi_in, spi_out, ts_list_text(local), ts_list_text(remote));
    ++stats.child_installed;
    clear_failure(sa.conn->name);
    sa.children.push_back(std::move(c));
    return std::nullopt;
}

// Initiator: the peer's answer to our Child SA request. The keys come from
// the IKE SA the exchange ran on (RFC 7296 §2.17), `sa`; the new SA joins
// the IKE SA that holds the children now (its successor, if the peer
// rekeyed `sa` meanwhile).
bool Engine::Impl::complete_child(TimePoint now, IkeSa& sa, Request& req, const std::vector<Payload>& p,
                                  ByteView ni, ByteView nr, std::string& why)
{
    IkeSa& holder = children_holder(sa);
    const ChildConfig* cfg = nullptr;
    for (const auto& c : sa.conn->children)
        if (c.name == req.child) cfg = &c;
    ChildSa* old = req.old_spi ? holder.child_by_in(req.old_spi) : nullptr;
    if (!cfg && old) cfg = old->cfg.get();
    if (!cfg) { why = "child config gone"; return false; }
    const auto* sap = find_payload<SaPayload>(p, PayloadType::sa);
    const auto* tsi = find_payload<TsPayload>(p, PayloadType::tsi);
    const auto* tsr = find_payload<TsPayload>(p, PayloadType::tsr);
    if (!sap || !tsi || !tsr || sap->proposals.size() != 1) { why = "malformed Child SA response"; return false; }
    auto& st = status[sa.conn->name];   // the peer's answer, for diagnose()
    st.peer_esp = sap->proposals;
    st.peer_esp_answered = true;
    st.peer_ts = ts_list_text(tsi->selectors) + " === " + ts_list_text(tsr->selectors);
    auto specs = req.dh ? cfg->esp_proposals : without_dh(cfg->esp_proposals);
    auto chosen = accept_response(sap->proposals[0], specs);
    if (!chosen || chosen->spi.size() != 4) { why = "peer chose an ESP proposal we did not offer"; return false; }
    for (const auto& t : tsi->selectors)
        if (std::none_of(req.tsi.begin(), req.tsi.end(), [&](const TrafficSelector& o) { return contains(o, t); })) {
            why = "peer widened TSi";
            return false;
        }
    for (const auto& t : tsr->selectors)
        if (std::none_of(req.tsr.begin(), req.tsr.end(), [&](const TrafficSelector& o) { return contains(o, t); })) {
            why = "peer widened TSr";
            return false;
        }
    if (tsi->selectors.empty() || tsr->selectors.empty()) { why = "peer narrowed the traffic selectors to nothing"; return false; }
    Bytes shared;
    if (chosen->dh) {
        const auto* ke = find_payload<KePayload>(p, PayloadType::ke);
        if (!ke || !req.dh || ke->group != chosen->dh || req.dh->group() != chosen->dh) { why = "KE mismatch"; return false; }
        auto s = req.dh->shared_secret(view(ke->data));
        if (!s) { why = "invalid KE from the peer"; return false; }
        shared = std::move(*s);
    }
    uint32_t spi_out = get_u32(view(chosen->spi));
    ChildSa c = make_child(sa, child_ptr(sa, cfg, old), *chosen, req.new_spi, spi_out, tsi->selectors, tsr->selectors, view(shared),
                           ni, nr, true, now);
    wipe(shared);
    if (sa.early_inbound && same_inbound(*sa.early_inbound, c.record)) {
        wipe_keys(c.record.inbound);
        c.record.inbound = sa.early_inbound->inbound;   // what the data plane holds
        sa.early_inbound.reset();
    } else {
        drop_early_inbound(sa);   // if the answer narrowed the selectors: the SA carries what was agreed
        install(c, false);
    }
    log_ike()->info("{}: CHILD_SA {}{{{}}} established with SPIs {:08x}_i {:08x}_o and TS {} === {}", sa.conn->name,
                    cfg->name, c.unique_id, c.spi_in(), c.spi_out(), ts_list_text(tsi->selectors),
                    ts_list_text(tsr->selectors));
    ++stats.child_installed;
    if (old) ++stats.child_rekeys;
    clear_failure(sa.conn->name);
    if (!req.old_spi) {
        forget_nonces(c);
        install(c, true);
        holder.children.push_back(std::move(c));
        return true;
    }
    // A rekey keeps its nonces for collisions even when the old SA went
    // meanwhile: the peer's rekey of it may be what removed it.
    c.replaces_spi = req.old_spi;
    holder.children.push_back(std::move(c));
    settle_rekey(holder, req, holder.children.back());
    return true;
}

// Which SA survives our rekey of req.old_spi (RFC 7296 §2.8.1, §2.25.1),
// decided the way the peer decides it:
//  - the peer rekeyed the same SA too and then deleted the old one while
//    our request was out: it only does that once its own replacement
//    stands, so our new SA is redundant;
//  - the peer rekeyed the same SA meanwhile (we hold its new SA): the
//    exchange with the lowest of the four nonces made the redundant SA;
//  - otherwise ours replaces the old SA, also when the peer deleted the
//    old SA for reasons of its own (hard lifetime, operator): it answered
//    our rekey, so it has our new SA, and it made none of its own.
// The initiator of the redundant SA deletes it; the initiator of the
// surviving one deletes the old SA. A redundant SA is never used for
// sending, never rekeyed, and waits for its DELETE.
void Engine::Impl::settle_rekey(IkeSa& sa, const Request& req, ChildSa& mine)
{
    ChildSa* old = sa.child_by_in(req.old_spi);
    ChildSa* theirs = nullptr;
    for (auto& o : sa.children)
        if (&o != &mine && o.replaces_spi == req.old_spi && !o.we_initiated && o.state != ChildState::deleting)
            theirs = &o;
    bool mine_redundant = false;
    if (req.old_deleted_in_collision) {
        mine_redundant = true;
        log_ike()->info("{}: CHILD_SA rekey/delete collision: the peer deleted the SA we rekeyed, our new {}{{{}}} "
                        "is redundant", sa.conn->name, mine.cfg->name, mine.unique_id);
    } else if (theirs) {
        Bytes lo = std::min({mine.nonce_i, mine.nonce_r, theirs->nonce_i, theirs->nonce_r});
        mine_redundant = lo == mine.nonce_i || lo == mine.nonce_r;
        ChildSa& loser = mine_redundant ? mine : *theirs;
        log_ike()->info("{}: CHILD_SA rekey collision, {} SA {}{{{}}} is redundant", sa.conn->name,
                        mine_redundant ? "our" : "the peer's", loser.cfg->name, loser.unique_id);
    }
    if (old) old->state = ChildState::rekeyed;
    if (mine_redundant) {
        // The peer keeps its SA and deletes the old one; its SA carries
        // our traffic from now on (its outbound half may be in already).
        mine.state = ChildState::rekeyed;
        if (theirs) install(*theirs, true);
        sa.queue.push_front(Pending{ExchangeKind::delete_child, {}, 0, {mine.spi_in()}});
        return;
    }
    install(mine, true);
    if (theirs) theirs->state = ChildState::rekeyed;   // the peer deletes it
    if (old) {
        if (old->outbound_installed) {
            sink.remove_outbound(old->record);
            old->outbound_installed = false;
        }
        sa.queue.push_front(Pending{ExchangeKind::delete_child, {}, 0, {req.old_spi}});
    }
}

void Engine::Impl::create_child(TimePoint now, IkeSa& sa, const std::string& name)
{
    const ChildConfig* cfg = nullptr;
    for (const auto& c : sa.conn->children)
        if (c.name == name) cfg = &c;
    if (!cfg) return;
    Request req;
    req.kind = ExchangeKind::create_child;
    auto p = child_request_payloads(sa, *cfg, new_child_spi(), true, &req);
    start_request(now, sa, std::move(req), ExchangeType::create_child_sa, p);
}

void Engine::Impl::rekey_child(TimePoint now, IkeSa& sa, uint32_t spi_in)
{
    ChildSa* old = sa.child_by_in(spi_in);
    if (!old || old->state != ChildState::installed) return;
    Request req;
    req.kind = ExchangeKind::rekey_child;
    req.old_spi = spi_in;
    NotifyPayload n = make_notify(notify::rekey_sa);
    n.protocol = ProtocolId::esp;
    n.spi = spi_bytes(spi_in);
    std::vector<Payload> p{Payload{PayloadType::notify, false, n}};
    auto cp = child_request_payloads(sa, *old->cfg, new_child_spi(), true, &req);
    // Rekeying keeps the SA's negotiated selectors (RFC 7296 §2.8).
    req.tsi = old->record.local_ts;
    req.tsr = old->record.remote_ts;
    for (auto& pl : cp) {
        if (pl.type == PayloadType::tsi) pl.body = TsPayload{req.tsi};
        if (pl.type == PayloadType::tsr) pl.body = TsPayload{req.tsr};
    }
    p.insert(p.end(), cp.begin(), cp.end());
    req.child = old->cfg->name;
    old->state = ChildState::rekeying;
    log_ike()->info("{}: rekeying CHILD_SA {}{{{}}}", sa.conn->name, old->cfg->name, old->unique_id);
    start_request(now, sa, std::move(req), ExchangeType::create_child_sa, p);
}

void Engine::Impl::delete_children(TimePoint now, IkeSa& sa, std::vector<uint32_t> spis)
{
    std::vector<uint32_t> live;
    for (uint32_t s : spis)
        if (ChildSa* c = sa.child_by_in(s)) {
            // Ours to delete before the peer deleted it (hard lifetime): the
            // SA the peer's rekey of it made carries the child from now on.
            install_successor(sa, *c);
            if (c->outbound_installed) {
                sink.remove_outbound(c->record);
                c->outbound_installed = false;
            }
            // The peer's rekey of it now gets TEMPORARY_FAILURE (RFC 7296 §2.25.1).
            c->state = ChildState::deleting;
            live.push_back(s);
        }
    if (live.empty()) return;
    Request req;
    req.kind = ExchangeKind::delete_child;
    req.delete_spis = live;
    DeletePayload d;
    d.protocol = ProtocolId::esp;
    d.spis = live;
    start_request(now, sa, std::move(req), ExchangeType::informational, {Payload{PayloadType::delete_, false, d}});
}

void Engine::Impl::create_child_request(TimePoint now, IkeSa& sa, uint32_t mid, std::vector<Payload>& p)
{
    const auto* ni = find_payload<NoncePayload>(p, PayloadType::nonce);
    if (!ni) {
        respond(sa, ExchangeType::create_child_sa, mid, {notify_payload(notify::invalid_syntax)});
        return;
    }
    ChildSa* old = nullptr;
    if (const auto* r = find_notify(p, notify::rekey_sa)) {
        uint32_t spi = r->spi.size() == 4 ? get_u32(view(r->spi)) : 0;
        old = sa.child_by_out(spi);
        if (!old) {
            NotifyPayload n = make_notify(notify::child_sa_not_found);
            n.protocol = ProtocolId::esp;
            n.spi = r->spi;
            respond(sa, ExchangeType::create_child_sa, mid, {Payload{PayloadType::notify, false, n}});
            return;
        }
        if (old->state == ChildState::rekeyed || old->state == ChildState::deleting) {
            respond(sa, ExchangeType::create_child_sa, mid, {notify_payload(notify::temporary_failure)});
            return;
        }
    }
    Bytes nr = new_nonce();
    std::vector<Payload> out;
    // respond_child() adds the new SA to sa.children, which may move the
    // old one: find it again by its SPI afterwards.
    const uint32_t old_spi_in = old ? old->spi_in() : 0;
    auto err = respond_child(now, sa, p, view(ni->data), view(nr), false, out, old);
    if (!err) sa.children.back().answer_mid = mid;
    old = old_spi_in ? sa.child_by_in(old_spi_in) : nullptr;
    if (!err && old) {
        ++stats.child_rekeys;
        // Unless we are rekeying it ourselves (a collision, settled when our
        // exchange completes), the old SA now waits for the peer's delete.
        if (old->state == ChildState::installed) old->state = ChildState::rekeyed;
    }
    respond(sa, ExchangeType::create_child_sa, mid, out);
}

void Engine::Impl::create_child_response(TimePoint now, IkeSa& sa, Request& req, std::vector<Payload>& p)
{
    // The answer comes on the IKE SA that carried the request; if the peer
    // rekeyed that one meanwhile, the children are in its successor, and
    // whatever follows (a retry, a delete) goes there.
    IkeSa& holder = children_holder(sa);
    ChildSa* old = req.old_spi ? holder.child_by_in(req.old_spi) : nullptr;
    uint16_t err = 0;
    for (const auto& pl : p)
        if (const auto* n = std::get_if<NotifyPayload>(&pl.body))
            if (is_error_notify(n->type)) err = n->type;
    if (err == notify::invalid_ke_payload) {
        // Retry with the group the peer wants, if we offered it.
        const auto* n = find_notify(p, notify::invalid_ke_payload);
        uint16_t group = n && n->data.size() == 2 ? uint16_t(n->data[0] << 8 | n->data[1]) : 0;
        log_ike()->info("{}: peer wants DH group {} for the Child SA", sa.conn->name, group);
        const ChildConfig* cfg = old ? old->cfg.get() : nullptr;
        for (const auto& c : sa.conn->children)
            if (c.name == req.child) cfg = &c;
        bool offered = false;
        if (cfg)
            for (const auto& s : cfg->esp_proposals)
                for (const auto& t : s.dh) offered |= t.id == group;
        if (offered && cfg) {
            // Ask again with the group the peer wants.
            holder.child_dh[cfg->name] = group;
            if (old) {
                old->state = ChildState::installed;
                holder.queue.push_front(Pending{ExchangeKind::rekey_child, {}, old->spi_in(), {}});
            } else {
                holder.queue.push_front(Pending{ExchangeKind::create_child, req.child, 0, {}});
            }
            return;
        }
    }
    if (err == notify::child_sa_not_found && req.old_spi) {
        rekey_not_found(now, holder, req);
        return;
    }
    if (err) {
        if (err != notify::temporary_failure && err != notify::child_sa_not_found) {
            note_failure(sa.conn->name, Phase::child, "CREATE_CHILD_SA", Detected::peer, true, err, {},
                         old ? old->cfg->name : req.child);
        }
        log_ike()->info("{}: CREATE_CHILD_SA for '{}' failed: {}", sa.conn->name, req.child, notify_name(err));
        // Try again later unless the peer took over (TEMPORARY_FAILURE in a collision).
        rekey_later(old, now, err == notify::temporary_failure ? rekey_retry_soon : rekey_retry);
        return;
    }
    const auto* nr = find_payload<NoncePayload>(p, PayloadType::nonce);
    std::string why;
    if (!nr || !complete_child(now, sa, req, p, view(req.nonce), view(nr->data), why)) {
        if (why.empty()) why = "no nonce in the response";
        log_ike()->info("{}: CREATE_CHILD_SA response refused: {}", sa.conn->name, why);
        note_failure(sa.conn->name, Phase::child, "CREATE_CHILD_SA", Detected::local, true, 0, why,
                     old ? old->cfg->name : req.child);
        rekey_later(old, now, rekey_retry);
    }
}

// The peer has no Child SA with the SPI we asked to rekey (RFC 7296 §2.25).
void Engine::Impl::rekey_not_found(TimePoint now, IkeSa& sa, const Request& req)
{
    ChildSa* old = sa.child_by_in(req.old_spi);
    if (!old) {
        // Its DELETE reached us while our request was out: that stands, and
        // whatever replaced the SA, if anything, took over then.
        log_ike()->info("{}: the peer did not find the CHILD_SA we rekeyed: it deleted it meanwhile", sa.conn->name);
        return;
    }
    // An SA our answer to the peer made, and the peer sent nothing since
    // that answer: the answer may still be on its way (or lost, and the
    // peer retransmits), so the peer will have the SA. Rekey it later.
    if (old->answer_mid && sa.peer_mid == *old->answer_mid + 1 && now - old->installed_at < 30s) {
        log_ike()->info("{}: the peer does not know CHILD_SA {}{{{}}} yet (our answer that made it is on its way), "
                        "rekeying it again in 2 s", sa.conn->name, old->cfg->name, old->unique_id);
        old->state = ChildState::installed;
        old->rekey_at = now + 2s;
        return;
    }
    // The peer lost it: drop ours without a DELETE, and make sure the child
    // lives on, in the peer's other SA or a new one.
    log_ike()->info("{}: the peer has no CHILD_SA {}{{{}}} (CHILD_SA_NOT_FOUND), removing it (SPIs {:08x}_i {:08x}_o)",
                    sa.conn->name, old->cfg->name, old->unique_id, old->spi_in(), old->spi_out());
    std::string child = old->cfg->name;
    uninstall(*old);
    erase_children(sa, {req.old_spi});
    keep_child_alive(sa, child, true);
}

// After SAs of `child` went away: if none of its SAs carries its outbound
// traffic any more, the newest SA the peer made for it takes over (one it
// made by rekeying, waiting for its DELETE of the old SA, or the redundant
// SA of a collision, which it kept after all). With none and `create`, a
// new Child SA is negotiated from scratch (no REKEY_SA).
void Engine::Impl::keep_child_alive(IkeSa& sa, const std::string& child, bool create)
{
    ChildSa* heir = nullptr;
    for (auto& c : sa.children) {
        if (c.cfg->name != child || c.state == ChildState::deleting) continue;
        if (c.outbound_installed) return;
        if (!c.we_initiated) heir = &c;
    }
    if (heir) {
        install(*heir, true);
        heir->state = ChildState::installed;
        log_ike()->info("{}: CHILD_SA {}{{{}}} the peer made takes over (SPIs {:08x}_i {:08x}_o)", sa.conn->name,
                        heir->cfg->name, heir->unique_id, heir->spi_in(), heir->spi_out());
        return;
    }
    if (!create) return;
    if (sa.request && sa.request->kind == ExchangeKind::create_child && sa.request->child == child) return;
    for (const auto& q : sa.queue)
        if (q.kind == ExchangeKind::create_child && q.child == child) return;
    log_ike()->info("{}: no CHILD_SA '{}' left, creating a new one", sa.conn->name, child);
    sa.queue.push_front(Pending{ExchangeKind::create_child, child, 0, {}});
}

void Engine::Impl::hand_over_request(TimePoint now, IkeSa& sa)
{
    if (!sa.request || !sa.successor) return;
    IkeSa& holder = children_holder(sa);
    if (&holder == &sa || holder.state != IkeState::established) return;
    const Request& req = *sa.request;
    switch (req.kind) {
    case ExchangeKind::rekey_child:
        // The peer may or may not have made the new SA; ours was never
        // made. The old one is rekeyed again, like after TEMPORARY_FAILURE.
        if (ChildSa* old = holder.child_by_in(req.old_spi); rekey_later(old, now, rekey_retry_soon))
            log_ike()->info("{}: the rekey of CHILD_SA {}{{{}}} went with IKE_SA #{} unanswered, rekeying it again "
                            "in {} s", sa.conn->name, old->cfg->name, old->unique_id, sa.unique_id,
                            rekey_retry_soon.count());
        break;
    case ExchangeKind::create_child:
        keep_child_alive(holder, req.child, true);
        break;
    case ExchangeKind::delete_child:
        // The children wait as DELETING, their outbound halves gone: ask
        // again (a peer that did delete them answers with no Delete payload).
        holder.queue.push_front(Pending{ExchangeKind::delete_child, {}, 0, req.delete_spis});
        break;
    default:
        break;
    }
}

// --- INFORMATIONAL and teardown ------------------------------------------------------

// The SA that replaced `old` by a rekey we answered and that waits for the
// old one's delete takes over its outbound traffic (make-before-break,
// responder side).
void Engine::Impl::install_successor(IkeSa& sa, const ChildSa& old)
{
    for (auto& n : sa.children)
        if (n.replaces_spi == old.spi_in() && n.state == ChildState::installed && !n.outbound_installed)
            install(n, true);
}

void Engine::Impl::informational_request(TimePoint now, IkeSa& sa, uint32_t mid, std::vector<Payload>& p)
{
    if (find_notify(p, notify::authentication_failed)) {
        // The initiator did not accept our IKE_AUTH response (our identity
        // or AUTH) and closed the IKE SA on its side (RFC 7296 §2.21.2).
        ++stats.auth_failures;
        note_failure(sa.conn->name, Phase::ike_auth, "IKE_AUTH", Detected::peer, sa.initiator,
                     notify::authentication_failed, "the peer refused our authentication after IKE_AUTH");
        log_ike()->warn("{}: IKE_SA #{}: the peer sent AUTHENTICATION_FAILED, deleting it", sa.conn->name,
                        sa.unique_id);
        respond(sa, ExchangeType::informational, mid, {});
        destroy(now, sa, true);
        return;
    }
    std::vector<uint32_t> ours, gone;
    std::vector<std::string> touched;
    bool delete_ike_sa = false;
    for (const auto& pl : p) {
        const auto* d = std::get_if<DeletePayload>(&pl.body);
        if (!d) continue;
        if (d->protocol == ProtocolId::ike) {
            delete_ike_sa = true;
            continue;
        }
        if (d->protocol != ProtocolId::esp) continue;
        for (uint32_t spi : d->spis) {
            ChildSa* c = sa.child_by_out(spi);
            if (!c || std::find(gone.begin(), gone.end(), c->spi_in()) != gone.end()) continue;
            // The peer stopped using the old SA: its successor's outbound
            // half can go in now.
            install_successor(sa, *c);
            // Deleted under our rekey of it after the peer rekeyed it too
            // (we hold the SA its rekey made): the peer keeps its own SA. Any
            // other delete is the peer's own business (hard lifetime).
            if (sa.request && sa.request->kind == ExchangeKind::rekey_child && sa.request->old_spi == c->spi_in() &&
                std::any_of(sa.children.begin(), sa.children.end(), [&](const ChildSa& n) {
                    return n.replaces_spi == c->spi_in() && !n.we_initiated;
                }))
                sa.request->old_deleted_in_collision = true;
            // One we are deleting too goes without a word (RFC 7296 §2.25.1).
            if (c->state != ChildState::deleting) ours.push_back(c->spi_in());
            gone.push_back(c->spi_in());
            touched.push_back(c->cfg->name);
            log_ike()->info("{}: CHILD_SA {}{{{}}} deleted by the peer (SPIs {:08x}_i {:08x}_o)", sa.conn->name,
                            c->cfg->name, c->unique_id, c->spi_in(), c->spi_out());
            uninstall(*c);
        }
    }
    erase_children(sa, gone);
    if (delete_ike_sa) {
        respond(sa, ExchangeType::informational, mid, {});
        log_ike()->info("{}: IKE_SA #{} deleted by the peer", sa.conn->name, sa.unique_id);
        bool restart = false;
        for (const auto& c : sa.children) restart |= c.cfg->close_action == CloseAction::start;
        std::string first = sa.children.empty() ? std::string{} : sa.children.front().cfg->name;
        destroy(now, sa, true);
        if (restart && sa.conn->children.size()) retry_at[sa.conn->name] = {now + 1s, first};
        return;
    }
    // Deleted by the peer is deleted: nothing is created again here. But if
    // the peer deleted the SA we thought survived a collision, it kept its
    // own: that one carries the child now.
    for (const auto& child : touched) keep_child_alive(sa, child, false);
    std::vector<Payload> out;
    if (!ours.empty()) {
        DeletePayload d;
        d.protocol = ProtocolId::esp;
        d.spis = ours;
        out.push_back(Payload{PayloadType::delete_, false, d});
    }
    respond(sa, ExchangeType::informational, mid, out);
}

} // namespace ravelin::ike

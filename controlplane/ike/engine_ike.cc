// IKE_SA_INIT, IKE_AUTH and the IKE SA rekey (RFC 7296 §1.2, §1.3.2,
// §2.6, §2.8, §2.15, §2.18, §2.23), both roles.
#include "engine_impl.hh"

#include <algorithm>
#include <utility>

#include <spdlog/spdlog.h>

namespace ravelin::ike {

// --- IKE_SA_INIT ----------------------------------------------------------------


namespace {

// Responder's IKE proposal choice: prefer a match in the group the
// initiator already sent a KE for (no INVALID_KE round trip), else our
// normal preference (the caller then asks for the group it chose).
std::optional<SelectedSuite> select_ike_proposal(const std::vector<Proposal>& offered,
                                                 const std::vector<ProposalSpec>& ours, uint16_t ke_group)
{
    std::vector<ProposalSpec> with_ke_group;
    for (auto spec : ours) {
        auto it = std::find_if(spec.dh.begin(), spec.dh.end(), [&](const Transform& t) { return t.id == ke_group; });
        if (it == spec.dh.end()) continue;
        spec.dh = {*it};
        with_ke_group.push_back(spec);
    }
    auto chosen = select_proposal(offered, with_ke_group);
    return chosen ? chosen : select_proposal(offered, ours);
}

} // namespace

IkeSa* Engine::Impl::initiate_ike(TimePoint now, const ConnectionConfig& conn, const std::string& child)
{
    std::optional<IpAddress> local, remote;
    for (const auto& s : conn.local_addrs)
        if ((local = parse_address(s))) break;
    for (const auto& s : conn.remote_addrs)
        if ((remote = parse_address(s))) break;
    if (!local || !remote || local->family != remote->family) {
        log_ike()->error("{}: cannot initiate: needs literal local_addrs and remote_addrs of one family",
                         conn.name);
        return nullptr;
    }
    auto sa = std::make_unique<IkeSa>();
    sa->unique_id = next_unique++;
    sa->conn = shared_conn(conn);
    sa->initiator = true;
    sa->spi_i = new_ike_spi();
    sa->local = {*local, conn.local_port};
    sa->remote = {*remote, conn.remote_port};
    sa->created = sa->last_rx = now;
    sa->auth_child = child;
    sa->ni = new_nonce();
    uint16_t group = 0;
    for (const auto& p : conn.proposals)
        if (!p.dh.empty()) { group = p.dh[0].id; break; }
    sa->dh = new_dh(group);
    if (!sa->dh) {
        log_ike()->error("{}: DH group {} unavailable", conn.name, group);
        return nullptr;
    }
    IkeSa& ref = *sa;
    sas.emplace(sa->spi_i, std::move(sa));
    // A failure stays for diagnose() until this attempt gets past it.
    log_ike()->info("{}: initiating IKE_SA #{} to {}", conn.name, ref.unique_id, to_string(ref.remote));
    send_init(now, ref);
    return &ref;
}

void Engine::Impl::send_init(TimePoint now, IkeSa& sa)
{
    std::vector<Payload> p;
    if (!sa.cookie.empty()) p.push_back(notify_payload(notify::cookie, sa.cookie));
    SaPayload sap;
    uint8_t n = 1;
    for (const auto& spec : sa.conn->proposals) sap.proposals.push_back(spec.to_proposal(n++, {}));
    p.push_back(Payload{PayloadType::sa, false, sap});
    p.push_back(Payload{PayloadType::ke, false, KePayload{sa.dh->group(), sa.dh->public_value()}});
    p.push_back(Payload{PayloadType::nonce, false, NoncePayload{sa.ni}});
    Bytes src = nat_hash(sa.spi_i, 0, sa.local);
    if (sa.conn->encap) rng.fill(src);   // a fake NAT-D forces UDP encapsulation
    p.push_back(notify_payload(notify::nat_detection_source_ip, src));
    p.push_back(notify_payload(notify::nat_detection_destination_ip, nat_hash(sa.spi_i, 0, sa.remote)));
    if (sa.conn->fragmentation != Fragmentation::no)
        p.push_back(notify_payload(notify::ikev2_fragmentation_supported));
    p.push_back(notify_payload(notify::signature_hash_algorithms, sig_hash_data()));

    Header h;
    h.spi_i = sa.spi_i;
    h.exchange = ExchangeType::ike_sa_init;
    h.flags = header_flags::initiator;
    h.message_id = 0;
    sa.init_request = encode_message(h, p);
    sa.state = IkeState::connecting;
    sa.next_mid = 1;
    ++sa.init_attempts;
    Request r;
    r.kind = ExchangeKind::ike_sa_init;
    r.message_id = 0;
    r.datagrams = {sa.init_request};
    r.sent = 1;
    r.next_send = now + retransmit_delay(1);
    send_all(sa, r.datagrams);
    sa.request = std::move(r);
}

void Engine::Impl::check_nat(IkeSa& sa, const std::vector<Payload>& p, const Endpoint& local,
                             const Endpoint& remote)
{
    uint64_t spi_r = sa.initiator ? sa.spi_r : 0;   // the request hashes SPIr = 0
    bool saw_src = false, src_match = false, saw_dst = false, dst_match = false;
    Bytes want_src = nat_hash(sa.spi_i, spi_r, remote);
    Bytes want_dst = nat_hash(sa.spi_i, spi_r, local);
    for (const auto& pl : p) {
        const auto* n = std::get_if<NotifyPayload>(&pl.body);
        if (!n) continue;
        if (n->type == notify::nat_detection_source_ip) {
            saw_src = true;
            src_match |= n->data == want_src;
        } else if (n->type == notify::nat_detection_destination_ip) {
            saw_dst = true;
            dst_match |= n->data == want_dst;
        }
    }
    sa.nat_remote = saw_src && !src_match;
    sa.nat_local = saw_dst && !dst_match;
    if (sa.conn->encap) sa.nat_fake = true;
}

bool Engine::Impl::derive_keys(IkeSa& sa, ByteView peer_ke)
{
    auto shared = sa.dh->shared_secret(peer_ke);
    if (!shared) return false;
    sa.suite = IkeSuite{sa.selected.encr, sa.selected.encr_key_bits, sa.selected.prf,
                        sa.selected.integ, sa.selected.dh};
    sa.keys = derive_ike_keys(sa.suite, view(sa.ni), view(sa.nr), view(*shared), sa.spi_i, sa.spi_r);
    wipe(*shared);
    const Bytes& ea = sa.initiator ? sa.keys.sk_ei : sa.keys.sk_er;
    const Bytes& aa = sa.initiator ? sa.keys.sk_ai : sa.keys.sk_ar;
    const Bytes& eb = sa.initiator ? sa.keys.sk_er : sa.keys.sk_ei;
    const Bytes& ab = sa.initiator ? sa.keys.sk_ar : sa.keys.sk_ai;
    sa.sk_out = SkCipher::create(sa.suite.encr, sa.suite.encr_key_bits, sa.suite.integ, view(ea), view(aa));
    sa.sk_in = SkCipher::create(sa.suite.encr, sa.suite.encr_key_bits, sa.suite.integ, view(eb), view(ab));
    if (!sa.sk_out || !sa.sk_in) return false;
    if (hooks.ike_keys) hooks.ike_keys(sa.spi_i, sa.spi_r, sa.keys, sa.suite);
    sa.ke_public = sa.dh->public_value();
    sa.dh.reset();
    return true;
}

void Engine::Impl::init_request(TimePoint now, const Endpoint& local, const Endpoint& remote,
                                ByteView datagram, const Message& m)
{
    const Header& h = m.header;
    if (h.spi_r != 0 || h.message_id != 0 || !h.from_initiator()) { ++stats.rx_invalid; return; }
    auto key = std::make_pair(h.spi_i, to_string(remote));
    if (auto it = half_open_index.find(key); it != half_open_index.end()) {
        auto sit = sas.find(it->second);
        if (sit != sas.end() && sit->second->has_response && sit->second->response_mid == 0) {
            // Same first message again: the answer got lost.
            if (sit->second->init_request == Bytes(datagram.begin(), datagram.end()))
                send_all(*sit->second, sit->second->response, true);
            return;
        }
    }
    if (half_open() >= config.daemon.half_open_limit) {
        ++stats.rx_invalid;
        log_ike()->warn("{}: dropping IKE_SA_INIT: {} half-open IKE SAs", to_string(remote), half_open());
        return;
    }
    auto send_plain = [&](std::vector<Payload> payloads, uint64_t spi_r) {
        Header r;
        r.spi_i = h.spi_i;
        r.spi_r = spi_r;
        r.exchange = ExchangeType::ike_sa_init;
        r.flags = header_flags::response;
        Bytes out = encode_message(r, payloads);
        transport.send(local, remote, view(out));
        count_tx(view(out), false);
    };

    const auto* sap = find_payload<SaPayload>(m.payloads, PayloadType::sa);
    const auto* ke = find_payload<KePayload>(m.payloads, PayloadType::ke);
    const auto* ni = find_payload<NoncePayload>(m.payloads, PayloadType::nonce);
    if (!sap || !ke || !ni) {
        ++stats.rx_invalid;
        send_plain({notify_payload(notify::invalid_syntax)}, 0);
        return;
    }

    // Stateless cookie (RFC 7296 §2.6) once too many SAs are half open.
    if (half_open() >= config.daemon.cookie_threshold) {
        Bytes in = ni->data;
        in.insert(in.end(), remote.addr.bytes.begin(), remote.addr.bytes.end());
        put_u16(in, remote.port);
        put_u64(in, h.spi_i);
        Bytes want{0, 0, 0, 0};   // version of the secret
        Bytes mac = prf_compute(prf::hmac_sha2_256, view(cookie_secret), view(in));
        want.insert(want.end(), mac.begin(), mac.end());
        const auto* c = find_notify(m.payloads, notify::cookie);
        if (!c || c->data != want) {
            ++stats.cookies_sent;
            send_plain({notify_payload(notify::cookie, want)}, 0);
            return;
        }
    }

    const ConnectionConfig* conn = nullptr;
    for (const auto& c : config.connections)
        if (endpoint_matches(c.local_addrs, local.addr) && endpoint_matches(c.remote_addrs, remote.addr)) {
            conn = &c;
            break;
        }
    if (!conn) {
        log_ike()->info("{}: no connection for IKE_SA_INIT to {}", to_string(remote), to_string(local));
        send_plain({notify_payload(notify::no_proposal_chosen)}, 0);
        count_failure(Phase::ike_sa_init, "NO_PROPOSAL_CHOSEN");
        return;
    }
    auto& st = status[conn->name];
    st.peer_ike = sap->proposals;
    st.peer_ike_answered = false;

    // Prefer the group the initiator already sent a KE for, if acceptable.
    std::optional<SelectedSuite> chosen = select_ike_proposal(sap->proposals, conn->proposals, ke->group);
    for (const auto& p : sap->proposals)
        if (chosen && p.number == chosen->number && !p.spi.empty()) chosen.reset();  // SPI must be empty here
    if (!chosen) {
        log_ike()->info("{}: no acceptable IKE proposal from {} (offered {})", conn->name, to_string(remote),
                        proposals_text(sap->proposals, ProtocolId::ike));
        note_failure(conn->name, Phase::ike_sa_init, "IKE_SA_INIT", Detected::local, false, notify::no_proposal_chosen,
                     "none of the peer's IKE proposals is acceptable");
        send_plain({notify_payload(notify::no_proposal_chosen)}, 0);
        return;
    }
    if (chosen->dh != ke->group) {
        Bytes g;
        put_u16(g, chosen->dh);
        log_ike()->info("{}: peer sent KE for group {}, asking for {}", conn->name, ke->group, chosen->dh);
        send_plain({notify_payload(notify::invalid_ke_payload, g)}, 0);
        return;
    }

    auto sa = std::make_unique<IkeSa>();
    sa->unique_id = next_unique++;
    sa->conn = shared_conn(*conn);
    sa->initiator = false;
    sa->spi_i = h.spi_i;
    sa->spi_r = new_ike_spi();
    sa->local = local;
    sa->remote = remote;
    sa->created = sa->last_rx = now;
    sa->selected = *chosen;
    sa->ni = ni->data;
    sa->nr = new_nonce();
    sa->dh = new_dh(chosen->dh);
    if (!sa->dh || !derive_keys(*sa, view(ke->data))) {
        log_ike()->info("{}: invalid KE from {}", conn->name, to_string(remote));
        note_failure(conn->name, Phase::ike_sa_init, "IKE_SA_INIT", Detected::local, false, notify::invalid_syntax,
                     "invalid KE payload from the peer");
        send_plain({notify_payload(notify::invalid_syntax)}, 0);
        return;
    }
    check_nat(*sa, m.payloads, local, remote);
    sa->peer_fragmentation = find_notify(m.payloads, notify::ikev2_fragmentation_supported) != nullptr &&
                             conn->fragmentation != Fragmentation::no;
    if (const auto* sh = find_notify(m.payloads, notify::signature_hash_algorithms))
        for (std::size_t i = 0; i + 1 < sh->data.size(); i += 2)
            sa->peer_sig_hashes.push_back(uint16_t(sh->data[i] << 8 | sh->data[i + 1]));
    sa->init_request.assign(datagram.begin(), datagram.end());

    std::vector<Payload> p;
    p.push_back(Payload{PayloadType::sa, false, SaPayload{{chosen->to_proposal(ProtocolId::ike, {})}}});
    // The DH public value was computed in derive_keys; recreate the KE from the key we used.
    p.push_back(Payload{PayloadType::ke, false, KePayload{chosen->dh, {}}});
    p.push_back(Payload{PayloadType::nonce, false, NoncePayload{sa->nr}});
    Bytes src = nat_hash(sa->spi_i, sa->spi_r, local);
    if (conn->encap) rng.fill(src);
    p.push_back(notify_payload(notify::nat_detection_source_ip, src));
    p.push_back(notify_payload(notify::nat_detection_destination_ip, nat_hash(sa->spi_i, sa->spi_r, remote)));
    if (conn->remote.auth == AuthKind::pubkey && conn->send_certreq) {
        CertReqPayload cr;
        for (const auto& hsh : creds[conn->name].trust.ca_key_hashes()) cr.data.insert(cr.data.end(), hsh.begin(), hsh.end());
        p.push_back(Payload{PayloadType::certreq, false, cr});
    }
    if (sa->peer_fragmentation) p.push_back(notify_payload(notify::ikev2_fragmentation_supported));
    p.push_back(notify_payload(notify::signature_hash_algorithms, sig_hash_data()));
    std::get<KePayload>(p[1].body).data = sa->ke_public;

    Header r;
    r.spi_i = sa->spi_i;
    r.spi_r = sa->spi_r;
    r.exchange = ExchangeType::ike_sa_init;
    r.flags = header_flags::response;
    sa->init_response = encode_message(r, p);
    sa->response = {sa->init_response};
    sa->response_mid = 0;
    sa->has_response = true;
    sa->peer_mid = 1;
    sa->next_mid = 0;
    sa->state = IkeState::authenticating;
    transport.send(local, remote, view(sa->init_response));
    count_tx(view(sa->init_response), false);
    half_open_index[key] = sa->spi_r;
    log_ike()->info("{}: IKE_SA #{} from {} negotiating {}", conn->name, sa->unique_id, to_string(remote),
                    describe(sa->selected, ProtocolId::ike));
    // An IKE_AUTH that never comes: give up after the retransmit budget.
    sa->expire_at = now + retransmit_delay(config.daemon.retransmit_tries + 1) * 2;
    sas.emplace(sa->spi_r, std::move(sa));
}

void Engine::Impl::init_response(TimePoint now, IkeSa& sa, ByteView datagram, const Message& m)
{
    if (!sa.initiator || sa.state != IkeState::connecting || !sa.request ||
        sa.request->kind != ExchangeKind::ike_sa_init || m.header.message_id != 0) {
        ++stats.rx_invalid;
        return;
    }
    const auto& p = m.payloads;
    if (const auto* c = find_notify(p, notify::cookie)) {
        if (sa.init_attempts > 3 || c->data.empty() || c->data.size() > 64) { fail(sa, Phase::ike_sa_init, 0, "COOKIE loop"); return; }
        sa.cookie = c->data;
        sa.request.reset();
        send_init(now, sa);
        return;
    }
    if (const auto* k = find_notify(p, notify::invalid_ke_payload)) {
        uint16_t group = k->data.size() == 2 ? uint16_t(k->data[0] << 8 | k->data[1]) : 0;
        bool offered = false;
        for (const auto& spec : sa.conn->proposals)
            for (const auto& t : spec.dh) offered |= t.id == group;
        if (!offered || sa.init_attempts > 3 || group == sa.dh->group()) {
            fail(sa, Phase::ike_sa_init, notify::invalid_ke_payload,
                 offered ? "the peer keeps asking for another DH group"
                         : fmt::format("the peer wants DH group {} ({}), which we do not offer", group, dh_name(group)),
                 Detected::peer);
            return;
        }
        log_ike()->info("{}: peer wants DH group {}, retrying", sa.conn->name, group);
        sa.dh = new_dh(group);
        sa.request.reset();
        send_init(now, sa);
        return;
    }
    for (const auto& pl : p)
        if (const auto* n = std::get_if<NotifyPayload>(&pl.body))
            if (is_error_notify(n->type)) {
                fail(sa, Phase::ike_sa_init, n->type, {}, Detected::peer);
                return;
            }
    const auto* sap = find_payload<SaPayload>(p, PayloadType::sa);
    const auto* ke = find_payload<KePayload>(p, PayloadType::ke);
    const auto* nr = find_payload<NoncePayload>(p, PayloadType::nonce);
    if (!sap || !ke || !nr || sap->proposals.size() != 1 || m.header.spi_r == 0) {
        fail(sa, Phase::ike_sa_init, 0, "malformed IKE_SA_INIT response");
        return;
    }
    auto chosen = accept_response(sap->proposals[0], sa.conn->proposals);
    if (!chosen || chosen->dh != ke->group || ke->group != sa.dh->group()) {
        status[sa.conn->name].peer_ike = sap->proposals;
        status[sa.conn->name].peer_ike_answered = true;
        fail(sa, Phase::ike_sa_init, 0, "peer chose a proposal we did not offer");
        return;
    }
    sa.selected = *chosen;
    sa.spi_r = m.header.spi_r;
    sa.nr = nr->data;
    sa.request.reset();
    if (!derive_keys(sa, view(ke->data))) {
        fail(sa, Phase::ike_sa_init, 0, "invalid KE payload from the peer");
        return;
    }
    check_nat(sa, p, sa.local, sa.remote);
    sa.peer_fragmentation = find_notify(p, notify::ikev2_fragmentation_supported) != nullptr &&
                            sa.conn->fragmentation != Fragmentation::no;
    if (const auto* sh = find_notify(p, notify::signature_hash_algorithms))
        for (std::size_t i = 0; i + 1 < sh->data.size(); i += 2)
            sa.peer_sig_hashes.push_back(uint16_t(sh->data[i] << 8 | sh->data[i + 1]));
    sa.peer_certreq = find_payload<CertReqPayload>(p, PayloadType::certreq) != nullptr;
    sa.init_response.assign(datagram.begin(), datagram.end());
    sa.last_rx = now;
    send_auth(now, sa);
}

// --- IKE_AUTH ---------------------------------------------------------------------

namespace {

// What AUTH covers (RFC 7296 §2.15): the sender's IKE_SA_INIT message, the
// other side's nonce, and prf(SK_px, IDx').
Bytes signed_octets(const IkeSa& sa, bool of_initiator, const IdPayload& id)
{
    Bytes octets = of_initiator ? sa.init_request : sa.init_response;
    const Bytes& nonce = of_initiator ? sa.nr : sa.ni;
    octets.insert(octets.end(), nonce.begin(), nonce.end());
    Bytes mac = prf_compute(sa.suite.prf, view(of_initiator ? sa.keys.sk_pi : sa.keys.sk_pr), view(id_body(id)));
    octets.insert(octets.end(), mac.begin(), mac.end());
    return octets;
}

// AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), octets).
Bytes psk_auth(uint16_t prf_id, const Bytes& secret, const Bytes& octets)
{
    static constexpr std::string_view pad = "Key Pad for IKEv2";
    Bytes key = prf_compute(prf_id, view(secret), view(text_bytes(pad)));
    Bytes auth = prf_compute(prf_id, view(key), view(octets));
    wipe(key);
    return auth;
}

} // namespace

std::optional<AuthPayload> Engine::Impl::make_auth(IkeSa& sa, bool as_initiator)
{
    Bytes octets = signed_octets(sa, as_initiator, sa.local_id);

    if (sa.conn->local.auth == AuthKind::psk) {
        const SharedSecret* s = find_psk(sa.local_id, sa.remote_id);
        if (!s) {
            log_ike()->error("{}: no pre-shared key for '{}' - '{}'", sa.conn->name, id_text(sa.local_id),
                             id_text(sa.remote_id));
            return std::nullopt;
        }
        AuthPayload a;
        a.method = AuthMethod::shared_key;
        a.data = psk_auth(sa.suite.prf, s->secret, octets);
        return a;
    }
    auto& cr = creds[sa.conn->name];
    if (!cr.key) {
        log_ike()->error("{}: cannot sign: {}", sa.conn->name, cr.error);
        return std::nullopt;
    }
    return cr.key->sign(view(octets), sa.peer_sig_hashes);
}

bool Engine::Impl::verify_peer(IkeSa& sa, const std::vector<Payload>& p, bool peer_is_initiator,
                               std::string& why)
{
    const auto* id = find_payload<IdPayload>(p, peer_is_initiator ? PayloadType::idi : PayloadType::idr);
    const auto* auth = find_payload<AuthPayload>(p, PayloadType::auth);
    if (!id || !auth) { why = "AUTHENTICATION_FAILED: no ID or AUTH payload"; return false; }
    sa.remote_id = *id;
    const Identity& want = sa.conn->remote.id;
    if (!want.any && !want.text.empty() && !same_id(want.id, *id)) {
        why = fmt::format("identity '{}' is not the configured '{}'", id_text(*id), want.text);
        return false;
    }
    Bytes octets = signed_octets(sa, peer_is_initiator, *id);

    if (sa.conn->remote.auth == AuthKind::psk) {
        if (auth->method != AuthMethod::shared_key) { why = "AUTHENTICATION_FAILED: peer did not use a PSK"; return false; }
        const SharedSecret* s = find_psk(sa.local_id, *id);
        if (!s) { why = "AUTHENTICATION_FAILED: no pre-shared key for '" + id_text(*id) + "'"; return false; }
        Bytes expect = psk_auth(sa.suite.prf, s->secret, octets);
        uint8_t diff = expect.size() != auth->data.size();
        for (std::size_t i = 0; i < std::min(expect.size(), auth->data.size()); ++i)
            diff |= uint8_t(expect[i] ^ auth->data[i]);
        if (diff) { why = "AUTHENTICATION_FAILED: pre-shared key mismatch"; return false; }
        return true;
    }

    auto& cr = creds[sa.conn->name];
    std::optional<Certificate> ee;
    std::vector<Certificate> chain;
    for (const auto& pl : p)
        if (const auto* c = std::get_if<CertPayload>(&pl.body)) {
            if (pl.type != PayloadType::cert || c->encoding != uint8_t(CertEncoding::x509_signature)) continue;
            auto cert = Certificate::from_der(view(c->data));
            if (!cert) continue;
            if (!ee) ee = std::move(cert);
            else chain.push_back(std::move(*cert));
        }
    if (!ee) { why = "certificate: the peer sent none"; return false; }
    std::string err;
    if (!cr.trust.verify(*ee, chain, err)) { why = "certificate: " + err; return false; }
    if (!ee->matches(*id)) { why = "identity '" + id_text(*id) + "' is not in the peer's certificate"; return false; }
    if (!verify_auth(*ee, *auth, view(octets))) { why = "AUTHENTICATION_FAILED: bad signature"; return false; }
    return true;
}

void Engine::Impl::send_auth(TimePoint now, IkeSa& sa)
{
    // Move to the NAT-T port once a NAT is seen (RFC 7296 §2.23).
    if ((sa.nat_local || sa.nat_remote || sa.nat_fake) && sa.remote.port != config.daemon.port_nat_t) {
        sa.local.port = config.daemon.port_nat_t;
        sa.remote.port = config.daemon.port_nat_t;
    }
    sa.state = IkeState::authenticating;
    const auto& conn = *sa.conn;
    sa.local_id = conn.local.id.text.empty() || conn.local.id.any ? address_id(sa.local.addr) : conn.local.id.id;
    sa.remote_id = conn.remote.id.text.empty() || conn.remote.id.any ? address_id(sa.remote.addr) : conn.remote.id.id;

    std::vector<Payload> p;
    p.push_back(Payload{PayloadType::idi, false, sa.local_id});
    if (conn.local.auth == AuthKind::pubkey && conn.send_cert != ConnectionConfig::SendCert::never) {
        auto& cr = creds[conn.name];
        if (cr.cert) {
            p.push_back(Payload{PayloadType::cert, false, CertPayload{4, cr.cert->der()}});
            for (const auto& c : cr.chain) p.push_back(Payload{PayloadType::cert, false, CertPayload{4, c.der()}});
        }
    }
    if (conn.remote.auth == AuthKind::pubkey && conn.send_certreq) {
        CertReqPayload r;
        for (const auto& h : creds[conn.name].trust.ca_key_hashes()) r.data.insert(r.data.end(), h.begin(), h.end());
        p.push_back(Payload{PayloadType::certreq, false, r});
    }
    if (!conn.remote.id.any && !conn.remote.id.text.empty())
        p.push_back(Payload{PayloadType::idr, false, conn.remote.id.id});
    auto auth = make_auth(sa, true);
    if (!auth) { fail(sa, Phase::ike_auth, 0, "no credentials to authenticate with"); return; }
    p.push_back(Payload{PayloadType::auth, false, *auth});
    bool other = false;
    for (auto& [k, o] : sas) other |= o.get() != &sa && o->conn->name == conn.name && o->state == IkeState::established;
    if (!other && !std::exchange(status[conn.name].adopted, false))
        p.push_back(notify_payload(notify::initial_contact));

    Request req;
    req.kind = ExchangeKind::ike_auth;
    const ChildConfig* child = nullptr;
    for (const auto& c : conn.children)
        if (c.name == sa.auth_child) child = &c;
    if (child) {
        sa.auth_child_spi = new_child_spi();
        auto cp = child_request_payloads(sa, *child, sa.auth_child_spi, false, &req);
        p.insert(p.end(), cp.begin(), cp.end());
        sa.auth_tsi = req.tsi;
        sa.auth_tsr = req.tsr;
        install_early_inbound(now, sa, *child);
    }
    start_request(now, sa, std::move(req), ExchangeType::ike_auth, p);
}

void Engine::Impl::auth_request(TimePoint now, IkeSa& sa, uint32_t mid, std::vector<Payload>& p)
{
    // Several connections may share addresses: the peer's ID picks one.
    if (const auto* idi = find_payload<IdPayload>(p, PayloadType::idi)) {
        const Identity& want = sa.conn->remote.id;
        if (!want.any && !want.text.empty() && !same_id(want.id, *idi))
            for (const auto& c : config.connections)
                if (endpoint_matches(c.local_addrs, sa.local.addr) && endpoint_matches(c.remote_addrs, sa.remote.addr) &&
                    (c.remote.id.any || c.remote.id.text.empty() || same_id(c.remote.id.id, *idi))) {
                    sa.conn = shared_conn(c);
                    break;
                }
    }
    sa.local_id = sa.conn->local.id.text.empty() || sa.conn->local.id.any ? address_id(sa.local.addr) : sa.conn->local.id.id;
    if (const auto* idr = find_payload<IdPayload>(p, PayloadType::idr))
        if (sa.conn->local.id.text.empty() || sa.conn->local.id.any) sa.local_id = *idr;  // answer as asked
    std::string why;
    if (!verify_peer(sa, p, true, why)) {
        log_ike()->info("{}: IKE_SA #{} peer authentication failed: {}", sa.conn->name, sa.unique_id, why);
        respond(sa, ExchangeType::ike_auth, mid, {notify_payload(notify::authentication_failed)});
        ++stats.auth_failures;
        note_failure(sa.conn->name, Phase::ike_auth, "IKE_AUTH", Detected::local, false,
                     notify::authentication_failed, auth_failure_detail(why));
        sa.state = IkeState::dead;
        return;
    }
    sa.peer_certreq = find_payload<CertReqPayload>(p, PayloadType::certreq) != nullptr;
    auto auth = make_auth(sa, false);
    if (!auth) {
        respond(sa, ExchangeType::ike_auth, mid, {notify_payload(notify::authentication_failed)});
        fail(sa, Phase::ike_auth, 0, "no credentials to authenticate with");
        return;
    }
    std::vector<Payload> out;
    out.push_back(Payload{PayloadType::idr, false, sa.local_id});
    const auto& conn = *sa.conn;
    // Certificates go out unless send_cert = never: a peer without a
    // CERTREQ may still have no other way to get ours.
    if (conn.local.auth == AuthKind::pubkey && conn.send_cert != ConnectionConfig::SendCert::never) {
        auto& cr = creds[conn.name];
        if (cr.cert) {
            out.push_back(Payload{PayloadType::cert, false, CertPayload{4, cr.cert->der()}});
            for (const auto& c : cr.chain) out.push_back(Payload{PayloadType::cert, false, CertPayload{4, c.der()}});
        }
    }
    out.push_back(Payload{PayloadType::auth, false, *auth});

    if (find_notify(p, notify::initial_contact)) {
        // The peer restarted: its old IKE SAs with us are gone (RFC 7296 §2.4).
        for (auto& [k, o] : sas)
            if (o.get() != &sa && o->conn->name == sa.conn->name && o->state != IkeState::dead &&
                same_id(o->remote_id, sa.remote_id))
                destroy(now, *o, true);
    }
    established(now, sa);
    if (find_payload<SaPayload>(p, PayloadType::sa)) {
        std::vector<Payload> child;
        auto err = respond_child(now, sa, p, view(sa.ni), view(sa.nr), true, child, nullptr);
        if (err) log_ike()->info("{}: no Child SA in IKE_AUTH: {}", sa.conn->name, notify_name(*err));
        out.insert(out.end(), child.begin(), child.end());
    }
    respond(sa, ExchangeType::ike_auth, mid, out);
    schedule(now, sa);
    forget_auth_state(sa);
}

void Engine::Impl::auth_response(TimePoint now, IkeSa& sa, std::vector<Payload>& p)
{
    for (const auto& pl : p)
        if (const auto* n = std::get_if<NotifyPayload>(&pl.body))
            if (n->type == notify::authentication_failed || n->type == notify::invalid_syntax ||
                n->type == notify::unsupported_critical_payload) {
                ++stats.auth_failures;
                fail(sa, Phase::ike_auth, n->type, {}, Detected::peer);
                return;
            }
    std::string why;
    if (!verify_peer(sa, p, false, why)) {
        ++stats.auth_failures;
        // Tell the responder, which considers the IKE SA up (RFC 7296
        // §2.21.2 allows this one INFORMATIONAL; no answer is awaited).
        send_all(sa, protect(sa, header_for(sa, ExchangeType::informational, false, sa.next_mid),
                             {notify_payload(notify::authentication_failed)}));
        fail(sa, Phase::ike_auth, notify::authentication_failed, auth_failure_detail(why));
        return;
    }
    established(now, sa);
    if (sa.reauth_of) {
        // Reauthenticated: the old IKE SA and its Child SAs go a moment
        // after the new ones are in. Packets each side sent on the old SAs
        // before it switched may still be on their way, or queued in a
        // user-space ESP (strongSwan's kernel-libipsec); an immediate delete
        // lost one now and then. Meanwhile the old SA starts nothing.
        if (auto it = sas.find(sa.reauth_of); it != sas.end() && it->second->state == IkeState::established) {
            IkeSa& old = *it->second;
            log_ike()->info("{}: IKE_SA #{} reauthenticated as #{}, deleted in {} ms", sa.conn->name, old.unique_id,
                            sa.unique_id, reauth_grace.count());
            old.queue.clear();
            old.rekey_at = old.reauth_at = TimePoint::max();
            for (auto& c : old.children) c.rekey_at = TimePoint::max();
            old.retire_at = now + reauth_grace;
        }
        sa.reauth_of = 0;
    }
    if (!sa.auth_child.empty()) {
        uint16_t err = 0;
        for (const auto& pl : p)
            if (const auto* n = std::get_if<NotifyPayload>(&pl.body))
                if (is_error_notify(n->type)) err = n->type;
        if (err) {
            note_failure(sa.conn->name, Phase::child, "IKE_AUTH", Detected::peer, true, err, {}, sa.auth_child);
            log_ike()->info("{}: IKE SA up, but the Child SA '{}' failed: {}", sa.conn->name, sa.auth_child,
                            notify_name(err));
        } else {
            Request req;
            req.kind = ExchangeKind::create_child;
            req.child = sa.auth_child;
            req.new_spi = sa.auth_child_spi;
            req.tsi = sa.auth_tsi;
            req.tsr = sa.auth_tsr;
            req.nonce = sa.ni;
            if (!complete_child(now, sa, req, p, view(sa.ni), view(sa.nr), why)) {
                note_failure(sa.conn->name, Phase::child, "IKE_AUTH", Detected::local, true, 0, why, sa.auth_child);
                log_ike()->info("{}: Child SA '{}' from IKE_AUTH refused: {}", sa.conn->name, sa.auth_child, why);
            }
        }
    }
    drop_early_inbound(sa);   // the child failed: nothing confirmed it
    schedule(now, sa);
    forget_auth_state(sa);
}

void Engine::Impl::established(TimePoint now, IkeSa& sa)
{
    sa.state = IkeState::established;
    sa.established_at = now;
    // What only IKE_AUTH needed (RFC 7296 §2.15 signed octets, DH) goes.
    Bytes().swap(sa.init_request);
    Bytes().swap(sa.init_response);
    Bytes().swap(sa.ke_public);
    Bytes().swap(sa.cookie);
    sa.dh.reset();
    sa.last_rx = now;
    sa.expire_at = TimePoint::max();
    uint64_t over = sa.conn->over_time_s ? sa.conn->over_time_s : sa.conn->rekey_time_s / 10;
    uint64_t rand = sa.conn->rand_time_s ? sa.conn->rand_time_s : over;
    sa.rekey_at = sa.conn->rekey_time_s
                      ? now + std::chrono::seconds(sa.conn->rekey_time_s) - jitter(std::min(rand, sa.conn->rekey_time_s / 2))
                      : TimePoint::max();
    // Only the side that initiated the IKE SA reauthenticates (it holds
    // the addresses and credentials to start a new one).
    sa.reauth_at = sa.conn->reauth_time_s && sa.initiator
                       ? now + std::chrono::seconds(sa.conn->reauth_time_s) -
                             jitter(std::min(rand, sa.conn->reauth_time_s / 2))
                       : TimePoint::max();
    half_open_index.erase({sa.spi_i, to_string(sa.remote)});
    for (auto it = half_open_index.begin(); it != half_open_index.end();)
        it = it->second == sa.our_spi() ? half_open_index.erase(it) : std::next(it);
    ++stats.ike_established;
    clear_failure(sa.conn->name);
    retry_at.erase(sa.conn->name);
    log_ike()->info("{}: IKE_SA #{} established between {} '{}' and {} '{}' ({}{})", sa.conn->name, sa.unique_id,
                    to_string(sa.local), id_text(sa.local_id), to_string(sa.remote), id_text(sa.remote_id),
                    describe(sa.selected, ProtocolId::ike),
                    sa.nat_local || sa.nat_remote || sa.nat_fake ? ", NAT-T" : "");
}

// --- IKE SA rekey -------------------------------------------------------------------

void Engine::Impl::rekey_ike(TimePoint now, IkeSa& sa)
{
    if (sa.state != IkeState::established) return;
    Request req;
    req.kind = ExchangeKind::rekey_ike;
    req.new_ike_spi = new_ike_spi();
    req.nonce = new_nonce();
    uint16_t group = sa.selected.dh;
    req.dh = new_dh(group);
    if (!req.dh) return;
    Bytes spi;
    put_u64(spi, req.new_ike_spi);
    SaPayload sap;
    uint8_t n = 1;
    for (auto spec : sa.conn->proposals) {
        // Offer the current group first: the peer already accepted it.
        std::stable_partition(spec.dh.begin(), spec.dh.end(), [&](const Transform& t) { return t.id == group; });
        sap.proposals.push_back(spec.to_proposal(n++, spi));
    }
    std::vector<Payload> p{Payload{PayloadType::sa, false, sap},
                           Payload{PayloadType::nonce, false, NoncePayload{req.nonce}},
                           Payload{PayloadType::ke, false, KePayload{group, req.dh->public_value()}}};
    // Reserve the SPI so no other SA takes it meanwhile.
    log_ike()->info("{}: rekeying IKE_SA #{}", sa.conn->name, sa.unique_id);
    start_request(now, sa, std::move(req), ExchangeType::create_child_sa, p);
}

void Engine::Impl::move_children(IkeSa& from, IkeSa& to)
{
    for (auto& c : from.children) {
        c.answer_mid.reset();   // a message ID of the old IKE SA
        to.children.push_back(std::move(c));
    }
    from.children.clear();
    to.queue.insert(to.queue.end(), from.queue.begin(), from.queue.end());
    from.queue.clear();
}

IkeSa& Engine::Impl::adopt_rekeyed(TimePoint now, IkeSa& old, uint64_t spi_i, uint64_t spi_r, bool we_initiated,
                                   const SelectedSuite& suite, const IkeSuite& s, ByteView shared, ByteView ni,
                                   ByteView nr)
{
    auto sa = std::make_unique<IkeSa>();
    sa->unique_id = next_unique++;
    sa->conn = old.conn;
    sa->initiator = we_initiated;
    sa->spi_i = spi_i;
    sa->spi_r = spi_r;
    sa->local = old.local;
    sa->remote = old.remote;
    sa->nat_local = old.nat_local;
    sa->nat_remote = old.nat_remote;
    sa->nat_fake = old.nat_fake;
    sa->peer_fragmentation = old.peer_fragmentation;
    sa->peer_sig_hashes = old.peer_sig_hashes;
    sa->local_id = old.local_id;
    sa->remote_id = old.remote_id;
    sa->selected = suite;
    sa->suite = s;
    sa->ni.assign(ni.begin(), ni.end());
    sa->nr.assign(nr.begin(), nr.end());
    sa->keys = derive_rekeyed_ike_keys(old.suite.prf, view(old.keys.sk_d), s, ni, nr, shared, spi_i, spi_r);
    const Bytes& ea = we_initiated ? sa->keys.sk_ei : sa->keys.sk_er;
    const Bytes& aa = we_initiated ? sa->keys.sk_ai : sa->keys.sk_ar;
    const Bytes& eb = we_initiated ? sa->keys.sk_er : sa->keys.sk_ei;
    const Bytes& ab = we_initiated ? sa->keys.sk_ar : sa->keys.sk_ai;
    sa->sk_out = SkCipher::create(s.encr, s.encr_key_bits, s.integ, view(ea), view(aa));
    sa->sk_in = SkCipher::create(s.encr, s.encr_key_bits, s.integ, view(eb), view(ab));
    if (hooks.ike_keys) hooks.ike_keys(spi_i, spi_r, sa->keys, s);
    sa->created = now;
    IkeSa& ref = *sa;
    sas.emplace(ref.our_spi(), std::move(sa));
    established(now, ref);
    --stats.ike_established;
    ++stats.ike_rekeys;
    return ref;
}

void Engine::Impl::rekey_ike_request(TimePoint now, IkeSa& sa, uint32_t mid, std::vector<Payload>& p)
{
    const auto* sap = find_payload<SaPayload>(p, PayloadType::sa);
    const auto* ni = find_payload<NoncePayload>(p, PayloadType::nonce);
    const auto* ke = find_payload<KePayload>(p, PayloadType::ke);
    if (!sap || !ni || !ke) {
        respond(sa, ExchangeType::create_child_sa, mid, {notify_payload(notify::invalid_syntax)});
        return;
    }
    // Not now (RFC 7296 §2.25; the peer tries again later): the IKE SA is
    // replaced or going, or our CREATE_CHILD_SA on it is unanswered, whose
    // answer would come here after the children moved on (strongSwan
    // refuses then too).
    auto busy = [&](ExchangeKind k) { return sa.request && sa.request->kind == k; };
    if (sa.successor || busy(ExchangeKind::delete_ike) || busy(ExchangeKind::create_child) ||
        busy(ExchangeKind::rekey_child)) {
        log_ike()->info("{}: the peer rekeys IKE_SA #{}, which is busy: TEMPORARY_FAILURE", sa.conn->name,
                        sa.unique_id);
        respond(sa, ExchangeType::create_child_sa, mid, {notify_payload(notify::temporary_failure)});
        return;
    }
    auto chosen = select_ike_proposal(sap->proposals, sa.conn->proposals, ke->group);
    if (!chosen || chosen->spi.size() != 8) {
        respond(sa, ExchangeType::create_child_sa, mid, {notify_payload(notify::no_proposal_chosen)});
        return;
    }
    if (chosen->dh != ke->group) {
        Bytes g;
        put_u16(g, chosen->dh);
        respond(sa, ExchangeType::create_child_sa, mid, {notify_payload(notify::invalid_ke_payload, g)});
        return;
    }
    auto dh = new_dh(chosen->dh);
    auto shared = dh ? dh->shared_secret(view(ke->data)) : std::nullopt;
    if (!shared) {
        respond(sa, ExchangeType::create_child_sa, mid, {notify_payload(notify::invalid_syntax)});
        return;
    }
    uint64_t peer_spi = get_u64(view(chosen->spi));
    uint64_t our_spi = new_ike_spi();
    Bytes nr = new_nonce();
    IkeSuite suite{chosen->encr, chosen->encr_key_bits, chosen->prf, chosen->integ, chosen->dh};
    Bytes spi;
    put_u64(spi, our_spi);
    respond(sa, ExchangeType::create_child_sa, mid,
            {Payload{PayloadType::sa, false, SaPayload{{chosen->to_proposal(ProtocolId::ike, spi)}}},
             Payload{PayloadType::nonce, false, NoncePayload{nr}},
             Payload{PayloadType::ke, false, KePayload{dh->group(), dh->public_value()}}});
    IkeSa& fresh = adopt_rekeyed(now, sa, peer_spi, our_spi, false, *chosen, suite, view(*shared), view(ni->data), view(nr));
    wipe(*shared);
    if (sa.request && sa.request->kind == ExchangeKind::rekey_ike) {
        // Collision: settled when our own rekey completes.
        sa.peer_rekey_spi = our_spi;
        sa.peer_rekey_ni = ni->data;
        sa.peer_rekey_nr = nr;
        return;
    }
    move_children(sa, fresh);
    sa.successor = our_spi;
    sa.state = IkeState::rekeyed;
    sa.expire_at = now + 60s;   // the peer deletes it; if it never does, we do
    schedule(now, fresh);
    log_ike()->info("{}: IKE_SA #{} rekeyed by the peer as #{}", sa.conn->name, sa.unique_id, fresh.unique_id);
}

void Engine::Impl::rekey_ike_response(TimePoint now, IkeSa& sa, Request& req, std::vector<Payload>& p)
{
    uint16_t err = 0;
    for (const auto& pl : p)
        if (const auto* n = std::get_if<NotifyPayload>(&pl.body))
            if (is_error_notify(n->type)) err = n->type;
    if (err) {
        log_ike()->info("{}: IKE_SA rekey failed: {}", sa.conn->name, notify_name(err));
        if (err == notify::invalid_ke_payload) {
            const auto* n = find_notify(p, notify::invalid_ke_payload);
            if (n && n->data.size() == 2) sa.selected.dh = uint16_t(n->data[0] << 8 | n->data[1]);
        }
        if (sa.peer_rekey_spi) {
            // The peer's rekey won meanwhile.
            auto it = sas.find(sa.peer_rekey_spi);
            if (it != sas.end()) {
                move_children(sa, *it->second);
                sa.successor = sa.peer_rekey_spi;
                sa.state = IkeState::rekeyed;
                sa.expire_at = now + 60s;
                schedule(now, *it->second);
            }
            return;
        }
        sa.rekey_at = now + std::chrono::seconds(err == notify::invalid_ke_payload ? 0 : 10);
        return;
    }
    const auto* sap = find_payload<SaPayload>(p, PayloadType::sa);
    const auto* nr = find_payload<NoncePayload>(p, PayloadType::nonce);
    const auto* ke = find_payload<KePayload>(p, PayloadType::ke);
    std::optional<SelectedSuite> chosen;
    if (sap && sap->proposals.size() == 1) chosen = accept_response(sap->proposals[0], sa.conn->proposals);
    std::optional<Bytes> shared;
    if (chosen && nr && ke && chosen->spi.size() == 8 && ke->group == chosen->dh && req.dh && req.dh->group() == chosen->dh)
        shared = req.dh->shared_secret(view(ke->data));
    if (!shared) {
        log_ike()->warn("{}: invalid IKE_SA rekey response; deleting the IKE SA", sa.conn->name);
        sa.queue.push_back(Pending{ExchangeKind::delete_ike, {}, 0, {}});
        return;
    }
    IkeSuite suite{chosen->encr, chosen->encr_key_bits, chosen->prf, chosen->integ, chosen->dh};
    IkeSa& fresh = adopt_rekeyed(now, sa, req.new_ike_spi, get_u64(view(chosen->spi)), true, *chosen, suite,
                                 view(*shared), view(req.nonce), view(nr->data));
    wipe(*shared);
    IkeSa* winner = &fresh;
    if (sa.peer_rekey_spi) {
        auto it = sas.find(sa.peer_rekey_spi);
        if (it != sas.end()) {
            IkeSa& theirs = *it->second;
            Bytes lo = std::min({req.nonce, nr->data, sa.peer_rekey_ni, sa.peer_rekey_nr});
            bool mine_redundant = lo == req.nonce || lo == nr->data;
            log_ike()->info("{}: IKE_SA rekey collision, {} new SA is redundant", sa.conn->name,
                            mine_redundant ? "our" : "the peer's");
            if (mine_redundant) {
                winner = &theirs;
                fresh.queue.push_back(Pending{ExchangeKind::delete_ike, {}, 0, {}});
                fresh.successor = theirs.our_spi();
            }
        }
    }
    move_children(sa, *winner);
    sa.successor = winner->our_spi();
    sa.state = IkeState::rekeyed;
    sa.expire_at = now + 60s;
    if (winner == &fresh) {
        // We won (or there was no collision): we delete the old IKE SA.
        sa.state = IkeState::established;   // so the queue runs
        sa.queue.clear();
        sa.queue.push_back(Pending{ExchangeKind::delete_ike, {}, 0, {}});
        run_queue(now, sa);
        sa.state = IkeState::rekeyed;
    }
    schedule(now, fresh);
    run_queue(now, fresh);
    if (winner != &fresh) schedule(now, *winner);
    log_ike()->info("{}: IKE_SA #{} rekeyed as #{}", sa.conn->name, sa.unique_id, winner->unique_id);
}

} // namespace ravelin::ike

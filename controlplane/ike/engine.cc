// The IKEv2 state machine. One IKE SA at a time per exchange direction
// (window size 1, RFC 7296 §2.3): each side has at most one request in
// flight, the last response is cached for retransmitted requests.
//
// Reading order: engine_impl.hh (the SA structures), this file (sending:
// protect, fragment, retransmit; receiving: decrypt, reassemble, dispatch;
// teardown; timers; operator commands; introspection), engine_ike.cc
// (IKE_SA_INIT, IKE_AUTH, IKE SA rekey), engine_child.cc (Child SAs,
// CREATE_CHILD_SA, INFORMATIONAL), engine_util.cc (helpers).
#include "engine_impl.hh"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>

#include <spdlog/spdlog.h>

namespace ravelin::ike {

// --- credentials ------------------------------------------------------------------

void Engine::Impl::load_credentials()
{
    creds.clear();
    for (const auto& conn : config.connections) {
        Credentials cr;
        std::string err;
        if (conn.local.auth == AuthKind::pubkey) {
            for (size_t i = 0; i < conn.local.certs.size(); ++i) {
                auto c = Certificate::load(conn.local.certs[i], err);
                if (!c) { cr.error = "certificate " + conn.local.certs[i] + ": " + err; break; }
                if (i == 0) cr.cert = std::move(c);
                else cr.chain.push_back(std::move(*c));
            }
            if (!cr.cert && cr.error.empty()) cr.error = "no local certificate configured";
            if (!conn.local.private_key.empty()) {
                cr.key = PrivateKey::load(conn.local.private_key, err);
                if (!cr.key) cr.error = "private key " + conn.local.private_key + ": " + err;
            } else if (cr.cert) {
                // secrets.private-*: the key that belongs to our certificate.
                for (const auto& pk : config.private_keys) {
                    auto k = PrivateKey::load(pk.file, err, pk.passphrase);
                    if (k && X509_check_private_key(static_cast<X509*>(cr.cert->native()),
                                                    static_cast<EVP_PKEY*>(k->native())) == 1) {
                        cr.key = std::move(k);
                        break;
                    }
                }
                ERR_clear_error();
            }
            if (!cr.key && cr.error.empty()) cr.error = "no private key for the local certificate";
        }
        if (conn.remote.auth == AuthKind::pubkey) {
            std::vector<std::string> cas = conn.remote.cacerts;
            for (const auto& a : config.authorities)
                if (!a.cacert.empty()) cas.push_back(a.cacert);
            for (const auto& path : cas) {
                auto c = Certificate::load(path, err);
                if (!c) { cr.error = "CA certificate " + path + ": " + err; continue; }
                cr.trust.add_ca(*c);
            }
            for (const auto& a : config.authorities)
                for (const auto& crl : a.crls)
                    if (!cr.trust.add_crl_file(crl, err)) cr.error = "CRL " + crl + ": " + err;
        }
        if (!cr.error.empty())
            log_ike()->error("{}: {}", conn.name, cr.error);
        creds.emplace(conn.name, std::move(cr));
    }
}

// The secret for a pair of identities: one naming both wins over one naming
// one of them, which wins over one naming none (swanctl's rule).
const SharedSecret* Engine::Impl::find_psk(const IdPayload& a, const IdPayload& b) const
{
    const SharedSecret* best = nullptr;
    int best_score = -1;
    for (const auto& s : config.secrets) {
        int score = 0;
        bool ma = false, mb = false;
        for (const auto& id : s.ids) {
            if (id.any) { ma = mb = true; continue; }
            ma |= same_id(id.id, a);
            mb |= same_id(id.id, b);
        }
        if (!s.ids.empty() && !ma && !mb) continue;
        score = s.ids.empty() ? 0 : int(ma) + int(mb);
        if (score > best_score) { best = &s; best_score = score; }
    }
    return best;
}

// --- sending ------------------------------------------------------------------------

Header Engine::Impl::header_for(const IkeSa& sa, ExchangeType x, bool response, uint32_t mid) const
{
    Header h;
    h.spi_i = sa.spi_i;
    h.spi_r = sa.spi_r;
    h.exchange = x;
    h.flags = uint8_t((sa.initiator ? header_flags::initiator : 0) | (response ? header_flags::response : 0));
    h.message_id = mid;
    return h;
}

// SK (or, when too big for one datagram and the peer supports it, SKF
// fragments, RFC 7383) around `inner`.
std::vector<Bytes> Engine::Impl::protect(IkeSa& sa, Header h, const std::vector<Payload>& inner)
{
    Bytes plain;
    uint8_t first = encode_payloads(inner, plain);
    std::size_t body = sa.sk_out->sealed_len(plain.size());
    std::size_t total = header_len + generic_header_len + body;
    // fragment_size counts the whole IP datagram, as strongSwan's does:
    // IP and UDP headers and, on the NAT-T port, the non-ESP marker.
    std::size_t overhead = (sa.remote.addr.family == IpFamily::v4 ? 20 : 40) + 8 +
                           (sa.local.port == config.daemon.port_nat_t ? 4 : 0);
    std::size_t limit = config.daemon.fragment_size > overhead + 256 ? config.daemon.fragment_size - overhead : 256;

    if (total <= limit || !sa.peer_fragmentation || h.exchange == ExchangeType::ike_sa_init ||
        sa.conn->fragmentation == Fragmentation::no) {
        Bytes msg;
        h.next_payload = uint8_t(PayloadType::sk);
        h.length = uint32_t(total);
        encode_header(h, msg);
        msg.push_back(first);
        msg.push_back(0);
        put_u16(msg, uint16_t(generic_header_len + body));
        Bytes sealed = sa.sk_out->seal(view(msg), view(plain));
        msg.insert(msg.end(), sealed.begin(), sealed.end());
        wipe(plain);
        return {std::move(msg)};
    }

    std::size_t room = sa.sk_out->max_plaintext(limit - header_len - 8);
    if (room == 0) room = 1;
    std::size_t count = (plain.size() + room - 1) / room;
    std::vector<Bytes> out;
    for (std::size_t i = 0; i < count; ++i) {
        ByteView chunk = ByteView(plain).subspan(i * room, std::min(room, plain.size() - i * room));
        std::size_t fbody = sa.sk_out->sealed_len(chunk.size());
        Bytes msg;
        h.next_payload = uint8_t(PayloadType::skf);
        h.length = uint32_t(header_len + 8 + fbody);
        encode_header(h, msg);
        msg.push_back(i == 0 ? first : 0);
        msg.push_back(0);
        put_u16(msg, uint16_t(8 + fbody));
        put_u16(msg, uint16_t(i + 1));
        put_u16(msg, uint16_t(count));
        Bytes sealed = sa.sk_out->seal(view(msg), chunk);
        msg.insert(msg.end(), sealed.begin(), sealed.end());
        out.push_back(std::move(msg));
    }
    wipe(plain);
    return out;
}

void Engine::Impl::send_all(IkeSa& sa, const std::vector<Bytes>& datagrams, bool retransmit)
{
    for (const auto& d : datagrams) {
        transport.send(sa.local, sa.remote, view(d));
        count_tx(view(d), retransmit);
    }
}

void Engine::Impl::count_tx(ByteView datagram, bool retransmit)
{
    ++stats.tx_messages;
    auto& m = stats.messages[exchange_index(datagram.size() > 18 ? datagram[18] : 0)];
    ++(retransmit ? m.out_retransmit : m.out_sent);
}

Duration Engine::Impl::retransmit_delay(unsigned sent) const
{
    double ms = config.daemon.retransmit_timeout_ms;
    for (unsigned i = 1; i < sent; ++i) ms *= config.daemon.retransmit_base;
    return std::chrono::milliseconds(int64_t(ms));
}

void Engine::Impl::start_request(TimePoint now, IkeSa& sa, Request req, ExchangeType x,
                                 const std::vector<Payload>& inner)
{
    req.message_id = sa.next_mid++;
    Header h = header_for(sa, x, false, req.message_id);
    req.datagrams = protect(sa, h, inner);
    req.sent = 1;
    req.next_send = now + retransmit_delay(1);
    send_all(sa, req.datagrams);
    sa.request = std::move(req);
}

void Engine::Impl::respond(IkeSa& sa, ExchangeType x, uint32_t mid, const std::vector<Payload>& inner)
{
    Header h = header_for(sa, x, true, mid);
    sa.response = protect(sa, h, inner);
    sa.response_mid = mid;
    sa.has_response = true;
    send_all(sa, sa.response);
}

// Sends the next queued request if none is in flight.
void Engine::Impl::run_queue(TimePoint now, IkeSa& sa)
{
    while (!sa.request && !sa.queue.empty() && sa.state == IkeState::established) {
        Pending p = std::move(sa.queue.front());
        sa.queue.pop_front();
        switch (p.kind) {
        case ExchangeKind::create_child: create_child(now, sa, p.child); break;
        case ExchangeKind::rekey_child: rekey_child(now, sa, p.spi); break;
        case ExchangeKind::delete_child: delete_children(now, sa, p.spis); break;
        case ExchangeKind::rekey_ike: rekey_ike(now, sa); break;
        case ExchangeKind::delete_ike: delete_ike(now, sa); break;
        case ExchangeKind::dpd: {
            Request r;
            r.kind = ExchangeKind::dpd;
            start_request(now, sa, std::move(r), ExchangeType::informational, {});
            break;
        }
        default: break;
        }
    }
}

// --- receiving ---------------------------------------------------------------------

void Engine::Impl::receive(TimePoint now, const Endpoint& local, const Endpoint& remote, ByteView msg)
{
    ++stats.rx_messages;
    // Counted per exchange on the way out: invalid if a check below said so.
    struct CountRx {
        EngineStats& s;
        std::size_t x;
        uint64_t invalid_before;
        ~CountRx() { ++(s.rx_invalid != invalid_before ? s.messages[x].in_invalid : s.messages[x].in_processed); }
    } count_rx{stats, exchange_index(msg.size() > 18 ? msg[18] : 0), stats.rx_invalid};
    Header h;
    if (!parse_header(msg, h)) {
        ++stats.rx_invalid;
        log_ike()->debug("{}: unparseable IKE header ({} bytes)", to_string(remote), msg.size());
        return;
    }
    Message m;
    auto st = parse_message(msg, m);
    if (!st) {
        ++stats.rx_invalid;
        log_ike()->info("{}: dropping {} byte IKE message: {} (payload {})", to_string(remote),
                        msg.size(), to_string(st.error), int(st.payload_type));
        return;
    }

    if (h.exchange == ExchangeType::ike_sa_init && !h.is_response()) {
        init_request(now, local, remote, msg, m);
        return;
    }
    uint64_t ours = h.from_initiator() ? h.spi_r : h.spi_i;
    auto it = sas.find(ours);
    if (it == sas.end() || it->second->state == IkeState::dead) {
        ++stats.rx_invalid;
        log_ike()->debug("{}: no IKE SA for SPI {}", to_string(remote), hex64(ours));
        return;
    }
    IkeSa& sa = *it->second;
    // The I flag names the original initiator: it must be the other side.
    if (h.from_initiator() == sa.initiator) {
        ++stats.rx_invalid;
        return;
    }
    if (h.exchange == ExchangeType::ike_sa_init) {
        init_response(now, sa, msg, m);
        return;
    }
    if (!sa.sk_in) { ++stats.rx_invalid; return; }

    if (!h.is_response()) {
        if (sa.has_response && h.message_id == sa.response_mid) {
            // A retransmitted request: answer with the cached response, once
            // per retransmission (for fragments: on fragment 1, RFC 7383 §2.6.1).
            const auto* f = m.payloads.empty() ? nullptr : std::get_if<FragmentPayload>(&m.payloads.back().body);
            if (!f || f->number == 1) send_all(sa, sa.response, true);
            return;
        }
        if (h.message_id != sa.peer_mid) {
            ++stats.rx_invalid;
            log_ike()->debug("{}: request with message ID {}, expected {}", sa.conn->name, h.message_id, sa.peer_mid);
            return;
        }
    } else if (!sa.request || h.message_id != sa.request->message_id) {
        ++stats.rx_invalid;
        return;
    }

    std::vector<Payload> inner;
    bool complete = false;
    if (!open_message(sa, msg, m, inner, complete)) {
        ++stats.rx_invalid;
        return;
    }
    if (!complete) return;
    sa.last_rx = now;
    // An authenticated message from a new address behind a NAT: follow it
    // (RFC 7296 §2.23, the NAT mapping changed).
    // (A port change alone is the peer floating to the NAT-T port.)
    bool natted = sa.nat_remote || sa.nat_local || sa.nat_fake;
    if (sa.remote != remote && (natted || sa.remote.addr == remote.addr)) {
        log_ike()->info("{}: peer moved {} -> {}", sa.conn->name, to_string(sa.remote), to_string(remote));
        sa.remote = remote;
    }
    if (sa.local != local && sa.local.addr == local.addr) sa.local = local;
    if (h.is_response())
        on_response(now, sa, h, inner);
    else
        on_request(now, sa, h, inner);
    reap();
}

// Decrypts an SK payload, or one SKF fragment and, once all have arrived,
// the reassembled message. `complete` says whether `inner` is ready.
bool Engine::Impl::open_message(IkeSa& sa, ByteView datagram, const Message& m,
                                std::vector<Payload>& inner, bool& complete)
{
    if (m.payloads.empty()) return false;
    const Payload& last = m.payloads.back();
    Bytes plain;
    uint8_t first = 0;
    if (const auto* sk = std::get_if<EncryptedPayload>(&last.body)) {
        if (m.payloads.size() != 1) return false;   // nothing unprotected beside SK
        std::size_t off = datagram.size() - sk->body.size();
        auto p = sa.sk_in->open(datagram.first(off), view(sk->body));
        if (!p) {
            log_ike()->info("{}: SK payload failed its integrity check", sa.conn->name);
            return false;
        }
        plain = std::move(*p);
        first = sk->first_inner;
    } else if (const auto* f = std::get_if<FragmentPayload>(&last.body)) {
        if (m.payloads.size() != 1 || f->number == 0 || f->total == 0 || f->number > f->total ||
            f->total > 64)
            return false;
        std::size_t off = datagram.size() - f->body.size();
        auto p = sa.sk_in->open(datagram.first(off), view(f->body));
        if (!p) return false;
        if (sa.frags.empty() || sa.frag_mid != m.header.message_id ||
            sa.frag_response != m.header.is_response() || sa.frag_total != f->total) {
            sa.frags.clear();
            sa.frag_mid = m.header.message_id;
            sa.frag_response = m.header.is_response();
            sa.frag_total = f->total;
        }
        if (f->number == 1) sa.frag_first = f->first_inner;
        sa.frags[f->number] = std::move(*p);
        if (sa.frags.size() < sa.frag_total) {
            complete = false;
            return true;
        }
        for (auto& [n, part] : sa.frags) plain.insert(plain.end(), part.begin(), part.end());
        first = sa.frag_first;
        sa.frags.clear();
    } else {
        return false;   // unprotected messages after IKE_SA_INIT are ignored
    }
    auto st = parse_payloads(first, view(plain), inner);
    wipe(plain);
    if (!st) {
        log_ike()->info("{}: bad payloads inside SK: {}", sa.conn->name, to_string(st.error));
        if (!m.header.is_response()) {
            NotifyPayload n;
            if (st.error == ParseError::unsupported_critical) {
                n.type = notify::unsupported_critical_payload;
                n.data = {st.payload_type};
            } else {
                n.type = notify::invalid_syntax;
            }
            respond(sa, m.header.exchange, m.header.message_id,
                    {Payload{PayloadType::notify, false, n}});
            ++sa.peer_mid;
            if (m.header.exchange == ExchangeType::ike_auth) sa.state = IkeState::dead;
        }
        return false;
    }
    complete = true;
    return true;
}

void Engine::Impl::on_request(TimePoint now, IkeSa& sa, const Header& h, std::vector<Payload>& p)
{
    uint32_t mid = h.message_id;
    ++sa.peer_mid;
    switch (h.exchange) {
    case ExchangeType::ike_auth:
        if (sa.initiator || sa.state != IkeState::authenticating) break;
        auth_request(now, sa, mid, p);
        return;
    case ExchangeType::create_child_sa:
        if (sa.state != IkeState::established) {
            NotifyPayload n;
            n.type = notify::temporary_failure;
            respond(sa, h.exchange, mid, {Payload{PayloadType::notify, false, n}});
            return;
        }
        for (const auto& pl : p)
            if (const auto* s = std::get_if<SaPayload>(&pl.body))
                if (!s->proposals.empty() && s->proposals[0].protocol == ProtocolId::ike) {
                    rekey_ike_request(now, sa, mid, p);
                    return;
                }
        create_child_request(now, sa, mid, p);
        return;
    case ExchangeType::informational:
        informational_request(now, sa, mid, p);
        return;
    default:
        break;
    }
    // Anything else in this state: an empty answer keeps the peer's window moving.
    respond(sa, h.exchange, mid, {});
}

void Engine::Impl::on_response(TimePoint now, IkeSa& sa, const Header& h, std::vector<Payload>& p)
{
    Request req = std::move(*sa.request);
    sa.request.reset();
    switch (req.kind) {
    case ExchangeKind::ike_auth:
        if (h.exchange == ExchangeType::ike_auth) auth_response(now, sa, p);
        break;
    case ExchangeKind::create_child:
    case ExchangeKind::rekey_child:
        create_child_response(now, sa, req, p);
        break;
    case ExchangeKind::rekey_ike:
        rekey_ike_response(now, sa, req, p);
        break;
    case ExchangeKind::delete_child: {
        // The peer's answer names its SPIs of the same Child SAs; ours go
        // now, from the IKE SA they moved to if the peer rekeyed this one
        // meanwhile (they wait as DELETING until then).
        IkeSa& holder = children_holder(sa);
        for (uint32_t spi : req.delete_spis)
            if (ChildSa* c = holder.child_by_in(spi)) uninstall(*c);
        erase_children(holder, req.delete_spis);
        break;
    }
    case ExchangeKind::delete_ike:
        destroy(now, sa, sa.successor == 0);
        return;
    case ExchangeKind::dpd:
        break;
    default:
        break;
    }
    if (sa.state == IkeState::established) {
        schedule(now, sa);
        run_queue(now, sa);
    }
    // What the answer left to do for Child SAs that moved on with a rekey
    // of this IKE SA (a delete, a retry) waits on the IKE SA holding them.
    if (IkeSa& holder = children_holder(sa); &holder != &sa && holder.state == IkeState::established)
        run_queue(now, holder);
}

void Engine::Impl::delete_ike(TimePoint now, IkeSa& sa)
{
    Request req;
    req.kind = ExchangeKind::delete_ike;
    DeletePayload d;
    d.protocol = ProtocolId::ike;
    start_request(now, sa, std::move(req), ExchangeType::informational, {Payload{PayloadType::delete_, false, d}});
    sa.state = IkeState::deleting;
}

void Engine::Impl::destroy(TimePoint now, IkeSa& sa, bool remove_children)
{
    hand_over_request(now, sa);
    if (remove_children)
        for (auto& c : sa.children) uninstall(c);
    sa.children.clear();
    sa.keys.wipe();
    sa.state = IkeState::dead;
    sa.request.reset();
}

void Engine::Impl::count_failure(Phase phase, std::string_view failure)
{
    ++stats.negotiation_failures;
    ++stats.failures[{phase, failure_reason(phase, failure)}];
}

void Engine::Impl::fail(IkeSa& sa, Phase phase, uint16_t notify, std::string detail, Detected by)
{
    const auto& st = note_failure(sa.conn->name, phase, phase == Phase::ike_sa_init ? "IKE_SA_INIT" : "IKE_AUTH",
                                  by, sa.initiator, notify, std::move(detail));
    log_ike()->warn("{}: IKE_SA #{} failed in {}: {}{}", sa.conn->name, sa.unique_id, st.exchange,
                    st.failure, by == Detected::peer ? " (from the peer)" : "");
    auto& tries = status[sa.conn->name].tries_left;
    if (sa.initiator && tries > 1) {
        --tries;
        retry_at[sa.conn->name] = {now_ + retransmit_delay(1), sa.auth_child};
    }
    for (auto& c : sa.children) uninstall(c);
    sa.children.clear();
    sa.state = IkeState::dead;
    sa.request.reset();
}

void Engine::Impl::schedule(TimePoint now, IkeSa& sa)
{
    sa.next_dpd = sa.conn->dpd_delay_s ? sa.last_rx + std::chrono::seconds(sa.conn->dpd_delay_s) : TimePoint::max();
    if (sa.nat_local && config.daemon.keepalive_s && sa.next_keepalive == TimePoint::max())
        sa.next_keepalive = now + std::chrono::seconds(config.daemon.keepalive_s);
}

void Engine::Impl::reap()
{
    for (auto it = sas.begin(); it != sas.end();) {
        if (it->second->state == IkeState::dead) {
            drop_early_inbound(*it->second);   // IKE_AUTH never completed
            uint64_t spi = it->first;
            for (auto h = half_open_index.begin(); h != half_open_index.end();)
                h = h->second == spi ? half_open_index.erase(h) : std::next(h);
            it = sas.erase(it);
        } else {
            ++it;
        }
    }
}

// --- timers --------------------------------------------------------------------------

void Engine::Impl::install_traps(const ConnectionConfig& conn)
{
    std::optional<IpAddress> local, remote;
    for (const auto& s : conn.local_addrs)
        if ((local = parse_address(s))) break;
    for (const auto& s : conn.remote_addrs)
        if ((remote = parse_address(s))) break;
    for (const auto& c : conn.children) {
        if (c.start_action != StartAction::trap) continue;
        if (!local || !remote || local->family != remote->family) {
            log_ike()->error("{}/{}: start_action = trap needs literal local_addrs and remote_addrs of one "
                             "family; no trap installed", conn.name, c.name);
            continue;
        }
        TrapRecord t{conn.name, c.name, reqid_for(conn.name, c), resolve_ts(c.local_ts, *local),
                     resolve_ts(c.remote_ts, *remote)};
        sink.install_trap(t);
        traps[t.reqid] = std::move(t);
    }
}

void Engine::Impl::remove_traps(const std::string& connection)
{
    for (auto it = traps.begin(); it != traps.end();) {
        if (it->second.connection != connection) { ++it; continue; }
        sink.remove_trap(it->second);
        it = traps.erase(it);
    }
}

TimePoint Engine::Impl::tick(TimePoint now)
{
    if (!started) {
        started = true;
        for (const auto& conn : config.connections) install_traps(conn);
        for (const auto& conn : config.connections)
            for (const auto& c : conn.children)
                if (c.start_action == StartAction::start) {
                    std::string err;
                    IkeSa* sa = find_any(conn.name);
                    if (sa) {
                        sa->queue.push_back(Pending{ExchangeKind::create_child, c.name, 0, {}});
                        continue;
                    }
                    status[conn.name].tries_left = conn.keyingtries ? conn.keyingtries : UINT32_MAX;
                    initiate_ike(now, conn, c.name);
                }
    }
    for (auto it = retry_at.begin(); it != retry_at.end();) {
        if (it->second.first > now) { ++it; continue; }
        auto [name, what] = *it;
        it = retry_at.erase(it);
        if (const auto* conn = config.find(name); conn && !find_any(name)) initiate_ike(now, *conn, what.second);
    }

    TimePoint next = now + 1s;
    std::vector<IkeSa*> all;
    for (auto& [k, sa] : sas) all.push_back(sa.get());
    for (IkeSa* sap : all) {
        IkeSa& sa = *sap;
        if (sa.state == IkeState::dead) continue;
        if (sa.request && now >= sa.request->next_send) {
            if (sa.request->sent > config.daemon.retransmit_tries) {
                log_ike()->warn("{}: IKE_SA #{}: no answer after {} transmissions", sa.conn->name, sa.unique_id,
                                sa.request->sent);
                if (sa.state == IkeState::connecting) { fail(sa, Phase::ike_sa_init, 0, "timeout"); continue; }
                if (sa.state == IkeState::authenticating) { fail(sa, Phase::ike_auth, 0, "timeout"); continue; }
                // An established peer that went silent: dead peer (RFC 7296 §2.4).
                bool restart = false;
                std::string first;
                for (const auto& c : sa.children) {
                    restart |= c.cfg->dpd_action == DpdAction::restart;
                    if (first.empty()) first = c.cfg->name;
                }
                note_failure(sa.conn->name, Phase::none, "INFORMATIONAL", Detected::local, true, 0, "peer dead (DPD)");
                destroy(now, sa, true);
                if (restart) retry_at[sa.conn->name] = {now + 1s, first};
                continue;
            }
            send_all(sa, sa.request->datagrams, true);
            ++stats.retransmits;
            ++sa.request->sent;
            sa.request->next_send = now + retransmit_delay(sa.request->sent);
        }
        if (now >= sa.expire_at) {
            if (sa.state == IkeState::rekeyed) {
                destroy(now, sa, sa.successor == 0);
                continue;
            }
            if (sa.state == IkeState::authenticating || sa.state == IkeState::connecting) {
                sa.state = IkeState::dead;
                continue;
            }
        }
        if (sa.state == IkeState::established) {
            if (now >= sa.reauth_at) {
                sa.reauth_at = TimePoint::max();
                sa.rekey_at = TimePoint::max();
                std::string first = sa.children.empty() ? std::string{} : sa.children.front().cfg->name;
                if (IkeSa* n = initiate_ike(now, *sa.conn, first)) {
                    n->reauth_of = sa.our_spi();
                    for (std::size_t i = 1; i < sa.children.size(); ++i)
                        n->queue.push_back(Pending{ExchangeKind::create_child, sa.children[i].cfg->name, 0, {}});
                }
            }
            if (now >= sa.rekey_at) {
                sa.rekey_at = TimePoint::max();
                sa.queue.push_back(Pending{ExchangeKind::rekey_ike, {}, 0, {}});
            }
            if (now >= sa.retire_at) {
                sa.retire_at = TimePoint::max();
                sa.queue.clear();
                sa.queue.push_back(Pending{ExchangeKind::delete_ike, {}, 0, {}});
            }
            if (now >= sa.next_dpd && !sa.request) {
                sa.queue.push_back(Pending{ExchangeKind::dpd, {}, 0, {}});
                sa.next_dpd = now + std::chrono::seconds(sa.conn->dpd_delay_s);
            }
            if (now >= sa.next_keepalive) {
                transport.send_keepalive(sa.local, sa.remote);
                sa.next_keepalive = now + std::chrono::seconds(config.daemon.keepalive_s);
            }
            std::vector<uint32_t> expired;
            for (auto& c : sa.children) {
                if (c.state == ChildState::installed && now >= c.rekey_at) {
                    c.rekey_at = TimePoint::max();
                    sa.queue.push_back(Pending{ExchangeKind::rekey_child, {}, c.spi_in(), {}});
                }
                if (now >= c.expire_at && c.state != ChildState::deleting) {
                    log_ike()->info("{}: CHILD_SA {}{{{}}} reached its hard lifetime", sa.conn->name, c.cfg->name,
                                    c.unique_id);
                    c.expire_at = TimePoint::max();
                    expired.push_back(c.spi_in());
                }
                // Only what can still happen: a redundant or replaced SA
                // is never rekeyed, one being deleted never expires again.
                if (c.state == ChildState::installed) next = std::min(next, c.rekey_at);
                if (c.state != ChildState::deleting) next = std::min(next, c.expire_at);
            }
            if (!expired.empty()) sa.queue.push_back(Pending{ExchangeKind::delete_child, {}, 0, expired});
            run_queue(now, sa);
        }
        if (sa.request) next = std::min(next, sa.request->next_send);
        next = std::min({next, sa.rekey_at, sa.reauth_at, sa.retire_at, sa.expire_at, sa.next_dpd, sa.next_keepalive});
    }
    for (const auto& [name, when] : retry_at) next = std::min(next, when.first);
    reap();
    return std::max(next, now);
}


// --- the public face ---------------------------------------------------------------

Engine::Engine(IkeConfig config, Transport& transport, SaSink& sink, Rng& rng, EngineHooks hooks)
    : impl_(std::make_unique<Impl>(std::move(config), transport, sink, rng, std::move(hooks)))
{
}

Engine::~Engine() = default;

void Engine::receive(TimePoint now, const Endpoint& local, const Endpoint& remote, ByteView message)
{
    impl_->now_ = now;
    impl_->receive(now, local, remote, message);
}

TimePoint Engine::tick(TimePoint now)
{
    impl_->now_ = now;
    return impl_->tick(now);
}

bool Engine::initiate(TimePoint now, std::string_view connection, std::string_view child, std::string& error)
{
    auto& I = *impl_;
    I.now_ = now;
    const ConnectionConfig* conn = I.config.find(connection);
    if (!conn) { error = fmt::format("no connection '{}'", connection); return false; }
    std::string name(child);
    if (!name.empty() && std::none_of(conn->children.begin(), conn->children.end(),
                                      [&](const ChildConfig& c) { return c.name == name; })) {
        error = fmt::format("connection '{}' has no child '{}'", connection, child);
        return false;
    }
    if (IkeSa* sa = I.find_any(connection)) {
        if (name.empty()) {
            if (conn->children.empty()) { error = "IKE SA already up"; return false; }
            name = conn->children.front().name;
        }
        sa->queue.push_back(Pending{ExchangeKind::create_child, name, 0, {}});
        I.run_queue(now, *sa);
        return true;
    }
    if (name.empty() && !conn->children.empty()) name = conn->children.front().name;
    I.status[conn->name].tries_left = conn->keyingtries ? conn->keyingtries : UINT32_MAX;
    if (!I.initiate_ike(now, *conn, name)) { error = "cannot initiate (see the log)"; return false; }
    return true;
}

bool Engine::terminate(TimePoint now, std::string_view connection, std::string& error)
{
    auto& I = *impl_;
    I.now_ = now;
    bool any = false;
    I.retry_at.erase(std::string(connection));
    for (auto& [k, sa] : I.sas) {
        if (sa->conn->name != connection || sa->state == IkeState::dead) continue;
        any = true;
        if (sa->state == IkeState::established) {
            sa->queue.clear();
            if (sa->request) {
                sa->queue.push_back(Pending{ExchangeKind::delete_ike, {}, 0, {}});
            } else {
                I.delete_ike(now, *sa);
            }
            // Children go now: the peer deletes them with the IKE SA.
            for (auto& c : sa->children) I.uninstall(c);
            sa->children.clear();
        } else {
            I.destroy(now, *sa, true);
        }
    }
    I.reap();
    if (!any) error = fmt::format("no IKE SA for '{}'", connection);
    return any;
}

bool Engine::rekey_ike(TimePoint now, std::string_view connection, std::string& error)
{
    auto& I = *impl_;
    I.now_ = now;
    IkeSa* sa = I.find_established(connection);
    if (!sa) { error = fmt::format("no established IKE SA for '{}'", connection); return false; }
    sa->queue.push_back(Pending{ExchangeKind::rekey_ike, {}, 0, {}});
    I.run_queue(now, *sa);
    return true;
}

bool Engine::rekey_child(TimePoint now, std::string_view connection, std::string_view child, std::string& error)
{
    auto& I = *impl_;
    I.now_ = now;
    IkeSa* sa = I.find_established(connection);
    if (!sa) { error = fmt::format("no established IKE SA for '{}'", connection); return false; }
    for (auto& c : sa->children)
        if (c.cfg->name == child && c.state == ChildState::installed) {
            sa->queue.push_back(Pending{ExchangeKind::rekey_child, {}, c.spi_in(), {}});
            I.run_queue(now, *sa);
            return true;
        }
    error = fmt::format("no installed CHILD_SA '{}' in '{}'", child, connection);
    return false;
}

void Engine::acquire(TimePoint now, uint32_t reqid)
{
    auto& I = *impl_;
    I.now_ = now;
    for (const auto& conn : I.config.connections)
        for (const auto& c : conn.children) {
            if (c.start_action != StartAction::trap || I.reqid_for(conn.name, c) != reqid) continue;
            IkeSa* sa = I.find_any(conn.name);
            if (sa) {
                bool have = false;
                for (const auto& ch : sa->children) have |= ch.cfg->name == c.name && ch.state != ChildState::deleting;
                for (const auto& q : sa->queue) have |= q.kind == ExchangeKind::create_child && q.child == c.name;
                if (sa->request && sa->request->child == c.name) have = true;
                if (sa->state != IkeState::established && sa->auth_child == c.name) have = true;
                if (have) return;
                sa->queue.push_back(Pending{ExchangeKind::create_child, c.name, 0, {}});
                I.run_queue(now, *sa);
                return;
            }
            log_ike()->info("{}: acquire for reqid {}, initiating", conn.name, reqid);
            I.status[conn.name].tries_left = conn.keyingtries ? conn.keyingtries : UINT32_MAX;
            I.initiate_ike(now, conn, c.name);
            return;
        }
}

void Engine::adopt(std::string_view connection, std::string_view child, uint32_t reqid,
                   std::span<const uint32_t> inbound_spis)
{
    auto& I = *impl_;
    I.reqids[fmt::format("{}/{}", connection, child)] = reqid;
    I.next_reqid = std::max(I.next_reqid, reqid + 1);
    I.spis_in_use.insert(inbound_spis.begin(), inbound_spis.end());
    I.status[std::string(connection)].adopted = true;
}

void Engine::sa_expired(TimePoint now, uint32_t spi, bool hard)
{
    auto& I = *impl_;
    I.now_ = now;
    for (auto& [k, sa] : I.sas) {
        ChildSa* c = sa->child_by_in(spi);
        if (!c) c = sa->child_by_out(spi);
        if (!c || sa->state != IkeState::established) continue;
        if (hard) {
            sa->queue.push_back(Pending{ExchangeKind::delete_child, {}, 0, {c->spi_in()}});
        } else if (c->state == ChildState::installed) {
            c->rekey_at = TimePoint::max();
            sa->queue.push_back(Pending{ExchangeKind::rekey_child, {}, c->spi_in(), {}});
        }
        I.run_queue(now, *sa);
        return;
    }
}

std::vector<std::string> Engine::reload(TimePoint now, IkeConfig config)
{
    auto& I = *impl_;
    I.now_ = now;
    std::vector<std::string> touched;
    for (const auto& old : I.config.connections) {
        const ConnectionConfig* now_cfg = config.find(old.name);
        if (now_cfg && same_connection(old, *now_cfg)) continue;
        touched.push_back(old.name);
        std::string err;
        terminate(now, old.name, err);
        I.remove_traps(old.name);
    }
    for (const auto& c : config.connections)
        if (!I.config.find(c.name)) touched.push_back(c.name);
    I.config = std::move(config);
    I.share_configs();
    I.load_credentials();
    for (const auto& name : touched) {
        const ConnectionConfig* conn = I.config.find(name);
        if (!conn) continue;
        if (I.started) I.install_traps(*conn);
        for (const auto& c : conn->children)
            if (c.start_action == StartAction::start) {
                std::string err;
                initiate(now, name, c.name, err);
            }
    }
    return touched;
}

std::vector<IkeSaInfo> Engine::list_sas(TimePoint now) const
{
    std::vector<IkeSaInfo> out;
    for (const auto& [k, sa] : impl_->sas) {
        if (sa->state == IkeState::dead) continue;
        IkeSaInfo i;
        i.name = sa->conn->name;
        i.unique_id = sa->unique_id;
        i.state = std::string(state_name(sa->state));
        i.initiator = sa->initiator;
        i.spi_i = sa->spi_i;
        i.spi_r = sa->spi_r;
        i.local = sa->local;
        i.remote = sa->remote;
        i.local_id = id_text(sa->local_id);
        i.remote_id = id_text(sa->remote_id);
        i.nat_local = sa->nat_local;
        i.nat_remote = sa->nat_remote;
        i.nat_fake = sa->nat_fake;
        i.suite = sa->selected;
        i.established_s = sa->state == IkeState::established ? seconds_between(sa->established_at, now) : 0;
        i.rekey_in_s = sa->rekey_at == TimePoint::max() ? -1 : seconds_between(now, sa->rekey_at);
        for (const auto& c : sa->children) {
            ChildSaInfo ci;
            ci.name = c.cfg->name;
            ci.unique_id = c.unique_id;
            ci.reqid = c.record.reqid;
            ci.state = std::string(state_name(c.state));
            ci.mode = c.cfg->mode;
            ci.udp_encap = c.record.inbound.udp_encap;
            ci.spi_in = c.spi_in();
            ci.spi_out = c.spi_out();
            ci.suite = c.record.suite;
            ci.local_ts = c.record.local_ts;
            ci.remote_ts = c.record.remote_ts;
            ci.installed_s = seconds_between(c.installed_at, now);
            ci.rekey_in_s = c.rekey_at == TimePoint::max() ? -1 : seconds_between(now, c.rekey_at);
            ci.life_in_s = c.expire_at == TimePoint::max() ? -1 : seconds_between(now, c.expire_at);
            i.children.push_back(std::move(ci));
        }
        out.push_back(std::move(i));
    }
    std::sort(out.begin(), out.end(), [](const IkeSaInfo& a, const IkeSaInfo& b) { return a.unique_id < b.unique_id; });
    return out;
}

const EngineStats& Engine::stats() const
{
    impl_->stats.half_open = impl_->half_open();
    return impl_->stats;
}

const IkeConfig& Engine::config() const { return impl_->config; }


} // namespace ravelin::ike

// One IKE SA + Child SA setup as an initiator (see ike_loadgen_setup.hh).
//
//   Initiator                         Responder
//   HDR, [N(COOKIE)], SAi1, KEi, Ni,
//        N(NAT_D_SRC), N(NAT_D_DST) -->
//                                 <-- HDR, SAr1, KEr, Nr, [N(NAT_D_*)]
//   HDR, SK {IDi, AUTH, SAi2,
//            TSi, TSr}            -->
//                                 <-- HDR, SK {IDr, AUTH, SAr2, TSi, TSr}
//   (delete mode)
//   HDR, SK {D(IKE)}              -->
//                                 <-- HDR, SK {}
#include "ike_loadgen_setup.hh"

#include <openssl/crypto.h>

#include <algorithm>
#include <string_view>

namespace ravelin::ike::loadgen {

namespace {

constexpr std::string_view key_pad_text = "Key Pad for IKEv2";
constexpr uint16_t aes_gcm_bits = 256;
constexpr std::size_t max_cookie_len = 64;     // RFC 7296 §2.6
constexpr uint8_t max_cookie_rounds = 3;

ByteView view(const Bytes& b) { return ByteView(b.data(), b.size()); }

void put_u64(Bytes& out, uint64_t v)
{
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(uint8_t(v >> shift));
}

Bytes id_body(const IdPayload& id)
{
    Bytes b(4 + id.data.size(), 0);
    b[0] = uint8_t(id.type);
    std::copy(id.data.begin(), id.data.end(), b.begin() + 4);
    return b;
}

Payload notify_payload(uint16_t type, Bytes data)
{
    NotifyPayload n;
    n.type = type;
    n.data = std::move(data);
    return Payload{PayloadType::notify, false, std::move(n)};
}

// The first error notify in a payload chain, 0 if none.
uint16_t error_notify(const std::vector<Payload>& p)
{
    for (const auto& pl : p)
        if (const auto* n = std::get_if<NotifyPayload>(&pl.body))
            if (is_error_notify(n->type)) return n->type;
    return 0;
}

bool is_our_ike_proposal(const SaPayload& sa)
{
    if (sa.proposals.size() != 1) return false;
    const Proposal& p = sa.proposals[0];
    if (p.protocol != ProtocolId::ike || p.transforms.size() != 3) return false;
    bool encr = false, prf_ok = false, group = false;
    for (const auto& t : p.transforms) {
        encr |= t.type == TransformType::encr && t.id == encr::aes_gcm_16 && t.key_bits == aes_gcm_bits;
        prf_ok |= t.type == TransformType::prf && t.id == prf::hmac_sha2_256;
        group |= t.type == TransformType::dh && t.id == dh::curve25519;
    }
    return encr && prf_ok && group;
}

Step fail(Failure f) { return Step{Step::Kind::failed, f}; }
Step send() { return Step{Step::Kind::send, {}}; }

} // namespace

std::string_view to_string(Failure f)
{
    switch (f) {
    case Failure::init_notify: return "init_notify";
    case Failure::init_bad: return "init_bad_response";
    case Failure::dh_invalid: return "init_invalid_ke";
    case Failure::auth_notify: return "auth_notify";
    case Failure::auth_decrypt: return "auth_decrypt_failed";
    case Failure::auth_bad: return "auth_bad_response";
    case Failure::auth_mismatch: return "auth_responder_auth_mismatch";
    case Failure::no_child: return "no_child_sa";
    case Failure::timeout_init: return "timeout_ike_sa_init";
    case Failure::timeout_auth: return "timeout_ike_auth";
    case Failure::count_: break;
    }
    return "unknown";
}

void Setup::reset()
{
    phase = Phase::idle;
    tries = 0;
    cookie_rounds = 0;
    floated = false;
    last_notify = 0;
    spi_r = 0;
    wipe(sk_pr);
    sk_out.reset();
    sk_in.reset();
    cookie.clear();
    nr.clear();
    init_request.clear();
    init_response.clear();
    request.clear();
}

Initiator::Initiator(InitiatorConfig cfg, Endpoint responder)
    : cfg_(std::move(cfg)), responder_(responder)
{
    suite_.encr = encr::aes_gcm_16;
    suite_.encr_key_bits = aes_gcm_bits;
    suite_.prf = prf::hmac_sha2_256;
    suite_.integ = integ::none;
    suite_.dh = dh::curve25519;
    dh_ = DhKey::create(dh::curve25519);
    Bytes psk(cfg_.psk.begin(), cfg_.psk.end());
    Bytes pad(key_pad_text.begin(), key_pad_text.end());
    key_pad_ = prf_compute(suite_.prf, view(psk), view(pad));
    wipe(psk);

    Proposal p;
    p.number = 1;
    p.protocol = ProtocolId::ike;
    p.transforms = {{TransformType::encr, encr::aes_gcm_16, aes_gcm_bits},
                    {TransformType::prf, prf::hmac_sha2_256, 0},
                    {TransformType::dh, dh::curve25519, 0}};
    ike_sa_ = Payload{PayloadType::sa, false, SaPayload{{std::move(p)}}};
}

Bytes Initiator::natd_hash(uint64_t spi_i, uint64_t spi_r, const Endpoint& e) const
{
    Bytes in;
    in.reserve(22);
    put_u64(in, spi_i);
    put_u64(in, spi_r);
    in.insert(in.end(), e.addr.begin(), e.addr.end());
    in.push_back(uint8_t(e.port >> 8));
    in.push_back(uint8_t(e.port));
    return sha1(view(in));
}

void Initiator::start(Setup& s, uint32_t number, uint64_t spi_i, const Endpoint& local)
{
    s.reset();
    s.phase = Phase::init;
    s.number = number;
    s.spi_i = spi_i;
    s.esp_spi = 0xc0000000u | (number & 0x3fffffffu);
    s.local = local;
    random_bytes(s.ni);
    build_init(s);
}

void Initiator::build_init(Setup& s)
{
    std::vector<Payload> p;
    p.reserve(6);
    if (!s.cookie.empty()) p.push_back(notify_payload(notify::cookie, s.cookie));
    p.push_back(ike_sa_);
    p.push_back(Payload{PayloadType::ke, false, KePayload{dh::curve25519, dh_->public_value()}});
    p.push_back(Payload{PayloadType::nonce, false, NoncePayload{Bytes(s.ni.begin(), s.ni.end())}});
    if (cfg_.nat_detection) {
        p.push_back(notify_payload(notify::nat_detection_source_ip, natd_hash(s.spi_i, 0, s.local)));
        p.push_back(notify_payload(notify::nat_detection_destination_ip,
                                   natd_hash(s.spi_i, 0, responder_)));
    }
    Header h;
    h.spi_i = s.spi_i;
    h.exchange = ExchangeType::ike_sa_init;
    h.flags = header_flags::initiator;
    s.init_request = encode_message(h, p);
    s.request = s.init_request;
}

Bytes Initiator::seal(Setup& s, ExchangeType ex, uint32_t message_id, const std::vector<Payload>& inner)
{
    Bytes plain;
    uint8_t first = encode_payloads(inner, plain);
    std::size_t body = s.sk_out->sealed_len(plain.size());
    Bytes msg;
    msg.reserve(4 + header_len + generic_header_len + body);
    if (s.floated) msg.assign(4, 0);            // non-ESP marker (RFC 3948 §2.2)
    std::size_t start = msg.size();
    Header h;
    h.spi_i = s.spi_i;
    h.spi_r = s.spi_r;
    h.next_payload = uint8_t(PayloadType::sk);
    h.exchange = ex;
    h.flags = header_flags::initiator;
    h.message_id = message_id;
    h.length = uint32_t(header_len + generic_header_len + body);
    encode_header(h, msg);
    msg.push_back(first);
    msg.push_back(0);
    msg.push_back(uint8_t((generic_header_len + body) >> 8));
    msg.push_back(uint8_t(generic_header_len + body));
    Bytes sealed = s.sk_out->seal(ByteView(msg).subspan(start), view(plain));
    msg.insert(msg.end(), sealed.begin(), sealed.end());
    wipe(plain);
    return msg;
}

std::optional<std::vector<Payload>> Initiator::open(Setup& s, const Message& m, ByteView datagram)
{
    if (m.payloads.empty()) return std::nullopt;
    const auto* sk = std::get_if<EncryptedPayload>(&m.payloads.back().body);
    if (!sk || m.payloads.back().type != PayloadType::sk || sk->body.size() > datagram.size())
        return std::nullopt;
    ByteView prefix = datagram.first(datagram.size() - sk->body.size());
    auto plain = s.sk_in->open(prefix, view(sk->body));
    if (!plain) return std::nullopt;
    std::vector<Payload> inner;
    if (!parse_payloads(sk->first_inner, view(*plain), inner)) return std::nullopt;
    return inner;
}

Step Initiator::on_response(Setup& s, ByteView datagram)
{
    Message m;
    if (!parse_message(datagram, m)) return {};
    const Header& h = m.header;
    if (!h.is_response() || h.from_initiator() || h.spi_i != s.spi_i) return {};
    switch (s.phase) {
    case Phase::init:
        if (h.exchange != ExchangeType::ike_sa_init || h.message_id != 0) return {};
        return on_init_response(s, m, datagram);
    case Phase::auth:
        if (h.exchange != ExchangeType::ike_auth || h.message_id != 1 || h.spi_r != s.spi_r) return {};
        return on_auth_response(s, m, datagram);
    case Phase::del:
        if (h.exchange != ExchangeType::informational || h.message_id != 2 || h.spi_r != s.spi_r)
            return {};
        // Any response that decrypts ends the delete (RFC 7296 §1.4.1: empty).
        if (!open(s, m, datagram)) return {};
        return Step{Step::Kind::deleted, {}};
    case Phase::idle:
        break;
    }
    return {};
}

Step Initiator::on_init_response(Setup& s, const Message& m, ByteView datagram)
{
    const auto& p = m.payloads;
    if (const auto* c = find_notify(p, notify::cookie)) {
        if (c->data.empty() || c->data.size() > max_cookie_len || ++s.cookie_rounds > max_cookie_rounds)
            return fail(Failure::init_bad);
        ++cookies_;
        s.cookie = c->data;
        build_init(s);
        return send();
    }
    if (uint16_t n = error_notify(p)) {
        s.last_notify = n;
        return fail(Failure::init_notify);
    }
    const auto* sa = find_payload<SaPayload>(p, PayloadType::sa);
    const auto* ke = find_payload<KePayload>(p, PayloadType::ke);
    const auto* nr = find_payload<NoncePayload>(p, PayloadType::nonce);
    if (!sa || !ke || !nr || m.header.spi_r == 0 || !is_our_ike_proposal(*sa) ||
        ke->group != dh::curve25519 || nr->data.size() < 16 || nr->data.size() > 256)
        return fail(Failure::init_bad);
    auto shared = dh_->shared_secret(view(ke->data));
    if (!shared) return fail(Failure::dh_invalid);

    s.spi_r = m.header.spi_r;
    s.nr = nr->data;
    IkeKeys keys = derive_ike_keys(suite_, ByteView(s.ni), view(s.nr), view(*shared), s.spi_i, s.spi_r);
    wipe(*shared);
    s.sk_out = SkCipher::create(suite_.encr, suite_.encr_key_bits, integ::none, view(keys.sk_ei), {});
    s.sk_in = SkCipher::create(suite_.encr, suite_.encr_key_bits, integ::none, view(keys.sk_er), {});
    if (!s.sk_out || !s.sk_in) {
        keys.wipe();
        return fail(Failure::init_bad);
    }

    // NAT detection (RFC 7296 §2.23): any mismatch means a NAT (or a
    // responder that claims one, as strongSwan with kernel-libipsec does):
    // IKE_AUTH then goes to the NAT-T port with the non-ESP marker.
    if (cfg_.nat_detection) {
        bool src_seen = false, src_ok = false, dst_ok = true;
        Bytes src_hash = natd_hash(s.spi_i, s.spi_r, responder_);
        Bytes dst_hash = natd_hash(s.spi_i, s.spi_r, s.local);
        for (const auto& pl : p)
            if (const auto* n = std::get_if<NotifyPayload>(&pl.body)) {
                if (n->type == notify::nat_detection_source_ip) {
                    src_seen = true;
                    src_ok |= n->data == src_hash;
                } else if (n->type == notify::nat_detection_destination_ip) {
                    dst_ok = n->data == dst_hash;
                }
            }
        s.floated = src_seen && (!src_ok || !dst_ok);
    }
    s.init_response.assign(datagram.begin(), datagram.end());

    // Our AUTH: prf(prf(PSK, pad), init_request | Nr | prf(SK_pi, IDi')).
    std::string name = cfg_.id_prefix + std::to_string(s.number) + cfg_.id_suffix;
    IdPayload idi{IdType::fqdn, Bytes(name.begin(), name.end())};
    Bytes octets = s.init_request;
    octets.insert(octets.end(), s.nr.begin(), s.nr.end());
    Bytes mac = prf_compute(suite_.prf, view(keys.sk_pi), view(id_body(idi)));
    octets.insert(octets.end(), mac.begin(), mac.end());
    AuthPayload auth{AuthMethod::shared_key, prf_compute(suite_.prf, view(key_pad_), view(octets))};
    s.sk_pr = std::move(keys.sk_pr);
    keys.wipe();

    Proposal esp;
    esp.number = 1;
    esp.protocol = ProtocolId::esp;
    esp.spi = {uint8_t(s.esp_spi >> 24), uint8_t(s.esp_spi >> 16), uint8_t(s.esp_spi >> 8),
               uint8_t(s.esp_spi)};
    esp.transforms = {{TransformType::encr, encr::aes_gcm_16, aes_gcm_bits},
                      {TransformType::esn, 0, 0}};
    TrafficSelector tsi;
    if (cfg_.tsi_per_client)
        tsi.start = IpAddress::v4(0xc6130000u | (s.number & 0xffffu));   // 198.19.x.y
    else
        tsi.start = IpAddress::v4(uint32_t(s.local.addr[0]) << 24 | uint32_t(s.local.addr[1]) << 16 |
                                  uint32_t(s.local.addr[2]) << 8 | s.local.addr[3]);
    tsi.end = tsi.start;

    std::vector<Payload> inner;
    inner.reserve(5);
    inner.push_back(Payload{PayloadType::idi, false, std::move(idi)});
    inner.push_back(Payload{PayloadType::auth, false, std::move(auth)});
    inner.push_back(Payload{PayloadType::sa, false, SaPayload{{std::move(esp)}}});
    inner.push_back(Payload{PayloadType::tsi, false, TsPayload{{tsi}}});
    inner.push_back(Payload{PayloadType::tsr, false, TsPayload{{cfg_.tsr}}});
    s.phase = Phase::auth;
    s.request = seal(s, ExchangeType::ike_auth, 1, inner);
    return send();
}

Step Initiator::on_auth_response(Setup& s, const Message& m, ByteView datagram)
{
    auto inner = open(s, m, datagram);
    if (!inner) return fail(Failure::auth_decrypt);
    const auto* idr = find_payload<IdPayload>(*inner, PayloadType::idr);
    const auto* auth = find_payload<AuthPayload>(*inner, PayloadType::auth);
    uint16_t err = error_notify(*inner);
    if (!idr || !auth) {
        s.last_notify = err;
        return fail(err ? Failure::auth_notify : Failure::auth_bad);
    }
    if (auth->method != AuthMethod::shared_key) return fail(Failure::auth_mismatch);

    // The responder's AUTH: prf(prf(PSK, pad), init_response | Ni | prf(SK_pr, IDr')).
    Bytes octets = s.init_response;
    octets.insert(octets.end(), s.ni.begin(), s.ni.end());
    Bytes mac = prf_compute(suite_.prf, view(s.sk_pr), view(id_body(*idr)));
    octets.insert(octets.end(), mac.begin(), mac.end());
    Bytes expect = prf_compute(suite_.prf, view(key_pad_), view(octets));
    if (expect.size() != auth->data.size() ||
        CRYPTO_memcmp(expect.data(), auth->data.data(), expect.size()) != 0)
        return fail(Failure::auth_mismatch);

    const auto* sa = find_payload<SaPayload>(*inner, PayloadType::sa);
    bool child = sa && sa->proposals.size() == 1 && sa->proposals[0].protocol == ProtocolId::esp &&
                 sa->proposals[0].spi.size() == 4 &&
                 find_payload<TsPayload>(*inner, PayloadType::tsi) &&
                 find_payload<TsPayload>(*inner, PayloadType::tsr);
    if (!child) {
        s.last_notify = err;
        return fail(Failure::no_child);
    }
    return Step{Step::Kind::established, {}};
}

void Initiator::start_delete(Setup& s)
{
    std::vector<Payload> inner;
    inner.push_back(Payload{PayloadType::delete_, false, DeletePayload{ProtocolId::ike, {}}});
    s.phase = Phase::del;
    s.request = seal(s, ExchangeType::informational, 2, inner);
}

} // namespace ravelin::ike::loadgen

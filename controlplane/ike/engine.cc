// The IKEv2 state machine. One IKE SA at a time per exchange direction
// (window size 1, RFC 7296 §2.3): each side has at most one request in
// flight, the last response is cached for retransmitted requests.
//
// Reading order: helpers; the SA structures; sending (protect, fragment,
// retransmit); receiving (decrypt, reassemble, dispatch); the exchanges
// (IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL), each with its
// initiator and responder half; timers; operator commands; introspection.
#include "engine.hh"

#include <algorithm>
#include <cstring>
#include <deque>
#include <random>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include "cert.hh"

namespace ravelin::ike {

namespace {

using namespace std::chrono_literals;

// --- small helpers -----------------------------------------------------------------

std::shared_ptr<spdlog::logger> log_ike()
{
    static std::shared_ptr<spdlog::logger> fallback = spdlog::default_logger();
    auto l = spdlog::get("ike");
    return l ? l : fallback;
}

void put_u16(Bytes& b, uint16_t v) { b.push_back(uint8_t(v >> 8)); b.push_back(uint8_t(v)); }
void put_u32(Bytes& b, uint32_t v) { for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s)); }
void put_u64(Bytes& b, uint64_t v) { for (int s = 56; s >= 0; s -= 8) b.push_back(uint8_t(v >> s)); }
uint32_t get_u32(ByteView b) { return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3]; }
uint64_t get_u64(ByteView b) { return uint64_t(get_u32(b)) << 32 | get_u32(b.subspan(4)); }

Bytes concat(std::initializer_list<ByteView> parts)
{
    Bytes out;
    for (auto p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

ByteView view(const Bytes& b) { return {b.data(), b.size()}; }

Bytes text_bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

int64_t seconds_between(TimePoint from, TimePoint to)
{
    return std::chrono::duration_cast<std::chrono::seconds>(to - from).count();
}

std::string hex64(uint64_t v) { return fmt::format("{:016x}", v); }

std::string_view notify_name(uint16_t t)
{
    switch (t) {
    case notify::unsupported_critical_payload: return "UNSUPPORTED_CRITICAL_PAYLOAD";
    case notify::invalid_ike_spi: return "INVALID_IKE_SPI";
    case notify::invalid_major_version: return "INVALID_MAJOR_VERSION";
    case notify::invalid_syntax: return "INVALID_SYNTAX";
    case notify::invalid_message_id: return "INVALID_MESSAGE_ID";
    case notify::invalid_spi: return "INVALID_SPI";
    case notify::no_proposal_chosen: return "NO_PROPOSAL_CHOSEN";
    case notify::invalid_ke_payload: return "INVALID_KE_PAYLOAD";
    case notify::authentication_failed: return "AUTHENTICATION_FAILED";
    case notify::single_pair_required: return "SINGLE_PAIR_REQUIRED";
    case notify::no_additional_sas: return "NO_ADDITIONAL_SAS";
    case notify::internal_address_failure: return "INTERNAL_ADDRESS_FAILURE";
    case notify::failed_cp_required: return "FAILED_CP_REQUIRED";
    case notify::ts_unacceptable: return "TS_UNACCEPTABLE";
    case notify::invalid_selectors: return "INVALID_SELECTORS";
    case notify::temporary_failure: return "TEMPORARY_FAILURE";
    case notify::child_sa_not_found: return "CHILD_SA_NOT_FOUND";
    default: return "NOTIFY";
    }
}

std::string hint_for(Phase phase, std::string_view failure)
{
    if (failure == "NO_PROPOSAL_CHOSEN")
        return phase == Phase::ike_sa_init
                   ? "Phase 1 proposals do not overlap: compare `proposals` on both sides"
                   : "Phase 2 (ESP) proposals do not overlap: compare `esp_proposals`, incl. PFS group and ESN";
    if (failure == "AUTHENTICATION_FAILED")
        return "check the pre-shared key / certificates and that local/remote `id` match the other side";
    if (failure == "TS_UNACCEPTABLE")
        return "traffic selectors do not overlap: compare local_ts/remote_ts with the peer's (mirrored)";
    if (failure == "INVALID_KE_PAYLOAD")
        return "DH group mismatch: the peer asked for another group than the first one we proposed";
    if (failure == "timeout")
        return "no answer from the peer: check reachability of UDP 500/4500, remote_addrs, and that the peer runs";
    if (failure.starts_with("identity"))
        return "the peer's identity is not the configured remote id";
    if (failure.starts_with("certificate"))
        return "the peer's certificate did not validate against the configured CAs";
    return {};
}

// ID payload body as it enters the AUTH computation (RFC 7296 §2.15: IDx').
Bytes id_body(const IdPayload& id)
{
    Bytes b{uint8_t(id.type), 0, 0, 0};
    b.insert(b.end(), id.data.begin(), id.data.end());
    return b;
}

bool same_id(const IdPayload& a, const IdPayload& b) { return a.type == b.type && a.data == b.data; }

std::string id_text(const IdPayload& id)
{
    switch (id.type) {
    case IdType::ipv4:
        if (id.data.size() == 4) {
            char s[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, id.data.data(), s, sizeof s);
            return s;
        }
        break;
    case IdType::ipv6:
        if (id.data.size() == 16) {
            char s[INET6_ADDRSTRLEN];
            inet_ntop(AF_INET6, id.data.data(), s, sizeof s);
            return s;
        }
        break;
    case IdType::fqdn:
    case IdType::rfc822:
        return std::string(id.data.begin(), id.data.end());
    case IdType::der_asn1_dn: {
        // "C=XX, O=Example, CN=gw" in the certificate's order, as strongSwan prints it.
        const unsigned char* p = id.data.data();
        X509_NAME* name = d2i_X509_NAME(nullptr, &p, long(id.data.size()));
        if (!name) break;
        std::string out;
        for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
            X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
            int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
            unsigned char* utf8 = nullptr;
            int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
            if (n < 0) continue;
            const char* sn = nid == NID_undef ? "?" : OBJ_nid2sn(nid);
            out += fmt::format("{}{}={}", out.empty() ? "" : ", ", sn, std::string_view(reinterpret_cast<char*>(utf8), size_t(n)));
            OPENSSL_free(utf8);
        }
        X509_NAME_free(name);
        return out;
    }
    default:
        break;
    }
    return fmt::format("id-type-{} ({} bytes)", int(id.type), id.data.size());
}

IdPayload address_id(const IpAddress& a)
{
    IdPayload id;
    id.type = a.family == IpFamily::v4 ? IdType::ipv4 : IdType::ipv6;
    id.data.assign(a.bytes.begin(), a.bytes.begin() + long(a.size()));
    return id;
}

std::optional<IpAddress> parse_address(std::string_view text)
{
    std::string s(text);
    IpAddress a;
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
        a.family = IpFamily::v4;
        return a;
    }
    if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
        a.family = IpFamily::v6;
        return a;
    }
    return std::nullopt;
}

// NAT_DETECTION_*_IP data (RFC 7296 §2.23).
Bytes nat_hash(uint64_t spi_i, uint64_t spi_r, const Endpoint& e)
{
    Bytes in;
    put_u64(in, spi_i);
    put_u64(in, spi_r);
    in.insert(in.end(), e.addr.bytes.begin(), e.addr.bytes.begin() + long(e.addr.size()));
    put_u16(in, e.port);
    return sha1(view(in));
}

TrafficSelector host_ts(const IpAddress& a)
{
    TrafficSelector ts;
    ts.start = a;
    ts.end = a;
    return ts;
}

// Intersection of two selectors (RFC 7296 §2.9 narrowing), if not empty.
std::optional<TrafficSelector> intersect(const TrafficSelector& a, const TrafficSelector& b)
{
    if (a.start.family != b.start.family) return std::nullopt;
    if (a.protocol && b.protocol && a.protocol != b.protocol) return std::nullopt;
    TrafficSelector r;
    r.protocol = a.protocol ? a.protocol : b.protocol;
    r.start_port = std::max(a.start_port, b.start_port);
    r.end_port = std::min(a.end_port, b.end_port);
    if (r.start_port > r.end_port) return std::nullopt;
    auto n = a.start.size();
    auto less = [n](const IpAddress& x, const IpAddress& y) {
        return std::memcmp(x.bytes.data(), y.bytes.data(), n) < 0;
    };
    r.start = less(a.start, b.start) ? b.start : a.start;
    r.end = less(a.end, b.end) ? a.end : b.end;
    if (less(r.end, r.start)) return std::nullopt;
    return r;
}

bool contains(const TrafficSelector& outer, const TrafficSelector& inner)
{
    auto i = intersect(outer, inner);
    return i && *i == inner;
}

std::vector<TrafficSelector> narrow(const std::vector<TrafficSelector>& ours,
                                    const std::vector<TrafficSelector>& theirs)
{
    std::vector<TrafficSelector> out;
    for (const auto& t : theirs)
        for (const auto& o : ours)
            if (auto i = intersect(o, t))
                if (std::find(out.begin(), out.end(), *i) == out.end()) out.push_back(*i);
    return out;
}

std::string ts_text(const TrafficSelector& ts)
{
    std::string s = to_string(ts.start);
    if (ts.start != ts.end) {
        // A prefix when the range is one.
        unsigned n = unsigned(ts.start.size()), len = 0;
        bool prefix = true;
        for (unsigned bit = 0; bit < n * 8; ++bit) {
            bool sb = ts.start.bytes[bit / 8] >> (7 - bit % 8) & 1;
            bool eb = ts.end.bytes[bit / 8] >> (7 - bit % 8) & 1;
            if (sb == eb && len == bit) { ++len; continue; }
            if (!(sb == 0 && eb == 1)) prefix = false;
        }
        s = prefix ? fmt::format("{}/{}", s, len) : fmt::format("{}..{}", s, to_string(ts.end));
    } else {
        s += ts.start.family == IpFamily::v4 ? "/32" : "/128";
    }
    if (ts.protocol || ts.start_port != 0 || ts.end_port != 65535) {
        s += fmt::format("[{}", int(ts.protocol));
        if (ts.start_port != 0 || ts.end_port != 65535)
            s += ts.start_port == ts.end_port ? fmt::format("/{}", ts.start_port)
                                              : fmt::format("/{}-{}", ts.start_port, ts.end_port);
        s += "]";
    }
    return s;
}

std::string ts_list_text(const std::vector<TrafficSelector>& v)
{
    std::string s;
    for (const auto& t : v) s += (s.empty() ? "" : " ") + ts_text(t);
    return s;
}

std::string proposals_text(const std::vector<Proposal>& v, ProtocolId p)
{
    std::string s;
    for (const auto& prop : v) {
        std::string part;
        // strongSwan's order: encryption, integrity, PRF, DH, ESN.
        auto ts = prop.transforms;
        auto rank = [](TransformType t) {
            switch (t) {
            case TransformType::encr: return 0;
            case TransformType::integ: return 1;
            case TransformType::prf: return 2;
            case TransformType::dh: return 3;
            case TransformType::esn: return 4;
            }
            return 5;
        };
        std::stable_sort(ts.begin(), ts.end(), [&](const Transform& a, const Transform& b) { return rank(a.type) < rank(b.type); });
        for (const auto& t : ts) {
            std::string name;
            switch (t.type) {
            case TransformType::encr:
                name = t.key_bits ? fmt::format("{}_{}", encr_name(t.id), t.key_bits) : std::string(encr_name(t.id));
                break;
            case TransformType::prf: name = prf_name(t.id); break;
            case TransformType::integ: name = integ_name(t.id); break;
            case TransformType::dh: name = dh_name(t.id); break;
            case TransformType::esn:
                if (p != ProtocolId::esp) continue;
                name = t.id ? "EXT_SEQ" : "NO_EXT_SEQ";
                break;
            }
            part += (part.empty() ? "" : "/") + name;
        }
        s += (s.empty() ? "" : ", ") + part;
    }
    return s;
}

std::string specs_text(const std::vector<ProposalSpec>& specs, ProtocolId p)
{
    std::vector<Proposal> v;
    for (const auto& s : specs) v.push_back(s.to_proposal(1, {}));
    return proposals_text(v, p);
}

} // namespace

std::string to_string(const IpAddress& a)
{
    char s[INET6_ADDRSTRLEN] = {};
    inet_ntop(a.family == IpFamily::v4 ? AF_INET : AF_INET6, a.bytes.data(), s, sizeof s);
    return s;
}

std::string to_string(const Endpoint& e)
{
    return e.addr.family == IpFamily::v4 ? fmt::format("{}[{}]", to_string(e.addr), e.port)
                                         : fmt::format("[{}][{}]", to_string(e.addr), e.port);
}

// --- state -------------------------------------------------------------------------

namespace {

enum class IkeState : uint8_t { connecting, authenticating, established, rekeyed, deleting, dead };
enum class ChildState : uint8_t { installed, rekeying, rekeyed, deleting };

std::string_view state_name(IkeState s)
{
    switch (s) {
    case IkeState::connecting: return "CONNECTING";
    case IkeState::authenticating: return "CONNECTING";
    case IkeState::established: return "ESTABLISHED";
    case IkeState::rekeyed: return "REKEYED";
    case IkeState::deleting: return "DELETING";
    case IkeState::dead: return "DESTROYING";
    }
    return "?";
}

std::string_view state_name(ChildState s)
{
    switch (s) {
    case ChildState::installed: return "INSTALLED";
    case ChildState::rekeying: return "REKEYING";
    case ChildState::rekeyed: return "REKEYED";
    case ChildState::deleting: return "DELETING";
    }
    return "?";
}

struct ChildSa {
    uint32_t unique_id = 0;
    ChildConfig cfg;
    ChildState state = ChildState::installed;
    ChildSaRecord record;           // inbound.spi is ours, outbound.spi the peer's
    bool outbound_installed = false;
    TimePoint installed_at{}, rekey_at = TimePoint::max(), expire_at = TimePoint::max();
    // The exchange that created it, for rekey collisions (RFC 7296 §2.8.1).
    bool we_initiated = false;
    Bytes nonce_i, nonce_r;
    uint32_t replaces_spi = 0;      // inbound SPI of the child this one rekeyed (0 = none)

    uint32_t spi_in() const { return record.inbound.spi.value; }
    uint32_t spi_out() const { return record.outbound.spi.value; }
};

enum class ExchangeKind : uint8_t {
    ike_sa_init, ike_auth, create_child, rekey_child, rekey_ike, delete_child, delete_ike, dpd,
};

// The one request we have in flight on an IKE SA.
struct Request {
    ExchangeKind kind = ExchangeKind::dpd;
    uint32_t message_id = 0;
    std::vector<Bytes> datagrams;
    unsigned sent = 0;
    TimePoint next_send{};
    // Context for the response.
    std::string child;              // config name of the child being created
    uint32_t old_spi = 0;           // rekey_child: our inbound SPI of the old child
    uint32_t new_spi = 0;           // our inbound SPI of the new child
    uint64_t new_ike_spi = 0;       // rekey_ike: our SPI of the new IKE SA
    std::unique_ptr<DhKey> dh;
    Bytes nonce;
    std::vector<TrafficSelector> tsi, tsr;
    std::vector<uint32_t> delete_spis;
    bool collided = false;          // the peer started the same rekey meanwhile
};

// Something to send once the current request is answered.
struct Pending {
    ExchangeKind kind;
    std::string child;
    uint32_t spi = 0;
    std::vector<uint32_t> spis;
};

struct Credentials {
    std::optional<Certificate> cert;
    std::vector<Certificate> chain;
    std::optional<PrivateKey> key;
    TrustStore trust;
    std::string error;              // why pubkey auth cannot work, if it cannot
};

struct IkeSa {
    uint32_t unique_id = 0;
    ConnectionConfig conn;
    IkeState state = IkeState::connecting;
    bool initiator = false;         // original initiator of this IKE SA
    uint64_t spi_i = 0, spi_r = 0;
    Endpoint local, remote;
    bool nat_local = false, nat_remote = false, nat_fake = false;
    bool peer_fragmentation = false;
    std::vector<uint16_t> peer_sig_hashes;
    bool peer_certreq = false;

    IkeSuite suite;
    SelectedSuite selected;
    IkeKeys keys;
    std::unique_ptr<SkCipher> sk_out, sk_in;

    Bytes ni, nr;
    Bytes init_request, init_response;   // IKE_SA_INIT messages for AUTH
    std::unique_ptr<DhKey> dh;
    Bytes ke_public;                     // our KE data of IKE_SA_INIT
    Bytes cookie;
    unsigned init_attempts = 0;
    std::string auth_child;              // the child created inside IKE_AUTH
    uint32_t auth_child_spi = 0;
    std::vector<TrafficSelector> auth_tsi, auth_tsr;

    uint32_t next_mid = 0;               // our next request
    uint32_t peer_mid = 0;               // the peer's next request
    std::optional<Request> request;
    std::deque<Pending> queue;
    bool has_response = false;
    uint32_t response_mid = 0;
    std::vector<Bytes> response;

    // RFC 7383 reassembly of the message being received.
    uint32_t frag_mid = 0;
    bool frag_response = false;
    uint16_t frag_total = 0;
    uint8_t frag_first = 0;
    std::map<uint16_t, Bytes> frags;

    IdPayload local_id, remote_id;
    std::vector<ChildSa> children;

    TimePoint created{}, established_at{}, rekey_at = TimePoint::max(),
              expire_at = TimePoint::max(), last_rx{}, next_dpd = TimePoint::max(),
              next_keepalive = TimePoint::max();
    // Rekey collisions of this IKE SA: the new SA the peer made meanwhile.
    uint64_t peer_rekey_spi = 0;
    Bytes peer_rekey_ni, peer_rekey_nr;
    uint64_t successor = 0;              // our SPI of the IKE SA that replaced this one

    uint64_t our_spi() const { return initiator ? spi_i : spi_r; }
    ChildSa* child_by_in(uint32_t spi)
    {
        for (auto& c : children)
            if (c.spi_in() == spi) return &c;
        return nullptr;
    }
    ChildSa* child_by_out(uint32_t spi)
    {
        for (auto& c : children)
            if (c.spi_out() == spi) return &c;
        return nullptr;
    }
};

struct ConnStatus {
    Phase failed_phase = Phase::none;
    std::string failure;
    std::string peer_proposals;
    std::string peer_ts;
    unsigned tries_left = 0;
};

} // namespace

struct Engine::Impl {
    IkeConfig config;
    Transport& transport;
    SaSink& sink;
    Rng& rng;
    EngineHooks hooks;
    EngineStats stats;

    std::map<uint64_t, std::unique_ptr<IkeSa>> sas;          // by our SPI
    std::map<std::pair<uint64_t, std::string>, uint64_t> half_open_index; // (SPIi, remote) -> our SPI
    std::map<std::string, Credentials> creds;
    std::map<std::string, ConnStatus> status;
    std::map<std::string, uint32_t> reqids;
    uint32_t next_reqid = 1;
    uint32_t next_unique = 1;
    uint32_t next_child_unique = 1;
    Bytes cookie_secret;
    bool started = false;
    TimePoint now_{};                    // of the current call into the engine
    // Connections to initiate again after a failure (keyingtries): when and which child.
    std::map<std::string, std::pair<TimePoint, std::string>> retry_at;

    Impl(IkeConfig c, Transport& t, SaSink& s, Rng& r, EngineHooks h)
        : config(std::move(c)), transport(t), sink(s), rng(r), hooks(std::move(h))
    {
        cookie_secret.resize(32);
        rng.fill(cookie_secret);
        load_credentials();
    }

    ~Impl()
    {
        for (auto& [spi, sa] : sas) sa->keys.wipe();
    }

    // --- randomness ------------------------------------------------------------
    uint64_t random_u64()
    {
        uint8_t b[8];
        rng.fill(b);
        return get_u64(b);
    }
    uint64_t new_ike_spi()
    {
        for (;;) {
            uint64_t s = random_u64();
            if (s && !sas.count(s)) return s;
        }
    }
    uint32_t new_child_spi()
    {
        for (;;) {
            uint8_t b[4];
            rng.fill(b);
            uint32_t s = get_u32(b);
            if (s < 256) continue;  // 1..255 are reserved (RFC 4303 §2.1)
            bool used = false;
            for (auto& [k, sa] : sas)
                for (auto& c : sa->children)
                    used |= c.spi_in() == s;
            if (!used) return s;
        }
    }
    Bytes new_nonce()
    {
        Bytes n(32);
        rng.fill(n);
        return n;
    }
    std::unique_ptr<DhKey> new_dh(uint16_t group)
    {
        if (!rng.deterministic()) return DhKey::create(group);
        Bytes seed(64);
        rng.fill(seed);
        return DhKey::create(group, seed);
    }
    // Uniform jitter in [0, range].
    Duration jitter(uint64_t range_s)
    {
        if (!range_s) return Duration::zero();
        uint64_t ms = random_u64() % (range_s * 1000 + 1);
        return std::chrono::milliseconds(ms);
    }

    uint32_t reqid_for(const std::string& conn, const ChildConfig& c)
    {
        if (c.reqid) return c.reqid;
        auto key = conn + "/" + c.name;
        auto it = reqids.find(key);
        if (it != reqids.end()) return it->second;
        return reqids[key] = next_reqid++;
    }

    void load_credentials();
    const SharedSecret* find_psk(const IdPayload& a, const IdPayload& b) const;

    // Sending.
    std::vector<Bytes> protect(IkeSa& sa, Header h, const std::vector<Payload>& inner);
    Header header_for(const IkeSa& sa, ExchangeType x, bool response, uint32_t mid) const;
    void send_all(IkeSa& sa, const std::vector<Bytes>& datagrams);
    void start_request(TimePoint now, IkeSa& sa, Request req, ExchangeType x,
                       const std::vector<Payload>& inner);
    void respond(IkeSa& sa, ExchangeType x, uint32_t mid, const std::vector<Payload>& inner);
    Duration retransmit_delay(unsigned sent) const;
    void run_queue(TimePoint now, IkeSa& sa);

    // Receiving.
    void receive(TimePoint now, const Endpoint& local, const Endpoint& remote, ByteView msg);
    bool open_message(IkeSa& sa, ByteView datagram, const Message& m,
                      std::vector<Payload>& inner, bool& complete);
    void on_request(TimePoint now, IkeSa& sa, const Header& h, std::vector<Payload>& inner);
    void on_response(TimePoint now, IkeSa& sa, const Header& h, std::vector<Payload>& inner);

    // IKE_SA_INIT.
    IkeSa* initiate_ike(TimePoint now, const ConnectionConfig& conn, const std::string& child);
    void send_init(TimePoint now, IkeSa& sa);
    void init_request(TimePoint now, const Endpoint& local, const Endpoint& remote, ByteView datagram,
                      const Message& m);
    void init_response(TimePoint now, IkeSa& sa, ByteView datagram, const Message& m);
    void check_nat(IkeSa& sa, const std::vector<Payload>& p, const Endpoint& local, const Endpoint& remote);
    bool derive_keys(IkeSa& sa, ByteView peer_ke);

    // IKE_AUTH.
    void send_auth(TimePoint now, IkeSa& sa);
    std::optional<AuthPayload> make_auth(IkeSa& sa, bool as_initiator);
    bool verify_peer(IkeSa& sa, const std::vector<Payload>& p, bool peer_is_initiator, std::string& why);
    void auth_request(TimePoint now, IkeSa& sa, uint32_t mid, std::vector<Payload>& p);
    void auth_response(TimePoint now, IkeSa& sa, std::vector<Payload>& p);
    void established(TimePoint now, IkeSa& sa);

    // Child SAs.
    std::vector<TrafficSelector> resolve_ts(const std::vector<TsConfig>& cfg, const IpAddress& self);
    struct ChildOffer {
        std::vector<Payload> payloads;
    };
    std::vector<Payload> child_request_payloads(IkeSa& sa, const ChildConfig& c, uint32_t spi,
                                                bool with_ke_groups, Request* req);
    std::optional<uint16_t> respond_child(TimePoint now, IkeSa& sa, const std::vector<Payload>& p,
                                          ByteView ni, ByteView nr_or_empty, bool in_auth,
                                          std::vector<Payload>& out, ChildSa* rekeying);
    bool complete_child(TimePoint now, IkeSa& sa, Request& req, const std::vector<Payload>& p,
                        ByteView ni, ByteView nr, std::string& why);
    ChildSa make_child(IkeSa& sa, const ChildConfig& cfg, const SelectedSuite& suite, uint32_t spi_in,
                       uint32_t spi_out, const std::vector<TrafficSelector>& local_ts,
                       const std::vector<TrafficSelector>& remote_ts, ByteView shared,
                       ByteView ni, ByteView nr, bool we_initiated, TimePoint now);
    void install(ChildSa& c, bool outbound);
    void uninstall(ChildSa& c);
    void create_child(TimePoint now, IkeSa& sa, const std::string& child);
    void rekey_child(TimePoint now, IkeSa& sa, uint32_t spi_in);
    void delete_children(TimePoint now, IkeSa& sa, std::vector<uint32_t> spis);
    void create_child_request(TimePoint now, IkeSa& sa, uint32_t mid, std::vector<Payload>& p);
    void create_child_response(TimePoint now, IkeSa& sa, Request& req, std::vector<Payload>& p);

    // IKE SA rekey and delete.
    void rekey_ike(TimePoint now, IkeSa& sa);
    void rekey_ike_request(TimePoint now, IkeSa& sa, uint32_t mid, std::vector<Payload>& p);
    void rekey_ike_response(TimePoint now, IkeSa& sa, Request& req, std::vector<Payload>& p);
    IkeSa& adopt_rekeyed(TimePoint now, IkeSa& old, uint64_t spi_i, uint64_t spi_r, bool we_initiated,
                         const SelectedSuite& suite, const IkeSuite& s, ByteView shared, ByteView ni, ByteView nr);
    void move_children(IkeSa& from, IkeSa& to);
    void informational_request(TimePoint now, IkeSa& sa, uint32_t mid, std::vector<Payload>& p);
    void delete_ike(TimePoint now, IkeSa& sa);
    void destroy(TimePoint now, IkeSa& sa, bool remove_children);
    void fail(IkeSa& sa, Phase phase, std::string failure);
    void schedule(TimePoint now, IkeSa& sa);
    void after_child_change(IkeSa& sa);

    // Timers.
    TimePoint tick(TimePoint now);
    void reap();

    IkeSa* find_established(std::string_view conn)
    {
        IkeSa* best = nullptr;
        for (auto& [k, sa] : sas)
            if (sa->conn.name == conn && sa->state == IkeState::established) best = sa.get();
        return best;
    }
    IkeSa* find_any(std::string_view conn)
    {
        for (auto& [k, sa] : sas)
            if (sa->conn.name == conn && sa->state != IkeState::dead && sa->state != IkeState::rekeyed)
                return sa.get();
        return nullptr;
    }
    unsigned half_open() const
    {
        unsigned n = 0;
        for (auto& [k, sa] : sas)
            n += !sa->initiator && (sa->state == IkeState::connecting || sa->state == IkeState::authenticating);
        return n;
    }
};

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
                    auto k = PrivateKey::load(pk.file, err);
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
        sa.conn.fragmentation == Fragmentation::no) {
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

void Engine::Impl::send_all(IkeSa& sa, const std::vector<Bytes>& datagrams)
{
    for (const auto& d : datagrams) {
        transport.send(sa.local, sa.remote, view(d));
        ++stats.tx_messages;
    }
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
            if (!f || f->number == 1) send_all(sa, sa.response);
            return;
        }
        if (h.message_id != sa.peer_mid) {
            ++stats.rx_invalid;
            log_ike()->debug("{}: request with message ID {}, expected {}", sa.conn.name, h.message_id, sa.peer_mid);
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
        log_ike()->info("{}: peer moved {} -> {}", sa.conn.name, to_string(sa.remote), to_string(remote));
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
            log_ike()->info("{}: SK payload failed its integrity check", sa.conn.name);
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
        log_ike()->info("{}: bad payloads inside SK: {}", sa.conn.name, to_string(st.error));
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
    case ExchangeKind::delete_child:
        // The peer's answer names its SPIs of the same Child SAs; ours go now.
        for (uint32_t spi : req.delete_spis)
            if (ChildSa* c = sa.child_by_in(spi)) {
                uninstall(*c);
                c->state = ChildState::deleting;
            }
        sa.children.erase(std::remove_if(sa.children.begin(), sa.children.end(),
                                         [](const ChildSa& c) { return c.state == ChildState::deleting; }),
                          sa.children.end());
        break;
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
}

// --- IKE_SA_INIT ----------------------------------------------------------------

namespace {

NotifyPayload make_notify(uint16_t type, Bytes data = {})
{
    NotifyPayload n;
    n.type = type;
    n.data = std::move(data);
    return n;
}

Payload notify_payload(uint16_t type, Bytes data = {})
{
    return Payload{PayloadType::notify, false, make_notify(type, std::move(data))};
}

Bytes sig_hash_data()
{
    Bytes d;
    for (uint16_t h : supported_signature_hashes()) put_u16(d, h);
    return d;
}

bool endpoint_matches(const std::vector<std::string>& addrs, const IpAddress& a)
{
    if (addrs.empty()) return true;
    for (const auto& s : addrs) {
        if (s == "%any" || s == "0.0.0.0" || s == "::") return true;
        auto p = parse_address(s);
        if (p && *p == a) return true;
    }
    return false;
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
    sa->conn = conn;
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
    auto& st = status[conn.name];
    st.failed_phase = Phase::none;
    st.failure.clear();
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
    for (const auto& spec : sa.conn.proposals) sap.proposals.push_back(spec.to_proposal(n++, {}));
    p.push_back(Payload{PayloadType::sa, false, sap});
    p.push_back(Payload{PayloadType::ke, false, KePayload{sa.dh->group(), sa.dh->public_value()}});
    p.push_back(Payload{PayloadType::nonce, false, NoncePayload{sa.ni}});
    Bytes src = nat_hash(sa.spi_i, 0, sa.local);
    if (sa.conn.encap) rng.fill(src);   // a fake NAT-D forces UDP encapsulation
    p.push_back(notify_payload(notify::nat_detection_source_ip, src));
    p.push_back(notify_payload(notify::nat_detection_destination_ip, nat_hash(sa.spi_i, 0, sa.remote)));
    if (sa.conn.fragmentation != Fragmentation::no)
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
    if (sa.conn.encap) sa.nat_fake = true;
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
                send_all(*sit->second, sit->second->response);
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
        ++stats.tx_messages;
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
        ++stats.negotiation_failures;
        return;
    }
    auto& st = status[conn->name];
    st.peer_proposals = proposals_text(sap->proposals, ProtocolId::ike);

    // Prefer the group the initiator already sent a KE for, if acceptable.
    std::optional<SelectedSuite> chosen;
    {
        std::vector<ProposalSpec> with_ke_group;
        for (auto spec : conn->proposals) {
            auto it = std::find_if(spec.dh.begin(), spec.dh.end(),
                                   [&](const Transform& t) { return t.id == ke->group; });
            if (it == spec.dh.end()) continue;
            spec.dh = {*it};
            with_ke_group.push_back(spec);
        }
        chosen = select_proposal(sap->proposals, with_ke_group);
        if (!chosen) chosen = select_proposal(sap->proposals, conn->proposals);
    }
    for (const auto& p : sap->proposals)
        if (chosen && p.number == chosen->number && !p.spi.empty()) chosen.reset();  // SPI must be empty here
    if (!chosen) {
        log_ike()->info("{}: no acceptable IKE proposal from {} (offered {})", conn->name, to_string(remote),
                        st.peer_proposals);
        st.failed_phase = Phase::ike_sa_init;
        st.failure = "NO_PROPOSAL_CHOSEN";
        ++stats.negotiation_failures;
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
    sa->conn = *conn;
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
        ++stats.negotiation_failures;
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
    ++stats.tx_messages;
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
        if (sa.init_attempts > 3 || c->data.empty() || c->data.size() > 64) { fail(sa, Phase::ike_sa_init, "COOKIE loop"); return; }
        sa.cookie = c->data;
        sa.request.reset();
        send_init(now, sa);
        return;
    }
    if (const auto* k = find_notify(p, notify::invalid_ke_payload)) {
        uint16_t group = k->data.size() == 2 ? uint16_t(k->data[0] << 8 | k->data[1]) : 0;
        bool offered = false;
        for (const auto& spec : sa.conn.proposals)
            for (const auto& t : spec.dh) offered |= t.id == group;
        if (!offered || sa.init_attempts > 3 || group == sa.dh->group()) {
            fail(sa, Phase::ike_sa_init, "INVALID_KE_PAYLOAD");
            return;
        }
        log_ike()->info("{}: peer wants DH group {}, retrying", sa.conn.name, group);
        sa.dh = new_dh(group);
        sa.request.reset();
        send_init(now, sa);
        return;
    }
    for (const auto& pl : p)
        if (const auto* n = std::get_if<NotifyPayload>(&pl.body))
            if (is_error_notify(n->type)) {
                fail(sa, Phase::ike_sa_init, std::string(notify_name(n->type)));
                return;
            }
    const auto* sap = find_payload<SaPayload>(p, PayloadType::sa);
    const auto* ke = find_payload<KePayload>(p, PayloadType::ke);
    const auto* nr = find_payload<NoncePayload>(p, PayloadType::nonce);
    if (!sap || !ke || !nr || sap->proposals.size() != 1 || m.header.spi_r == 0) {
        fail(sa, Phase::ike_sa_init, "malformed IKE_SA_INIT response");
        return;
    }
    auto chosen = accept_response(sap->proposals[0], sa.conn.proposals);
    if (!chosen || chosen->dh != ke->group || ke->group != sa.dh->group()) {
        status[sa.conn.name].peer_proposals = proposals_text(sap->proposals, ProtocolId::ike);
        fail(sa, Phase::ike_sa_init, "peer chose a proposal we did not offer");
        return;
    }
    sa.selected = *chosen;
    sa.spi_r = m.header.spi_r;
    sa.nr = nr->data;
    sa.request.reset();
    if (!derive_keys(sa, view(ke->data))) {
        fail(sa, Phase::ike_sa_init, "invalid KE payload from the peer");
        return;
    }
    check_nat(sa, p, sa.local, sa.remote);
    sa.peer_fragmentation = find_notify(p, notify::ikev2_fragmentation_supported) != nullptr &&
                            sa.conn.fragmentation != Fragmentation::no;
    if (const auto* sh = find_notify(p, notify::signature_hash_algorithms))
        for (std::size_t i = 0; i + 1 < sh->data.size(); i += 2)
            sa.peer_sig_hashes.push_back(uint16_t(sh->data[i] << 8 | sh->data[i + 1]));
    sa.peer_certreq = find_payload<CertReqPayload>(p, PayloadType::certreq) != nullptr;
    sa.init_response.assign(datagram.begin(), datagram.end());
    sa.last_rx = now;
    send_auth(now, sa);
}

// --- IKE_AUTH ---------------------------------------------------------------------

std::optional<AuthPayload> Engine::Impl::make_auth(IkeSa& sa, bool as_initiator)
{
    Bytes octets = as_initiator ? sa.init_request : sa.init_response;
    const Bytes& nonce = as_initiator ? sa.nr : sa.ni;
    octets.insert(octets.end(), nonce.begin(), nonce.end());
    Bytes mac = prf_compute(sa.suite.prf, view(as_initiator ? sa.keys.sk_pi : sa.keys.sk_pr),
                            view(id_body(sa.local_id)));
    octets.insert(octets.end(), mac.begin(), mac.end());

    if (sa.conn.local.auth == AuthKind::psk) {
        const SharedSecret* s = find_psk(sa.local_id, sa.remote_id);
        if (!s) {
            log_ike()->error("{}: no pre-shared key for '{}' - '{}'", sa.conn.name, id_text(sa.local_id),
                             id_text(sa.remote_id));
            return std::nullopt;
        }
        static constexpr std::string_view pad = "Key Pad for IKEv2";
        Bytes key = prf_compute(sa.suite.prf, view(s->secret), view(text_bytes(pad)));
        AuthPayload a;
        a.method = AuthMethod::shared_key;
        a.data = prf_compute(sa.suite.prf, view(key), view(octets));
        wipe(key);
        return a;
    }
    auto& cr = creds[sa.conn.name];
    if (!cr.key) {
        log_ike()->error("{}: cannot sign: {}", sa.conn.name, cr.error);
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
    const Identity& want = sa.conn.remote.id;
    if (!want.any && !want.text.empty() && !same_id(want.id, *id)) {
        why = fmt::format("identity '{}' is not the configured '{}'", id_text(*id), want.text);
        return false;
    }
    Bytes octets = peer_is_initiator ? sa.init_request : sa.init_response;
    const Bytes& nonce = peer_is_initiator ? sa.nr : sa.ni;
    octets.insert(octets.end(), nonce.begin(), nonce.end());
    Bytes mac = prf_compute(sa.suite.prf, view(peer_is_initiator ? sa.keys.sk_pi : sa.keys.sk_pr),
                            view(id_body(*id)));
    octets.insert(octets.end(), mac.begin(), mac.end());

    if (sa.conn.remote.auth == AuthKind::psk) {
        if (auth->method != AuthMethod::shared_key) { why = "AUTHENTICATION_FAILED: peer did not use a PSK"; return false; }
        const SharedSecret* s = find_psk(sa.local_id, *id);
        if (!s) { why = "AUTHENTICATION_FAILED: no pre-shared key for '" + id_text(*id) + "'"; return false; }
        static constexpr std::string_view pad = "Key Pad for IKEv2";
        Bytes key = prf_compute(sa.suite.prf, view(s->secret), view(text_bytes(pad)));
        Bytes expect = prf_compute(sa.suite.prf, view(key), view(octets));
        wipe(key);
        uint8_t diff = expect.size() != auth->data.size();
        for (std::size_t i = 0; i < std::min(expect.size(), auth->data.size()); ++i)
            diff |= uint8_t(expect[i] ^ auth->data[i]);
        if (diff) { why = "AUTHENTICATION_FAILED: pre-shared key mismatch"; return false; }
        return true;
    }

    auto& cr = creds[sa.conn.name];
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
    const auto& conn = sa.conn;
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
    if (!auth) { fail(sa, Phase::ike_auth, "no credentials to authenticate with"); return; }
    p.push_back(Payload{PayloadType::auth, false, *auth});
    bool other = false;
    for (auto& [k, o] : sas) other |= o.get() != &sa && o->conn.name == conn.name && o->state == IkeState::established;
    if (!other) p.push_back(notify_payload(notify::initial_contact));

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
    }
    start_request(now, sa, std::move(req), ExchangeType::ike_auth, p);
}

void Engine::Impl::auth_request(TimePoint now, IkeSa& sa, uint32_t mid, std::vector<Payload>& p)
{
    // Several connections may share addresses: the peer's ID picks one.
    if (const auto* idi = find_payload<IdPayload>(p, PayloadType::idi)) {
        const Identity& want = sa.conn.remote.id;
        if (!want.any && !want.text.empty() && !same_id(want.id, *idi))
            for (const auto& c : config.connections)
                if (endpoint_matches(c.local_addrs, sa.local.addr) && endpoint_matches(c.remote_addrs, sa.remote.addr) &&
                    (c.remote.id.any || c.remote.id.text.empty() || same_id(c.remote.id.id, *idi))) {
                    sa.conn = c;
                    break;
                }
    }
    sa.local_id = sa.conn.local.id.text.empty() || sa.conn.local.id.any ? address_id(sa.local.addr) : sa.conn.local.id.id;
    if (const auto* idr = find_payload<IdPayload>(p, PayloadType::idr))
        if (sa.conn.local.id.text.empty() || sa.conn.local.id.any) sa.local_id = *idr;  // answer as asked
    std::string why;
    if (!verify_peer(sa, p, true, why)) {
        log_ike()->info("{}: IKE_SA #{} peer authentication failed: {}", sa.conn.name, sa.unique_id, why);
        respond(sa, ExchangeType::ike_auth, mid, {notify_payload(notify::authentication_failed)});
        ++stats.auth_failures;
        auto& st = status[sa.conn.name];
        st.failed_phase = Phase::ike_auth;
        st.failure = why.starts_with("AUTHENTICATION_FAILED") ? "AUTHENTICATION_FAILED" : why;
        sa.state = IkeState::dead;
        return;
    }
    sa.peer_certreq = find_payload<CertReqPayload>(p, PayloadType::certreq) != nullptr;
    auto auth = make_auth(sa, false);
    if (!auth) {
        respond(sa, ExchangeType::ike_auth, mid, {notify_payload(notify::authentication_failed)});
        fail(sa, Phase::ike_auth, "no credentials to authenticate with");
        return;
    }
    std::vector<Payload> out;
    out.push_back(Payload{PayloadType::idr, false, sa.local_id});
    const auto& conn = sa.conn;
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
            if (o.get() != &sa && o->conn.name == sa.conn.name && o->state != IkeState::dead &&
                same_id(o->remote_id, sa.remote_id))
                destroy(now, *o, true);
    }
    established(now, sa);
    if (find_payload<SaPayload>(p, PayloadType::sa)) {
        std::vector<Payload> child;
        auto err = respond_child(now, sa, p, view(sa.ni), view(sa.nr), true, child, nullptr);
        if (err) log_ike()->info("{}: no Child SA in IKE_AUTH: {}", sa.conn.name, notify_name(*err));
        out.insert(out.end(), child.begin(), child.end());
    }
    respond(sa, ExchangeType::ike_auth, mid, out);
    schedule(now, sa);
}

void Engine::Impl::auth_response(TimePoint now, IkeSa& sa, std::vector<Payload>& p)
{
    for (const auto& pl : p)
        if (const auto* n = std::get_if<NotifyPayload>(&pl.body))
            if (n->type == notify::authentication_failed || n->type == notify::invalid_syntax ||
                n->type == notify::unsupported_critical_payload) {
                ++stats.auth_failures;
                fail(sa, Phase::ike_auth, std::string(notify_name(n->type)));
                return;
            }
    std::string why;
    if (!verify_peer(sa, p, false, why)) {
        ++stats.auth_failures;
        fail(sa, Phase::ike_auth, why.starts_with("AUTHENTICATION_FAILED") ? "AUTHENTICATION_FAILED" : why);
        return;
    }
    established(now, sa);
    if (!sa.auth_child.empty()) {
        uint16_t err = 0;
        for (const auto& pl : p)
            if (const auto* n = std::get_if<NotifyPayload>(&pl.body))
                if (is_error_notify(n->type)) err = n->type;
        auto& st = status[sa.conn.name];
        if (err) {
            st.failed_phase = Phase::child;
            st.failure = std::string(notify_name(err));
            ++stats.negotiation_failures;
            log_ike()->info("{}: IKE SA up, but the Child SA '{}' failed: {}", sa.conn.name, sa.auth_child, st.failure);
        } else {
            Request req;
            req.kind = ExchangeKind::create_child;
            req.child = sa.auth_child;
            req.new_spi = sa.auth_child_spi;
            req.tsi = sa.auth_tsi;
            req.tsr = sa.auth_tsr;
            req.nonce = sa.ni;
            if (!complete_child(now, sa, req, p, view(sa.ni), view(sa.nr), why)) {
                st.failed_phase = Phase::child;
                st.failure = why;
                ++stats.negotiation_failures;
                log_ike()->info("{}: Child SA '{}' from IKE_AUTH refused: {}", sa.conn.name, sa.auth_child, why);
            }
        }
    }
    schedule(now, sa);
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
    uint64_t over = sa.conn.over_time_s ? sa.conn.over_time_s : sa.conn.rekey_time_s / 10;
    uint64_t rand = sa.conn.rand_time_s ? sa.conn.rand_time_s : over;
    sa.rekey_at = sa.conn.rekey_time_s
                      ? now + std::chrono::seconds(sa.conn.rekey_time_s) - jitter(std::min(rand, sa.conn.rekey_time_s / 2))
                      : TimePoint::max();
    half_open_index.erase({sa.spi_i, to_string(sa.remote)});
    for (auto it = half_open_index.begin(); it != half_open_index.end();)
        it = it->second == sa.our_spi() ? half_open_index.erase(it) : std::next(it);
    ++stats.ike_established;
    auto& st = status[sa.conn.name];
    st.failed_phase = Phase::none;
    st.failure.clear();
    retry_at.erase(sa.conn.name);
    log_ike()->info("{}: IKE_SA #{} established between {} '{}' and {} '{}' ({}{})", sa.conn.name, sa.unique_id,
                    to_string(sa.local), id_text(sa.local_id), to_string(sa.remote), id_text(sa.remote_id),
                    describe(sa.selected, ProtocolId::ike),
                    sa.nat_local || sa.nat_remote || sa.nat_fake ? ", NAT-T" : "");
}

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

namespace {

Bytes spi_bytes(uint32_t spi)
{
    Bytes b;
    put_u32(b, spi);
    return b;
}

std::vector<ProposalSpec> without_dh(std::vector<ProposalSpec> v)
{
    for (auto& s : v) s.dh.clear();
    return v;
}

std::vector<Proposal> strip_dh(std::vector<Proposal> v)
{
    for (auto& p : v)
        p.transforms.erase(std::remove_if(p.transforms.begin(), p.transforms.end(),
                                          [](const Transform& t) { return t.type == TransformType::dh; }),
                           p.transforms.end());
    return v;
}

} // namespace

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

ChildSa Engine::Impl::make_child(IkeSa& sa, const ChildConfig& cfg, const SelectedSuite& suite, uint32_t spi_in,
                                 uint32_t spi_out, const std::vector<TrafficSelector>& local_ts,
                                 const std::vector<TrafficSelector>& remote_ts, ByteView shared, ByteView ni,
                                 ByteView nr, bool we_initiated, TimePoint now)
{
    ChildKeys k = derive_child_keys(sa.suite.prf, view(sa.keys.sk_d), shared, ni, nr, suite.encr,
                                    suite.encr_key_bits, suite.integ);
    ChildSa c;
    c.unique_id = next_child_unique++;
    c.cfg = cfg;
    c.we_initiated = we_initiated;
    c.nonce_i.assign(ni.begin(), ni.end());
    c.nonce_r.assign(nr.begin(), nr.end());
    c.installed_at = now;
    c.rekey_at = cfg.rekey_time_s
                     ? now + std::chrono::seconds(cfg.rekey_time_s) - jitter(std::min(cfg.rand_time_s, cfg.rekey_time_s / 2))
                     : TimePoint::max();
    c.expire_at = cfg.life_time_s ? now + std::chrono::seconds(cfg.life_time_s) : TimePoint::max();

    auto& r = c.record;
    r.connection = sa.conn.name;
    r.child = cfg.name;
    r.reqid = reqid_for(sa.conn.name, cfg);
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
        sink.install_inbound(c.record);
        wipe_keys(c.record.inbound);
        return;
    }
    if (c.outbound_installed) return;
    sink.install_outbound(c.record);
    wipe_keys(c.record.outbound);
    c.outbound_installed = true;
}

void Engine::Impl::uninstall(ChildSa& c)
{
    if (c.outbound_installed) sink.remove_outbound(c.record);
    c.outbound_installed = false;
    sink.remove_inbound(c.record);
    wipe_keys(c.record.inbound);
    wipe_keys(c.record.outbound);
}

// Responder: pick a child config, a proposal and selectors for the peer's
// request, derive and install. On failure `out` holds the error notify.
std::optional<uint16_t> Engine::Impl::respond_child(TimePoint now, IkeSa& sa, const std::vector<Payload>& p,
                                                    ByteView ni, ByteView nr, bool in_auth,
                                                    std::vector<Payload>& out, ChildSa* rekeying)
{
    auto error = [&](uint16_t type, Bytes data = {}) -> std::optional<uint16_t> {
        out.clear();
        out.push_back(notify_payload(type, std::move(data)));
        auto& st = status[sa.conn.name];
        if (type != notify::invalid_ke_payload) {
            st.failed_phase = Phase::child;
            st.failure = std::string(notify_name(type));
            ++stats.negotiation_failures;
        }
        return type;
    };
    const auto* sap = find_payload<SaPayload>(p, PayloadType::sa);
    const auto* tsi = find_payload<TsPayload>(p, PayloadType::tsi);
    const auto* tsr = find_payload<TsPayload>(p, PayloadType::tsr);
    if (!sap || !tsi || !tsr) return error(notify::invalid_syntax);
    bool transport_mode = find_notify(p, notify::use_transport_mode) != nullptr;
    auto& st = status[sa.conn.name];
    st.peer_ts = ts_list_text(tsi->selectors) + " === " + ts_list_text(tsr->selectors);
    st.peer_proposals = proposals_text(sap->proposals, ProtocolId::esp);

    const ChildConfig* cfg = nullptr;
    std::vector<TrafficSelector> local, remote;
    for (const auto& c : sa.conn.children) {
        if (rekeying && c.name != rekeying->cfg.name) continue;
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
        cfg = &rekeying->cfg;   // the config changed under a live SA: keep its selectors
        local = rekeying->record.local_ts;
        remote = rekeying->record.remote_ts;
    }
    if (!cfg) {
        log_ike()->info("{}: no child matches traffic selectors {}", sa.conn.name, st.peer_ts);
        return error(notify::ts_unacceptable);
    }
    const auto* ke = find_payload<KePayload>(p, PayloadType::ke);
    std::optional<SelectedSuite> chosen;
    if (in_auth || !ke) {
        auto specs = without_dh(cfg->esp_proposals);
        // Without a KE, a config that insists on PFS accepts nothing.
        bool pfs_required = !in_auth && std::all_of(cfg->esp_proposals.begin(), cfg->esp_proposals.end(),
                                                    [](const ProposalSpec& s) { return !s.dh.empty(); });
        if (!pfs_required) chosen = select_proposal(strip_dh(sap->proposals), specs);
    } else {
        chosen = select_proposal(sap->proposals, cfg->esp_proposals);
    }
    if (!chosen || chosen->spi.size() != 4) {
        log_ike()->info("{}: no acceptable ESP proposal (offered {})", sa.conn.name, st.peer_proposals);
        return error(notify::no_proposal_chosen);
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
    ChildSa c = make_child(sa, *cfg, *chosen, spi_in, spi_out, local, remote, view(shared), ni, nr, false, now);
    wipe(shared);
    if (rekeying) c.replaces_spi = rekeying->spi_in();
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
    log_ike()->info("{}: CHILD_SA {}{{{}}} established with SPIs {:08x}_i {:08x}_o and TS {} === {}", sa.conn.name,
                    cfg->name, c.unique_id, spi_in, spi_out, ts_list_text(local), ts_list_text(remote));
    ++stats.child_installed;
    st.failed_phase = Phase::none;
    st.failure.clear();
    sa.children.push_back(std::move(c));
    return std::nullopt;
}

// Initiator: the peer's answer to our Child SA request.
bool Engine::Impl::complete_child(TimePoint now, IkeSa& sa, Request& req, const std::vector<Payload>& p,
                                  ByteView ni, ByteView nr, std::string& why)
{
    const ChildConfig* cfg = nullptr;
    for (const auto& c : sa.conn.children)
        if (c.name == req.child) cfg = &c;
    ChildSa* old = req.old_spi ? sa.child_by_in(req.old_spi) : nullptr;
    if (!cfg && old) cfg = &old->cfg;
    if (!cfg) { why = "child config gone"; return false; }
    const auto* sap = find_payload<SaPayload>(p, PayloadType::sa);
    const auto* tsi = find_payload<TsPayload>(p, PayloadType::tsi);
    const auto* tsr = find_payload<TsPayload>(p, PayloadType::tsr);
    if (!sap || !tsi || !tsr || sap->proposals.size() != 1) { why = "malformed Child SA response"; return false; }
    bool in_auth = req.nonce == sa.ni && !req.dh;
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
    if (tsi->selectors.empty() || tsr->selectors.empty()) { why = "empty traffic selectors"; return false; }
    Bytes shared;
    if (chosen->dh) {
        const auto* ke = find_payload<KePayload>(p, PayloadType::ke);
        if (!ke || !req.dh || ke->group != chosen->dh || req.dh->group() != chosen->dh) { why = "KE mismatch"; return false; }
        auto s = req.dh->shared_secret(view(ke->data));
        if (!s) { why = "invalid KE from the peer"; return false; }
        shared = std::move(*s);
    }
    (void)in_auth;
    uint32_t spi_out = get_u32(view(chosen->spi));
    ChildSa c = make_child(sa, *cfg, *chosen, req.new_spi, spi_out, tsi->selectors, tsr->selectors, view(shared),
                           ni, nr, true, now);
    wipe(shared);
    install(c, false);
    install(c, true);
    log_ike()->info("{}: CHILD_SA {}{{{}}} established with SPIs {:08x}_i {:08x}_o and TS {} === {}", sa.conn.name,
                    cfg->name, c.unique_id, c.spi_in(), c.spi_out(), ts_list_text(tsi->selectors),
                    ts_list_text(tsr->selectors));
    ++stats.child_installed;
    if (old) {
        c.replaces_spi = old->spi_in();
        ++stats.child_rekeys;
    }
    sa.children.push_back(std::move(c));
    status[sa.conn.name].failed_phase = Phase::none;
    status[sa.conn.name].failure.clear();

    if (req.old_spi) {
        // Rekey done. A collision (the peer rekeyed the same SA meanwhile):
        // the exchange with the lowest nonce made the redundant SA, and its
        // initiator deletes it (RFC 7296 §2.8.1).
        ChildSa& mine = sa.children.back();
        ChildSa* theirs = nullptr;
        for (auto& o : sa.children)
            if (&o != &mine && o.replaces_spi == req.old_spi && !o.we_initiated) theirs = &o;
        if (ChildSa* o = sa.child_by_in(req.old_spi)) o->state = ChildState::rekeyed;
        if (theirs) {
            Bytes lo = std::min({mine.nonce_i, mine.nonce_r, theirs->nonce_i, theirs->nonce_r});
            bool mine_redundant = lo == mine.nonce_i || lo == mine.nonce_r;
            log_ike()->info("{}: CHILD_SA rekey collision, {} SA is redundant", sa.conn.name,
                            mine_redundant ? "our" : "the peer's");
            if (mine_redundant) {
                install(*theirs, true);
                sa.queue.push_front(Pending{ExchangeKind::delete_child, {}, 0, {mine.spi_in()}});
                return true;
            }
            // The peer deletes its redundant SA; we delete the old one.
        }
        if (ChildSa* o = sa.child_by_in(req.old_spi)) {
            if (o->outbound_installed) {
                sink.remove_outbound(o->record);
                o->outbound_installed = false;
            }
            sa.queue.push_front(Pending{ExchangeKind::delete_child, {}, 0, {req.old_spi}});
        }
    }
    return true;
}

void Engine::Impl::create_child(TimePoint now, IkeSa& sa, const std::string& name)
{
    const ChildConfig* cfg = nullptr;
    for (const auto& c : sa.conn.children)
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
    auto cp = child_request_payloads(sa, old->cfg, new_child_spi(), true, &req);
    // Rekeying keeps the SA's negotiated selectors (RFC 7296 §2.8).
    req.tsi = old->record.local_ts;
    req.tsr = old->record.remote_ts;
    for (auto& pl : cp) {
        if (pl.type == PayloadType::tsi) pl.body = TsPayload{req.tsi};
        if (pl.type == PayloadType::tsr) pl.body = TsPayload{req.tsr};
    }
    p.insert(p.end(), cp.begin(), cp.end());
    req.child = old->cfg.name;
    old->state = ChildState::rekeying;
    log_ike()->info("{}: rekeying CHILD_SA {}{{{}}}", sa.conn.name, old->cfg.name, old->unique_id);
    start_request(now, sa, std::move(req), ExchangeType::create_child_sa, p);
}

void Engine::Impl::delete_children(TimePoint now, IkeSa& sa, std::vector<uint32_t> spis)
{
    std::vector<uint32_t> live;
    for (uint32_t s : spis)
        if (ChildSa* c = sa.child_by_in(s)) {
            if (c->outbound_installed) {
                sink.remove_outbound(c->record);
                c->outbound_installed = false;
            }
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
    auto err = respond_child(now, sa, p, view(ni->data), view(nr), false, out, old);
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
    ChildSa* old = req.old_spi ? sa.child_by_in(req.old_spi) : nullptr;
    uint16_t err = 0;
    for (const auto& pl : p)
        if (const auto* n = std::get_if<NotifyPayload>(&pl.body))
            if (is_error_notify(n->type)) err = n->type;
    if (err == notify::invalid_ke_payload) {
        // Retry with the group the peer wants, if we offered it.
        const auto* n = find_notify(p, notify::invalid_ke_payload);
        uint16_t group = n && n->data.size() == 2 ? uint16_t(n->data[0] << 8 | n->data[1]) : 0;
        log_ike()->info("{}: peer wants DH group {} for the Child SA", sa.conn.name, group);
        const ChildConfig* cfg = old ? &old->cfg : nullptr;
        for (const auto& c : sa.conn.children)
            if (c.name == req.child) cfg = &c;
        bool offered = false;
        if (cfg)
            for (const auto& s : cfg->esp_proposals)
                for (const auto& t : s.dh) offered |= t.id == group;
        if (offered && cfg) {
            // Put the wanted group first and ask again.
            for (auto& c : sa.conn.children)
                if (c.name == cfg->name)
                    for (auto& s : c.esp_proposals)
                        std::stable_partition(s.dh.begin(), s.dh.end(), [&](const Transform& t) { return t.id == group; });
            if (old) {
                old->state = ChildState::installed;
                sa.queue.push_front(Pending{ExchangeKind::rekey_child, {}, old->spi_in(), {}});
            } else {
                sa.queue.push_front(Pending{ExchangeKind::create_child, req.child, 0, {}});
            }
            return;
        }
    }
    if (err) {
        auto& st = status[sa.conn.name];
        if (err != notify::temporary_failure && err != notify::child_sa_not_found) {
            st.failed_phase = Phase::child;
            st.failure = std::string(notify_name(err));
            ++stats.negotiation_failures;
        }
        log_ike()->info("{}: CREATE_CHILD_SA for '{}' failed: {}", sa.conn.name, req.child, notify_name(err));
        if (old && old->state == ChildState::rekeying) {
            old->state = ChildState::installed;
            // Try again later unless the peer took over (TEMPORARY_FAILURE in a collision).
            old->rekey_at = now + std::chrono::seconds(err == notify::temporary_failure ? 5 : 30);
        }
        return;
    }
    const auto* nr = find_payload<NoncePayload>(p, PayloadType::nonce);
    std::string why;
    if (!nr || !complete_child(now, sa, req, p, view(req.nonce), view(nr->data), why)) {
        if (why.empty()) why = "no nonce in the response";
        log_ike()->info("{}: CREATE_CHILD_SA response refused: {}", sa.conn.name, why);
        status[sa.conn.name].failed_phase = Phase::child;
        status[sa.conn.name].failure = why;
        if (old && old->state == ChildState::rekeying) {
            old->state = ChildState::installed;
            old->rekey_at = now + 30s;
        }
    }
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
    for (auto spec : sa.conn.proposals) {
        // Offer the current group first: the peer already accepted it.
        std::stable_partition(spec.dh.begin(), spec.dh.end(), [&](const Transform& t) { return t.id == group; });
        sap.proposals.push_back(spec.to_proposal(n++, spi));
    }
    std::vector<Payload> p{Payload{PayloadType::sa, false, sap},
                           Payload{PayloadType::nonce, false, NoncePayload{req.nonce}},
                           Payload{PayloadType::ke, false, KePayload{group, req.dh->public_value()}}};
    // Reserve the SPI so no other SA takes it meanwhile.
    log_ike()->info("{}: rekeying IKE_SA #{}", sa.conn.name, sa.unique_id);
    start_request(now, sa, std::move(req), ExchangeType::create_child_sa, p);
}

void Engine::Impl::move_children(IkeSa& from, IkeSa& to)
{
    for (auto& c : from.children) to.children.push_back(std::move(c));
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
    if (sa.successor || (sa.request && sa.request->kind == ExchangeKind::delete_ike)) {
        respond(sa, ExchangeType::create_child_sa, mid, {notify_payload(notify::temporary_failure)});
        return;
    }
    std::vector<ProposalSpec> with_ke_group;
    for (auto spec : sa.conn.proposals) {
        auto it = std::find_if(spec.dh.begin(), spec.dh.end(), [&](const Transform& t) { return t.id == ke->group; });
        if (it == spec.dh.end()) continue;
        spec.dh = {*it};
        with_ke_group.push_back(spec);
    }
    auto chosen = select_proposal(sap->proposals, with_ke_group);
    if (!chosen) chosen = select_proposal(sap->proposals, sa.conn.proposals);
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
    log_ike()->info("{}: IKE_SA #{} rekeyed by the peer as #{}", sa.conn.name, sa.unique_id, fresh.unique_id);
}

void Engine::Impl::rekey_ike_response(TimePoint now, IkeSa& sa, Request& req, std::vector<Payload>& p)
{
    uint16_t err = 0;
    for (const auto& pl : p)
        if (const auto* n = std::get_if<NotifyPayload>(&pl.body))
            if (is_error_notify(n->type)) err = n->type;
    if (err) {
        log_ike()->info("{}: IKE_SA rekey failed: {}", sa.conn.name, notify_name(err));
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
    if (sap && sap->proposals.size() == 1) chosen = accept_response(sap->proposals[0], sa.conn.proposals);
    std::optional<Bytes> shared;
    if (chosen && nr && ke && chosen->spi.size() == 8 && ke->group == chosen->dh && req.dh && req.dh->group() == chosen->dh)
        shared = req.dh->shared_secret(view(ke->data));
    if (!shared) {
        log_ike()->warn("{}: invalid IKE_SA rekey response; deleting the IKE SA", sa.conn.name);
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
            log_ike()->info("{}: IKE_SA rekey collision, {} new SA is redundant", sa.conn.name,
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
    log_ike()->info("{}: IKE_SA #{} rekeyed as #{}", sa.conn.name, sa.unique_id, winner->unique_id);
}

// --- INFORMATIONAL and teardown ------------------------------------------------------

void Engine::Impl::informational_request(TimePoint now, IkeSa& sa, uint32_t mid, std::vector<Payload>& p)
{
    std::vector<uint32_t> ours;
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
            if (!c) continue;
            // The peer stopped using the old SA: its successor's outbound
            // half can go in now (make-before-break, responder side).
            for (auto& n : sa.children)
                if (n.replaces_spi == c->spi_in() && !n.outbound_installed) install(n, true);
            ours.push_back(c->spi_in());
            log_ike()->info("{}: CHILD_SA {}{{{}}} deleted by the peer (SPIs {:08x}_i {:08x}_o)", sa.conn.name,
                            c->cfg.name, c->unique_id, c->spi_in(), c->spi_out());
            uninstall(*c);
            c->state = ChildState::deleting;
        }
    }
    if (delete_ike_sa) {
        respond(sa, ExchangeType::informational, mid, {});
        log_ike()->info("{}: IKE_SA #{} deleted by the peer", sa.conn.name, sa.unique_id);
        bool restart = false;
        for (const auto& c : sa.children) restart |= c.cfg.close_action == CloseAction::start;
        std::string first = sa.children.empty() ? std::string{} : sa.children.front().cfg.name;
        destroy(now, sa, true);
        if (restart && sa.conn.children.size()) retry_at[sa.conn.name] = {now + 1s, first};
        return;
    }
    sa.children.erase(std::remove_if(sa.children.begin(), sa.children.end(),
                                     [](const ChildSa& c) { return c.state == ChildState::deleting; }),
                      sa.children.end());
    std::vector<Payload> out;
    if (!ours.empty()) {
        DeletePayload d;
        d.protocol = ProtocolId::esp;
        d.spis = ours;
        out.push_back(Payload{PayloadType::delete_, false, d});
    }
    respond(sa, ExchangeType::informational, mid, out);
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

void Engine::Impl::destroy(TimePoint, IkeSa& sa, bool remove_children)
{
    if (remove_children)
        for (auto& c : sa.children) uninstall(c);
    sa.children.clear();
    sa.keys.wipe();
    sa.state = IkeState::dead;
    sa.request.reset();
}

void Engine::Impl::fail(IkeSa& sa, Phase phase, std::string failure)
{
    auto& st = status[sa.conn.name];
    st.failed_phase = phase;
    st.failure = failure;
    ++stats.negotiation_failures;
    log_ike()->warn("{}: IKE_SA #{} failed in {}: {}", sa.conn.name, sa.unique_id,
                    phase == Phase::ike_sa_init ? "IKE_SA_INIT" : phase == Phase::ike_auth ? "IKE_AUTH" : "CHILD",
                    failure);
    if (sa.initiator && st.tries_left > 1) {
        --st.tries_left;
        retry_at[sa.conn.name] = {now_ + retransmit_delay(1), sa.auth_child};
    }
    for (auto& c : sa.children) uninstall(c);
    sa.children.clear();
    sa.state = IkeState::dead;
    sa.request.reset();
}

void Engine::Impl::schedule(TimePoint now, IkeSa& sa)
{
    sa.next_dpd = sa.conn.dpd_delay_s ? sa.last_rx + std::chrono::seconds(sa.conn.dpd_delay_s) : TimePoint::max();
    if (sa.nat_local && config.daemon.keepalive_s && sa.next_keepalive == TimePoint::max())
        sa.next_keepalive = now + std::chrono::seconds(config.daemon.keepalive_s);
}

void Engine::Impl::reap()
{
    for (auto it = sas.begin(); it != sas.end();) {
        if (it->second->state == IkeState::dead) {
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

TimePoint Engine::Impl::tick(TimePoint now)
{
    if (!started) {
        started = true;
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
                log_ike()->warn("{}: IKE_SA #{}: no answer after {} transmissions", sa.conn.name, sa.unique_id,
                                sa.request->sent);
                if (sa.state == IkeState::connecting) { fail(sa, Phase::ike_sa_init, "timeout"); continue; }
                if (sa.state == IkeState::authenticating) { fail(sa, Phase::ike_auth, "timeout"); continue; }
                // An established peer that went silent: dead peer (RFC 7296 §2.4).
                bool restart = false, trap = false;
                std::string first;
                for (const auto& c : sa.children) {
                    restart |= c.cfg.dpd_action == DpdAction::restart;
                    trap |= c.cfg.dpd_action == DpdAction::trap;
                    if (first.empty()) first = c.cfg.name;
                }
                auto& st = status[sa.conn.name];
                st.failed_phase = Phase::none;
                st.failure = "peer dead (DPD)";
                destroy(now, sa, true);
                if (restart) retry_at[sa.conn.name] = {now + 1s, first};
                (void)trap;
                continue;
            }
            send_all(sa, sa.request->datagrams);
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
            if (now >= sa.rekey_at) {
                sa.rekey_at = TimePoint::max();
                sa.queue.push_back(Pending{ExchangeKind::rekey_ike, {}, 0, {}});
            }
            if (now >= sa.next_dpd && !sa.request) {
                sa.queue.push_back(Pending{ExchangeKind::dpd, {}, 0, {}});
                sa.next_dpd = now + std::chrono::seconds(sa.conn.dpd_delay_s);
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
                    log_ike()->info("{}: CHILD_SA {}{{{}}} reached its hard lifetime", sa.conn.name, c.cfg.name,
                                    c.unique_id);
                    c.expire_at = TimePoint::max();
                    expired.push_back(c.spi_in());
                }
                next = std::min({next, c.rekey_at, c.expire_at});
            }
            if (!expired.empty()) sa.queue.push_back(Pending{ExchangeKind::delete_child, {}, 0, expired});
            run_queue(now, sa);
        }
        if (sa.request) next = std::min(next, sa.request->next_send);
        next = std::min({next, sa.rekey_at, sa.expire_at, sa.next_dpd, sa.next_keepalive});
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
        if (sa->conn.name != connection || sa->state == IkeState::dead) continue;
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
        if (c.cfg.name == child && c.state == ChildState::installed) {
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
                for (const auto& ch : sa->children) have |= ch.cfg.name == c.name && ch.state != ChildState::deleting;
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
    }
    for (const auto& c : config.connections)
        if (!I.config.find(c.name)) touched.push_back(c.name);
    I.config = std::move(config);
    I.load_credentials();
    for (const auto& name : touched) {
        const ConnectionConfig* conn = I.config.find(name);
        if (!conn) continue;
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
        i.name = sa->conn.name;
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
            ci.name = c.cfg.name;
            ci.unique_id = c.unique_id;
            ci.reqid = c.record.reqid;
            ci.state = std::string(state_name(c.state));
            ci.mode = c.cfg.mode;
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

std::vector<Diagnosis> Engine::diagnose() const
{
    const auto& I = *impl_;
    std::vector<Diagnosis> out;
    for (const auto& conn : I.config.connections) {
        Diagnosis d;
        d.connection = conn.name;
        d.phase1 = "down";
        std::vector<std::string> kids;
        for (const auto& [k, sa] : I.sas) {
            if (sa->conn.name != conn.name || sa->state == IkeState::dead || sa->state == IkeState::rekeyed) continue;
            d.phase1 = sa->state == IkeState::established ? "established" : "connecting";
            for (const auto& c : sa->children)
                kids.push_back(fmt::format("{}: {}", c.cfg.name, state_name(c.state)));
        }
        for (const auto& c : conn.children)
            if (std::none_of(kids.begin(), kids.end(), [&](const std::string& s) { return s.starts_with(c.name + ":"); }))
                kids.push_back(c.name + ": not installed");
        for (const auto& k : kids) d.phase2 += (d.phase2.empty() ? "" : ", ") + k;
        d.our_proposals = "IKE " + specs_text(conn.proposals, ProtocolId::ike);
        for (const auto& c : conn.children) {
            d.our_proposals += "; ESP(" + c.name + ") " + specs_text(c.esp_proposals, ProtocolId::esp);
            std::string l, r;
            for (const auto& t : c.local_ts) l += (l.empty() ? "" : " ") + (t.dynamic ? std::string("dynamic") : ts_text(t.ts));
            for (const auto& t : c.remote_ts) r += (r.empty() ? "" : " ") + (t.dynamic ? std::string("dynamic") : ts_text(t.ts));
            d.our_ts += (d.our_ts.empty() ? "" : "; ") + c.name + ": " + (l.empty() ? "dynamic" : l) + " === " +
                        (r.empty() ? "dynamic" : r);
        }
        if (auto it = I.status.find(conn.name); it != I.status.end()) {
            d.failed_phase = it->second.failed_phase;
            d.failure = it->second.failure;
            d.peer_proposals = it->second.peer_proposals;
            d.peer_ts = it->second.peer_ts;
            d.hint = hint_for(d.failed_phase, d.failure);
        }
        out.push_back(std::move(d));
    }
    return out;
}

const EngineStats& Engine::stats() const
{
    impl_->stats.half_open = impl_->half_open();
    return impl_->stats;
}

const IkeConfig& Engine::config() const { return impl_->config; }

} // namespace ravelin::ike

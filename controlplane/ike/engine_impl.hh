// The IKE engine's internals, shared by engine.cc (sending, receiving,
// timers, commands), engine_ike.cc (IKE_SA_INIT, IKE_AUTH, IKE SA rekey),
// engine_child.cc (Child SAs, CREATE_CHILD_SA, INFORMATIONAL) and
// engine_util.cc (helpers). Not part of the engine's interface.
#pragma once

#include <deque>
#include <unordered_set>
#include <map>
#include <memory>
#include <optional>

#include <spdlog/spdlog.h>

#include "cert.hh"
#include "engine.hh"

namespace ravelin::ike {

namespace detail {

using namespace std::chrono_literals;

std::shared_ptr<spdlog::logger> log_ike();
// How long a reauthenticated IKE SA and its Child SAs outlive their
// successors (see auth_response).
inline constexpr std::chrono::milliseconds reauth_grace{1000};

inline void put_u16(Bytes& b, uint16_t v) { b.push_back(uint8_t(v >> 8)); b.push_back(uint8_t(v)); }
inline void put_u32(Bytes& b, uint32_t v) { for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s)); }
inline void put_u64(Bytes& b, uint64_t v) { for (int s = 56; s >= 0; s -= 8) b.push_back(uint8_t(v >> s)); }
inline uint32_t get_u32(ByteView b) { return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3]; }
inline uint64_t get_u64(ByteView b) { return uint64_t(get_u32(b)) << 32 | get_u32(b.subspan(4)); }

inline ByteView view(const Bytes& b) { return {b.data(), b.size()}; }

inline Bytes text_bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

int64_t seconds_between(TimePoint from, TimePoint to);
inline std::string hex64(uint64_t v) { return fmt::format("{:016x}", v); }

std::string_view notify_name(uint16_t t);
std::string auth_failure_detail(std::string_view why);   // engine_diagnose.cc
Bytes id_body(const IdPayload& id);
bool same_id(const IdPayload& a, const IdPayload& b);

std::string id_text(const IdPayload& id);
IdPayload address_id(const IpAddress& a);
std::optional<IpAddress> parse_address(std::string_view text);
Bytes nat_hash(uint64_t spi_i, uint64_t spi_r, const Endpoint& e);
TrafficSelector host_ts(const IpAddress& a);
std::optional<TrafficSelector> intersect(const TrafficSelector& a, const TrafficSelector& b);
bool contains(const TrafficSelector& outer, const TrafficSelector& inner);
std::vector<TrafficSelector> narrow(const std::vector<TrafficSelector>& ours,
                                    const std::vector<TrafficSelector>& theirs);
std::string ts_text(const TrafficSelector& ts);
std::string ts_list_text(const std::vector<TrafficSelector>& v);
std::string proposals_text(const std::vector<Proposal>& v, ProtocolId p);
std::string specs_text(const std::vector<ProposalSpec>& specs, ProtocolId p);
NotifyPayload make_notify(uint16_t type, Bytes data = {});
Payload notify_payload(uint16_t type, Bytes data = {});
Bytes sig_hash_data();
bool endpoint_matches(const std::vector<std::string>& addrs, const IpAddress& a);
Bytes spi_bytes(uint32_t spi);
std::vector<ProposalSpec> without_dh(std::vector<ProposalSpec> v);
std::vector<Proposal> strip_dh(std::vector<Proposal> v);


enum class IkeState : uint8_t { connecting, authenticating, established, rekeyed, deleting, dead };
// rekeyed: replaced by a rekey, or the redundant SA of a rekey collision;
// either way waiting for its DELETE, never rekeyed again. deleting: a
// DELETE for it went out or came in.
enum class ChildState : uint8_t { installed, rekeying, rekeyed, deleting };

inline std::string_view state_name(IkeState s)
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

inline std::string_view state_name(ChildState s)
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
    // Shares ownership of the connection config it lives in: SAs outlive a
    // reload that changes or removes their connection.
    std::shared_ptr<const ChildConfig> cfg;
    ChildState state = ChildState::installed;
    ChildSaRecord record;           // inbound.spi is ours, outbound.spi the peer's
    bool outbound_installed = false;
    TimePoint installed_at{}, rekey_at = TimePoint::max(), expire_at = TimePoint::max();
    // The exchange that created it, for rekey collisions (RFC 7296 §2.8.1).
    bool we_initiated = false;
    Bytes nonce_i, nonce_r;
    uint32_t replaces_spi = 0;      // inbound SPI of the child this one rekeyed (0 = none)
    // Made by our answer to the peer's request with this message ID (on
    // the IKE SA that holds it): until the peer's next request, it may not
    // have that answer, nor this SA, yet.
    std::optional<uint32_t> answer_mid;

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
    // rekey_child: the peer rekeyed the old child too, then deleted it.
    bool old_deleted_in_collision = false;
    uint32_t new_spi = 0;           // our inbound SPI of the new child
    uint64_t new_ike_spi = 0;       // rekey_ike: our SPI of the new IKE SA
    std::unique_ptr<DhKey> dh;
    Bytes nonce;
    std::vector<TrafficSelector> tsi, tsr;
    std::vector<uint32_t> delete_spis;
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
    std::shared_ptr<const ConnectionConfig> conn;   // shared by every SA of the connection
    // DH group the peer asked for (INVALID_KE) per child config name.
    std::map<std::string, uint16_t> child_dh;
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
    // That child's inbound SA, installed as the IKE_AUTH request went out
    // (keys wiped), until the answer confirms or replaces it.
    std::optional<ChildSaRecord> early_inbound;

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
    // Reauthentication (make-before-break): the new IKE SA names the old
    // one, which is deleted once the new one has its first Child SA.
    uint64_t reauth_of = 0;
    // Reauthenticated: deleted at this time, a moment after the new SAs
    // took over (packets sent on the old ones may still be on their way).
    TimePoint retire_at = TimePoint::max();
    TimePoint reauth_at = TimePoint::max();

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

// Who noticed a failure: we refused (and sent the notify, if any), or the
// peer did (its notify reached us).
enum class Detected : uint8_t { local, peer };

// A connection's last failure and what the peer showed us, for diagnose()
// (engine_diagnose.cc); set through note_failure(), cleared on success.
struct ConnStatus {
    Phase failed_phase = Phase::none;
    std::string failure;            // the notify's name, else `detail`
    std::string notify;
    std::string detail;
    std::string exchange;
    std::string child;
    Detected detected = Detected::local;
    bool initiator = false;         // our role in the failed exchange
    TimePoint at{};
    // The peer's proposals: offered (we responded) or answered (we initiated).
    std::vector<Proposal> peer_ike, peer_esp;
    bool peer_ike_answered = false, peer_esp_answered = false;
    std::string peer_ts;
    unsigned tries_left = 0;
    bool adopted = false;           // next IKE_AUTH without INITIAL_CONTACT (Engine::adopt)
};


} // namespace detail

using namespace detail;

struct Engine::Impl {
    IkeConfig config;
    Transport& transport;
    SaSink& sink;
    Rng& rng;
    EngineHooks hooks;
    EngineStats stats;

    std::map<uint64_t, std::unique_ptr<IkeSa>> sas;          // by our SPI
    std::unordered_set<uint32_t> spis_in_use;                 // inbound ESP SPIs in the sink
    std::map<std::pair<uint64_t, std::string>, uint64_t> half_open_index; // (SPIi, remote) -> our SPI
    std::map<std::string, Credentials> creds;
    std::map<std::string, ConnStatus> status;
    std::map<std::string, uint32_t> reqids;
    std::map<uint32_t, TrapRecord> traps;                     // installed in the sink, by reqid
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
        share_configs();
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
            if (!spis_in_use.count(s)) return s;
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

    // Every connection's config, shared by its SAs; rebuilt on reload (SAs
    // of a changed connection keep the old one until they go).
    std::map<std::string, std::shared_ptr<const ConnectionConfig>> conn_ptrs;
    void share_configs()
    {
        conn_ptrs.clear();
        for (const auto& c : config.connections)
            conn_ptrs[c.name] = std::make_shared<const ConnectionConfig>(c);
    }
    std::shared_ptr<const ConnectionConfig> shared_conn(const ConnectionConfig& c)
    {
        auto it = conn_ptrs.find(c.name);
        return it != conn_ptrs.end() ? it->second : std::make_shared<const ConnectionConfig>(c);
    }
    // A child config as a pointer that keeps its connection config alive:
    // `c` lives in sa.conn's children, or is `from`'s own.
    static std::shared_ptr<const ChildConfig> child_ptr(const IkeSa& sa, const ChildConfig* c, const ChildSa* from)
    {
        if (from && from->cfg.get() == c) return from->cfg;
        return std::shared_ptr<const ChildConfig>(sa.conn, c);
    }
    const SharedSecret* find_psk(const IdPayload& a, const IdPayload& b) const;

    // Sending.
    std::vector<Bytes> protect(IkeSa& sa, Header h, const std::vector<Payload>& inner);
    Header header_for(const IkeSa& sa, ExchangeType x, bool response, uint32_t mid) const;
    void send_all(IkeSa& sa, const std::vector<Bytes>& datagrams, bool retransmit = false);
    void count_tx(ByteView datagram, bool retransmit);
    void count_failure(Phase phase, std::string_view failure);
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
    // After IKE_AUTH (and its Child SA) is done: what only it needed.
    static void forget_auth_state(IkeSa& sa)
    {
        Bytes().swap(sa.ni);
        Bytes().swap(sa.nr);
        std::vector<TrafficSelector>().swap(sa.auth_tsi);
        std::vector<TrafficSelector>().swap(sa.auth_tsr);
        sa.peer_sig_hashes.clear();
        sa.peer_sig_hashes.shrink_to_fit();
    }

    // Child SAs.
    std::vector<TrafficSelector> resolve_ts(const std::vector<TsConfig>& cfg, const IpAddress& self);
    // The trap policies of one connection's start_action = trap children.
    void install_traps(const ConnectionConfig& conn);
    void remove_traps(const std::string& connection);
    std::vector<Payload> child_request_payloads(IkeSa& sa, const ChildConfig& c, uint32_t spi,
                                                bool with_ke_groups, Request* req);
    std::optional<uint16_t> respond_child(TimePoint now, IkeSa& sa, const std::vector<Payload>& p,
                                          ByteView ni, ByteView nr_or_empty, bool in_auth,
                                          std::vector<Payload>& out, ChildSa* rekeying);
    bool complete_child(TimePoint now, IkeSa& sa, Request& req, const std::vector<Payload>& p,
                        ByteView ni, ByteView nr, std::string& why);
    ChildSa make_child(IkeSa& sa, std::shared_ptr<const ChildConfig> cfg, const SelectedSuite& suite, uint32_t spi_in,
                       uint32_t spi_out, const std::vector<TrafficSelector>& local_ts,
                       const std::vector<TrafficSelector>& remote_ts, ByteView shared,
                       ByteView ni, ByteView nr, bool we_initiated, TimePoint now);
    void install(ChildSa& c, bool outbound);
    // The IKE_AUTH child's inbound SA, before the request goes out, when the
    // answer cannot change its keys; dropped if the answer never confirms it.
    void install_early_inbound(TimePoint now, IkeSa& sa, const ChildConfig& cfg);
    void drop_early_inbound(IkeSa& sa);
    static void forget_nonces(ChildSa& c)
    {
        Bytes().swap(c.nonce_i);
        Bytes().swap(c.nonce_r);
    }
    void uninstall(ChildSa& c);
    void install_successor(IkeSa& sa, const ChildSa& old);
    static void erase_children(IkeSa& sa, const std::vector<uint32_t>& spis_in);
    // Our rekey got its new SA: who keeps which SA, who deletes what.
    void settle_rekey(IkeSa& sa, const Request& req, ChildSa& mine);
    // Our rekey of `c` (null: gone meanwhile) did not happen: if it is
    // still REKEYING, it is INSTALLED again and rekeyed `after` from now.
    static constexpr std::chrono::seconds rekey_retry{30};       // failed
    static constexpr std::chrono::seconds rekey_retry_soon{5};   // TEMPORARY_FAILURE, or its request lost
    static bool rekey_later(ChildSa* c, TimePoint now, Duration after)
    {
        if (!c || c->state != ChildState::rekeying) return false;
        c->state = ChildState::installed;
        c->rekey_at = now + after;
        return true;
    }
    void rekey_not_found(TimePoint now, IkeSa& sa, const Request& req);
    void keep_child_alive(IkeSa& sa, const std::string& child, bool create);
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
    // `sa` goes with a request unanswered about Child SAs that moved to
    // its successor: that IKE SA takes over what the request was for.
    void hand_over_request(TimePoint now, IkeSa& sa);
    // An initiator's IKE SA failed: note it, count a try, kill the SA.
    void fail(IkeSa& sa, Phase phase, uint16_t notify, std::string detail, Detected by = Detected::local);
    // Records a connection's failure (engine_diagnose.cc). notify = 0: none.
    ConnStatus& note_failure(const std::string& conn, Phase phase, std::string_view exchange, Detected by,
                             bool initiator, uint16_t notify, std::string detail, std::string child = {});
    void clear_failure(const std::string& conn);
    void schedule(TimePoint now, IkeSa& sa);
    void after_child_change(IkeSa& sa);

    // Timers.
    TimePoint tick(TimePoint now);
    void reap();

    // The IKE SA that holds `sa`'s Child SAs now: `sa`, or the one that
    // replaced it by a rekey (move_children).
    IkeSa& children_holder(IkeSa& sa)
    {
        IkeSa* h = &sa;
        for (int hops = 0; h->successor && hops < 8; ++hops) {
            auto it = sas.find(h->successor);
            if (it == sas.end()) break;
            h = it->second.get();
        }
        return *h;
    }
    IkeSa* find_established(std::string_view conn)
    {
        IkeSa* best = nullptr;
        for (auto& [k, sa] : sas)
            if (sa->conn->name == conn && sa->state == IkeState::established) best = sa.get();
        return best;
    }
    IkeSa* find_any(std::string_view conn)
    {
        for (auto& [k, sa] : sas)
            if (sa->conn->name == conn && sa->state != IkeState::dead && sa->state != IkeState::rekeyed)
                return sa.get();
        return nullptr;
    }
    // Responder IKE SAs between IKE_SA_INIT and IKE_AUTH: exactly the
    // entries of half_open_index (removed when established or reaped).
    unsigned half_open() const { return unsigned(half_open_index.size()); }
};

} // namespace ravelin::ike

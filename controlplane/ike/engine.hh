// The IKEv2 engine (RFC 7296): IKE SAs and Child SAs for every configured
// connection, driven by three inputs — datagrams, the clock, operator
// commands — and talking to the world through three interfaces: a
// Transport for IKE datagrams, an SaSink for Child SAs, and an Rng.
//
// No threads, no sockets, no DPDK: ravelin-iked wraps it with kernel UDP
// sockets (standalone) or the data plane's punt rings (attached), and the
// tests run two engines against each other over a fake transport with a
// deterministic Rng and a hand-driven clock.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config.hh"
#include "crypto.hh"
#include "message.hh"
#include "proposal.hh"
#include "ravelin/sa_descriptor.hh"

namespace ravelin::ike {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;

struct Endpoint {
    IpAddress addr;
    uint16_t port = 500;
    bool operator==(const Endpoint&) const = default;
};
std::string to_string(const Endpoint& e);
std::string to_string(const IpAddress& a);

// Sends IKE messages. The transport adds the four-byte non-ESP marker when
// it sends from the NAT-T port (RFC 3948 §2.2); `message` never has one.
class Transport {
public:
    virtual ~Transport() = default;
    virtual void send(const Endpoint& local, const Endpoint& remote, ByteView message) = 0;
    // A NAT-T keepalive (one 0xff byte, RFC 3948 §2.3) from the NAT-T port.
    virtual void send_keepalive(const Endpoint& local, const Endpoint& remote) = 0;
};

// One Child SA as the data plane needs it: both directions, the policies'
// selectors, and names for operators. Keys are in the descriptors.
struct ChildSaRecord {
    std::string connection;
    std::string child;
    uint32_t reqid = 0;
    SaDescriptor inbound;
    SaDescriptor outbound;
    std::vector<TrafficSelector> local_ts;
    std::vector<TrafficSelector> remote_ts;
    SelectedSuite suite;
};

// The policies of a child with start_action = trap, for the data plane.
// "dynamic" selectors are resolved against the connection's local/remote
// address, so a trap needs concrete addresses (the engine logs and skips
// the child otherwise).
struct TrapRecord {
    std::string connection;
    std::string child;
    uint32_t reqid = 0;
    std::vector<TrafficSelector> local_ts;
    std::vector<TrafficSelector> remote_ts;
};

// Where Child SAs go. Make-before-break (RFC 7296 §2.8): on rekey the new
// inbound SA is installed before the peer can use it, the outbound one when
// the exchange completes (the policies then point at it), and the old
// inbound one is removed only after its delete.
class SaSink {
public:
    virtual ~SaSink() = default;
    virtual void install_inbound(const ChildSaRecord& sa) = 0;
    // Install the outbound SA and point the child's policies at it.
    virtual void install_outbound(const ChildSaRecord& sa) = 0;
    virtual void remove_inbound(const ChildSaRecord& sa) = 0;
    virtual void remove_outbound(const ChildSaRecord& sa) = 0;
    // start_action = trap: policies that protect the child's traffic before
    // any SA exists; traffic that hits them comes back as Engine::acquire.
    // Installed at start and when a reload adds or changes the child.
    virtual void install_trap(const TrapRecord&) {}
    virtual void remove_trap(const TrapRecord&) {}
};

// Randomness for SPIs, nonces, DH private keys, jitter.
class Rng {
public:
    virtual ~Rng() = default;
    virtual void fill(std::span<uint8_t> out) = 0;
    // true for test Rngs: DH keys are then derived from fill() output too.
    virtual bool deterministic() const { return false; }
};

class SystemRng final : public Rng {
public:
    void fill(std::span<uint8_t> out) override { random_bytes(out); }
};

// --- introspection -------------------------------------------------------------

struct ChildSaInfo {
    std::string name;
    uint32_t unique_id = 0;
    uint32_t reqid = 0;
    std::string state;              // INSTALLED, REKEYING, REKEYED, DELETING
    ChildMode mode = ChildMode::tunnel;
    bool udp_encap = false;
    uint32_t spi_in = 0, spi_out = 0;
    SelectedSuite suite;
    std::vector<TrafficSelector> local_ts, remote_ts;
    int64_t installed_s = 0;        // seconds since install
    int64_t rekey_in_s = -1;        // seconds to rekey, -1 = never
    int64_t life_in_s = -1;
};

struct IkeSaInfo {
    std::string name;
    uint32_t unique_id = 0;
    std::string state;              // CONNECTING, ESTABLISHED, REKEYING, REKEYED, DELETING
    bool initiator = false;         // we initiated this IKE SA
    uint64_t spi_i = 0, spi_r = 0;
    Endpoint local, remote;
    std::string local_id, remote_id;
    bool nat_local = false, nat_remote = false, nat_fake = false;
    SelectedSuite suite;
    int64_t established_s = 0;
    int64_t rekey_in_s = -1;
    std::vector<ChildSaInfo> children;
};

enum class Phase : uint8_t { none, ike_sa_init, ike_auth, child };

// One configured child of a connection, for `ravelinctl diagnose`.
struct ChildDiagnosis {
    std::string name;
    std::string state;              // INSTALLED, REKEYING, ... or "not installed"
    std::string esp_proposals;      // ours, as proposal keywords
    std::string local_ts, remote_ts;   // ours as configured ("dynamic": the SA's address)
};

// What the last attempt of a connection did, for `ravelinctl diagnose`. A
// failure stays until the phase it happened in succeeds.
struct Diagnosis {
    std::string connection;
    std::string phase1;             // down, connecting, established
    std::string phase2;             // per child: "net: installed", ...
    Phase failed_phase = Phase::none;
    std::string failure;            // notify name or reason ("timeout", "AUTHENTICATION_FAILED")
    std::string our_proposals;      // what we offered / accept
    std::string peer_proposals;     // what the peer offered, if we saw it
    std::string our_ts, peer_ts;
    std::string hint;               // one line for the operator

    // The failure in detail (failure empty: none).
    int phase_number = 0;           // 1 = IKE SA, 2 = Child SA, 0 = no failure
    std::string exchange;           // IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL
    std::string notify;             // the error notify by name, sent or received ("" = none)
    std::string reason;             // in words ("pre-shared key mismatch")
    bool by_peer = false;           // the peer refused (sent the notify); else we did
    bool as_initiator = false;      // our role in the failed exchange
    std::string child;              // Phase 2: the child config concerned
    TimePoint failed_at{};
    // Proposals as keywords; the peer's as it offered them (we responded)
    // or answered (we initiated).
    std::string our_ike_keywords;
    std::string peer_ike_keywords, peer_esp_keywords;
    bool peer_ike_answered = false, peer_esp_answered = false;
    std::vector<ChildDiagnosis> children;
};

struct EngineStats {
    uint64_t rx_messages = 0, tx_messages = 0, retransmits = 0;
    uint64_t rx_invalid = 0;        // unparseable, bad ICV, unknown SPI ...
    uint64_t half_open = 0;
    uint64_t cookies_sent = 0;
    uint64_t ike_established = 0, child_installed = 0;
    uint64_t ike_rekeys = 0, child_rekeys = 0;
    uint64_t auth_failures = 0, negotiation_failures = 0;

    // For metrics. Messages per exchange (exchange_index) and outcome, in
    // datagrams (a fragment counts once). in_invalid: what rx_invalid
    // counts; out_retransmit: requests sent again and cached responses
    // re-sent for a retransmitted request.
    struct Messages {
        uint64_t in_processed = 0, in_invalid = 0;
        uint64_t out_sent = 0, out_retransmit = 0;
    };
    std::array<Messages, 5> messages{};
    // Every negotiation_failures count by phase and reason (failure_reason():
    // bounded, never text the peer chose).
    std::map<std::pair<Phase, std::string>, uint64_t> failures;
};

// 0..3: IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL; 4: any other.
inline std::size_t exchange_index(uint8_t exchange_type)
{
    return exchange_type >= 34 && exchange_type <= 37 ? exchange_type - 34u : 4u;
}
inline constexpr std::array<std::string_view, 5> exchange_names{
    "IKE_SA_INIT", "IKE_AUTH", "CREATE_CHILD_SA", "INFORMATIONAL", "other"};
std::string_view phase_name(Phase p);   // "none", "ike_sa_init", "ike_auth", "child"
// A failure text as a metric label: its leading notify name
// ("AUTHENTICATION_FAILED: bad signature" -> AUTHENTICATION_FAILED),
// "timeout", AUTHENTICATION_FAILED for other IKE_AUTH refusals, else "other".
std::string failure_reason(Phase phase, std::string_view failure);

// Hooks for the daemon: key logging for Wireshark, events for logs/metrics.
struct EngineHooks {
    // Called once per IKE SA when its keys exist (only if set).
    std::function<void(uint64_t spi_i, uint64_t spi_r, const IkeKeys&, const IkeSuite&)> ike_keys;
};

class Engine {
public:
    Engine(IkeConfig config, Transport& transport, SaSink& sink, Rng& rng,
           EngineHooks hooks = {});
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // An IKE message (no non-ESP marker) received on `local` from `remote`.
    void receive(TimePoint now, const Endpoint& local, const Endpoint& remote, ByteView message);

    // Runs due timers (retransmits, rekeys, expiry, DPD, keepalives, start
    // actions at load) and returns when it next wants to be called.
    TimePoint tick(TimePoint now);

    // Operator commands; false with `error` when not possible.
    bool initiate(TimePoint now, std::string_view connection, std::string_view child,
                  std::string& error);
    bool terminate(TimePoint now, std::string_view connection, std::string& error);
    bool rekey_ike(TimePoint now, std::string_view connection, std::string& error);
    bool rekey_child(TimePoint now, std::string_view connection, std::string_view child,
                     std::string& error);

    // Traffic hit a trap policy of this reqid (start_action = trap).
    void acquire(TimePoint now, uint32_t reqid);
    // The data plane reached a soft/hard limit or sequence exhaustion on an
    // SA (identified by its inbound or outbound SPI).
    void sa_expired(TimePoint now, uint32_t spi, bool hard);

    // After the daemon restarted: the data plane still carries Child SAs of
    // (connection, child) under `reqid`, with these inbound SPIs. The
    // engine keeps the reqid for that child, never hands out those SPIs,
    // and sends no INITIAL_CONTACT on the connection's next IKE_AUTH, so the
    // peer keeps its old SAs (and traffic keeps flowing on them) until the
    // new ones replace them. Call before the first tick().
    void adopt(std::string_view connection, std::string_view child, uint32_t reqid,
               std::span<const uint32_t> inbound_spis);

    // Replaces the configuration: connections whose config did not change
    // keep their SAs; changed ones are torn down and restarted; removed ones
    // are deleted. Returns the names that were touched.
    std::vector<std::string> reload(TimePoint now, IkeConfig config);

    std::vector<IkeSaInfo> list_sas(TimePoint now) const;
    std::vector<Diagnosis> diagnose() const;
    const EngineStats& stats() const;
    const IkeConfig& config() const;

    struct Impl;
private:
    std::unique_ptr<Impl> impl_;
};

} // namespace ravelin::ike

// Attached mode: the engine's SA sink and IKE transport over the channel to
// ravelin-dataplane (dp_channel.hh).
//
// DataplaneSaSink turns the engine's install/remove calls into channel
// commands, per reqid (one Child SA configuration):
//
//   first SA or trap of a reqid   policies_set (every local x remote selector
//                                 pair, both directions), then the SA
//   install_inbound               sa_add inbound (the old one stays: make-before-break)
//   install_outbound              sa_add outbound: swaps the reqid's outbound SA in place
//   remove_outbound               sa_delete, unless a newer SA already replaced it
//   remove_inbound                sa_delete
//   last SA and no trap left      policies_set with no policies
//
// It remembers what it installed (inbound keys included) so that a new data
// plane instance can be given the same policies and inbound SAs again
// (reinstall()); outbound SAs are not re-sent, because a restarted data
// plane would start their sequence numbers at 1 and the peer's anti-replay
// window would drop everything: the daemon rekeys those children instead.
//
// Adoption: after ravelin-iked itself restarts, the SAs the data plane
// still carries are adopted (adopt()). They keep carrying traffic until the
// engine installs a new SA for the same reqid; the adopted outbound SA is
// then replaced in place, and the adopted inbound SAs are removed a grace
// period later (the peer may still be sending on them).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dp_channel.hh"
#include "engine.hh"
#include "udp_transport.hh"

namespace ravelin::iked {

// Prefixes covering the address range [start, end] exactly (same family).
std::vector<IpPrefix> range_to_prefixes(const IpAddress& start, const IpAddress& end);

// The data plane's policies for a child: every local x remote selector pair,
// outbound and inbound, protect. Empty if there are more than
// channel::max_policies_per_command.
std::vector<PolicyDescriptor> child_policies(const std::vector<ike::TrafficSelector>& local_ts,
                                             const std::vector<ike::TrafficSelector>& remote_ts);

struct SinkStats {
    uint64_t installed = 0, removed = 0;
    uint64_t policy_sets = 0;
    uint64_t too_many_policies = 0;
    uint64_t adopted = 0, adopted_removed = 0;
    uint64_t command_failures = 0;
};

class DataplaneSaSink final : public ike::SaSink {
public:
    using Clock = ike::Clock;
    explicit DataplaneSaSink(DataplaneChannel& channel) : channel_(channel) {}

    void install_inbound(const ike::ChildSaRecord& sa) override;
    void install_outbound(const ike::ChildSaRecord& sa) override;
    void remove_inbound(const ike::ChildSaRecord& sa) override;
    void remove_outbound(const ike::ChildSaRecord& sa) override;
    void install_trap(const ike::TrapRecord& trap) override;
    void remove_trap(const ike::TrapRecord& trap) override;

    // An SA the data plane carries that this process did not install (it
    // restarted). `deadline`: remove it then even if nothing replaces it.
    void adopt(const channel::SaInfo& info, ike::TimePoint deadline);
    // Removes adopted SAs whose grace period or deadline passed.
    void tick(ike::TimePoint now);
    // Everything to send again to a new data-plane instance (policies,
    // traps, inbound SAs). Adopted SAs are forgotten: they died with the
    // old instance.
    void reinstall();
    // The connection/child names of every reqid with an installed SA (either
    // direction): what to rekey after a data-plane restart.
    std::vector<std::pair<std::string, std::string>> installed_children() const;

    // SA install latency: from the engine's install of an outbound SA (the
    // exchange completed) to the data plane's first packet on it. The sink
    // stamps installs; first_used() turns a listing's first-use time into
    // the latency, once per SA.
    bool awaiting_first_use() const { return !first_use_wait_.empty(); }
    std::optional<uint64_t> first_used(uint32_t spi, uint64_t first_use_ns);

    // A result came back: log failures (with what the command was).
    void on_result(uint32_t seq, const channel::Result& r);

    const SinkStats& stats() const { return stats_; }
    // Grace period for adopted inbound SAs once a new SA replaced them.
    static constexpr std::chrono::seconds adopted_grace{10};

private:
    struct Tunnel {
        std::string connection, child;
        std::vector<PolicyDescriptor> policies;
        bool trap = false;
        std::map<uint32_t, SaDescriptor> inbound;     // by SPI, keys included
        std::optional<uint32_t> outbound;             // SPI
        std::set<uint32_t> adopted_in;
        std::optional<uint32_t> adopted_out;
        ike::TimePoint adopted_until = ike::TimePoint::max();
    };

    Tunnel& tunnel(uint32_t reqid, const std::string& connection, const std::string& child,
                   const std::vector<ike::TrafficSelector>& local_ts,
                   const std::vector<ike::TrafficSelector>& remote_ts);
    void send_policies(uint32_t reqid, const Tunnel& t);
    void send_sa_add(const SaDescriptor& d, const Tunnel& t);
    void send_sa_delete(uint32_t spi, SaDirection dir, const char* why);
    void release_if_unused(uint32_t reqid);
    void remember(uint32_t seq, std::string what);

    DataplaneChannel& channel_;
    std::map<uint32_t, Tunnel> tunnels_;           // by reqid
    std::map<uint32_t, std::string> in_flight_;    // command seq -> what, for error messages
    std::map<uint32_t, uint64_t> first_use_wait_;  // outbound SPI -> install time (monotonic ns)
    SinkStats stats_;
};

// The engine's IKE transport in attached mode: datagrams go out through the
// data plane's ports (the transmit ring), punted ones come in through
// receive(). `nat_t_port`: our NAT-T port (the marker is added there).
class DataplaneTransport final : public ike::Transport {
public:
    DataplaneTransport(DataplaneChannel& channel, uint16_t nat_t_port)
        : channel_(channel), nat_t_port_(nat_t_port) {}
    void send(const ike::Endpoint& local, const ike::Endpoint& remote, ike::ByteView message) override;
    void send_keepalive(const ike::Endpoint& local, const ike::Endpoint& remote) override;

    // One punted frame: classified as UdpTransport does, IKE handed to `deliver`.
    void receive(const channel::Frame& frame, const UdpTransport::Deliver& deliver);

    const TransportStats& stats() const { return stats_; }

private:
    DataplaneChannel& channel_;
    uint16_t nat_t_port_;
    TransportStats stats_;
};

} // namespace ravelin::iked

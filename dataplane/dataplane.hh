// The data-plane process: ports, rings, tables, workers and the main lcore.
//
// create() builds everything from a validated config after rte_eal_init;
// run() launches one Worker per worker lcore and runs the main lcore's
// housekeeping loop (ARP/ND, punted frames, events, and the control-plane
// channel: dataplane_channel.cc) until stop is requested.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "channel.hh"
#include "config.hh"
#include "frames.hh"
#include "worker.hh"
#include "ravelin/channel.hh"
#include "ravelin/events.hh"

struct rte_mempool;

namespace ravelin::dp {

class Dataplane {
public:
    static std::unique_ptr<Dataplane> create(const DataplaneConfig& config, std::string& error);
    // The mbuf data room (headroom included) the ports' MTUs need.
    static uint16_t mbuf_data_room(const DataplaneConfig& config) noexcept;
    ~Dataplane();
    Dataplane(const Dataplane&) = delete;
    Dataplane& operator=(const Dataplane&) = delete;

    // Launch workers on the worker lcores and run the main loop until
    // request_stop(). Returns 0 on a clean stop.
    int run();
    // Async-signal-safe.
    void request_stop() noexcept { shared_.stop.store(true, std::memory_order_relaxed); }

    // Create the control-plane channel file at `path` (ravelin-dataplane:
    // channel::channel_path(file_prefix)); without it IKE punts are dropped
    // and counted. Unlinked when the Dataplane is destroyed.
    bool open_channel(const std::string& path, std::string& error);
    Channel* channel() noexcept { return channel_.get(); }

    // One pass of the main lcore's housekeeping (tests call it directly).
    void housekeeping();
    // Whether the next pass has work: anything in the rings the main lcore
    // reads, or replies, a listing or frames still pending. run() sleeps
    // busy_sleep_ns after a pass that had work and backs off, doubling, to
    // idle_sleep_ns while idle; the control plane's doorbell ends a sleep
    // early. On a CPU shared with a worker each wake-up costs the worker
    // (a 100 µs period took ~10 % of it here), hence the back-off.
    bool work_waiting() const noexcept;
    static constexpr uint64_t busy_sleep_ns = 100'000, idle_sleep_ns = 1'000'000;

    // Counters, SAs, neighbours and recent events as JSON (control socket).
    nlohmann::json stats_json();

    SharedState& shared() noexcept { return shared_; }
    Worker& worker(unsigned i) { return *workers_.at(i); }
    rte_mempool* pool() noexcept { return pool_; }

private:
    Dataplane() = default;
    bool setup_ports(const DataplaneConfig& config, std::string& error);
    bool setup_rings(const DataplaneConfig& config, std::string& error);
    bool install_sas(const DataplaneConfig& config, std::string& error);
    bool build_spds(const DataplaneConfig& config, std::string& error);
    void drain_control();
    void drain_resolve(uint64_t now);
    void solicit(const IpAddress& ip, uint16_t port, uint64_t now);

    // --- the control-plane channel (dataplane_channel.cc) ------------------
    void channel_pass(uint64_t now);
    bool control_attached(uint64_t now);
    void take_commands();
    void apply(channel::Command& c, channel::Reply& r, unsigned index);
    void cmd_sa_add(const channel::SaAdd& a, channel::Result& r);
    void cmd_sa_delete(const channel::SaDelete& d, channel::Result& r);
    void cmd_policies_set(const channel::PoliciesSet& p, channel::Result& r, unsigned index);
    void cmd_flush(unsigned index);
    void finish_commands();
    bool publish_spds(std::string& error);
    void reclaim_spds();
    void release_unused_reqids();
    void continue_listing();
    void flush_replies();
    bool put_reply(const channel::Reply& r);
    void take_transmits(uint64_t now);
    void retry_pending_tx(uint64_t now);
    void send_frame(rte_mbuf* m, uint16_t port, const rte_ether_addr& mac);
    void deliver_punts(bool attached);
    void forward_events(bool attached);
    void forward_acquires(bool attached);
    channel::SaInfo sa_info(const DpSa& sa) const;
    uint64_t tsc_to_ns(uint64_t tsc) const noexcept;
    void anchor_clock() noexcept;
    uint16_t mtu_for(const IpAddress& local) const noexcept;

    SharedState shared_;
    rte_mempool* pool_ = nullptr;
    void* rcu_mem_ = nullptr;
    IMB_MGR* mgr_ = nullptr;                  // key expansion on the main lcore
    std::unique_ptr<Fib> fib_;
    std::unique_ptr<NeighborTable> neighbors_;
    std::unique_ptr<SaTable> sas_;
    std::unique_ptr<Spd> spd_out_, spd_in_;
    // SPDs publish_spds() replaced, and the reqid slots released meanwhile:
    // freed by reclaim_spds() once every worker has passed a quiescent point
    // since (rte_rcu_qsbr_start token), so the main lcore never waits.
    struct RetiredSpds {
        uint64_t token;
        std::unique_ptr<Spd> out, in;
        std::vector<uint32_t> slots;
    };
    std::deque<RetiredSpds> retired_spds_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::vector<rte_ring*> rings_;
    std::vector<uint16_t> port_ids_;
    std::vector<std::string> port_names_;
    std::atomic<uint64_t> ike_drained_{0};   // main lcore writes, stats thread reads
    static constexpr unsigned recent_events_kept = 64;
    std::mutex events_lock_;
    std::deque<DataplaneEvent> recent_events_;

    // --- the control-plane channel (main lcore; see dataplane_channel.cc) ---
    // What the data plane keeps about each SA beside the DpSa, by table slot
    // (changed under sas_->writer_lock(), so stats_json may read it).
    struct SaRecord {
        bool from_channel = false;   // installed by sa_add (flush and sa_delete may remove it)
        uint64_t installed_ns = 0;
        IpAddress local, remote;
        channel::Name connection, child;
    };
    // A reqid the control plane named: its policies and its one outbound
    // slot (reserved at the first sa_add or protect policy; rekeys swap the
    // SA in it, so the SPD never changes for a rekey).
    struct ReqidState {
        uint32_t out_slot = no_slot;
        std::vector<PolicyDescriptor> policies;
    };
    // A policies_set or flush of this pass, undone if the SPD cannot be built.
    struct PolicyUndo {
        uint32_t reqid;
        std::vector<PolicyDescriptor> old;
        unsigned result;   // index in pass_results_
    };
    struct PendingTx {
        rte_mbuf* m;
        IpAddress target;
        uint16_t port;
        uint64_t deadline;
    };
    struct ChannelCounters {
        Counter commands_applied, commands_failed;
        Counter punt_delivered, transmit_sent;
        std::array<Counter, frame_drop_count> punt_dropped, transmit_dropped;
        Counter events_forwarded, events_dropped, acquires_forwarded, acquires_dropped;
        std::atomic<uint32_t> control_pid{0};
        std::atomic<bool> attached{false};
        std::atomic<uint32_t> replies_pending{0}, transmit_pending{0};
    };

    std::unique_ptr<Channel> channel_;
    std::vector<SaRecord> sa_records_;
    std::map<uint32_t, ReqidState> reqids_;
    // Per tunnel (connection/child names from sa_add) and direction: the
    // final counts of its SAs that are gone, so stats can report totals
    // that never go down across rekeys. Written by the main lcore and read
    // by the stats thread, both under sas_->writer_lock().
    struct TunnelTotals {
        uint64_t packets[2] = {0, 0};   // [SaDirection]
        uint64_t bytes[2] = {0, 0};
        uint64_t drops[2][drop_reason_count] = {};   // [SaDirection][DropReason]
        void add(const DpSa& sa) noexcept;
    };
    std::map<uint32_t, std::pair<std::string, std::string>> reqid_names_;
    std::map<std::pair<std::string, std::string>, TunnelTotals> retired_totals_;
    std::set<uint32_t> config_reqids_;
    std::vector<SpdRule> config_rules_;
    unsigned spd_generation_ = 0;
    bool spd_dirty_ = false;
    std::vector<channel::Reply> pass_results_;
    std::vector<PolicyUndo> policy_undo_;
    std::deque<channel::Reply> replies_pending_;   // bounded: commands wait while it is full
    struct Listing {
        bool active = false;
        uint32_t seq = 0;
        uint32_t next_slot = 0;
    } listing_;
    std::vector<PendingTx> pending_tx_;
    uint64_t tsc0_ = 0, mono0_ns_ = 0;             // TSC <-> CLOCK_MONOTONIC at start
    uint64_t tsc1_ = 0, mono1_ns_ = 0;             // ... and at the latest main-loop pass
    long double tsc_hz_ = 0;                        // measured between the two (anchor_clock)
    uint16_t default_mtu_ = 1500;
    unsigned main_rt_priority_ = 0;   // DataplaneConfig::main_rt_priority
    uint16_t ip_id_ = 0;
    uint32_t cp_pid_ = 0;
    bool cp_alive_ = false;
    uint64_t cp_checked_tsc_ = 0;
    ChannelCounters ch_;
};

} // namespace ravelin::dp

// The data-plane process: ports, rings, tables, workers and the main lcore.
//
// create() builds everything from a validated config after rte_eal_init;
// run() launches one Worker per worker lcore and runs the main lcore's
// housekeeping loop (ARP/ND, punted frames, events) until stop is requested.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config.hh"
#include "worker.hh"
#include "ravelin/events.hh"

struct rte_mempool;

namespace ravelin::dp {

class Dataplane {
public:
    static std::unique_ptr<Dataplane> create(const DataplaneConfig& config, std::string& error);
    ~Dataplane();
    Dataplane(const Dataplane&) = delete;
    Dataplane& operator=(const Dataplane&) = delete;

    // Launch workers on the worker lcores and run the main loop until
    // request_stop(). Returns 0 on a clean stop.
    int run();
    // Async-signal-safe.
    void request_stop() noexcept { shared_.stop.store(true, std::memory_order_relaxed); }

    // One pass of the main lcore's housekeeping (tests call it directly).
    void housekeeping();

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
    void drain_punt_and_events();

    SharedState shared_;
    rte_mempool* pool_ = nullptr;
    void* rcu_mem_ = nullptr;
    IMB_MGR* mgr_ = nullptr;                  // key expansion on the main lcore
    std::unique_ptr<Fib> fib_;
    std::unique_ptr<NeighborTable> neighbors_;
    std::unique_ptr<SaTable> sas_;
    std::unique_ptr<Spd> spd_out_, spd_in_;
    std::vector<std::unique_ptr<Worker>> workers_;
    std::vector<rte_ring*> rings_;
    std::vector<uint16_t> port_ids_;
    std::vector<std::string> port_names_;
    std::atomic<uint64_t> ike_drained_{0};   // main lcore writes, stats thread reads
    std::mutex events_lock_;
    std::deque<DataplaneEvent> recent_events_;
};

} // namespace ravelin::dp

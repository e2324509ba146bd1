// The generator's run time: ports, the TX and RX loops, trials.
//
// A trial sends every stream at its rate for a duration, keeps receiving
// for a drain time after the last packet, and returns what was sent and
// received. A plain run is one trial; an RFC 2544 search is many.
//
// lcores (EAL -l):
//   1    the main lcore runs TX, RX and the clock in one loop
//   2    the second lcore runs TX and RX, the main lcore the clock
//   3+   TX on the second, RX on the third, the clock on the main lcore
// The clock samples counters once per interval (the progress line and
// the results' timeline) and ends the trial.
//
// Ownership: TX state (stream sequence numbers, pacers, sealing SAs) is
// written by the TX loop only, RX state (trackers, histograms, opening SAs)
// by the RX loop only; the clock reads the counters (relaxed atomics) and
// touches the rest only between trials, after rte_eal_wait_lcore.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "esp_peer.hh"
#include "rate.hh"
#include "rx_stats.hh"
#include "stream.hh"

struct rte_mempool;
struct rte_mbuf;

namespace ravelin::pktgen {

struct ArpAnswer {
    uint16_t port = 0;
    IpPrefix prefix;
};

struct EngineConfig {
    std::vector<StreamSpec> streams;
    RateSpec rate;                     // total of the streams without their own rate
    std::vector<std::optional<MacAddr>> dst_mac;   // per port
    std::vector<ArpAnswer> arp;        // answer ARP requests for these addresses
    std::string sa_config;             // gateway TOML with the SAs ("" = no ESP)
    uint64_t esp_seq_start = 1;
    bool esp_seq_restart = false;      // every trial starts the sealing SAs at esp_seq_start again
    // ESP streams send frames sealed once at the start of each trial, this
    // many (rounded up to whole size-schedule periods), again and again:
    // no encryption per packet, so the generator can outrun a gateway's
    // inbound path. Only for receivers with anti-replay off; the payload
    // stamps are stale (no latency, no loss or order checks). 0: off.
    unsigned esp_replay = 0;
    double line_bps = 0;               // 0: the ports' link speed
    unsigned burst = 32;
    unsigned mbufs = 32767;
    unsigned rxd = 1024, txd = 1024;
    double interval_s = 1.0;           // timeline / progress sampling
    double drain_s = 0.5;
    double link_wait_s = 10;           // wait this long for every port's link (memif connects after start); 0: do not wait
    bool progress = false;             // one-line live display on stderr
    bool rx_count_only = false;        // RX: count and free, no parsing (a cheap sink)
};

// Counters with one writer, readable from the clock lcore.
struct Count {
    std::atomic<uint64_t> v{0};
    void inc(uint64_t n = 1) noexcept { v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    uint64_t get() const noexcept { return v.load(std::memory_order_relaxed); }
    void reset() noexcept { v.store(0, std::memory_order_relaxed); }
};

struct PortCounters {
    Count tx_packets, tx_bytes, tx_backpressure;   // backpressure: packets the port did not take at the first try
    Count tx_bursts, tx_bursts_short;              // tx_burst calls, and those the port did not take whole
    Count rx_packets, rx_bytes;
    Count rx_stamped, rx_unstamped, rx_arp, rx_arp_replied;
    Count rx_esp_ok, rx_esp_no_sa, rx_esp_failed;
};

struct TrialSpec {
    double duration_s = 10;
    uint64_t count = 0;                // packets per stream, 0 = until duration
    std::optional<std::string> size_override;   // every stream uses this size spec
    std::optional<RateSpec> rate_override;      // replaces the global rate
};

// One sample of the timeline.
struct Sample {
    double t = 0;
    uint64_t tx_packets = 0, tx_bytes = 0, rx_packets = 0, rx_stamped = 0;
};

struct StreamResult {
    unsigned id = 0;
    uint64_t tx_packets = 0, tx_bytes = 0, tx_clear_bytes = 0;
    uint64_t rx_packets = 0, rx_distinct = 0, lost = 0, duplicates = 0, reordered = 0, too_old = 0;
    LatencyHistogram latency;
};

struct TrialResult {
    double duration_s = 0;             // TX time actually run
    std::vector<StreamResult> streams;
    std::vector<Sample> timeline;
    uint64_t tx_packets = 0, tx_bytes = 0, tx_clear_bytes = 0;
    uint64_t rx_stamped = 0, rx_distinct = 0, lost = 0;
    double offered_pps = 0;            // tx_packets / duration
};

class Engine {
public:
    // After rte_eal_init. Sets up ports, pool, SAs; false with `error`.
    static std::unique_ptr<Engine> create(const EngineConfig& cfg, std::string& error);
    ~Engine();

    TrialResult run_trial(const TrialSpec& spec);
    // Async-signal-safe: ends the current trial early.
    void request_stop() noexcept { abort_.store(true, std::memory_order_relaxed); }
    bool stopped() const noexcept { return abort_.load(std::memory_order_relaxed); }

    double line_bps() const noexcept { return line_bps_; }
    uint64_t tsc_hz() const noexcept { return tsc_hz_; }
    nlohmann::json ports_json() const;     // per-port counters and ethdev stats
    nlohmann::json setup_json() const;     // streams, SAs, lcores, ports
    // Mean clear-text frame of the streams under a size override.
    double mean_frame(const std::optional<std::string>& size_override) const;

    struct Impl;

private:
    Engine() = default;
    std::unique_ptr<Impl> impl_;
    std::atomic<bool> abort_{false};
    double line_bps_ = 0;
    uint64_t tsc_hz_ = 0;
};

nlohmann::json latency_json(const LatencyHistogram& h, bool buckets);
nlohmann::json trial_json(const TrialResult& r, double line_bps, bool with_timeline, bool buckets);

} // namespace ravelin::pktgen

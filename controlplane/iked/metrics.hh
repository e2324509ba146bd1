// ravelin-iked's Prometheus endpoint: the gateway's one /metrics
// (docs/metrics.md), IKE metrics from the engine and, when a data plane is
// named, its counters read from its control socket.
//
// Threads. The engine is single-threaded and belongs to the daemon loop;
// the exposer (prometheus-cpp, civetweb) serves scrapes on its own threads.
// They share only an IkeSnapshot of plain values, under a mutex:
//
//   scrape thread: Collect() -> writes refresh_fd, waits (bounded) for a
//                  newer snapshot -> reads the data plane's socket -> renders
//   daemon loop:   refresh_fd readable -> snapshot_of(engine) -> publish()
//
// So a scrape sees values at most one loop pass old, and a busy or stuck
// loop costs the scrape at most `refresh_wait`, never a data race. The
// histograms (SA command and install latency) are prometheus-cpp's, which
// are safe to observe from the daemon loop while a scrape reads them.
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "config.hh"
#include "engine.hh"
#include "tunnel_counters.hh"

namespace prometheus {
class Exposer;
class Registry;
class Histogram;
} // namespace prometheus

namespace ravelin::iked {

// What the daemon loop hands to the scrape threads: copies, no pointers
// into the engine.
struct IkeSnapshot {
    std::map<std::string, uint64_t> ike_sas;          // by state name
    std::map<std::string, uint64_t> child_sas;        // by state name
    std::map<TunnelKey, bool> tunnels;                // every configured child: an INSTALLED SA?
    std::map<uint32_t, TunnelKey> reqids;             // of the Child SAs now listed
    ike::EngineStats stats;
    uint64_t reloads = 0, reload_failures = 0;
};

// Reads the engine (daemon loop only).
IkeSnapshot snapshot_of(const ike::Engine& engine, ike::TimePoint now);

// --- rendering (pure: unit-tested without sockets) ------------------------------

std::vector<prometheus::MetricFamily> render_ike(const IkeSnapshot& s);

// The data plane's stats JSON (dataplane/control_socket.cc, `stats`) as
// metric families; `reqids` names its SAs' tunnels and `tunnels` keeps the
// per-tunnel series monotonic. nullopt `stats`: no data plane answered
// (only ravelin_dataplane_up 0). Fields that are missing or not counters
// are left out, never guessed.
std::vector<prometheus::MetricFamily> render_dataplane(const std::optional<nlohmann::json>& stats,
                                                       const std::map<uint32_t, TunnelKey>& reqids,
                                                       TunnelCounters& tunnels);

// One "stats" request on the data plane's control socket; nullopt when it
// does not answer in `timeout` or answers something that is not JSON.
std::optional<nlohmann::json> query_dataplane(const std::string& socket_path,
                                              std::chrono::milliseconds timeout);

// --- the endpoint ------------------------------------------------------------------

class Metrics {
public:
    // Binds listen:port (port 0: any free one, for tests) and starts
    // serving; nullptr with `error` if it cannot.
    static std::unique_ptr<Metrics> start(const ike::MetricsConfig& config, std::string& error);
    ~Metrics();
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    uint16_t port() const { return port_; }

    // Daemon loop: poll this fd for POLLIN; when it is readable, call
    // refresh_requested() and, if true, publish(snapshot_of(...)).
    int refresh_fd() const { return refresh_fd_; }
    bool refresh_requested();
    void publish(IkeSnapshot snapshot);

    // Fed in attached mode (docs/metrics.md): from an SA command's enqueue
    // to its result, and from an outbound SA's install to its first packet.
    void observe_sa_command_latency(double seconds);
    void observe_sa_install_latency(double seconds);

    // How long a scrape waits for the daemon loop's fresh snapshot.
    static constexpr std::chrono::milliseconds refresh_wait{500};

    class Collector;

private:
    Metrics() = default;

    uint16_t port_ = 0;
    int refresh_fd_ = -1;
    std::shared_ptr<prometheus::Registry> histograms_;
    prometheus::Histogram* sa_command_latency_ = nullptr;
    prometheus::Histogram* sa_install_latency_ = nullptr;
    std::shared_ptr<Collector> collector_;
    std::unique_ptr<prometheus::Exposer> exposer_;   // last: stopped first
};

} // namespace ravelin::iked

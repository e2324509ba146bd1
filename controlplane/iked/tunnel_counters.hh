// Per-tunnel traffic counters that never go backwards.
//
// The data plane counts packets and bytes per SA, and SAs come and go: a
// Child SA rekey replaces both of a tunnel's SAs, a data-plane restart
// empties the table. Operators want one series per tunnel (connection and
// child name, never an SPI) that only grows. TunnelCounters keeps, per
// tunnel and direction, the total of the SAs that went away ("retired")
// and the last counts of those still there; a series is the sum of both.
//
// It does not care where counts come from: a full listing of the SAs that
// exist now (update(): the data plane's stats JSON today, the channel's
// sa_list tomorrow) and/or the final counts of an SA that was removed
// (retire(): a delete's reply). Not thread-safe: one owner at a time.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <unordered_map>

namespace ravelin::iked {

struct TunnelKey {
    std::string connection;
    std::string child;
    auto operator<=>(const TunnelKey&) const = default;
};

enum class TrafficDirection : uint8_t { in, out };

// One SA's counts. `id` tells SAs apart while they exist (e.g. SPI and
// direction); it never becomes a label.
struct SaCounts {
    uint64_t id = 0;
    TunnelKey tunnel;
    TrafficDirection direction = TrafficDirection::in;
    uint64_t packets = 0;
    uint64_t bytes = 0;
};

struct TrafficTotals {
    uint64_t packets = 0;
    uint64_t bytes = 0;
};

class TunnelCounters {
public:
    using Series = std::pair<TunnelKey, TrafficDirection>;

    // `live` lists every SA that exists now. An SA missing from it went
    // away: its last counts are retired. An SA whose counts went down, or
    // whose tunnel changed, is a new SA under a reused id: the old one is
    // retired and the new one starts from what it reports.
    void update(std::span<const SaCounts> live);
    // An SA is gone and these are its final counts (at least what was last
    // seen of it, whichever is larger).
    void retire(const SaCounts& last);

    // retired + live, per tunnel and direction; a series, once there, stays.
    std::map<Series, TrafficTotals> totals() const;
    std::size_t live_sas() const { return live_.size(); }

private:
    void add_retired(const SaCounts& sa);

    std::unordered_map<uint64_t, SaCounts> live_;
    std::map<Series, TrafficTotals> retired_;
};

} // namespace ravelin::iked

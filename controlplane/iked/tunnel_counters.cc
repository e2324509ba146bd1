#include "tunnel_counters.hh"

#include <algorithm>
#include <unordered_set>

namespace ravelin::iked {

void TunnelCounters::add_retired(const SaCounts& sa)
{
    auto& t = retired_[{sa.tunnel, sa.direction}];
    t.packets += sa.packets;
    t.bytes += sa.bytes;
}

void TunnelCounters::update(std::span<const SaCounts> live)
{
    std::unordered_set<uint64_t> seen;
    seen.reserve(live.size());
    for (const auto& sa : live) {
        if (!seen.insert(sa.id).second) continue;   // listed twice: the first one counts
        auto it = live_.find(sa.id);
        if (it == live_.end()) {
            live_.emplace(sa.id, sa);
            // A series appears as soon as its first SA does, even at zero.
            retired_.try_emplace({sa.tunnel, sa.direction});
            continue;
        }
        SaCounts& old = it->second;
        const bool same_sa = old.tunnel == sa.tunnel && old.direction == sa.direction &&
                             sa.packets >= old.packets && sa.bytes >= old.bytes;
        if (!same_sa) {
            add_retired(old);
            retired_.try_emplace({sa.tunnel, sa.direction});
        }
        old = sa;
    }
    for (auto it = live_.begin(); it != live_.end();) {
        if (seen.count(it->first)) {
            ++it;
            continue;
        }
        add_retired(it->second);
        it = live_.erase(it);
    }
}

void TunnelCounters::retire(const SaCounts& last)
{
    SaCounts final = last;
    if (auto it = live_.find(last.id); it != live_.end()) {
        const SaCounts& seen = it->second;
        if (seen.tunnel == last.tunnel && seen.direction == last.direction) {
            final.packets = std::max(final.packets, seen.packets);
            final.bytes = std::max(final.bytes, seen.bytes);
        } else {
            add_retired(seen);   // a different SA under that id: both count
        }
        live_.erase(it);
    }
    add_retired(final);
}

std::map<TunnelCounters::Series, TrafficTotals> TunnelCounters::totals() const
{
    auto out = retired_;
    for (const auto& [id, sa] : live_) {
        auto& t = out[{sa.tunnel, sa.direction}];
        t.packets += sa.packets;
        t.bytes += sa.bytes;
    }
    return out;
}

} // namespace ravelin::iked

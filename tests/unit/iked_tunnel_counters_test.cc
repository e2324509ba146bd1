// TunnelCounters: per-tunnel totals stay monotonic across rekeys, restarts
// and reused ids, and equal the traffic every SA carried.
#include "tunnel_counters.hh"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace ravelin::iked {
namespace {

const TunnelKey gw_net{"gw", "net"};
const TunnelKey gw_voice{"gw", "voice"};

SaCounts sa(uint64_t id, const TunnelKey& t, TrafficDirection d, uint64_t packets, uint64_t bytes)
{
    return SaCounts{id, t, d, packets, bytes};
}

TrafficTotals get(const TunnelCounters& c, const TunnelKey& t, TrafficDirection d)
{
    auto all = c.totals();
    auto it = all.find({t, d});
    return it == all.end() ? TrafficTotals{} : it->second;
}

TEST(TunnelCounters, RekeyKeepsTheSeriesGrowing)
{
    TunnelCounters c;
    std::vector<SaCounts> v{sa(1, gw_net, TrafficDirection::in, 10, 1000), sa(2, gw_net, TrafficDirection::out, 5, 500)};
    c.update(v);
    EXPECT_EQ(get(c, gw_net, TrafficDirection::in).packets, 10u);
    EXPECT_EQ(get(c, gw_net, TrafficDirection::out).bytes, 500u);

    // Rekey, make-before-break: old and new SAs side by side, then the old one goes.
    v = {sa(1, gw_net, TrafficDirection::in, 12, 1200), sa(3, gw_net, TrafficDirection::in, 0, 0),
         sa(4, gw_net, TrafficDirection::out, 1, 100)};
    c.update(v);
    EXPECT_EQ(get(c, gw_net, TrafficDirection::in).packets, 12u);
    EXPECT_EQ(get(c, gw_net, TrafficDirection::out).packets, 6u);   // 5 retired + 1
    v = {sa(3, gw_net, TrafficDirection::in, 4, 400), sa(4, gw_net, TrafficDirection::out, 2, 200)};
    c.update(v);
    EXPECT_EQ(get(c, gw_net, TrafficDirection::in).packets, 16u);
    EXPECT_EQ(get(c, gw_net, TrafficDirection::in).bytes, 1600u);
    EXPECT_EQ(get(c, gw_net, TrafficDirection::out).bytes, 700u);
    EXPECT_EQ(c.live_sas(), 2u);
}

TEST(TunnelCounters, DataPlaneRestartAndReusedIdsDoNotGoBackwards)
{
    TunnelCounters c;
    std::vector<SaCounts> v{sa(7, gw_net, TrafficDirection::in, 100, 9000)};
    c.update(v);
    // The data plane restarted and the same id came back with small counts.
    v = {sa(7, gw_net, TrafficDirection::in, 3, 300)};
    c.update(v);
    EXPECT_EQ(get(c, gw_net, TrafficDirection::in).packets, 103u);
    // The same id now belongs to another tunnel.
    v = {sa(7, gw_voice, TrafficDirection::in, 5, 50)};
    c.update(v);
    EXPECT_EQ(get(c, gw_net, TrafficDirection::in).packets, 103u);
    EXPECT_EQ(get(c, gw_voice, TrafficDirection::in).packets, 5u);
    // An empty listing: every SA is gone, nothing is lost.
    c.update({});
    EXPECT_EQ(c.live_sas(), 0u);
    EXPECT_EQ(get(c, gw_net, TrafficDirection::in).bytes, 9300u);
    EXPECT_EQ(get(c, gw_voice, TrafficDirection::in).bytes, 50u);
    EXPECT_EQ(c.totals().size(), 2u);   // series stay
}

TEST(TunnelCounters, RetireTakesTheFinalCountsOnce)
{
    TunnelCounters c;
    std::vector<SaCounts> v{sa(1, gw_net, TrafficDirection::out, 10, 100)};
    c.update(v);
    c.retire(sa(1, gw_net, TrafficDirection::out, 15, 150));   // more since the last listing
    EXPECT_EQ(get(c, gw_net, TrafficDirection::out).packets, 15u);
    c.update({});                                                  // already retired: not again
    EXPECT_EQ(get(c, gw_net, TrafficDirection::out).packets, 15u);
    c.retire(sa(9, gw_net, TrafficDirection::out, 2, 20));     // never listed
    EXPECT_EQ(get(c, gw_net, TrafficDirection::out).packets, 17u);
    c.update(v);
    c.retire(sa(1, gw_net, TrafficDirection::out, 4, 40));      // stale final counts: the larger wins
    EXPECT_EQ(get(c, gw_net, TrafficDirection::out).packets, 27u);
}

TEST(TunnelCounters, DuplicateIdsInOneListingCountOnce)
{
    TunnelCounters c;
    std::vector<SaCounts> v{sa(1, gw_net, TrafficDirection::in, 10, 100), sa(1, gw_net, TrafficDirection::in, 10, 100)};
    c.update(v);
    EXPECT_EQ(get(c, gw_net, TrafficDirection::in).packets, 10u);
}

// Against a model: SAs with growing counters appear and vanish at random;
// after each listing the totals never decrease, and once every SA is gone
// they equal what each SA carried at its last listing.
TEST(TunnelCounters, RandomLifecyclesMatchAModel)
{
    std::mt19937_64 rng(42);
    TunnelCounters c;
    const TunnelKey keys[] = {gw_net, gw_voice, {"other", "net"}};
    struct Model { SaCounts sa; bool alive; };
    std::vector<Model> sas;
    std::map<TunnelCounters::Series, TrafficTotals> last_seen_total, previous;
    uint64_t next_id = 1;
    for (int round = 0; round < 500; ++round) {
        if (sas.size() < 20 || rng() % 3 == 0) {
            sas.push_back({sa(next_id++, keys[rng() % 3], rng() % 2 ? TrafficDirection::in : TrafficDirection::out, 0, 0), true});
        }
        std::vector<SaCounts> listing;
        for (auto& m : sas) {
            if (!m.alive) continue;
            if (rng() % 10 == 0) { m.alive = false; continue; }
            uint64_t p = rng() % 100;
            m.sa.packets += p;
            m.sa.bytes += p * (64 + rng() % 1400);
            listing.push_back(m.sa);
        }
        c.update(listing);
        auto now = c.totals();
        for (const auto& [k, t] : previous) {
            EXPECT_GE(now[k].packets, t.packets);
            EXPECT_GE(now[k].bytes, t.bytes);
        }
        previous = now;
    }
    c.update({});
    std::map<TunnelCounters::Series, TrafficTotals> expect;
    for (const auto& m : sas) {
        auto& t = expect[{m.sa.tunnel, m.sa.direction}];
        t.packets += m.sa.packets;
        t.bytes += m.sa.bytes;
    }
    auto got = c.totals();
    ASSERT_EQ(got.size(), expect.size());
    for (const auto& [k, t] : expect) {
        EXPECT_EQ(got[k].packets, t.packets);
        EXPECT_EQ(got[k].bytes, t.bytes);
    }
}

} // namespace
} // namespace ravelin::iked

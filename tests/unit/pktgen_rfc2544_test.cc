// pktgen/rfc2544.hh: the binary search against simulated devices.
#include <gtest/gtest.h>

#include <cmath>

#include "rfc2544.hh"

namespace ravelin::pktgen {
namespace {

// A device that forwards up to `capacity` packets per second and drops the
// rest, offered `rate` for one second.
struct Dut {
    double capacity;
    double background_loss = 0;   // fraction lost at any rate
    void trial(ThroughputSearch& s) const
    {
        const double rate = s.next_rate();
        const uint64_t tx = uint64_t(rate);
        double rx = std::min(rate, capacity) * (1 - background_loss);
        s.report(tx, uint64_t(rx), rate);
    }
};

double run(const Dut& d, SearchParams p)
{
    ThroughputSearch s(p);
    while (!s.done()) d.trial(s);
    return s.result();
}

TEST(ThroughputSearch, FindsTheNoDropRateWithinResolution)
{
    SearchParams p;
    p.max_rate = 10e6;
    p.resolution = 0.001;
    for (double cap : {1.0e6, 3.3e6, 7.77e6, 9.99e6}) {
        const double r = run(Dut{cap}, p);
        EXPECT_LE(r, cap) << cap;
        EXPECT_GE(r, cap - p.resolution * p.max_rate) << cap;
    }
}

TEST(ThroughputSearch, FullRateNeedsOneTrial)
{
    SearchParams p;
    p.max_rate = 5e6;
    ThroughputSearch s(p);
    Dut{6e6}.trial(s);
    EXPECT_TRUE(s.done());
    EXPECT_DOUBLE_EQ(s.result(), 5e6);
    EXPECT_EQ(s.trials().size(), 1u);
}

TEST(ThroughputSearch, NothingPasses)
{
    SearchParams p;
    p.max_rate = 1e6;
    p.max_trials = 30;
    EXPECT_EQ(run(Dut{1e6, 0.01}, p), 0);   // 1 % loss at every rate: no NDR
}

TEST(ThroughputSearch, PartialDropRateToleratesItsRatio)
{
    // 0.05 % background loss: no NDR, but a PDR at 0.1 % equals the capacity.
    SearchParams p;
    p.max_rate = 10e6;
    p.resolution = 0.001;
    p.loss_ratio = 0.001;
    const double cap = 4e6;
    const double r = run(Dut{cap, 0.0005}, p);
    // Above capacity the loss grows with the excess: up to ~0.05 % above cap still passes.
    EXPECT_GE(r, cap - p.resolution * p.max_rate);
    EXPECT_LE(r, cap * 1.001);
}

TEST(ThroughputSearch, UnderOfferedTrialFails)
{
    // A generator (or a back-pressuring port) that achieves only 3 Mpps:
    // rates above are failures even without loss.
    SearchParams p;
    p.max_rate = 10e6;
    p.resolution = 0.001;
    ThroughputSearch s(p);
    while (!s.done()) {
        const double r = s.next_rate();
        const double offered = std::min(r, 3e6);
        s.report(uint64_t(offered), uint64_t(offered), offered);
    }
    EXPECT_LE(s.result(), 3e6 / 0.99 + 1);
    EXPECT_GE(s.result(), 3e6 - 0.001 * 10e6);
    bool saw_offered = false;
    for (auto& t : s.trials()) saw_offered |= t.why == "offered";
    EXPECT_TRUE(saw_offered);
}

TEST(ThroughputSearch, KnownGoodLowerBoundAndTrialLimit)
{
    SearchParams p;
    p.max_rate = 10e6;
    p.min_rate = 2e6;
    p.max_trials = 3;
    ThroughputSearch s(p);
    EXPECT_DOUBLE_EQ(s.result(), 2e6);
    while (!s.done()) Dut{1e6}.trial(s);   // everything fails
    EXPECT_EQ(s.trials().size(), 3u);
    EXPECT_DOUBLE_EQ(s.result(), 2e6);
    // Each failure halves towards the lower bound.
    EXPECT_DOUBLE_EQ(s.trials()[1].rate, 6e6);
    EXPECT_DOUBLE_EQ(s.trials()[2].rate, 4e6);
}

TEST(ThroughputSearch, NothingSentIsAFailure)
{
    SearchParams p;
    p.max_rate = 1e6;
    ThroughputSearch s(p);
    s.report(0, 0, 0);
    EXPECT_FALSE(s.trials().front().pass);
    EXPECT_EQ(s.trials().front().why, "nothing sent");
}

} // namespace
} // namespace ravelin::pktgen

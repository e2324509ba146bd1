// pktgen/rate.hh: rate syntax, per-frame cost, the TSC pacer's arithmetic.
#include <gtest/gtest.h>

#include "rate.hh"

namespace ravelin::pktgen {
namespace {

TEST(RateSpec, ParsesUnits)
{
    auto r = RateSpec::parse("2.5Mpps");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->unit, RateUnit::pps);
    EXPECT_DOUBLE_EQ(r->value, 2.5e6);
    r = RateSpec::parse("10Gbps");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->unit, RateUnit::l2_bps);
    EXPECT_DOUBLE_EQ(r->value, 1e10);
    r = RateSpec::parse("800kbps");
    ASSERT_TRUE(r);
    EXPECT_DOUBLE_EQ(r->value, 8e5);
    r = RateSpec::parse("50%");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->unit, RateUnit::line_percent);
    EXPECT_DOUBLE_EQ(r->value, 50);
    r = RateSpec::parse("max");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->unit, RateUnit::max);
}

TEST(RateSpec, RejectsBadRates)
{
    for (const char* bad : {"", "10", "Mpps", "-1Mpps", "0Mpps", "101%", "1e400pps", "5 Mpps", "nanpps"}) {
        std::string why;
        EXPECT_FALSE(RateSpec::parse(bad, &why)) << bad;
        EXPECT_FALSE(why.empty()) << bad;
    }
}

TEST(RateSpec, CostPerFrame)
{
    EXPECT_EQ(RateSpec::cost(RateUnit::pps, 1518), 1u);
    EXPECT_EQ(RateSpec::cost(RateUnit::l2_bps, 64), 512u);
    EXPECT_EQ(RateSpec::cost(RateUnit::line_percent, 64), 84u * 8);
}

TEST(RateSpec, PacketsPerSecond)
{
    // 64-byte frames at 100 % of 10 GbE: the textbook 14.88 Mpps.
    const RateSpec full{RateUnit::line_percent, 100}, gig{RateUnit::l2_bps, 1e9}, p42{RateUnit::pps, 42};
    EXPECT_NEAR(full.packets_per_second(64, 1e10), 14880952.4, 1);
    EXPECT_NEAR(full.packets_per_second(1518, 1e10), 812743.8, 1);
    EXPECT_NEAR(gig.packets_per_second(125, 0), 1e6, 1e-6);
    EXPECT_DOUBLE_EQ(p42.packets_per_second(64, 0), 42);
    EXPECT_EQ(RateSpec{}.packets_per_second(64, 1e10), 0);
}

constexpr uint64_t hz = 2'600'000'000;

TEST(Pacer, EarnsExactlyTheRateOverTime)
{
    Pacer p;
    p.start(1000, 1e6, hz, UINT64_MAX / 4);   // 1 Mpps, no credit cap in the way
    EXPECT_EQ(p.available(1000), 0u);
    // One second later: 1e6 packets, to within the fixed-point rounding.
    const uint64_t a = p.available(1000 + hz);
    EXPECT_GE(a, 999'999u);
    EXPECT_LE(a, 1'000'000u);
    p.spend(a);
    EXPECT_EQ(p.available(1000 + hz), 0u);
    // An hour in steps: no drift beyond one packet.
    uint64_t sent = a;
    for (uint64_t t = 2; t <= 3600; ++t) {
        const uint64_t x = p.available(1000 + t * hz);
        p.spend(x);
        sent += x;
    }
    EXPECT_NEAR(double(sent), 3.6e9, 1.0);
}

TEST(Pacer, SpendsInBurstsWithoutGainingRate)
{
    Pacer p;
    p.start(0, 14'880'952, hz, 64);
    uint64_t sent = 0;
    // Poll every 500 ticks for 0.1 s, spending whole bursts of 32 only.
    for (uint64_t t = 0; t <= hz / 10; t += 500) {
        uint64_t a = p.available(t);
        while (a >= 32) {
            p.spend(32);
            sent += 32;
            a -= 32;
        }
    }
    EXPECT_NEAR(double(sent), 1'488'095, 40);
    EXPECT_EQ(p.forgiven(), 0u);
}

TEST(Pacer, StallIsForgivenNotBurst)
{
    Pacer p;
    p.start(0, 1e6, hz, 64);
    // A 10 ms stall earns 10 000 packets; only 64 may go at once.
    EXPECT_EQ(p.available(hz / 100), 64u);
    EXPECT_NEAR(double(p.forgiven()), 10000 - 64, 2);
    p.spend(64);
    EXPECT_EQ(p.available(hz / 100), 0u);
    // After the stall the rate is the same again: 10 packets in 10 us.
    EXPECT_NEAR(double(p.available(hz / 100 + hz / 100000)), 10, 1);
}

TEST(Pacer, UnitsAreBitsForBitRates)
{
    // 1 Gbit/s of 1000-byte frames = 125 000 frames/s: 8000 units each.
    Pacer p;
    p.start(0, 1e9, hz, UINT64_MAX / 4);
    const uint64_t a = p.available(hz);
    EXPECT_NEAR(double(a / RateSpec::cost(RateUnit::l2_bps, 1000)), 125000, 1);
}

TEST(Pacer, UnlimitedAndTinyRates)
{
    Pacer p;
    p.start(0, 0, hz, 64);
    EXPECT_TRUE(p.unlimited());
    EXPECT_GT(p.available(0), uint64_t(1) << 60);
    Pacer slow;
    slow.start(0, 0.5, hz, 64);   // one packet every two seconds, not "unlimited"
    EXPECT_FALSE(slow.unlimited());
    EXPECT_EQ(slow.available(2 * hz - hz / 100), 0u);
    EXPECT_EQ(slow.available(2 * hz + hz / 100), 1u);
    EXPECT_EQ(slow.available(20 * hz + hz / 100), 10u);
}

TEST(Pacer, ClockBeforeStartEarnsNothing)
{
    Pacer p;
    p.start(5000, 1e6, hz, 64);
    EXPECT_EQ(p.available(10), 0u);
}

} // namespace
} // namespace ravelin::pktgen

// pktgen/rx_stats.hh: loss, reordering and duplicate accounting against a
// naive model (a std::set of everything seen), and latency percentiles
// against a sorted list.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include "rx_stats.hh"

namespace ravelin::pktgen {
namespace {

using Outcome = SeqTracker::Outcome;

TEST(SeqTracker, InOrder)
{
    SeqTracker t;
    for (uint64_t s = 0; s < 10000; ++s) EXPECT_EQ(t.record(s), Outcome::in_order);
    EXPECT_EQ(t.distinct(), 10000u);
    EXPECT_EQ(t.lost(10000), 0u);
    EXPECT_EQ(t.reordered(), 0u);
    EXPECT_EQ(t.duplicates(), 0u);
}

TEST(SeqTracker, LossIsSentMinusDistinct)
{
    SeqTracker t;
    for (uint64_t s = 0; s < 100; ++s)
        if (s % 10 != 3) t.record(s);
    EXPECT_EQ(t.lost(100), 10u);
    // Packets sent after the last one received are lost too.
    EXPECT_EQ(t.lost(120), 30u);
    EXPECT_EQ(t.reordered(), 0u);
}

TEST(SeqTracker, SwapIsOneReorderNoLoss)
{
    SeqTracker t;
    EXPECT_EQ(t.record(0), Outcome::in_order);
    EXPECT_EQ(t.record(2), Outcome::ahead);
    EXPECT_EQ(t.record(1), Outcome::late);
    EXPECT_EQ(t.record(3), Outcome::in_order);
    EXPECT_EQ(t.reordered(), 1u);
    EXPECT_EQ(t.lost(4), 0u);
}

TEST(SeqTracker, DuplicatesInAndOutOfOrder)
{
    SeqTracker t;
    t.record(0);
    t.record(1);
    EXPECT_EQ(t.record(1), Outcome::duplicate);
    EXPECT_EQ(t.record(0), Outcome::duplicate);
    t.record(5);
    EXPECT_EQ(t.record(5), Outcome::duplicate);
    EXPECT_EQ(t.record(3), Outcome::late);
    EXPECT_EQ(t.record(3), Outcome::duplicate);
    EXPECT_EQ(t.duplicates(), 4u);
    EXPECT_EQ(t.received(), 8u);
    EXPECT_EQ(t.distinct(), 4u);
    EXPECT_EQ(t.lost(6), 2u);   // 2 and 4
}

TEST(SeqTracker, WindowSlotsAreReusedCorrectly)
{
    // A number a whole window later lands on the same bit: it must not be
    // taken for a duplicate of the old one.
    SeqTracker t;
    t.record(7);
    EXPECT_EQ(t.record(7 + SeqTracker::window), Outcome::ahead);
    EXPECT_EQ(t.record(7 + 2 * SeqTracker::window), Outcome::ahead);
    EXPECT_EQ(t.duplicates(), 0u);
    // Far behind the window: cannot tell, counted as a distinct late arrival.
    EXPECT_EQ(t.record(7), Outcome::too_old);
    EXPECT_EQ(t.too_old(), 1u);
}

// Random traffic: a sequence with loss, local reordering (within the
// window) and duplicates; the tracker must agree with a set.
TEST(SeqTracker, MatchesNaiveModel)
{
    std::mt19937_64 rng(2544);
    for (int round = 0; round < 20; ++round) {
        const uint64_t n = 20000;
        std::vector<uint64_t> arrivals;
        for (uint64_t s = 0; s < n; ++s) {
            if (rng() % 100 < 3) continue;                 // lost
            arrivals.push_back(s);
            if (rng() % 100 < 2) arrivals.push_back(s);    // duplicated
        }
        // Reorder locally: swap pairs at most 500 apart (well inside the window).
        for (std::size_t i = 0; i + 1 < arrivals.size(); ++i)
            if (rng() % 100 < 5) std::swap(arrivals[i], arrivals[std::min(arrivals.size() - 1, i + 1 + rng() % 500)]);

        SeqTracker t;
        std::set<uint64_t> seen;
        uint64_t dups = 0, late = 0, highest_plus1 = 0;
        for (uint64_t s : arrivals) {
            const Outcome o = t.record(s);
            const bool was = !seen.insert(s).second;
            if (was) {
                ++dups;
                EXPECT_EQ(o, Outcome::duplicate);
            } else if (s < highest_plus1) {
                ++late;
                EXPECT_EQ(o, Outcome::late);
            } else {
                EXPECT_TRUE(o == Outcome::in_order || o == Outcome::ahead);
            }
            highest_plus1 = std::max(highest_plus1, s + 1);
        }
        EXPECT_EQ(t.duplicates(), dups);
        EXPECT_EQ(t.reordered(), late);
        EXPECT_EQ(t.distinct(), seen.size());
        EXPECT_EQ(t.lost(n), n - seen.size());
        EXPECT_EQ(t.received(), arrivals.size());
        EXPECT_EQ(t.too_old(), 0u);
    }
}

TEST(LatencyHistogram, BucketEdgesAreContiguousAndTight)
{
    for (unsigned i = 0; i + 1 < LatencyHistogram::buckets; ++i) {
        EXPECT_EQ(LatencyHistogram::upper_edge(i) + 1, LatencyHistogram::lower_edge(i + 1)) << i;
        EXPECT_EQ(LatencyHistogram::index(LatencyHistogram::lower_edge(i)), i);
        EXPECT_EQ(LatencyHistogram::index(LatencyHistogram::upper_edge(i)), i);
        const uint64_t lo = LatencyHistogram::lower_edge(i), hi = LatencyHistogram::upper_edge(i);
        if (lo >= 16) {
            EXPECT_LE(double(hi - lo + 1) / double(lo), 1.0 / 16 + 1e-12) << i;
        }
    }
    EXPECT_EQ(LatencyHistogram::index(UINT64_MAX), LatencyHistogram::buckets - 1);
}

TEST(LatencyHistogram, PercentilesWithinABucketOfTheTruth)
{
    std::mt19937_64 rng(7);
    std::lognormal_distribution<double> d(9.0, 1.2);   // ~8 us median, long tail
    LatencyHistogram h;
    std::vector<uint64_t> v;
    for (int i = 0; i < 100000; ++i) {
        const uint64_t x = uint64_t(d(rng));
        v.push_back(x);
        h.record(x);
    }
    std::sort(v.begin(), v.end());
    for (double q : {0.5, 0.9, 0.99, 0.999}) {
        const uint64_t truth = v[std::size_t(q * double(v.size())) - 1];
        const uint64_t got = h.percentile(q);
        EXPECT_GE(got, truth) << q;                                   // upper edge of its bucket
        EXPECT_LE(double(got), double(truth) * (1 + 1.0 / 16) + 1) << q;
    }
    EXPECT_EQ(h.min(), v.front());
    EXPECT_EQ(h.max(), v.back());
    EXPECT_EQ(h.percentile(1.0), v.back());
    EXPECT_EQ(h.count(), v.size());
}

TEST(LatencyHistogram, EmptyAndMerge)
{
    LatencyHistogram a, b;
    EXPECT_EQ(a.percentile(0.5), 0u);
    EXPECT_EQ(a.min(), 0u);
    a.record(100);
    b.record(5);
    b.record(1000000);
    a.merge(b);
    EXPECT_EQ(a.count(), 3u);
    EXPECT_EQ(a.min(), 5u);
    EXPECT_EQ(a.max(), 1000000u);
    EXPECT_EQ(a.nonzero().size(), 3u);
}

} // namespace
} // namespace ravelin::pktgen

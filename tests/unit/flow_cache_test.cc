// The worker's flow cache (dataplane/flow_cache.hh): an answer is found
// only under the generation it was remembered with, a set keeps its four
// newest tuples, and the hash spreads tunnel-like tuples (one destination
// each, addresses in a row) evenly enough that few share a crowded set.
// How the worker uses it is in worker_test.cc (CachedAnswersFollowTheSpdInUse).
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include <rte_byteorder.h>

#include "eal_env.hh"
#include "flow_cache.hh"

namespace ravelin::dp {
namespace {

// A UDP tuple from src to dst (host order), as Worker's tuple_v4 builds it.
Tuple4 udp(uint32_t src, uint32_t dst, uint16_t sport = 1234, uint16_t dport = 5678)
{
    const uint64_t s = rte_cpu_to_be_32(src), d = rte_cpu_to_be_32(dst);
    const uint64_t ports = uint64_t(rte_cpu_to_be_16(sport)) | uint64_t(rte_cpu_to_be_16(dport)) << 16;
    return {s | d << 32, 17 | ports << 32};
}

TEST(FlowCache, AnswersOnlyUnderTheGenerationTheyCameFrom)
{
    test::eal();
    FlowCache c;
    ASSERT_TRUE(c.init(4, 1));
    EXPECT_EQ(c.entries(), 64u);
    const SpdEntry e1, e2;
    const Tuple4 a = udp(0xc6120102, 0xc6120202), b = udp(0xc6120103, 0xc6120202);
    const SpdEntry* got = &e2;
    EXPECT_FALSE(c.find(c.set_of(a), 1, a, got));   // empty
    c.insert(c.set_of(a), 1, a, &e1);
    c.insert(c.set_of(b), 1, b, nullptr);           // "no policy" is an answer too
    ASSERT_TRUE(c.find(c.set_of(a), 1, a, got));
    EXPECT_EQ(got, &e1);
    got = &e2;
    ASSERT_TRUE(c.find(c.set_of(b), 1, b, got));
    EXPECT_EQ(got, nullptr);
    EXPECT_FALSE(c.find(c.set_of(a), 2, a, got));   // another Spd's generation
    // Tuples differing only in a port or the protocol are other flows.
    const Tuple4 a_port = udp(0xc6120102, 0xc6120202, 1235), a_tcp{a.addrs, (a.rest & ~0xffull) | 6};
    EXPECT_FALSE(c.find(c.set_of(a), 1, a_port, got));   // asked where `a` is
    EXPECT_FALSE(c.find(c.set_of(a), 1, a_tcp, got));
}

TEST(FlowCache, ASetKeepsItsFourNewestTuples)
{
    test::eal();
    FlowCache c;
    ASSERT_TRUE(c.init(2, 7));
    SpdEntry answers[6];
    std::vector<Tuple4> t;
    for (uint32_t i = 0; i < 6; ++i) t.push_back(udp(0xc6120100 + i, 0xc6120202));
    // All in set 0, whatever their hash: the set is the caller's to choose.
    for (unsigned i = 0; i < 4; ++i) c.insert(0, 1, t[i], &answers[i]);
    const SpdEntry* got = nullptr;
    for (unsigned i = 0; i < 4; ++i) {
        ASSERT_TRUE(c.find(0, 1, t[i], got)) << i;
        EXPECT_EQ(got, &answers[i]);
    }
    c.insert(0, 1, t[0], &answers[0]);   // a repeat changes nothing ...
    c.insert(0, 1, t[4], &answers[4]);   // ... so the oldest insert (t[0]) goes
    EXPECT_FALSE(c.find(0, 1, t[0], got));
    for (unsigned i = 1; i < 5; ++i) EXPECT_TRUE(c.find(0, 1, t[i], got)) << i;
    // A new generation's tuples replace the old's: its four all stay.
    for (unsigned i = 0; i < 4; ++i) c.insert(0, 2, t[i + 1], &answers[i + 1]);
    for (unsigned i = 0; i < 4; ++i) {
        ASSERT_TRUE(c.find(0, 2, t[i + 1], got)) << i;
        EXPECT_EQ(got, &answers[i + 1]);
    }
    EXPECT_FALSE(c.find(0, 1, t[4], got));   // the old generation's are gone
    // Another set is untouched by all this.
    EXPECT_FALSE(c.find(1, 2, t[1], got));
}

// 10 000 flows in the worker's outbound size (65 536 tuples), as traffic
// makes them: a
// destination per tunnel (bench-tunnels.sh: addresses in a row), and flows
// that differ only in a source port, only in a destination port (a server
// answering one client's connections) or in protocol and ports. A tuple
// that shares its set with four or more others is evicted in turn and
// always misses; a uniform hash leaves ~0.4 % there. A hash blind to some
// field would crowd that pattern into a few sets. Seeds move the tuples.
TEST(FlowCache, SpreadsFlowsOverTheSets)
{
    test::eal();
    struct Pattern {
        const char* name;
        Tuple4 (*make)(unsigned i);
    };
    const Pattern patterns[] = {
        {"destination address", [](unsigned i) { return udp(0xc6120102, 0xc6140000 + i); }},
        {"source port", [](unsigned i) { return udp(0xc6120102, 0xc6120202, uint16_t(1024 + i), 443); }},
        {"destination port", [](unsigned i) { return udp(0xc6120102, 0xc6120202, 443, uint16_t(1024 + i)); }},
        {"protocol and ports", [](unsigned i) {
             Tuple4 t = udp(0xc6120102, 0xc6120202, uint16_t(i % 100), uint16_t(i / 100));
             t.rest = (t.rest & ~0xffull) | (i % 2 ? 6 : 17);
             return t;
         }},
    };
    const unsigned flows = 10000;
    for (uint64_t seed : {1ull, 0x5eedull, 0xfeedfacecafebeefull})
        for (const Pattern& p : patterns) {
            FlowCache c;
            ASSERT_TRUE(c.init(14, seed));
            ASSERT_EQ(c.entries(), 65536u);
            std::vector<uint32_t> load(16384), set(flows);
            for (unsigned i = 0; i < flows; ++i) ++load[set[i] = c.set_of(p.make(i))];
            unsigned crowded = 0;
            for (unsigned i = 0; i < flows; ++i) crowded += load[set[i]] > FlowCache::ways_per_set;
            EXPECT_LT(crowded, flows * 2 / 100) << p.name << ", seed " << seed;
            EXPECT_LE(*std::max_element(load.begin(), load.end()), 9u) << p.name << ", seed " << seed;
        }
    FlowCache a, b;
    ASSERT_TRUE(a.init(14, 1));
    ASSERT_TRUE(b.init(14, 2));
    unsigned same = 0;
    for (unsigned i = 0; i < 1000; ++i) {
        const Tuple4 t = udp(0xc6120102, 0xc6140000 + i);
        same += a.set_of(t) == b.set_of(t);
    }
    EXPECT_LT(same, 12u);   // ~1000 / 16384 by chance
    EXPECT_FALSE(a.init(25, 1)) << "more than 2^24 sets is refused";
    EXPECT_FALSE(a.ready());
}

} // namespace
} // namespace ravelin::dp

// pktgen/size_schedule.hh: IMIX proportions, spreading, parsing.
#include <gtest/gtest.h>

#include <map>

#include "size_schedule.hh"

namespace ravelin::pktgen {
namespace {

std::map<uint16_t, unsigned> count_period(SizeSchedule& s)
{
    std::map<uint16_t, unsigned> n;
    for (std::size_t i = 0; i < s.order().size(); ++i) ++n[s.next()];
    return n;
}

TEST(SizeSchedule, ImixIsSevenFourOneOf64_570_1420)
{
    auto s = SizeSchedule::parse("imix");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->order().size(), 12u);
    auto n = count_period(*s);
    EXPECT_EQ(n[64], 7u);
    EXPECT_EQ(n[570], 4u);
    EXPECT_EQ(n[1420], 1u);
    EXPECT_EQ(n.size(), 3u);
    EXPECT_DOUBLE_EQ(s->mean(), (7 * 64 + 4 * 570 + 1420) / 12.0);
    EXPECT_EQ(s->min(), 64);
    EXPECT_EQ(s->max(), 1420);
}

TEST(SizeSchedule, ClassicImixUses1518)
{
    auto s = SizeSchedule::parse("imix-classic");
    ASSERT_TRUE(s);
    auto n = count_period(*s);
    EXPECT_EQ(n[1518], 1u);
    EXPECT_EQ(n[64], 7u);
}

TEST(SizeSchedule, UserDefinedMixAndDefaultWeight)
{
    auto s = SizeSchedule::parse("128:3,256,1000:2");
    ASSERT_TRUE(s);
    auto n = count_period(*s);
    EXPECT_EQ(n[128], 3u);
    EXPECT_EQ(n[256], 1u);
    EXPECT_EQ(n[1000], 2u);
}

TEST(SizeSchedule, SizesAreSpreadNotInRuns)
{
    // 7 of 12 are 64: with an even spread no two of the rarer sizes touch,
    // and there are never more than two 64s in a row... except where the
    // ratio forces it; 7/12 allows at most 2.
    auto s = SizeSchedule::parse("imix");
    ASSERT_TRUE(s);
    const auto& o = s->order();
    unsigned run = 0, longest = 0;
    for (std::size_t i = 0; i < 2 * o.size(); ++i) {
        run = o[i % o.size()] == 64 ? run + 1 : 0;
        longest = std::max(longest, run);
    }
    EXPECT_LE(longest, 2u);
    // Any window of 12 consecutive frames has the exact mix.
    for (std::size_t start = 0; start < o.size(); ++start) {
        std::map<uint16_t, unsigned> n;
        for (std::size_t i = 0; i < 12; ++i) ++n[o[(start + i) % o.size()]];
        EXPECT_EQ(n[64], 7u);
        EXPECT_EQ(n[1420], 1u);
    }
}

TEST(SizeSchedule, RepeatsAndPeeksWithoutConsuming)
{
    auto s = SizeSchedule::parse("64:1,128:1");
    ASSERT_TRUE(s);
    const uint16_t a = s->peek(0), b = s->peek(1);
    EXPECT_NE(a, b);
    EXPECT_EQ(s->peek(2), a);
    EXPECT_EQ(s->next(), a);
    EXPECT_EQ(s->next(), b);
    EXPECT_EQ(s->next(), a);
}

TEST(SizeSchedule, FixedSize)
{
    auto s = SizeSchedule::parse("1420");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->next(), 1420);
    EXPECT_EQ(s->next(), 1420);
    EXPECT_DOUBLE_EQ(s->mean(), 1420);
}

TEST(SizeSchedule, RejectsBadSpecsWithAReason)
{
    for (const char* bad : {"", "63", "1519", "abc", "64:0", "64:x", "64,,128", "64:10001", "5000:1",
                            "64:6000,128:6000"}) {
        std::string why;
        EXPECT_FALSE(SizeSchedule::parse(bad, &why)) << bad;
        EXPECT_FALSE(why.empty()) << bad;
    }
}

} // namespace
} // namespace ravelin::pktgen

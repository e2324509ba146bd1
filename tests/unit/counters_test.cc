#include <gtest/gtest.h>

#include <set>
#include <string>

#include "counters.hh"

namespace ravelin::dp {
namespace {

TEST(Counters, EveryDropReasonHasAUniqueNameAndHelp)
{
    std::set<std::string_view> names;
    for (const auto& r : drop_reasons) {
        EXPECT_FALSE(r.name.empty());
        EXPECT_FALSE(r.help.empty()) << r.name;
        EXPECT_TRUE(names.insert(r.name).second) << "duplicate name " << r.name;
        // Names are used as JSON keys and Prometheus label values.
        for (char c : r.name) EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') << r.name;
    }
    EXPECT_EQ(drop_reason_name(DropReason::replay), "replay");
    EXPECT_EQ(drop_reason_name(DropReason::count), "unknown");
}

TEST(Counters, WorkerCountersCountPerReason)
{
    WorkerCounters c;
    c.drop(DropReason::auth_failed);
    c.drop(DropReason::auth_failed, 4);
    c.stats.rx_packets.inc(32);
    EXPECT_EQ(c.drops[size_t(DropReason::auth_failed)].get(), 5u);
    EXPECT_EQ(c.drops[size_t(DropReason::replay)].get(), 0u);
    EXPECT_EQ(c.stats.rx_packets.get(), 32u);
    EXPECT_EQ(alignof(WorkerCounters), 64u) << "each worker's counters on their own cache lines";
}

} // namespace
} // namespace ravelin::dp

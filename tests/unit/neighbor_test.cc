// Neighbour table and the main lcore's ND handling (dataplane/neighbor.hh).
#include <gtest/gtest.h>

#include <cstring>

#include <rte_ip.h>

#include "config.hh"
#include "eal_env.hh"
#include "neighbor.hh"
#include "route.hh"

namespace ravelin::dp {
namespace {

TEST(NeighborTable, LearnsAndRateLimitsRequests)
{
    test::eal();
    auto t = NeighborTable::create("nt_1", 8);
    ASSERT_TRUE(t);
    IpAddress a = IpAddress::v4(0xc6120002);
    rte_ether_addr mac{{2, 0, 0, 0, 0, 9}}, got;
    EXPECT_FALSE(t->lookup(a, got));
    EXPECT_TRUE(t->want(a, 1, 1000, 500));
    EXPECT_FALSE(t->want(a, 1, 1200, 500)) << "second request within the interval";
    EXPECT_TRUE(t->want(a, 1, 1600, 500));
    EXPECT_FALSE(t->lookup(a, got)) << "an entry being resolved has no MAC yet";
    t->learn(a, 1, mac);
    ASSERT_TRUE(t->lookup(a, got));
    EXPECT_TRUE(rte_is_same_ether_addr(&got, &mac));
    auto snap = t->snapshot();
    ASSERT_EQ(snap.size(), 1u);
    EXPECT_TRUE(snap[0].resolved);
}

TEST(NeighborTable, FullTableRefusesNewEntries)
{
    test::eal();
    auto t = NeighborTable::create("nt_2", 2);
    rte_ether_addr mac{{2, 0, 0, 0, 0, 1}}, got;
    for (uint32_t i = 0; i < 5; ++i) t->add(IpAddress::v4(0xc6120010 + i), 0, mac);
    EXPECT_TRUE(t->lookup(IpAddress::v4(0xc6120010), got));
    EXPECT_TRUE(t->lookup(IpAddress::v4(0xc6120011), got));
    EXPECT_FALSE(t->lookup(IpAddress::v4(0xc6120012), got));
}

TEST(NeighborTable, StaticEntriesAreNeitherLearnedOverNorSolicited)
{
    test::eal();
    auto t = NeighborTable::create("nt_3", 8);
    IpAddress a = IpAddress::v4(0xc6120002);
    rte_ether_addr configured{{2, 0, 0x5e, 0x10, 0, 2}}, spoofed{{2, 0, 0, 0, 0, 0x66}}, got;
    ASSERT_TRUE(t->add(a, 1, configured));
    EXPECT_FALSE(t->learn(a, 1, spoofed)) << "an ARP reply from the link must not move a static neighbour";
    ASSERT_TRUE(t->lookup(a, got));
    EXPECT_TRUE(rte_is_same_ether_addr(&got, &configured));
    EXPECT_FALSE(t->want(a, 1, 1000, 1)) << "nothing to resolve";
    auto snap = t->snapshot();
    ASSERT_EQ(snap.size(), 1u);
    EXPECT_TRUE(snap[0].pinned);
    EXPECT_TRUE(snap[0].resolved);
    // A dynamic entry next to it still learns.
    IpAddress b = IpAddress::v4(0xc6120003);
    EXPECT_TRUE(t->want(b, 1, 1000, 1));
    EXPECT_TRUE(t->learn(b, 1, spoofed));
    EXPECT_FALSE(t->snapshot()[1].pinned);
}

// A FIB with an IPv6 protected port (2001:db8:1::1/64, port 0) and an
// IPv4 unprotected one (port 1).
std::unique_ptr<Fib> nd_fib(const std::string& name)
{
    auto cfg = parse_config(R"([dataplane]
lcores = "0,1"
[[port]]
name = "inside"
role = "protected"
device = "net_null0"
address = ["2001:db8:1::1/64"]
[[port]]
name = "outside"
role = "unprotected"
device = "net_null1"
address = ["198.18.0.1/24"]
)", name + ".toml");
    if (!cfg) ADD_FAILURE() << cfg.error().to_string();
    std::string error;
    auto fib = cfg ? Fib::build(cfg.value(), {0, 1}, name, error) : nullptr;
    if (!fib) ADD_FAILURE() << error;
    return fib;
}

TEST(Neighbor, AnswersNeighborSolicitation)
{
    test::eal();
    auto fib = nd_fib("fib_nd");
    ASSERT_TRUE(fib);
    auto table = NeighborTable::create("nt_nd", 16);
    rte_ether_addr host{{2, 0, 0, 0, 0, 2}}, gw{{2, 0, 0, 0, 0, 1}};
    IpAddress host_ip = *parse_ip("2001:db8:1::2"), gw_ip = *parse_ip("2001:db8:1::1");
    // The gateway wants the host's MAC (say, traffic is waiting for it) ...
    EXPECT_TRUE(table->want(host_ip, 0, 1, 1));
    // ... and the host solicits the gateway's address: the same builder we use.
    rte_mbuf* m = make_solicitation(test::test_pool(), host, host_ip, gw_ip);
    ASSERT_NE(m, nullptr);
    m->port = 0;
    ASSERT_EQ(handle_control(m, gw, *fib, *table), ControlAction::reply);
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    EXPECT_TRUE(rte_is_same_ether_addr(&eth->dst_addr, &host));
    auto* ip = reinterpret_cast<rte_ipv6_hdr*>(eth + 1);
    auto* icmp = reinterpret_cast<uint8_t*>(ip + 1);
    EXPECT_EQ(icmp[0], 136);
    EXPECT_EQ(std::memcmp(icmp + 8, gw_ip.bytes.data(), 16), 0);
    EXPECT_EQ(std::memcmp(icmp + 26, gw.addr_bytes, 6), 0);
    EXPECT_EQ(std::memcmp(ip->dst_addr, host_ip.bytes.data(), 16), 0);
    rte_ether_addr learned;
    EXPECT_TRUE(table->lookup(host_ip, learned)) << "the solicitor's wanted address is learned";
    rte_pktmbuf_free(m);

    // A solicitor we never asked for is answered but not remembered: frames
    // from the link cannot fill the table.
    IpAddress stranger = *parse_ip("2001:db8:1::99");
    m = make_solicitation(test::test_pool(), host, stranger, gw_ip);
    m->port = 0;
    ASSERT_EQ(handle_control(m, gw, *fib, *table), ControlAction::reply);
    EXPECT_FALSE(table->lookup(stranger, learned));
    EXPECT_EQ(table->snapshot().size(), 1u);
    rte_pktmbuf_free(m);

    // A wanted address claimed from the wrong port is not believed.
    IpAddress other = *parse_ip("2001:db8:1::77");
    table->want(other, 0, 1, 1);
    m = make_solicitation(test::test_pool(), host, other, gw_ip);
    m->port = 1;
    handle_control(m, gw, *fib, *table);
    EXPECT_FALSE(table->lookup(other, learned)) << "learned from a port the sender is not on";
    rte_pktmbuf_free(m);
}

// Duplicate address detection: the solicitation comes from ::, so the
// answer goes to all nodes (RFC 4861 §7.2.4), at IP and Ethernet level.
TEST(Neighbor, AnswersDadProbeToAllNodes)
{
    test::eal();
    auto fib = nd_fib("fib_dad");
    ASSERT_TRUE(fib);
    auto table = NeighborTable::create("nt_dad", 16);
    rte_ether_addr host{{2, 0, 0, 0, 0, 2}}, gw{{2, 0, 0, 0, 0, 1}};
    IpAddress unspecified;
    unspecified.family = IpFamily::v6;
    rte_mbuf* m = make_solicitation(test::test_pool(), host, unspecified, *parse_ip("2001:db8:1::1"));
    ASSERT_NE(m, nullptr);
    // A DAD probe carries no source link-layer option (RFC 4861 §7.1.1).
    rte_pktmbuf_trim(m, 8);
    rte_pktmbuf_mtod_offset(m, rte_ipv6_hdr*, 14)->payload_len = rte_cpu_to_be_16(24);
    m->port = 0;
    ASSERT_EQ(handle_control(m, gw, *fib, *table), ControlAction::reply);
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    const rte_ether_addr all_nodes{{0x33, 0x33, 0, 0, 0, 1}};
    EXPECT_TRUE(rte_is_same_ether_addr(&eth->dst_addr, &all_nodes));
    auto* ip = reinterpret_cast<rte_ipv6_hdr*>(eth + 1);
    EXPECT_EQ(ip->dst_addr[0], 0xff);
    EXPECT_EQ(ip->dst_addr[15], 1);
    EXPECT_EQ(reinterpret_cast<uint8_t*>(ip + 1)[4], 0x20) << "not solicited, override set";
    EXPECT_EQ(m->data_len, 14 + 40 + 32) << "a full advertisement with our MAC option";
    EXPECT_EQ(rte_be_to_cpu_16(ip->payload_len), 32);
    rte_pktmbuf_free(m);
}

} // namespace
} // namespace ravelin::dp

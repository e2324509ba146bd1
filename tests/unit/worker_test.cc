// The worker pipeline end to end, in-process on net_ring ports: outbound
// protect, inbound decrypt and policy check, and the SA-affinity hand-off
// between two workers (one SA's traffic arriving on both workers' queues).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include <rte_arp.h>
#include <rte_icmp.h>
#include <rte_udp.h>

#include "dp_fixture.hh"
#include "esp.hh"

namespace ravelin::dp {
namespace {

using test::DataplaneFixture;
using test::udp_frame;

constexpr uint32_t host_a = 0xc6120102;   // 198.18.1.2, behind the gateway
constexpr uint32_t host_b = 0xc6120202;   // 198.18.2.2, behind the peer
constexpr uint32_t peer = 0xc6120002;     // 198.18.0.2

// The far end of the fixture's tunnel: the mirror of its SAs.
struct Peer {
    IMB_MGR* mgr = crypto_manager_create();
    WorkerCounters counters;
    EspContext ctx{mgr, nullptr, &counters, 0};
    DpSa* out = nullptr;   // encrypts what the gateway's inbound SA 0x2002 takes
    DpSa* in = nullptr;    // decrypts what the gateway's outbound SA 0x1001 sends
    uint32_t inner_src = host_b;

    Peer()
    {
        out = test::fixture_peer_sa(mgr, 0x2002, SaDirection::outbound);
        in = test::fixture_peer_sa(mgr, 0x1001, SaDirection::inbound);
    }
    ~Peer()
    {
        sa_free(out);
        sa_free(in);
        crypto_manager_free(mgr);
    }
    // An ESP frame from the peer to the gateway carrying inner_src ->
    // inner_dst, sealed with `via` (default: out).
    rte_mbuf* seal(rte_mempool* pool, uint32_t tag, const rte_ether_addr& gw_mac, uint32_t inner_dst = host_a,
                   DpSa* via = nullptr)
    {
        rte_mbuf* m = udp_frame(pool, inner_src, inner_dst, tag);
        rte_pktmbuf_adj(m, sizeof(rte_ether_hdr));
        EXPECT_EQ(esp_encap(ctx, via ? *via : *out, m), DropReason::none);
        auto* eth = reinterpret_cast<rte_ether_hdr*>(rte_pktmbuf_prepend(m, sizeof(rte_ether_hdr)));
        eth->dst_addr = gw_mac;
        eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
        return m;
    }
};

uint32_t tag_of_clear(rte_mbuf* m)
{
    uint32_t tag;
    std::memcpy(&tag, rte_pktmbuf_mtod_offset(m, uint8_t*, 14 + 20 + 8), 4);
    return tag;
}

uint32_t esp_seq(rte_mbuf* m)
{
    return rte_be_to_cpu_32(*rte_pktmbuf_mtod_offset(m, uint32_t*, 14 + 20 + 4));
}

TEST(Worker, OutboundHandoffKeepsSequenceUniqueAndOrderPerQueue)
{
    DataplaneFixture f("ho_out");
    Peer p;
    const rte_ether_addr gw_in_mac = f.dp->shared().ports[f.inside.id].mac;
    constexpr uint32_t n = 600;
    // One flow, one SA (owned by worker 1), arriving on both workers' queues.
    for (uint32_t i = 0; i < n; ++i)
        f.inside.inject(i % 2, udp_frame(f.dp->pool(), host_a, host_b, i, 32, gw_in_mac));
    for (int round = 0; round < 200; ++round) f.poll_all(1);

    EXPECT_TRUE(f.outside.take(0).empty()) << "worker 0 must not send for an SA it does not own";
    auto sent = f.outside.take(1);
    ASSERT_EQ(sent.size(), n);
    std::set<uint32_t> seqs;
    std::map<uint32_t, std::vector<uint32_t>> by_queue;
    for (rte_mbuf* m : sent) {
        EXPECT_TRUE(seqs.insert(esp_seq(m)).second) << "sequence number used twice: " << esp_seq(m);
        rte_pktmbuf_adj(m, sizeof(rte_ether_hdr));
        ASSERT_EQ(esp_decap(p.ctx, *p.in, m, 20), DropReason::none);
        uint32_t tag;
        std::memcpy(&tag, rte_pktmbuf_mtod_offset(m, uint8_t*, 28), 4);
        by_queue[tag % 2].push_back(tag);
        rte_pktmbuf_free(m);
    }
    EXPECT_EQ(*seqs.begin(), 1u);
    EXPECT_EQ(*seqs.rbegin(), n);
    for (auto& [q, tags] : by_queue) {
        EXPECT_EQ(tags.size(), n / 2);
        EXPECT_TRUE(std::is_sorted(tags.begin(), tags.end())) << "hand-off reordered queue " << q;
    }
    EXPECT_EQ(f.dp->worker(0).counters().stats.handoff_out.get(), n / 2);
    EXPECT_EQ(f.dp->worker(1).counters().stats.handoff_in.get(), n / 2);
    EXPECT_EQ(f.dp->worker(1).counters().stats.encrypted.get(), n);
}

TEST(Worker, InboundHandoffKeepsReplayWindowExact)
{
    DataplaneFixture f("ho_in");
    Peer p;
    const rte_ether_addr gw_out_mac = f.dp->shared().ports[f.outside.id].mac;
    constexpr uint32_t n = 600;
    std::vector<rte_mbuf*> frames;
    for (uint32_t i = 0; i < n; ++i) frames.push_back(p.seal(f.dp->pool(), i, gw_out_mac));
    // Every 10th packet is sent twice, the copy on the other queue: exactly
    // those copies must be dropped as replays, whichever worker saw them.
    uint32_t dups = 0;
    for (uint32_t i = 0; i < n; ++i) {
        f.outside.inject(i % 2, frames[i]);
        if (i % 10 == 0) {
            f.outside.inject((i + 1) % 2, rte_pktmbuf_copy(frames[i], f.dp->pool(), 0, UINT32_MAX));
            ++dups;
        }
    }
    for (int round = 0; round < 200; ++round) f.poll_all(1);

    auto got = f.inside.take(0);
    EXPECT_TRUE(f.inside.take(1).empty()) << "worker 1 must not decrypt for an SA it does not own";
    ASSERT_EQ(got.size(), n);
    std::set<uint32_t> tags;
    std::map<uint32_t, std::vector<uint32_t>> by_queue;
    for (rte_mbuf* m : got) {
        uint32_t tag = tag_of_clear(m);
        EXPECT_TRUE(tags.insert(tag).second) << "delivered twice: " << tag;
        by_queue[tag % 2].push_back(tag);
        rte_pktmbuf_free(m);
    }
    for (auto& [q, t] : by_queue) EXPECT_TRUE(std::is_sorted(t.begin(), t.end())) << "queue " << q;
    EXPECT_EQ(f.drops(DropReason::replay), dups);
    DpSa* in = f.dp->shared().sas->get(f.dp->shared().sas->find(Spi(0x2002), SaDirection::inbound));
    ASSERT_NE(in, nullptr);
    EXPECT_EQ(in->replay.top(), n);
    EXPECT_EQ(in->state.packets.get(), n);
    EXPECT_EQ(in->drops[std::size_t(DropReason::replay)].get(), dups) << "the SA counts its own replays";
}

TEST(Worker, DropsHaveNamedReasons)
{
    DataplaneFixture f("drops");
    Peer p;
    const rte_ether_addr gw_out_mac = f.dp->shared().ports[f.outside.id].mac;
    const rte_ether_addr gw_in_mac = f.dp->shared().ports[f.inside.id].mac;
    // Clear traffic from outside where policy demands ESP.
    f.outside.inject(0, udp_frame(f.dp->pool(), host_b, host_a, 1, 32, gw_out_mac));
    // Inside traffic no policy covers.
    f.inside.inject(0, udp_frame(f.dp->pool(), host_a, 0xc6120902, 2, 32, gw_in_mac));
    // ESP with an unknown SPI.
    rte_mbuf* bad_spi = p.seal(f.dp->pool(), 3, gw_out_mac);
    *rte_pktmbuf_mtod_offset(bad_spi, uint32_t*, 14 + 20) = rte_cpu_to_be_32(0xdead);
    f.outside.inject(0, bad_spi);
    // ESP with a flipped ICV byte.
    rte_mbuf* tampered = p.seal(f.dp->pool(), 4, gw_out_mac);
    rte_pktmbuf_mtod_offset(tampered, uint8_t*, tampered->data_len - 1)[0] ^= 1;
    f.outside.inject(0, tampered);
    // Valid ESP whose inner packet comes from outside the SA's selectors.
    p.inner_src = 0xc6120302;   // 198.18.3.2, not in 198.18.2.0/24
    f.outside.inject(0, p.seal(f.dp->pool(), 7, gw_out_mac));
    p.inner_src = host_b;
    // A runt: Ethernet header only.
    rte_mbuf* runt = udp_frame(f.dp->pool(), host_b, host_a, 5, 32, gw_out_mac);
    rte_pktmbuf_trim(runt, runt->data_len - 14);
    f.outside.inject(0, runt);
    // ESP too short for its own header (6 octets after the IP header), in
    // the burst between packets of the good SA: a runt, and the packet
    // after it still finds its SA.
    rte_mbuf* short_esp = p.seal(f.dp->pool(), 8, gw_out_mac);
    rte_pktmbuf_trim(short_esp, uint16_t(short_esp->data_len - (14 + 20 + 6)));
    rte_pktmbuf_mtod_offset(short_esp, rte_ipv4_hdr*, 14)->total_length = rte_cpu_to_be_16(20 + 6);
    f.outside.inject(0, short_esp);
    // And one good packet, which must still arrive.
    f.outside.inject(0, p.seal(f.dp->pool(), 6, gw_out_mac));
    f.poll_all(8);

    EXPECT_EQ(f.drops(DropReason::policy_mismatch), 2u);
    EXPECT_EQ(f.drops(DropReason::no_policy), 1u);
    EXPECT_EQ(f.drops(DropReason::no_sa), 1u);
    EXPECT_EQ(f.drops(DropReason::auth_failed), 1u);
    EXPECT_EQ(f.drops(DropReason::runt), 2u);
    EXPECT_EQ(f.drops(DropReason::not_for_us), 0u);
    // Drops after the SA lookup are the SA's too (diagnose: tunnel up, no
    // traffic); those before it (unknown SPI, clear text, runt) are not.
    const DpSa* in = f.dp->shared().sas->get(f.dp->shared().sas->find(Spi(0x2002), SaDirection::inbound));
    ASSERT_NE(in, nullptr);
    EXPECT_EQ(in->drops[std::size_t(DropReason::auth_failed)].get(), 1u);
    EXPECT_EQ(in->drops[std::size_t(DropReason::policy_mismatch)].get(), 1u) << "only the decrypted one";
    uint64_t sa_total = 0;
    for (const Counter& c : in->drops) sa_total += c.get();
    EXPECT_EQ(sa_total, 2u);
    auto got = f.inside.take(0);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(tag_of_clear(got[0]), 6u);
    rte_pktmbuf_free(got[0]);
}

// The worker remembers SPD answers by 5-tuple (flow_cache.hh). Flows are
// interleaved so that no packet's tuple is the one before's (the memo
// never answers): the first burst classifies every packet (the cache
// learns at the burst's end), the second takes every answer from the
// cache. After a new Spd is published, where one host and one destination
// port are discarded, no answer of the old one is used, and two flows
// that differ only in their destination port get their own answers.
TEST(Worker, CachedAnswersFollowTheSpdInUse)
{
    DataplaneFixture f("fcache");
    auto& s = f.dp->shared();
    Worker& w = f.dp->worker(1);   // the outbound SA's owner
    const rte_ether_addr gw_in_mac = s.ports[f.inside.id].mac;
    const uint32_t first_host = 0xc6120110;   // 198.18.1.16 .. .19
    struct Flow {
        uint32_t src;
        uint16_t dport;
    };
    // 16 packets, round-robin over `flows`; returns how many were sealed.
    auto send = [&](const std::vector<Flow>& flows) {
        for (uint32_t i = 0; i < 16; ++i) {
            const Flow& fl = flows[i % flows.size()];
            rte_mbuf* m = udp_frame(f.dp->pool(), fl.src, host_b, i, 32, gw_in_mac);
            rte_pktmbuf_mtod_offset(m, rte_udp_hdr*, 14 + 20)->dst_port = rte_cpu_to_be_16(fl.dport);
            f.inside.inject(1, m);
        }
        w.poll_once();
        auto out = f.outside.take(1);
        for (rte_mbuf* m : out) rte_pktmbuf_free(m);
        return out.size();
    };
    std::vector<Flow> hosts, ports;
    for (uint32_t h = 0; h < 4; ++h) hosts.push_back({first_host + h, 5678});
    ports = {{first_host + 1, 5678}, {first_host + 1, 5679}};
    const Counter& misses = w.counters().stats.spd_cache_misses;
    const uint64_t m0 = misses.get();
    EXPECT_EQ(send(hosts), 16u);
    EXPECT_EQ(misses.get(), m0 + 16);
    EXPECT_EQ(send(hosts), 16u);
    EXPECT_EQ(misses.get(), m0 + 16) << "the second burst is answered by the cache";
    EXPECT_EQ(send(ports), 16u);   // learn 198.18.1.17 -> port 5679 under this Spd too
    const uint64_t m1 = misses.get();

    const uint32_t slot = s.sas->find(Spi(0x1001), SaDirection::outbound);
    const DpSa* sa = s.sas->get(slot);
    ASSERT_NE(sa, nullptr);
    SpdRule host, port, protect;
    host.policy.direction = port.policy.direction = protect.policy.direction = SaDirection::outbound;
    host.policy.local = {IpAddress::v4(first_host), 32};
    port.policy.local = protect.policy.local = {IpAddress::v4(0xc6120100), 24};
    host.policy.remote = port.policy.remote = protect.policy.remote = {IpAddress::v4(0xc6120200), 24};
    port.policy.protocol = 17;
    port.policy.remote_ports = {5679, 5679};
    protect.policy.action = PolicyAction::protect;
    protect.sa_slot = slot;
    protect.reqid = sa->reqid;
    const SpdRule rules[] = {host, port, protect};   // ties: the earlier rule wins
    std::string error;
    auto next = Spd::build(SaDirection::outbound, rules, "fcache-next", error);
    ASSERT_TRUE(next) << error;
    Spd* const old = s.spd_out.exchange(next.get());
    EXPECT_EQ(send(hosts), 12u);
    EXPECT_EQ(f.drops(DropReason::policy_discard), 4u);
    EXPECT_EQ(misses.get(), m1 + 16) << "a new Spd's answers are asked for again";
    for (int round = 0; round < 2; ++round) {   // classified, then from the cache
        EXPECT_EQ(send(ports), 8u) << round;
        EXPECT_EQ(f.drops(DropReason::policy_discard), 4u + 8u * unsigned(round + 1)) << round;
    }
    EXPECT_EQ(misses.get(), m1 + 24) << "198.18.1.17 -> 5678 was known from the hosts burst";
    s.spd_out.store(old);
    EXPECT_EQ(send(hosts), 16u);
    EXPECT_EQ(send(ports), 16u);
    EXPECT_EQ(f.drops(DropReason::policy_discard), 20u);
    // Clear packets from outside ask rte_acl alone: no cache, no misses.
    const uint64_t m2 = misses.get(), mismatched = f.drops(DropReason::policy_mismatch);
    const rte_ether_addr gw_out_mac = s.ports[f.outside.id].mac;
    for (uint32_t i = 0; i < 8; ++i)
        f.outside.inject(1, udp_frame(f.dp->pool(), host_b + i % 4, host_a, i, 32, gw_out_mac));
    w.poll_once();
    EXPECT_EQ(f.drops(DropReason::policy_mismatch), mismatched + 8) << "clear where policy demands ESP";
    EXPECT_EQ(misses.get(), m2);
}

// Ports with a jumbo MTU get mbufs that hold their frames and what ESP adds
// in place: an 8 850-octet packet leaves as one ESP packet the peer opens.
TEST(Worker, JumboFramesFitTheirBuffers)
{
    DataplaneFixture f("jumbo", 1024, "", "mbufs = 2047\n", "mtu = 9000\n", "mtu = 9000\n");
    ASSERT_GE(rte_pktmbuf_data_room_size(f.dp->pool()), RTE_PKTMBUF_HEADROOM + 14 + 9000 + 49);
    Peer p;
    const rte_ether_addr gw_in_mac = f.dp->shared().ports[f.inside.id].mac;
    const uint16_t payload = 8822;   // IP 8 850: with ESP's ~60 octets still under the outer MTU
    f.inside.inject(1, udp_frame(f.dp->pool(), host_a, host_b, 77, payload, gw_in_mac));
    f.dp->worker(1).poll_once();
    auto out = f.outside.take(1);
    ASSERT_EQ(out.size(), 1u) << "no_buffer_space " << f.drops(DropReason::no_buffer_space) << ", mtu_exceeded "
                              << f.drops(DropReason::mtu_exceeded);
    rte_mbuf* m = out[0];
    EXPECT_EQ(m->nb_segs, 1u);
    rte_pktmbuf_adj(m, 14);
    ASSERT_EQ(esp_decap(p.ctx, *p.in, m, 20), DropReason::none);
    EXPECT_EQ(m->data_len, 20u + 8u + payload);
    uint32_t tag;
    std::memcpy(&tag, rte_pktmbuf_mtod_offset(m, uint8_t*, 28), 4);
    EXPECT_EQ(tag, 77u);
    rte_pktmbuf_free(m);
}

// The buffers: DPDK's default up to MTU 1970, above that the data part
// after the headroom in whole KiB (NICs size receive buffers in KiB steps).
TEST(Worker, MbufDataRoomFollowsTheLargestPortMtu)
{
    for (const auto& [mtu, room] : std::vector<std::pair<uint16_t, unsigned>>{
             {1500, RTE_MBUF_DEFAULT_BUF_SIZE}, {1970, RTE_MBUF_DEFAULT_BUF_SIZE},
             {1971, RTE_PKTMBUF_HEADROOM + 3072}, {9000, RTE_PKTMBUF_HEADROOM + 9216}}) {
        DataplaneConfig c;
        c.ports.resize(2);
        c.ports[1].mtu = mtu;   // the other stays at 1500
        EXPECT_EQ(Dataplane::mbuf_data_room(c), room) << mtu;
    }
}

// Ports of different MTUs: a decrypted packet too large for the port it
// leaves by is dropped and counted, not handed to the device; one that
// fits goes through.
TEST(Worker, PacketsLargerThanTheEgressPortMtuAreDropped)
{
    DataplaneFixture f("egress_mtu", 1024, "", "mbufs = 2047\n", "", "mtu = 9000\n");
    IMB_MGR* mgr = crypto_manager_create();
    WorkerCounters counters;
    EspContext ctx{mgr, nullptr, &counters, 0};
    DpSa* out = test::fixture_peer_sa(mgr, 0x2002, SaDirection::outbound, true, 1024, 9000);
    const rte_ether_addr gw_out_mac = f.dp->shared().ports[f.outside.id].mac;
    for (const auto& [payload, arrives] : {std::pair<uint16_t, bool>{4000, false}, {1000, true}}) {
        rte_mbuf* m = udp_frame(f.dp->pool(), host_b, host_a, payload, payload);
        rte_pktmbuf_adj(m, sizeof(rte_ether_hdr));
        ASSERT_EQ(esp_encap(ctx, *out, m), DropReason::none);
        auto* eth = reinterpret_cast<rte_ether_hdr*>(rte_pktmbuf_prepend(m, sizeof(rte_ether_hdr)));
        eth->dst_addr = gw_out_mac;
        eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
        f.outside.inject(0, m);
        f.dp->worker(0).poll_once();
        auto clear = f.inside.take(0);
        EXPECT_EQ(clear.size(), arrives ? 1u : 0u) << payload;
        for (rte_mbuf* c : clear) rte_pktmbuf_free(c);
    }
    EXPECT_EQ(f.drops(DropReason::mtu_exceeded), 1u);
    EXPECT_EQ(f.dp->worker(0).counters().stats.decrypted.get(), 2u);
    sa_free(out);
    crypto_manager_free(mgr);
}

// A configuration made in code gets the parser's check on the cache size too.
TEST(Worker, DataplaneRefusesAFlowCacheSizeThatIsNotAPowerOfTwo)
{
    test::eal();
    auto cfg = parse_config(test::fixture_config("net_null_fc0", "net_null_fc1"), "fixture.toml");
    ASSERT_TRUE(cfg) << cfg.error().to_string();
    for (unsigned tuples : {2u, 100000u, 1u << 27}) {
        cfg.value().flow_cache_tuples = tuples;
        std::string error;
        EXPECT_EQ(Dataplane::create(cfg.value(), error), nullptr) << tuples;
        EXPECT_NE(error.find("flow_cache_tuples = " + std::to_string(tuples)), std::string::npos) << error;
    }
}

// [dataplane] flow_cache_tuples sizes each worker's outbound cache; 0 turns
// it off. Eight flows fit in the default cache, not in one set of four.
TEST(Worker, FlowCacheHasTheConfiguredSize)
{
    struct Case {
        const char* keys;    // for [dataplane]
        unsigned misses[2];  // after the first and the second burst of the same eight flows
    };
    const Case cases[] = {
        {"flow_cache_tuples = 0\n", {0, 0}},   // no cache: nothing is counted
        {"flow_cache_tuples = 4\n", {16, 24}}, // one set: the four older flows miss again
        {"", {16, 16}},                        // the default: all eight stay
    };
    unsigned n = 0;
    for (const Case& c : cases) {
        DataplaneFixture f("fcs" + std::to_string(n++), 1024, "", c.keys);
        Worker& w = f.dp->worker(1);   // the outbound SA's owner
        EXPECT_TRUE(w.flow_cache_ready(SaDirection::outbound)) << c.keys;
        const rte_ether_addr gw_in_mac = f.dp->shared().ports[f.inside.id].mac;
        const Counter& misses = w.counters().stats.spd_cache_misses;
        for (unsigned burst = 0; burst < 2; ++burst) {
            for (uint32_t i = 0; i < 16; ++i)
                f.inside.inject(1, udp_frame(f.dp->pool(), 0xc6120110 + i % 8, host_b, i, 32, gw_in_mac));
            w.poll_once();
            auto out = f.outside.take(1);
            for (rte_mbuf* m : out) rte_pktmbuf_free(m);
            EXPECT_EQ(out.size(), 16u) << c.keys << burst;
            EXPECT_EQ(misses.get(), c.misses[burst]) << c.keys << " burst " << burst;
        }
    }
}

// Worker::outbound fetches each packet's SA a few packets ahead and skips
// packets whose policy is the one before's. Bursts of every length up to
// past the look-ahead, mixing three tunnels, a discard policy and packets
// no policy covers, in runs and alternating: every packet leaves on its own
// tunnel's SA, in order, and every other one is dropped for its reason.
TEST(Worker, MixedBurstsLeaveOnTheirOwnTunnels)
{
    std::string extra;
    for (uint32_t t = 3; t <= 5; ++t) {
        const std::string net = "198.18." + std::to_string(t) + ".0/24";
        extra += "[[sa]]\nspi = 0x100" + std::to_string(t) + R"(
direction = "out"
encryption = "aes256gcm16"
key = ")" + std::string(test::fixture_key) + R"("
local = "198.18.0.1"
remote = "198.18.0.2"
worker = 1

[[policy]]
direction = "out"
local = "198.18.1.0/24"
remote = ")" + net + R"("
action = "protect"
sa = 0x100)" + std::to_string(t) + "\n\n";
    }
    extra += R"([[policy]]
direction = "out"
local = "198.18.1.0/24"
remote = "198.18.6.0/24"
action = "discard"
)";
    DataplaneFixture f("mixed", 1024, extra);
    const rte_ether_addr gw_in_mac = f.dp->shared().ports[f.inside.id].mac;
    // Destination network per kind: 2 = the fixture's tunnel (0x1001), 3-5
    // = tunnels 0x1003-0x1005, 6 = discard, 9 = no policy.
    const uint32_t spi_of[10] = {0, 0, 0x1001, 0x1003, 0x1004, 0x1005, 0, 0, 0, 0};
    const std::vector<std::vector<uint32_t>> patterns = {
        {2, 3, 4, 5},             // a new SA every packet
        {3, 3, 3, 4, 4, 5},       // runs
        {2, 6, 3, 9, 4, 6, 9, 5}, // tunnels between drops
        {9, 9, 9, 9, 2},          // the look-ahead meets nothing to fetch
    };
    uint32_t tag = 0;
    uint64_t discarded = 0, unmatched = 0;
    for (const auto& pattern : patterns) {
        for (unsigned n = 1; n <= 40; n += n < 8 ? 1 : 11) {   // 1..8, 19, 30 (< max_burst)
            std::vector<uint32_t> expect;   // the SPI of each packet that must leave, in order
            for (unsigned i = 0; i < n; ++i) {
                const uint32_t kind = pattern[i % pattern.size()];
                const uint32_t dst = 0xc6120002u | kind << 8;   // 198.18.<kind>.2
                f.inside.inject(1, udp_frame(f.dp->pool(), host_a, dst, ++tag, 32, gw_in_mac));
                if (spi_of[kind]) expect.push_back(spi_of[kind]);
                discarded += kind == 6;
                unmatched += kind == 9;
            }
            f.dp->worker(1).poll_once();
            auto sent = f.outside.take(1);
            ASSERT_EQ(sent.size(), expect.size()) << "burst of " << n;
            for (std::size_t i = 0; i < sent.size(); ++i) {
                EXPECT_EQ(rte_be_to_cpu_32(*rte_pktmbuf_mtod_offset(sent[i], uint32_t*, 14 + 20)), expect[i])
                    << "packet " << i << " of a burst of " << n;
                rte_pktmbuf_free(sent[i]);
            }
        }
    }
    EXPECT_EQ(f.drops(DropReason::policy_discard), discarded);
    EXPECT_EQ(f.drops(DropReason::no_policy), unmatched);
    EXPECT_TRUE(f.outside.take(0).empty());
}

// Worker::inbound_esp gives a burst's leading packets the SA the burst
// before ended with, without a lookup, and looks the rest up. Bursts that
// mix two tunnels, unknown SPIs and packets too short for an ESP header,
// each starting with what the last one ended with or with something else:
// every good packet arrives decrypted, in order, and the others are counted
// for their reason.
TEST(Worker, InboundBurstsFindEachPacketsSa)
{
    const std::string extra = R"([[sa]]
spi = 0x2003
direction = "in"
encryption = "aes256gcm16"
key = ")" + std::string(test::fixture_key) + R"("
local = "198.18.0.1"
remote = "198.18.0.2"
esn = true
worker = 0

[[policy]]
direction = "in"
local = "198.18.1.0/24"
remote = "198.18.3.0/24"
action = "protect"
sa = 0x2003
)";
    DataplaneFixture f("in_mixed", 1024, extra);
    Peer p;
    DpSa* out3 = test::fixture_peer_sa(p.mgr, 0x2003, SaDirection::outbound);
    const rte_ether_addr gw_out_mac = f.dp->shared().ports[f.outside.id].mac;
    // Kinds: 2 = tunnel 0x2002, 3 = tunnel 0x2003, 0 = unknown SPI, 1 = ESP
    // too short for its header.
    auto frame = [&](uint32_t kind, uint32_t tag) {
        if (kind == 3) {
            p.inner_src = 0xc6120302;   // 198.18.3.2, in tunnel 0x2003's selectors
            rte_mbuf* m = p.seal(f.dp->pool(), tag, gw_out_mac, host_a, out3);
            p.inner_src = host_b;
            return m;
        }
        rte_mbuf* m = p.seal(f.dp->pool(), tag, gw_out_mac);
        if (kind == 0) *rte_pktmbuf_mtod_offset(m, uint32_t*, 14 + 20) = rte_cpu_to_be_32(0xdead);
        if (kind == 1) {
            rte_pktmbuf_trim(m, uint16_t(m->data_len - (14 + 20 + 6)));
            rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, 14)->total_length = rte_cpu_to_be_16(20 + 6);
        }
        return m;
    };
    const std::vector<std::vector<uint32_t>> bursts = {
        {2, 2, 2},          // the first: nothing remembered yet
        {2, 2, 3, 2, 2},    // starts as the last ended, then another tunnel
        {2, 3, 3},          // ended with 3: starts with another
        {3, 1, 3, 0, 3},    // a runt and an unknown SPI inside the remembered run
        {0, 3, 3},          // an unknown SPI first
        {1, 3},             // a runt first
        {3, 3, 3, 3, 2},
        {2},
    };
    uint32_t tag = 0;
    uint64_t runts = 0, unknown = 0;
    for (const auto& burst : bursts) {
        std::vector<uint32_t> expect;
        for (uint32_t kind : burst) {
            f.outside.inject(0, frame(kind, ++tag));
            if (kind >= 2) expect.push_back(tag);
            runts += kind == 1;
            unknown += kind == 0;
        }
        f.dp->worker(0).poll_once();
        auto got = f.inside.take(0);
        ASSERT_EQ(got.size(), expect.size()) << "burst " << tag;
        for (std::size_t i = 0; i < got.size(); ++i) {
            EXPECT_EQ(tag_of_clear(got[i]), expect[i]) << "packet " << i << " of the burst ending with " << tag;
            rte_pktmbuf_free(got[i]);
        }
    }
    EXPECT_EQ(f.drops(DropReason::runt), runts);
    EXPECT_EQ(f.drops(DropReason::no_sa), unknown);
    EXPECT_EQ(f.drops(DropReason::policy_mismatch), 0u);
    uint64_t sa_packets = 0;
    for (uint32_t spi : {0x2002u, 0x2003u})
        sa_packets += f.dp->shared().sas->get(f.dp->shared().sas->find(Spi(spi), SaDirection::inbound))->state.packets.get();
    EXPECT_EQ(sa_packets, tag - runts - unknown);
    sa_free(out3);
}

// Outbound SAs are found through a slot. A rekey replaces the SA in the
// slot with one of the same reqid, and traffic, including packets waiting
// in a hand-off ring, moves to it; an SA of another tunnel in that slot
// must never seal them.
TEST(Worker, SlotReuseNeverSealsWithAnotherTunnelsSa)
{
    DataplaneFixture f("slot");
    auto& s = f.dp->shared();
    const rte_ether_addr gw_in_mac = s.ports[f.inside.id].mac;
    uint32_t slot = s.sas->find(Spi(0x1001), SaDirection::outbound);
    DpSa* old = s.sas->get(slot);
    ASSERT_NE(old, nullptr);
    IMB_MGR* mgr = crypto_manager_create();
    auto replace_with = [&](uint32_t spi, uint32_t reqid) {
        SaDescriptor d;   // the gateway's side of the tunnel, as in the fixture
        d.spi = Spi(spi);
        d.direction = SaDirection::outbound;
        d.cipher = EspCipher::aes_gcm16;
        d.cipher_key_len = 32;
        d.local = IpAddress::v4(0xc6120001);
        d.remote = IpAddress::v4(peer);
        d.reqid = reqid;
        const char* why = "?";
        DpSa* sa = sa_create(mgr, d, 1500, WorkerId(1), &why);
        ASSERT_NE(sa, nullptr) << why;
        // The test thread is every worker: take them offline so the grace
        // period does not wait for a quiescent state nobody will report.
        for (unsigned w = 0; w < s.workers; ++w) rte_rcu_qsbr_thread_offline(s.rcu, w);
        ASSERT_TRUE(s.sas->replace(slot, sa));
        for (unsigned w = 0; w < s.workers; ++w) rte_rcu_qsbr_thread_online(s.rcu, w);
    };
    auto queue_on_worker0 = [&](uint32_t tag) {   // worker 0 hands them to worker 1, the owner
        f.inside.inject(0, udp_frame(f.dp->pool(), host_a, host_b, tag, 32, gw_in_mac));
        f.dp->worker(0).poll_once();
    };
    // Rekey: same reqid, new SPI. The waiting packet goes out under the new SA.
    queue_on_worker0(1);
    replace_with(0x3003, old->reqid);
    f.dp->worker(1).poll_once();
    auto out = f.outside.take(1);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(rte_be_to_cpu_32(*rte_pktmbuf_mtod_offset(out[0], uint32_t*, 14 + 20)), 0x3003u);
    rte_pktmbuf_free(out[0]);
    // Another tunnel takes the slot: neither the waiting packet nor new
    // traffic of this policy may be sealed with it.
    queue_on_worker0(2);
    replace_with(0x4004, old->reqid + 1000);
    f.dp->worker(1).poll_once();
    f.inside.inject(1, udp_frame(f.dp->pool(), host_a, host_b, 3, 32, gw_in_mac));
    f.dp->worker(1).poll_once();
    EXPECT_TRUE(f.outside.take(1).empty());
    EXPECT_EQ(f.drops(DropReason::no_sa), 2u);
    crypto_manager_free(mgr);
}

// RFC 4301 §7: a non-initial fragment has no ports, so it must not slip
// past a port-specific rule by matching a broader one (here: out in clear).
TEST(Worker, FragmentsCannotBypassPortSpecificPolicy)
{
    DataplaneFixture f("frag", 1024, R"(
[[policy]]
direction = "out"
local = "198.18.1.0/24"
remote = "198.18.0.0/24"
protocol = "udp"
remote_port = 2049
action = "discard"
priority = 10

[[policy]]
direction = "out"
local = "198.18.1.0/24"
remote = "198.18.0.0/24"
action = "bypass"
priority = 20
)");
    const rte_ether_addr gw_in_mac = f.dp->shared().ports[f.inside.id].mac;
    auto frame = [&](uint32_t tag, uint16_t dport, uint16_t frag) {
        rte_mbuf* m = udp_frame(f.dp->pool(), host_a, peer, tag, 32, gw_in_mac);
        auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, 14);
        ip->fragment_offset = rte_cpu_to_be_16(frag);
        reinterpret_cast<rte_udp_hdr*>(ip + 1)->dst_port = rte_cpu_to_be_16(dport);
        return m;
    };
    f.inside.inject(0, frame(1, 2049, 0));                        // whole packet to the NFS port
    f.inside.inject(0, frame(2, 2049, RTE_IPV4_HDR_MF_FLAG));     // first fragment: ports visible
    f.inside.inject(0, frame(3, 2049, 185));                      // later fragment: ports hidden
    f.inside.inject(0, frame(4, 5678, 0));                        // other traffic: bypass
    f.poll_all(2);
    EXPECT_EQ(f.drops(DropReason::policy_discard), 2u);
    EXPECT_EQ(f.drops(DropReason::l4_hidden), 1u) << "a later fragment went by the bypass rule";
    auto out = f.outside.take(0);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(tag_of_clear(out[0]), 4u);
    for (rte_mbuf* m : out) rte_pktmbuf_free(m);
}

// A gateway routes only frames sent to it, and never broadcast/multicast.
TEST(Worker, RoutesOnlyFramesAddressedToIt)
{
    DataplaneFixture f("l2");
    Peer p;
    const rte_ether_addr gw_out_mac = f.dp->shared().ports[f.outside.id].mac;
    const rte_ether_addr other{{0x02, 0, 0, 0, 0, 0x55}}, bcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
    // Valid ESP, but to another host's MAC (a flood, or a promiscuous port).
    rte_mbuf* m = p.seal(f.dp->pool(), 1, gw_out_mac);
    rte_pktmbuf_mtod(m, rte_ether_hdr*)->dst_addr = other;
    f.outside.inject(0, m);
    // The same as a link broadcast.
    m = p.seal(f.dp->pool(), 2, gw_out_mac);
    rte_pktmbuf_mtod(m, rte_ether_hdr*)->dst_addr = bcast;
    f.outside.inject(0, m);
    // IPv4 broadcast to our MAC from the inside.
    f.inside.inject(0, udp_frame(f.dp->pool(), host_a, 0xffffffff, 3, 32, f.dp->shared().ports[f.inside.id].mac));
    f.poll_all(2);
    EXPECT_EQ(f.drops(DropReason::not_for_us), 3u);
    EXPECT_TRUE(f.inside.take(0).empty());
    EXPECT_TRUE(f.outside.take(0).empty());
}

// A DF packet too big for the tunnel comes back to its sender as ICMP
// "fragmentation needed" with the MTU that fits; a flood is rate limited.
TEST(Worker, TooBigForTunnelAnswersWithRateLimitedIcmp)
{
    DataplaneFixture f("mtu");
    const rte_ether_addr gw_in_mac = f.dp->shared().ports[f.inside.id].mac;
    constexpr unsigned sent = 150;
    for (unsigned i = 0; i < sent; ++i) {
        rte_mbuf* m = udp_frame(f.dp->pool(), host_a, host_b, i, 1452, gw_in_mac);   // 1480-byte IP packet
        auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, 14);
        ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
        ip->hdr_checksum = 0;
        ip->hdr_checksum = rte_ipv4_cksum(ip);
        f.inside.inject(1, m);   // worker 1 owns the outbound SA: no hand-off
        if (i % 32 == 31) f.poll_all(1);
    }
    f.poll_all(2);
    EXPECT_EQ(f.drops(DropReason::mtu_exceeded), sent);
    const DpSa* out = f.dp->shared().sas->get(f.dp->shared().sas->find(Spi(0x1001), SaDirection::outbound));
    ASSERT_NE(out, nullptr);
    EXPECT_EQ(out->drops[std::size_t(DropReason::mtu_exceeded)].get(), sent);
    auto errors = f.inside.take(1);
    EXPECT_EQ(errors.size(), 100u) << "at most 100 errors per 100 ms per worker";
    ASSERT_FALSE(errors.empty());
    auto* ip = rte_pktmbuf_mtod_offset(errors[0], rte_ipv4_hdr*, 14);
    EXPECT_EQ(ip->dst_addr, rte_cpu_to_be_32(host_a));
    auto* icmp = reinterpret_cast<rte_icmp_hdr*>(ip + 1);
    EXPECT_EQ(icmp->icmp_type, 3);
    EXPECT_EQ(icmp->icmp_code, 4);
    uint16_t mtu = rte_be_to_cpu_16(icmp->icmp_seq_nb);
    EXPECT_GT(mtu, 1400);
    EXPECT_LT(mtu, 1480) << "the MTU offered must leave room for ESP";
    for (rte_mbuf* m : errors) rte_pktmbuf_free(m);
    EXPECT_TRUE(f.outside.take(1).empty());
}

// One SA's packets are sealed as one run and sent by the run's first hop.
// Packets refused on the way (too big, TTL 1) must leave the others in
// order, with consecutive sequence numbers and the peer's MAC; the ICMP
// errors sent in between go back inside.
TEST(Worker, ARunWithRefusedPacketsKeepsOrderSequenceAndHop)
{
    DataplaneFixture f("run");
    const rte_ether_addr gw_in_mac = f.dp->shared().ports[f.inside.id].mac;
    // 'o' fits, 'B' is too big for the tunnel (DF set), 't' has TTL 1.
    const std::string pattern = "oBoottoBBoooBo";
    std::vector<uint32_t> expect;
    uint32_t tag = 0;
    for (char c : pattern) {
        rte_mbuf* m = udp_frame(f.dp->pool(), host_a, host_b, ++tag, c == 'B' ? 1452 : 64, gw_in_mac);
        auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, 14);
        if (c == 'B') ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
        if (c == 't') ip->time_to_live = 1;
        ip->hdr_checksum = 0;
        ip->hdr_checksum = rte_ipv4_cksum(ip);
        f.inside.inject(1, m);   // worker 1 owns the outbound SA: no hand-off
        if (c == 'o') expect.push_back(tag);
    }
    f.dp->worker(1).poll_once();
    auto sent = f.outside.take(1);
    ASSERT_EQ(sent.size(), expect.size());
    Peer peer_side;
    for (std::size_t i = 0; i < sent.size(); ++i) {
        const auto* eth = rte_pktmbuf_mtod(sent[i], const rte_ether_hdr*);
        EXPECT_TRUE(rte_is_same_ether_addr(&eth->dst_addr, &f.peer_mac)) << "packet " << i;
        EXPECT_EQ(esp_seq(sent[i]), i + 1) << "sequence numbers are only taken by packets sealed";
        rte_pktmbuf_adj(sent[i], sizeof(rte_ether_hdr));
        ASSERT_EQ(esp_decap(peer_side.ctx, *peer_side.in, sent[i], 20), DropReason::none) << "packet " << i;
        uint32_t got;
        std::memcpy(&got, rte_pktmbuf_mtod_offset(sent[i], uint8_t*, 20 + 8), 4);
        EXPECT_EQ(got, expect[i]) << "packet " << i;
        rte_pktmbuf_free(sent[i]);
    }
    auto errors = f.inside.take(1);
    EXPECT_EQ(errors.size(), 4u);   // one "fragmentation needed" per 'B'
    for (rte_mbuf* m : errors) {
        EXPECT_EQ(rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, 14)->dst_addr, rte_cpu_to_be_32(host_a));
        rte_pktmbuf_free(m);
    }
    EXPECT_EQ(f.drops(DropReason::mtu_exceeded), 4u);
    EXPECT_EQ(f.drops(DropReason::ttl_expired), 2u);
    const DpSa* out = f.dp->shared().sas->get(f.dp->shared().sas->find(Spi(0x1001), SaDirection::outbound));
    ASSERT_NE(out, nullptr);
    EXPECT_EQ(out->state.packets.get(), expect.size());
    EXPECT_EQ(out->state.seq, expect.size());
}

// Inbound, a packet to the destination the packet before went to takes
// that packet's hop without the cache lookup; every other packet looks up
// its own, an unresolved one included.
TEST(Worker, InboundPacketsToOtherDestinationsTakeTheirOwnHop)
{
    DataplaneFixture f("hops");
    const rte_ether_addr gw_out_mac = f.dp->shared().ports[f.outside.id].mac;
    constexpr uint32_t host_d = 0xc6120103;   // 198.18.1.3, another host behind the gateway
    constexpr uint32_t host_u = 0xc6120109;   // 198.18.1.9, no neighbour entry
    const rte_ether_addr d_mac{{0x02, 0, 0, 0, 0, 0x0d}};
    f.dp->shared().neighbors->add(IpAddress::v4(host_d), f.inside.id, d_mac);
    Peer peer_side;
    const uint32_t dsts[] = {host_a, host_a, host_d, host_a, host_d, host_d, host_u, host_d, host_u, host_a};
    uint32_t tag = 0;
    for (uint32_t dst : dsts) f.outside.inject(0, peer_side.seal(f.dp->pool(), ++tag, gw_out_mac, dst));
    f.dp->worker(0).poll_once();
    f.poll_all(2);   // the SA's owner, if a hand-off was needed
    auto clear = f.inside.take(0), more = f.inside.take(1);
    clear.insert(clear.end(), more.begin(), more.end());
    ASSERT_EQ(clear.size(), std::size(dsts) - 2) << "all but the two to the unresolved host";
    EXPECT_EQ(f.drops(DropReason::neighbor_unresolved), 2u);
    for (rte_mbuf* m : clear) {
        const auto* eth = rte_pktmbuf_mtod(m, const rte_ether_hdr*);
        const auto* ip = rte_pktmbuf_mtod_offset(m, const rte_ipv4_hdr*, 14);
        const rte_ether_addr& want = ip->dst_addr == rte_cpu_to_be_32(host_d) ? d_mac : f.host_mac;
        EXPECT_TRUE(rte_is_same_ether_addr(&eth->dst_addr, &want)) << "to " << std::hex << rte_be_to_cpu_32(ip->dst_addr);
        rte_pktmbuf_free(m);
    }
}

// Next hops are cached per worker; a MAC learned later must still be used.
TEST(Worker, NeighborChangeReachesCachedNextHop)
{
    DataplaneFixture f("hop");
    const rte_ether_addr gw_in_mac = f.dp->shared().ports[f.inside.id].mac;
    auto send_one = [&](uint32_t tag) {
        f.inside.inject(1, udp_frame(f.dp->pool(), host_a, host_b, tag, 32, gw_in_mac));
        f.poll_all(2);
        auto out = f.outside.take(1);
        EXPECT_EQ(out.size(), 1u);
        rte_ether_addr dst = out.empty() ? rte_ether_addr{} : rte_pktmbuf_mtod(out[0], rte_ether_hdr*)->dst_addr;
        for (rte_mbuf* m : out) rte_pktmbuf_free(m);
        return dst;
    };
    rte_ether_addr first = send_one(1);
    EXPECT_TRUE(rte_is_same_ether_addr(&first, &f.peer_mac));
    rte_ether_addr moved{{0x02, 0, 0, 0, 0, 0x77}};
    f.dp->shared().neighbors->add(IpAddress::v4(peer), f.outside.id, moved);
    rte_ether_addr second = send_one(2);
    EXPECT_TRUE(rte_is_same_ether_addr(&second, &moved)) << "stale cached MAC used";
}

TEST(Worker, AnswersArpForItsAddress)
{
    DataplaneFixture f("arp");
    // The host asks for the gateway's address with the same builder the
    // gateway uses for its own requests.
    rte_mbuf* m = make_solicitation(f.dp->pool(), f.host_mac, IpAddress::v4(host_a), IpAddress::v4(0xc6120101));
    ASSERT_NE(m, nullptr);
    f.inside.inject(0, m);
    f.poll_all(1);
    f.dp->housekeeping();   // main lcore answers
    f.poll_all(1);          // worker 0 sends the answer
    auto out = f.inside.take(0);
    ASSERT_EQ(out.size(), 1u);
    auto* reply = rte_pktmbuf_mtod_offset(out[0], rte_arp_hdr*, 14);
    EXPECT_EQ(reply->arp_opcode, rte_cpu_to_be_16(RTE_ARP_OP_REPLY));
    EXPECT_TRUE(rte_is_same_ether_addr(&reply->arp_data.arp_sha, &f.dp->shared().ports[f.inside.id].mac));
    rte_pktmbuf_free(out[0]);
}

// Busy-time accounting: every loop iteration adds its cycles to
// poll_cycles; only iterations that moved packets add them to busy_cycles.
// An iteration is accounted when the next one starts.
TEST(Worker, CountsBusyAndPollCycles)
{
    DataplaneFixture f("busy");
    Worker& w = f.dp->worker(1);
    const WorkerStats& st = w.counters().stats;
    for (int i = 0; i < 4; ++i) w.poll_once();
    const uint64_t idle_poll = st.poll_cycles.get();
    EXPECT_GT(idle_poll, 0u);
    EXPECT_EQ(st.busy_cycles.get(), 0u) << "idle iterations counted as busy";

    const rte_ether_addr gw_in_mac = f.dp->shared().ports[f.inside.id].mac;
    f.inside.inject(1, udp_frame(f.dp->pool(), host_a, host_b, 1, 32, gw_in_mac));
    w.poll_once();   // receives, seals, sends
    EXPECT_EQ(st.busy_cycles.get(), 0u) << "accounted before the iteration ended";
    w.poll_once();   // closes the busy iteration
    const uint64_t busy = st.busy_cycles.get();
    EXPECT_GT(busy, 0u);
    EXPECT_GT(st.poll_cycles.get(), idle_poll);
    EXPECT_LE(busy, st.poll_cycles.get() - idle_poll);
    for (int i = 0; i < 3; ++i) w.poll_once();
    EXPECT_EQ(st.busy_cycles.get(), busy) << "idle iterations after traffic counted as busy";
    auto out = f.outside.take(1);
    EXPECT_EQ(out.size(), 1u);
    for (rte_mbuf* m : out) rte_pktmbuf_free(m);
}

} // namespace
} // namespace ravelin::dp

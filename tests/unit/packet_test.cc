// Header checks and in-place edits (dataplane/packet.hh).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include <rte_icmp.h>
#include <rte_ip.h>

#include "config.hh"
#include "eal_env.hh"
#include "packet.hh"

namespace ravelin::dp {
namespace {

rte_mbuf* ipv4(uint16_t payload, uint8_t proto = 17, bool df = true, uint16_t extra_tail = 0)
{
    rte_mbuf* m = rte_pktmbuf_alloc(test::test_pool());
    uint16_t len = uint16_t(sizeof(rte_ipv4_hdr) + payload);
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(rte_pktmbuf_append(m, uint16_t(len + extra_tail)));
    std::memset(ip, 0, len + extra_tail);
    ip->version_ihl = 0x45;
    ip->time_to_live = 64;
    ip->next_proto_id = proto;
    ip->total_length = rte_cpu_to_be_16(len);
    ip->fragment_offset = df ? rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG) : 0;
    ip->src_addr = rte_cpu_to_be_32(0xc6120102);
    ip->dst_addr = rte_cpu_to_be_32(0xc6120202);
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    if (payload >= 4) {
        auto* ports = reinterpret_cast<uint16_t*>(ip + 1);
        ports[0] = rte_cpu_to_be_16(1111);
        ports[1] = rte_cpu_to_be_16(2222);
    }
    return m;
}

rte_mbuf* ipv6(uint16_t payload, uint8_t next = 17)
{
    rte_mbuf* m = rte_pktmbuf_alloc(test::test_pool());
    auto* ip = reinterpret_cast<rte_ipv6_hdr*>(rte_pktmbuf_append(m, uint16_t(sizeof(rte_ipv6_hdr) + payload)));
    std::memset(ip, 0, sizeof(rte_ipv6_hdr) + payload);
    ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
    ip->payload_len = rte_cpu_to_be_16(payload);
    ip->proto = next;
    ip->hop_limits = 64;
    ip->src_addr[0] = 0x20, ip->src_addr[1] = 0x01, ip->src_addr[2] = 0x0d, ip->src_addr[3] = 0xb8, ip->src_addr[15] = 2;
    ip->dst_addr[0] = 0x20, ip->dst_addr[1] = 0x01, ip->dst_addr[2] = 0x0d, ip->dst_addr[3] = 0xb8, ip->dst_addr[15] = 3;
    return m;
}

TEST(Packet, ValidateTrimsEthernetPadding)
{
    rte_mbuf* m = ipv4(8, 17, true, 18);   // a 64-byte frame pads a short packet
    IpInfo info;
    ASSERT_EQ(validate_ip(m, info), DropReason::none);
    EXPECT_EQ(m->data_len, 28);
    EXPECT_EQ(info.proto, 17);
    EXPECT_EQ(info.l3_len, 20);
    EXPECT_FALSE(info.fragment);
    rte_pktmbuf_free(m);
}

TEST(Packet, ValidateRejectsBrokenHeaders)
{
    IpInfo info;
    rte_mbuf* m = ipv4(8);
    rte_pktmbuf_trim(m, 1);   // total length claims more than we have
    EXPECT_EQ(validate_ip(m, info), DropReason::runt);
    rte_pktmbuf_free(m);

    m = ipv4(8);
    rte_pktmbuf_mtod(m, rte_ipv4_hdr*)->version_ihl = 0x44;   // IHL 16 bytes
    EXPECT_EQ(validate_ip(m, info), DropReason::bad_ip_header);
    rte_pktmbuf_free(m);

    m = ipv4(8);
    rte_pktmbuf_mtod(m, rte_ipv4_hdr*)->version_ihl = 0x55;   // version 5
    EXPECT_EQ(validate_ip(m, info), DropReason::bad_ip_header);
    rte_pktmbuf_free(m);

    m = ipv4(8);
    rte_pktmbuf_trim(m, 20);   // only 8 bytes of header
    EXPECT_EQ(validate_ip(m, info), DropReason::runt);
    rte_pktmbuf_free(m);

    m = ipv6(16);
    rte_pktmbuf_trim(m, 1);
    EXPECT_EQ(validate_ip(m, info), DropReason::runt);
    rte_pktmbuf_free(m);
}

TEST(Packet, FlowKeyReadsPortsOnlyWhenPresent)
{
    IpInfo info;
    FlowKey k;
    rte_mbuf* m = ipv4(8);
    ASSERT_EQ(validate_ip(m, info), DropReason::none);
    flow_key(m, info, k);
    EXPECT_EQ(k.proto, 17);
    EXPECT_EQ(k.src[0], rte_cpu_to_be_32(0xc6120102));
    EXPECT_EQ(k.sport, rte_cpu_to_be_16(1111));
    EXPECT_EQ(k.dport, rte_cpu_to_be_16(2222));
    rte_pktmbuf_free(m);

    m = ipv4(8, 1);   // ICMP: no ports
    ASSERT_EQ(validate_ip(m, info), DropReason::none);
    flow_key(m, info, k);
    EXPECT_EQ(k.sport, 0);
    rte_pktmbuf_free(m);

    m = ipv4(8);   // a non-first fragment: ports are not there
    auto* ip = rte_pktmbuf_mtod(m, rte_ipv4_hdr*);
    ip->fragment_offset = rte_cpu_to_be_16(10);
    ASSERT_EQ(validate_ip(m, info), DropReason::none);
    EXPECT_TRUE(info.fragment);
    EXPECT_TRUE(info.l4_hidden);
    flow_key(m, info, k);
    EXPECT_EQ(k.dport, 0);
    rte_pktmbuf_free(m);
}

TEST(Packet, OnlyLaterFragmentsAndExtensionHeadersHideL4)
{
    IpInfo info;
    rte_mbuf* m = ipv4(8);
    rte_pktmbuf_mtod(m, rte_ipv4_hdr*)->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG);
    ASSERT_EQ(validate_ip(m, info), DropReason::none);
    EXPECT_TRUE(info.fragment);
    EXPECT_FALSE(info.l4_hidden) << "the first fragment carries the ports";
    FlowKey k;
    flow_key(m, info, k);
    EXPECT_EQ(k.dport, rte_cpu_to_be_16(2222));
    rte_pktmbuf_free(m);

    m = ipv6(16, 0);   // hop-by-hop options first
    ASSERT_EQ(validate_ip(m, info), DropReason::none);
    EXPECT_TRUE(info.l4_hidden);
    rte_pktmbuf_free(m);
    m = ipv6(16, 17);
    ASSERT_EQ(validate_ip(m, info), DropReason::none);
    EXPECT_FALSE(info.l4_hidden);
    rte_pktmbuf_free(m);
}

TEST(Packet, DecrementTtlKeepsChecksumValid)
{
    rte_mbuf* m = ipv4(8);
    auto* ip = rte_pktmbuf_mtod(m, rte_ipv4_hdr*);
    for (int ttl = 64; ttl > 1; --ttl) {
        ASSERT_TRUE(decrement_ttl(m, IpFamily::v4));
        uint16_t stored = ip->hdr_checksum;
        ip->hdr_checksum = 0;
        ASSERT_EQ(stored, rte_ipv4_cksum(ip)) << "ttl " << int(ip->time_to_live);
        ip->hdr_checksum = stored;
    }
    EXPECT_FALSE(decrement_ttl(m, IpFamily::v4));
    rte_pktmbuf_free(m);
    m = ipv6(8);
    rte_pktmbuf_mtod(m, rte_ipv6_hdr*)->hop_limits = 1;
    EXPECT_FALSE(decrement_ttl(m, IpFamily::v6));
    rte_pktmbuf_free(m);
}

TEST(Packet, TooBigV4BuildsFragmentationNeeded)
{
    rte_mbuf* m = ipv4(1400);
    IpInfo info;
    ASSERT_EQ(validate_ip(m, info), DropReason::none);
    IpAddress gw = IpAddress::v4(0xc6120101);
    ASSERT_TRUE(make_too_big(m, info, gw, 1400));
    auto* ip = rte_pktmbuf_mtod(m, rte_ipv4_hdr*);
    EXPECT_EQ(ip->dst_addr, rte_cpu_to_be_32(0xc6120102));
    EXPECT_EQ(ip->src_addr, rte_cpu_to_be_32(0xc6120101));
    EXPECT_EQ(m->data_len, 20 + 8 + 20 + 8);
    EXPECT_EQ(rte_be_to_cpu_16(ip->total_length), m->data_len);
    EXPECT_EQ(rte_ipv4_cksum(ip), 0) << "header checksum must verify";   // sum incl. stored = 0xffff
    auto* icmp = reinterpret_cast<rte_icmp_hdr*>(ip + 1);
    EXPECT_EQ(icmp->icmp_type, 3);
    EXPECT_EQ(icmp->icmp_code, 4);
    EXPECT_EQ(rte_be_to_cpu_16(icmp->icmp_seq_nb), 1400);
    EXPECT_EQ(rte_raw_cksum(icmp, m->data_len - 20), 0xffff);
    rte_pktmbuf_free(m);
}

TEST(Packet, TooBigV4WithoutDfGetsNoError)
{
    rte_mbuf* m = ipv4(1400, 17, false);
    IpInfo info;
    ASSERT_EQ(validate_ip(m, info), DropReason::none);
    EXPECT_FALSE(make_too_big(m, info, IpAddress::v4(0xc6120101), 1400));
    rte_pktmbuf_free(m);
}

TEST(Packet, TooBigV6FitsMinimumMtu)
{
    rte_mbuf* m = ipv6(1460);
    IpInfo info;
    ASSERT_EQ(validate_ip(m, info), DropReason::none);
    IpAddress gw;
    gw.family = IpFamily::v6;
    gw.bytes = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    ASSERT_TRUE(make_too_big(m, info, gw, 1400));
    EXPECT_LE(m->data_len, 1280);
    auto* ip = rte_pktmbuf_mtod(m, rte_ipv6_hdr*);
    auto* icmp = reinterpret_cast<uint8_t*>(ip + 1);
    EXPECT_EQ(ip->proto, 58);
    EXPECT_EQ(icmp[0], 2);
    EXPECT_EQ(ip->dst_addr[15], 2);
    uint32_t mtu;
    std::memcpy(&mtu, icmp + 4, 4);
    EXPECT_EQ(rte_be_to_cpu_32(mtu), 1400u);
    EXPECT_EQ(rte_be_to_cpu_16(ip->payload_len), m->data_len - 40);
    // A correct checksum makes the pseudo-header sum come out as 0 / 0xffff.
    uint16_t stored;
    std::memcpy(&stored, icmp + 2, 2);
    icmp[2] = icmp[3] = 0;
    EXPECT_EQ(stored, rte_ipv6_udptcp_cksum(ip, icmp));
    rte_pktmbuf_free(m);
}

TEST(Packet, NoErrorToGroupOrUnspecifiedSources)
{
    IpInfo info;
    for (uint32_t src : {0xe0000001u, 0xffffffffu, 0x00000000u, 0x7f000001u}) {
        rte_mbuf* m = ipv4(1400);
        auto* ip = rte_pktmbuf_mtod(m, rte_ipv4_hdr*);
        ip->src_addr = rte_cpu_to_be_32(src);
        ASSERT_EQ(validate_ip(m, info), DropReason::none);
        EXPECT_FALSE(make_too_big(m, info, IpAddress::v4(0xc6120101), 1400)) << std::hex << src;
        rte_pktmbuf_free(m);
    }
    rte_mbuf* m = ipv4(1400);   // a later fragment
    rte_pktmbuf_mtod(m, rte_ipv4_hdr*)->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG | 100);
    ASSERT_EQ(validate_ip(m, info), DropReason::none);
    EXPECT_FALSE(make_too_big(m, info, IpAddress::v4(0xc6120101), 1400));
    rte_pktmbuf_free(m);
    m = ipv6(1400);
    rte_pktmbuf_mtod(m, rte_ipv6_hdr*)->src_addr[0] = 0xff;   // multicast source
    ASSERT_EQ(validate_ip(m, info), DropReason::none);
    IpAddress gw = *parse_ip("2001:db8::1");
    EXPECT_FALSE(make_too_big(m, info, gw, 1400));
    rte_pktmbuf_free(m);
}

TEST(Packet, NoErrorAboutAnError)
{
    rte_mbuf* m = ipv4(100, 1);
    rte_pktmbuf_mtod_offset(m, uint8_t*, 20)[0] = 3;   // ICMP destination unreachable
    IpInfo info;
    ASSERT_EQ(validate_ip(m, info), DropReason::none);
    EXPECT_FALSE(make_too_big(m, info, IpAddress::v4(0xc6120101), 1400));
    rte_pktmbuf_free(m);
}

// A received frame: Ethernet to `dst`, then the IPv4 packet ipv4() builds.
rte_mbuf* frame_v4(const rte_ether_addr& dst, uint16_t payload, uint16_t extra_tail = 0)
{
    rte_mbuf* m = ipv4(payload, 17, true, extra_tail);
    auto* eth = reinterpret_cast<rte_ether_hdr*>(rte_pktmbuf_prepend(m, sizeof(rte_ether_hdr)));
    eth->dst_addr = dst;
    eth->src_addr = {{0x02, 0, 0, 0, 0, 0x99}};
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    return m;
}

rte_mbuf* copy_of(const rte_mbuf* m)
{
    rte_mbuf* c = rte_pktmbuf_alloc(test::test_pool());
    std::memcpy(rte_pktmbuf_append(c, m->data_len), rte_pktmbuf_mtod(m, const uint8_t*), m->data_len);
    c->nb_segs = m->nb_segs;
    return c;
}

// Free a frame whose nb_segs a test may have set without chaining segments.
void free_frame(rte_mbuf* m)
{
    m->nb_segs = 1;
    rte_pktmbuf_free(m);
}

TEST(Packet, CheckFrameRoutesPuntsAndDrops)
{
    const rte_ether_addr mac{{0x02, 0, 0, 0, 0, 0x01}}, other{{0x02, 0, 0, 0, 0, 0x02}};
    IpInfo info;
    rte_mbuf* m = frame_v4(mac, 8, 18);   // padded to 64 octets
    FrameCheck c = check_frame(m, mac, info);
    EXPECT_EQ(c.action, FrameAction::route);
    EXPECT_EQ(m->data_len, 28);           // Ethernet off, padding trimmed
    EXPECT_EQ(info.l3_len, 20);
    free_frame(m);

    m = frame_v4(other, 8);
    c = check_frame(m, mac, info);
    EXPECT_EQ(c.action, FrameAction::drop);
    EXPECT_EQ(c.reason, DropReason::not_for_us);
    free_frame(m);

    m = frame_v4(mac, 8);
    rte_pktmbuf_mtod(m, rte_ether_hdr*)->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
    c = check_frame(m, mac, info);
    EXPECT_EQ(c.action, FrameAction::control);
    EXPECT_EQ(m->data_len, 14 + 28);      // the main lcore gets the whole frame
    free_frame(m);

    m = frame_v4(mac, 8);
    rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, 14)->dst_addr = rte_cpu_to_be_32(0xe0000001);   // 224.0.0.1
    c = check_frame(m, mac, info);
    EXPECT_EQ(c.action, FrameAction::drop);
    EXPECT_EQ(c.reason, DropReason::not_for_us);
    free_frame(m);
}

// check_frame_fast() may only ever say what check_frame() says. Thousands
// of mutations of a plain IPv4/UDP frame (octets of the Ethernet and IP
// headers changed, frames cut short or padded, several segments), on a
// port with a unicast address and on one with a group address: every frame
// the fast path takes, check_frame() routes, with the same IpInfo and the
// same mbuf bounds; every frame it leaves is untouched. And it does take
// the plain frame and the mutations that keep it plain (TTL, addresses,
// ports): a fast path that never answers would pass the rest.
TEST(Packet, FastFrameCheckAgreesWithTheGeneralOne)
{
    std::mt19937 rng(20261124);
    const rte_ether_addr unicast{{0x02, 0, 0, 0, 0, 0x01}}, group{{0x03, 0, 0, 0, 0, 0x01}};
    for (const rte_ether_addr& mac : {unicast, group}) {
        const uint64_t word = mac_word(mac);
        unsigned taken = 0;
        for (unsigned round = 0; round < 20000; ++round) {
            const bool plain = round == 0;
            rte_mbuf* a = frame_v4(mac, uint16_t(plain ? 18 : rng() % 64), uint16_t(plain ? 0 : rng() % 2 * 18));
            uint8_t* f = rte_pktmbuf_mtod(a, uint8_t*);
            for (unsigned k = plain ? 0 : 1 + rng() % 3; k > 0; --k) {
                const unsigned at = rng() % 38;
                switch (rng() % 4) {
                case 0: f[at] ^= uint8_t(1u << rng() % 8); break;
                case 1: f[at] = uint8_t(rng()); break;
                case 2: rte_pktmbuf_trim(a, uint16_t(rng() % (a->data_len + 1u))); break;
                case 3: a->nb_segs = uint16_t(1 + rng() % 2); break;
                }
            }
            rte_mbuf* b = copy_of(a);
            const uint16_t off = a->data_off, len = a->data_len;
            const uint32_t pkt = a->pkt_len;
            IpInfo fast, general;
            if (check_frame_fast(a, word, fast)) {
                ++taken;
                const FrameCheck c = check_frame(b, mac, general);
                ASSERT_EQ(c.action, FrameAction::route) << "round " << round;
                EXPECT_EQ(std::memcmp(&fast, &general, sizeof fast), 0) << "round " << round;
                EXPECT_EQ(a->data_off - off, b->data_off - RTE_PKTMBUF_HEADROOM) << "round " << round;
                EXPECT_EQ(a->data_len, b->data_len) << "round " << round;
                EXPECT_EQ(a->pkt_len, b->pkt_len) << "round " << round;
            } else {
                ASSERT_TRUE(!plain || mac.addr_bytes[0] & 1) << "the plain frame must take the fast path";
                EXPECT_EQ(a->data_off, off);
                EXPECT_EQ(a->data_len, len);
                EXPECT_EQ(a->pkt_len, pkt);
            }
            free_frame(a);
            free_frame(b);
        }
        if (mac.addr_bytes[0] & 1) EXPECT_EQ(taken, 0u) << "a group address is never ours";
        else EXPECT_GT(taken, 2000u) << "the fast path took too few of the frames it should take";
    }
}

} // namespace
} // namespace ravelin::dp

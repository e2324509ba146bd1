// pktgen/stream.hh: stream syntax, flows over ranges, the frames written
// and what the receive side reads back from them.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <vector>

#include <rte_ip.h>

#include "stream.hh"

namespace ravelin::pktgen {
namespace {

StreamSpec parse_ok(const std::string& text)
{
    std::string why;
    auto s = parse_stream(text, 3, &why);
    EXPECT_TRUE(s) << why;
    return s ? *s : StreamSpec{};
}

TEST(Stream, ParsesAllKeys)
{
    auto s = parse_ok("port=1 ip=4 src=198.18.1.2+16 dst=198.18.2.2+256 sport=1000+8 dport=2000 proto=udp "
                      "size=imix rate=2Mpps dmac=02:00:00:00:00:01 esp=0x2002+4 ttl=9 tos=4");
    EXPECT_EQ(s.id, 3u);
    EXPECT_EQ(s.port, 1);
    EXPECT_EQ(s.src.count, 16u);
    EXPECT_EQ(s.dst.count, 256u);
    EXPECT_EQ(s.sport.base, 1000);
    EXPECT_EQ(s.sport.count, 8u);
    EXPECT_EQ(s.flows, 256u);   // the largest range
    ASSERT_TRUE(s.rate);
    EXPECT_DOUBLE_EQ(s.rate->value, 2e6);
    ASSERT_TRUE(s.esp_spi);
    EXPECT_EQ(*s.esp_spi, 0x2002u);
    EXPECT_EQ(s.esp_count, 4u);
    EXPECT_EQ(s.ttl, 9);
    ASSERT_TRUE(s.dmac);
    EXPECT_EQ(mac_to_string(*s.dmac), "02:00:00:00:00:01");
}

TEST(Stream, RejectsBadStreams)
{
    for (const char* bad : {"", "src=198.18.1.1", "src=198.18.1.1 dst=198.18.2.1 bogus=1",
                            "src=198.18.1.1 dst=2001:db8::1", "ip=6 src=198.18.1.1 dst=198.18.2.1",
                            "src=198.18.1.1+0 dst=198.18.2.1", "src=198.18.1.1 dst=198.18.2.1 sport=65535+2",
                            "src=198.18.1.1 dst=198.18.2.1 size=63", "src=198.18.1.1 dst=198.18.2.1 esp=12",
                            "ip=6 src=2001:db8::1 dst=2001:db8::2 size=64",   // IPv6 + UDP + stamp needs 84
                            "src=198.18.1.1 dst=198.18.2.1 dmac=02:00:00:00:00", "src=198.18.1.1 dst=198.18.2.1 rate=5",
                            "src=198.18.1.1 dst=198.18.2.1 flows=0", "noequals"}) {
        std::string why;
        EXPECT_FALSE(parse_stream(bad, 0, &why)) << bad;
        EXPECT_FALSE(why.empty()) << bad;
    }
}

TEST(Stream, FlowsWalkTheRangesInLockstep)
{
    auto s = parse_ok("src=198.18.1.250+10 dst=198.18.2.1+3 sport=100+2 dport=7");
    EXPECT_EQ(s.flows, 10u);
    EXPECT_EQ(s.src.at(0).v4_host(), 0xc61201fau);
    EXPECT_EQ(s.src.at(9).v4_host(), 0xc6120203u);   // carries into the next octet
    EXPECT_EQ(s.dst.at(4).v4_host(), 0xc6120202u);
    EXPECT_EQ(s.sport.at(3), 101);
    EXPECT_EQ(s.dport.at(5), 7);
    std::set<std::tuple<uint32_t, uint32_t, uint16_t>> tuples;
    for (uint64_t f = 0; f < s.flows; ++f) tuples.insert({s.src.at(f).v4_host(), s.dst.at(f).v4_host(), s.sport.at(f)});
    EXPECT_EQ(tuples.size(), 10u);
}

// The TX loop steps a cursor instead of dividing; it must land where the
// divisions do, across the wrap of every range and of the flows, and after
// a jump (a new trial starts at 0, the replay frames were built before).
TEST(Stream, FlowCursorStepsToTheFlowPointOfEachPacket)
{
    auto s = parse_ok("src=198.18.1.250+10 dst=198.18.2.1+3 sport=100+7 dport=7+4 flows=30");
    auto same = [](const FlowPoint& a, const FlowPoint& b) {
        return a.flow == b.flow && a.src == b.src && a.dst == b.dst && a.sport == b.sport && a.dport == b.dport;
    };
    FlowCursor c;
    for (uint64_t seq = 0; seq < 200; ++seq)
        ASSERT_TRUE(same(c.seek(s, seq), flow_point(s, seq % s.flows))) << "seq " << seq;
    for (uint64_t seq : {5ull, 4ull, 1000003ull, 1000004ull, 0ull, 1ull})
        ASSERT_TRUE(same(c.seek(s, seq), flow_point(s, seq % s.flows))) << "seq " << seq;
    EXPECT_EQ(flow_point(s, 29).src, 9u);
    EXPECT_EQ(flow_point(s, 29).dport, 1u);
}

// The IPv4 header is made from registers with its checksum summed alongside;
// rte_ipv4_cksum() over what was written must agree for every flow and for
// identifications that carry in the sum.
TEST(Stream, Ipv4HeaderChecksumHoldsAcrossFlowsAndIds)
{
    auto s = parse_ok("src=198.18.255.250+300 dst=198.19.255.255+2 sport=1+9 tos=0xb8 ttl=255");
    std::vector<uint8_t> f(64, 0);
    FlowCursor c;
    for (uint64_t seq : {0ull, 1ull, 2ull, 299ull, 300ull, 65535ull, 65536ull, 0xfffffull}) {
        write_ip_headers(s, c.seek(s, seq), f.data(), 46, Stamp{1, seq, 2});
        rte_ipv4_hdr h;
        std::memcpy(&h, f.data(), sizeof h);
        EXPECT_EQ(h.version_ihl, 0x45);
        EXPECT_EQ(h.type_of_service, 0xb8);
        EXPECT_EQ(rte_be_to_cpu_16(h.total_length), 46);
        EXPECT_EQ(rte_be_to_cpu_16(h.packet_id), uint16_t(seq));
        EXPECT_EQ(h.time_to_live, 255);
        EXPECT_EQ(rte_be_to_cpu_32(h.src_addr), s.src.at(seq % s.flows).v4_host());
        EXPECT_EQ(rte_be_to_cpu_32(h.dst_addr), s.dst.at(seq % s.flows).v4_host());
        const uint16_t sent = h.hdr_checksum;
        h.hdr_checksum = 0;
        EXPECT_EQ(rte_ipv4_cksum(&h), sent) << "seq " << seq;
    }
}

TEST(Stream, StampRoundTrip)
{
    uint8_t b[stamp_len];
    Stamp in{65535, max_stamp_seq, 0x0123456789abcdefull}, out;
    write_stamp(b, in);
    ASSERT_TRUE(read_stamp(b, sizeof b, out));
    EXPECT_EQ(out.stream, in.stream);
    EXPECT_EQ(out.seq, in.seq);
    EXPECT_EQ(out.tsc, in.tsc);
    EXPECT_FALSE(read_stamp(b, sizeof b - 1, out));
    b[0] ^= 1;
    EXPECT_FALSE(read_stamp(b, sizeof b, out));
}

// Build a whole frame the way the TX loop does and parse it back.
std::vector<uint8_t> frame(const StreamSpec& s, unsigned size, uint64_t flow, const Stamp& st)
{
    std::vector<uint8_t> f(size - fcs_len, 0xee);
    write_eth(f.data(), {2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}, s.family == IpFamily::v4 ? 0x0800 : 0x86dd);
    write_ip_packet(s, flow, f.data() + eth_len, unsigned(f.size() - eth_len), st);
    return f;
}

TEST(Stream, Ipv4UdpFrameParsesBack)
{
    auto s = parse_ok("src=198.18.1.2+4 dst=198.18.2.2 sport=5000 dport=6000");
    for (unsigned size : {64u, 570u, 1518u}) {
        auto f = frame(s, size, 2, Stamp{3, 77, 1234});
        const ParsedFrame p = parse_frame(f.data(), uint32_t(f.size()));
        ASSERT_EQ(p.kind, ParsedFrame::Kind::ip);
        EXPECT_EQ(p.l3_len, size - 18);
        EXPECT_EQ(p.proto, 17);
        rte_ipv4_hdr h;
        std::memcpy(&h, f.data() + eth_len, sizeof h);
        const uint16_t sent = h.hdr_checksum;
        h.hdr_checksum = 0;
        EXPECT_EQ(rte_ipv4_cksum(&h), sent) << "header checksum";
        EXPECT_EQ(f[eth_len + 15], 4);   // 198.18.1.2 + flow 2
        Stamp st;
        ASSERT_TRUE(stamp_of_ip(f.data() + p.l3, p.l3_len, st));
        EXPECT_EQ(st.stream, 3);
        EXPECT_EQ(st.seq, 77u);
        EXPECT_EQ(st.tsc, 1234u);
    }
}

TEST(Stream, Ipv6UdpChecksumVerifies)
{
    auto s = parse_ok("ip=6 src=2001:db8:1::2 dst=2001:db8:2::2 size=84");
    auto f = frame(s, 200, 0, Stamp{0, 1, 2});
    const ParsedFrame p = parse_frame(f.data(), uint32_t(f.size()));
    ASSERT_EQ(p.kind, ParsedFrame::Kind::ip);
    const auto* ip = reinterpret_cast<const rte_ipv6_hdr*>(f.data() + eth_len);
    EXPECT_EQ(rte_ipv6_udptcp_cksum_verify(ip, f.data() + p.l4), 0);
    Stamp st;
    EXPECT_TRUE(stamp_of_ip(f.data() + p.l3, p.l3_len, st));
}

TEST(Stream, TcpSynCarriesTheStamp)
{
    auto s = parse_ok("proto=tcp-syn src=198.18.1.2 dst=198.18.2.2 dport=80 size=128");
    auto f = frame(s, 128, 0, Stamp{1, 9, 10});
    const ParsedFrame p = parse_frame(f.data(), uint32_t(f.size()));
    ASSERT_EQ(p.kind, ParsedFrame::Kind::ip);
    EXPECT_EQ(p.proto, 6);
    EXPECT_EQ(f[p.l4 + 13], 0x02);   // SYN only
    const auto* ip = reinterpret_cast<const rte_ipv4_hdr*>(f.data() + eth_len);
    EXPECT_EQ(rte_ipv4_udptcp_cksum_verify(ip, f.data() + p.l4), 0);
    Stamp st;
    ASSERT_TRUE(stamp_of_ip(f.data() + p.l3, p.l3_len, st));
    EXPECT_EQ(st.seq, 9u);
}

TEST(Stream, ParseFrameFindsEspAndEspInUdp)
{
    std::vector<uint8_t> f(100, 0);
    f[12] = 0x08;
    f[14] = 0x45;
    f[16] = 0;
    f[17] = 86;   // total length 86 = 100 - 14
    f[23] = 50;
    ParsedFrame p = parse_frame(f.data(), uint32_t(f.size()));
    EXPECT_EQ(p.kind, ParsedFrame::Kind::esp);
    EXPECT_EQ(p.esp, 34u);
    // UDP 4500 with a non-zero first word: ESP in UDP.
    f[23] = 17;
    f[36] = 4500 >> 8;
    f[37] = 4500 & 0xff;
    f[42] = 0x10;
    p = parse_frame(f.data(), uint32_t(f.size()));
    EXPECT_EQ(p.kind, ParsedFrame::Kind::esp);
    EXPECT_EQ(p.esp, 42u);
    // The zero non-ESP marker is IKE, not ESP.
    f[42] = 0;
    EXPECT_EQ(parse_frame(f.data(), uint32_t(f.size())).kind, ParsedFrame::Kind::ip);
}

TEST(Stream, ParseFrameRejectsInconsistentLengths)
{
    std::vector<uint8_t> f(60, 0);
    f[12] = 0x08;
    f[14] = 0x45;
    f[16] = 0x05;   // total length 1280 > frame
    EXPECT_EQ(parse_frame(f.data(), uint32_t(f.size())).kind, ParsedFrame::Kind::other);
    f[16] = 0;
    f[17] = 10;     // shorter than its header
    EXPECT_EQ(parse_frame(f.data(), uint32_t(f.size())).kind, ParsedFrame::Kind::other);
    EXPECT_EQ(parse_frame(f.data(), 13).kind, ParsedFrame::Kind::other);
    f[12] = 0x08;
    f[13] = 0x06;
    EXPECT_EQ(parse_frame(f.data(), uint32_t(f.size())).kind, ParsedFrame::Kind::arp);
}

} // namespace
} // namespace ravelin::pktgen

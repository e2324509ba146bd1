#include "stream.hh"

#include <charconv>
#include <cstdio>
#include <cstring>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>

#include "config.hh"   // dp::parse_ip: one address syntax for the gateway and the generator

namespace ravelin::pktgen {
namespace {

bool fail(std::string* why, std::string msg)
{
    if (why) *why = std::move(msg);
    return false;
}

template <typename T>
bool parse_num(std::string_view s, T& v)
{
    int base = 10;
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s.remove_prefix(2);
        base = 16;
    }
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

// "base+count" or "base".
std::pair<std::string_view, std::string_view> split_plus(std::string_view s)
{
    const auto plus = s.rfind('+');
    if (plus == std::string_view::npos) return {s, {}};
    return {s.substr(0, plus), s.substr(plus + 1)};
}

bool parse_count(std::string_view s, uint32_t& count, std::string* why, std::string_view key)
{
    if (s.empty()) return true;
    if (!parse_num(s, count) || count == 0)
        return fail(why, std::string(key) + ": count '" + std::string(s) + "' must be a positive number");
    return true;
}

bool parse_addr_range(std::string_view v, AddrRange& r, std::string* why, std::string_view key)
{
    auto [base, count] = split_plus(v);
    auto a = dp::parse_ip(base);
    if (!a) return fail(why, std::string(key) + ": '" + std::string(base) + "' is not an IP address");
    r.base = *a;
    return parse_count(count, r.count, why, key);
}

bool parse_port_range(std::string_view v, L4PortRange& r, std::string* why, std::string_view key)
{
    auto [base, count] = split_plus(v);
    uint16_t b = 0;
    if (!parse_num(base, b)) return fail(why, std::string(key) + ": '" + std::string(base) + "' is not a port");
    r.base = b;
    if (!parse_count(count, r.count, why, key)) return false;
    if (uint32_t(b) + r.count - 1 > 65535) return fail(why, std::string(key) + ": range goes past 65535");
    return true;
}

inline void store_be16(uint8_t* p, uint16_t v) noexcept
{
    p[0] = uint8_t(v >> 8);
    p[1] = uint8_t(v);
}
inline uint16_t load_be16(const uint8_t* p) noexcept { return uint16_t(p[0] << 8 | p[1]); }

} // namespace

IpAddress AddrRange::nth(uint32_t off) const noexcept
{
    IpAddress a = base;
    write_nth(a.bytes.data(), off);
    return a;
}

FlowPoint flow_point(const StreamSpec& s, uint64_t flow) noexcept
{
    return {flow, uint32_t(flow % s.src.count), uint32_t(flow % s.dst.count), uint32_t(flow % s.sport.count),
            uint32_t(flow % s.dport.count)};
}

void AddrRange::write_nth(uint8_t* p, uint32_t off) const noexcept
{
    const std::size_t n = base.size();
    uint32_t low;
    std::memcpy(&low, base.bytes.data() + n - 4, 4);
    low = rte_cpu_to_be_32(rte_be_to_cpu_32(low) + off);
    if (n > 4) std::memcpy(p, base.bytes.data(), 12);
    std::memcpy(p + n - 4, &low, 4);
}

unsigned header_len(const StreamSpec& s) noexcept
{
    const unsigned l3 = s.family == IpFamily::v4 ? ipv4_len : ipv6_len;
    const unsigned l4 = s.proto == L4Proto::udp ? udp_len : tcp_len;
    return eth_len + l3 + l4 + stamp_len;
}

unsigned StreamSpec::min_frame_size() const noexcept
{
    const unsigned f = header_len(*this) + fcs_len;
    return f < min_frame ? min_frame : f;
}

std::optional<MacAddr> parse_mac(std::string_view s)
{
    MacAddr m{};
    if (s.size() != 17) return std::nullopt;
    for (unsigned i = 0; i < 6; ++i) {
        if (i > 0 && s[i * 3 - 1] != ':') return std::nullopt;
        uint8_t b = 0;
        auto [p, ec] = std::from_chars(s.data() + i * 3, s.data() + i * 3 + 2, b, 16);
        if (ec != std::errc() || p != s.data() + i * 3 + 2) return std::nullopt;
        m[i] = b;
    }
    return m;
}

std::string mac_to_string(const MacAddr& m)
{
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return buf;
}

std::optional<StreamSpec> parse_stream(std::string_view text, unsigned id, std::string* why)
{
    StreamSpec s;
    s.id = id;
    s.text = std::string(text);
    bool have_src = false, have_dst = false, have_flows = false;
    std::string_view rest = text;
    auto bad = [&](std::string msg) -> std::optional<StreamSpec> {
        if (why) *why = "stream " + std::to_string(id) + " (" + std::string(text) + "): " + msg;
        return std::nullopt;
    };
    while (!rest.empty()) {
        const auto sp = rest.find(' ');
        std::string_view word = rest.substr(0, sp);
        rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
        if (word.empty()) continue;
        const auto eq = word.find('=');
        if (eq == std::string_view::npos) return bad("'" + std::string(word) + "' is not key=value");
        const std::string_view key = word.substr(0, eq), v = word.substr(eq + 1);
        std::string err;
        if (key == "port") {
            if (!parse_num(v, s.port)) return bad("port: '" + std::string(v) + "' is not a port index");
        } else if (key == "ip") {
            if (v == "4") s.family = IpFamily::v4;
            else if (v == "6") s.family = IpFamily::v6;
            else return bad("ip: 4 or 6");
        } else if (key == "src") {
            if (!parse_addr_range(v, s.src, &err, key)) return bad(err);
            have_src = true;
        } else if (key == "dst") {
            if (!parse_addr_range(v, s.dst, &err, key)) return bad(err);
            have_dst = true;
        } else if (key == "sport") {
            if (!parse_port_range(v, s.sport, &err, key)) return bad(err);
        } else if (key == "dport") {
            if (!parse_port_range(v, s.dport, &err, key)) return bad(err);
        } else if (key == "proto") {
            if (v == "udp") s.proto = L4Proto::udp;
            else if (v == "tcp-syn" || v == "tcp") s.proto = L4Proto::tcp_syn;
            else return bad("proto: udp or tcp-syn");
        } else if (key == "size") {
            if (!SizeSchedule::parse(v, &err)) return bad("size: " + err);
            s.size_spec = std::string(v);
        } else if (key == "rate") {
            auto r = RateSpec::parse(v, &err);
            if (!r) return bad(err);
            s.rate = *r;
        } else if (key == "flows") {
            if (!parse_num(v, s.flows) || s.flows == 0) return bad("flows: a positive number");
            have_flows = true;
        } else if (key == "dmac" || key == "smac") {
            auto m = parse_mac(v);
            if (!m) return bad(std::string(key) + ": '" + std::string(v) + "' is not a MAC address");
            (key == "dmac" ? s.dmac : s.smac) = *m;
        } else if (key == "esp") {
            auto [base, count] = split_plus(v);
            uint32_t spi = 0;
            if (!parse_num(base, spi) || spi < 256) return bad("esp: SPI '" + std::string(base) + "' (256 or more)");
            s.esp_spi = spi;
            if (!parse_count(count, s.esp_count, &err, key)) return bad(err);
            if (uint64_t(spi) + s.esp_count - 1 > UINT32_MAX) return bad("esp: SPI range goes past 0xffffffff");
        } else if (key == "ttl") {
            if (!parse_num(v, s.ttl) || s.ttl == 0) return bad("ttl: 1..255");
        } else if (key == "tos") {
            if (!parse_num(v, s.tos)) return bad("tos: 0..255");
        } else {
            return bad("unknown key '" + std::string(key) +
                       "' (port ip src dst sport dport proto size rate flows dmac smac esp ttl tos)");
        }
    }
    if (!have_src || !have_dst) return bad("src= and dst= are required");
    if (s.src.base.family != s.family || s.dst.base.family != s.family)
        return bad(std::string("addresses must be IPv") + (s.family == IpFamily::v4 ? "4" : "6") +
                   " (ip=" + (s.family == IpFamily::v4 ? "4" : "6") + ")");
    if (!have_flows) {
        uint64_t f = 1;
        for (uint64_t c : {uint64_t(s.src.count), uint64_t(s.dst.count), uint64_t(s.sport.count),
                           uint64_t(s.dport.count), uint64_t(s.esp_count)})
            f = std::max(f, c);
        s.flows = f;
    }
    auto sizes = SizeSchedule::parse(s.size_spec);
    if (sizes->min() < s.min_frame_size())
        return bad("size " + std::to_string(sizes->min()) + " is below the " + std::to_string(s.min_frame_size()) +
                   " bytes this stream's headers and stamp need");
    return s;
}

void write_stamp(uint8_t* p, const Stamp& s) noexcept
{
    // Three stores: magic, stream and the sequence number's high 32 bits;
    // its low 16; the TSC.
    const uint64_t seq = s.seq & max_stamp_seq;
    const uint64_t head = rte_cpu_to_be_64(uint64_t(stamp_magic) << 48 | uint64_t(s.stream) << 32 | seq >> 16);
    const uint16_t tail = rte_cpu_to_be_16(uint16_t(seq));
    const uint64_t tsc = rte_cpu_to_be_64(s.tsc);
    std::memcpy(p, &head, 8);
    std::memcpy(p + 8, &tail, 2);
    std::memcpy(p + 10, &tsc, 8);
}

bool read_stamp(const uint8_t* p, uint32_t avail, Stamp& out) noexcept
{
    if (avail < stamp_len || load_be16(p) != stamp_magic) return false;
    out.stream = load_be16(p + 2);
    out.seq = 0;
    for (unsigned i = 0; i < 6; ++i) out.seq = out.seq << 8 | p[4 + i];
    uint64_t be;
    std::memcpy(&be, p + 10, 8);
    out.tsc = rte_be_to_cpu_64(be);
    return true;
}

void write_eth(uint8_t* p, const MacAddr& dst, const MacAddr& src, uint16_t ether_type) noexcept
{
    std::memcpy(p, dst.data(), 6);
    std::memcpy(p + 6, src.data(), 6);
    store_be16(p + 12, ether_type);
}

void write_ip_headers(const StreamSpec& s, const FlowPoint& flow, uint8_t* ip, unsigned ip_len,
                      const Stamp& stamp) noexcept
{
    const unsigned l3 = s.family == IpFamily::v4 ? ipv4_len : ipv6_len;
    uint8_t* l4 = ip + l3;
    const unsigned l4_total = ip_len - l3;
    const uint8_t proto = uint8_t(s.proto);
    if (s.family == IpFamily::v4) {
        // The header as three words made in registers, its checksum summed
        // from the same values (RFC 1071), and nothing read back: reading
        // octets just stored, as wider words, would wait for the stores.
        //
        //   | 45 tos | total length | id | flags+fragment 0 | ttl proto | checksum | src | dst |
        const uint32_t src = s.src.base.v4_host() + flow.src, dst = s.dst.base.v4_host() + flow.dst;
        const uint16_t w0 = uint16_t(0x4500 | s.tos), len = uint16_t(ip_len), id = uint16_t(stamp.seq);
        const uint16_t ttl_proto = uint16_t(s.ttl << 8 | proto);
        uint32_t sum = uint32_t(w0) + len + id + ttl_proto + (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        const uint64_t head = rte_cpu_to_be_64(uint64_t(w0) << 48 | uint64_t(len) << 32 | uint64_t(id) << 16);
        const uint32_t mid = rte_cpu_to_be_32(uint32_t(ttl_proto) << 16 | uint16_t(~sum));
        const uint64_t addrs = rte_cpu_to_be_64(uint64_t(src) << 32 | dst);
        std::memcpy(ip, &head, 8);
        std::memcpy(ip + 8, &mid, 4);
        std::memcpy(ip + 12, &addrs, 8);
    } else {
        auto* h = reinterpret_cast<rte_ipv6_hdr*>(ip);
        h->vtc_flow = rte_cpu_to_be_32(6u << 28 | uint32_t(s.tos) << 20);
        h->payload_len = rte_cpu_to_be_16(uint16_t(l4_total));
        h->proto = proto;
        h->hop_limits = s.ttl;
        s.src.write_nth(ip + 8, flow.src);
        s.dst.write_nth(ip + 24, flow.dst);
    }
    const uint16_t sport = s.sport.nth(flow.sport), dport = s.dport.nth(flow.dport);
    if (s.proto == L4Proto::udp) {
        auto* u = reinterpret_cast<rte_udp_hdr*>(l4);
        u->src_port = rte_cpu_to_be_16(sport);
        u->dst_port = rte_cpu_to_be_16(dport);
        u->dgram_len = rte_cpu_to_be_16(uint16_t(l4_total));
        u->dgram_cksum = 0;
        write_stamp(l4 + udp_len, stamp);
    } else {
        auto* t = reinterpret_cast<rte_tcp_hdr*>(l4);
        t->src_port = rte_cpu_to_be_16(sport);
        t->dst_port = rte_cpu_to_be_16(dport);
        t->sent_seq = rte_cpu_to_be_32(uint32_t(stamp.seq));
        t->recv_ack = 0;
        t->data_off = 5 << 4;
        t->tcp_flags = RTE_TCP_SYN_FLAG;
        t->rx_win = rte_cpu_to_be_16(65535);
        t->tcp_urp = 0;
        t->cksum = 0;
        write_stamp(l4 + tcp_len, stamp);
    }
}

void write_l4_checksum(const StreamSpec& s, uint8_t* ip) noexcept
{
    // IPv4 may leave the UDP checksum out; IPv6 may not (RFC 8200 §8.1).
    if (s.proto == L4Proto::udp && s.family == IpFamily::v4) return;
    uint8_t* l4 = ip + (s.family == IpFamily::v4 ? ipv4_len : ipv6_len);
    const uint16_t c = s.family == IpFamily::v4
                           ? rte_ipv4_udptcp_cksum(reinterpret_cast<const rte_ipv4_hdr*>(ip), l4)
                           : rte_ipv6_udptcp_cksum(reinterpret_cast<const rte_ipv6_hdr*>(ip), l4);
    // The checksum field: UDP octets 6-7, TCP octets 16-17.
    std::memcpy(l4 + (s.proto == L4Proto::udp ? 6 : 16), &c, 2);
}

ParsedFrame parse_frame(const uint8_t* p, uint32_t len) noexcept
{
    ParsedFrame f;
    if (len < eth_len) return f;
    const uint16_t type = load_be16(p + 12);
    if (type == RTE_ETHER_TYPE_ARP) {
        f.kind = ParsedFrame::Kind::arp;
        return f;
    }
    const uint8_t* ip = p + eth_len;
    const uint32_t avail = len - eth_len;
    f.l3 = eth_len;
    if (type == RTE_ETHER_TYPE_IPV4) {
        if (avail < ipv4_len || ip[0] >> 4 != 4) return f;
        const uint32_t hl = (ip[0] & 0x0fu) * 4u, tot = load_be16(ip + 2);
        if (hl < ipv4_len || tot < hl || tot > avail) return f;
        // Later fragments carry no L4 header.
        if ((load_be16(ip + 6) & 0x1fff) != 0) return f;
        f.family = IpFamily::v4;
        f.l3_len = tot;
        f.proto = ip[9];
        f.l4 = eth_len + hl;
    } else if (type == RTE_ETHER_TYPE_IPV6) {
        if (avail < ipv6_len || ip[0] >> 4 != 6) return f;
        const uint32_t tot = ipv6_len + load_be16(ip + 4);
        if (tot > avail) return f;
        f.family = IpFamily::v6;
        f.l3_len = tot;
        f.proto = ip[6];
        f.l4 = eth_len + ipv6_len;
    } else {
        return f;
    }
    f.kind = ParsedFrame::Kind::ip;
    const uint32_t l4_avail = f.l3 + f.l3_len - f.l4;
    if (f.proto == 50 && l4_avail >= 8) {
        f.kind = ParsedFrame::Kind::esp;
        f.esp = f.l4;
    } else if (f.proto == 17 && l4_avail >= udp_len + 8 && load_be16(p + f.l4 + 2) == 4500) {
        // RFC 3948: ESP in UDP unless the first word is the zero non-ESP marker (IKE).
        const uint8_t* e = p + f.l4 + udp_len;
        if (e[0] | e[1] | e[2] | e[3]) {
            f.kind = ParsedFrame::Kind::esp;
            f.esp = f.l4 + udp_len;
        }
    }
    return f;
}

bool stamp_of_ip(const uint8_t* ip, uint32_t len, Stamp& out) noexcept
{
    uint32_t l4 = 0, tot = 0;
    uint8_t proto = 0;
    if (len >= ipv4_len && ip[0] >> 4 == 4) {
        l4 = (ip[0] & 0x0fu) * 4u;
        tot = load_be16(ip + 2);
        proto = ip[9];
        if (l4 < ipv4_len || (load_be16(ip + 6) & 0x1fff) != 0) return false;
    } else if (len >= ipv6_len && ip[0] >> 4 == 6) {
        l4 = ipv6_len;
        tot = ipv6_len + load_be16(ip + 4);
        proto = ip[6];
    } else {
        return false;
    }
    if (tot > len || tot < l4) return false;
    uint32_t off;
    if (proto == 17) off = l4 + udp_len;
    else if (proto == 6 && tot >= l4 + tcp_len) off = l4 + (ip[l4 + 12] >> 4) * 4u;
    else return false;
    if (off > tot) return false;
    return read_stamp(ip + off, tot - off, out);
}

} // namespace ravelin::pktgen

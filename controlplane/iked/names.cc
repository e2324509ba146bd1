#include "names.hh"

#include "crypto.hh"

#include <arpa/inet.h>

#include <bit>

namespace ravelin::iked {

std::string format_address(const IpAddress& a)
{
    char buf[INET6_ADDRSTRLEN];
    int af = a.family == IpFamily::v4 ? AF_INET : AF_INET6;
    if (!inet_ntop(af, a.bytes.data(), buf, sizeof buf)) return "?";
    return buf;
}

namespace {

// The prefix length if [start, end] is exactly one prefix, else -1.
int prefix_len(const IpAddress& start, const IpAddress& end)
{
    if (start.family != end.family) return -1;
    const std::size_t n = start.size();
    int len = 0;
    std::size_t i = 0;
    // Common leading bits.
    for (; i < n && start.bytes[i] == end.bytes[i]; ++i) len += 8;
    if (i == n) return len;
    uint8_t diff = start.bytes[i] ^ end.bytes[i];
    int common = std::countl_zero(diff);
    // Below the common bits, start must be all zeros and end all ones.
    uint8_t host = uint8_t(0xff >> common);
    if ((start.bytes[i] & host) != 0 || (end.bytes[i] & host) != host) return -1;
    for (std::size_t j = i + 1; j < n; ++j)
        if (start.bytes[j] != 0x00 || end.bytes[j] != 0xff) return -1;
    return len + common;
}

std::string protocol_name(uint8_t p)
{
    switch (p) {
    case 1: return "icmp";
    case 6: return "tcp";
    case 17: return "udp";
    case 58: return "ipv6-icmp";
    case 132: return "sctp";
    default: return std::to_string(p);
    }
}

std::string unknown(uint16_t id) { return "UNKNOWN_" + std::to_string(id); }

// crypto.hh's name, or "UNKNOWN_<id>" so an operator sees which id it was.
std::string known_or_id(std::string_view name, uint16_t id)
{
    return name == "UNKNOWN" ? unknown(id) : std::string(name);
}

std::string ts_suffix(const ike::TrafficSelector& ts)
{
    std::string out;
    bool any_port = ts.start_port == 0 && ts.end_port == 65535;
    if (ts.protocol == 0 && any_port) return out;
    out += "[" + protocol_name(ts.protocol);
    if (!any_port) {
        out += "/" + std::to_string(ts.start_port);
        if (ts.end_port != ts.start_port) out += "-" + std::to_string(ts.end_port);
    }
    return out + "]";
}

} // namespace

std::string format_ts(const ike::TrafficSelector& ts)
{
    int len = prefix_len(ts.start, ts.end);
    std::string out = len >= 0 ? format_address(ts.start) + "/" + std::to_string(len)
                               : format_address(ts.start) + "-" + format_address(ts.end);
    return out + ts_suffix(ts);
}

std::string format_ts_config(const ike::TsConfig& ts)
{
    return ts.dynamic ? "dynamic" + ts_suffix(ts.ts) : format_ts(ts.ts);
}

std::string hex_string(const uint8_t* data, std::size_t len)
{
    static const char digits[] = "0123456789abcdef";
    std::string out(len * 2, '0');
    for (std::size_t i = 0; i < len; ++i) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 0xf];
    }
    return out;
}

std::string encr_name(uint16_t id) { return known_or_id(ike::encr_name(id), id); }

std::string prf_name(uint16_t id) { return known_or_id(ike::prf_name(id), id); }

std::string integ_name(uint16_t id) { return known_or_id(ike::integ_name(id), id); }

std::string dh_name(uint16_t id) { return known_or_id(ike::dh_name(id), id); }

namespace {

std::string encr_with_bits(uint16_t id, uint16_t bits)
{
    std::string s = encr_name(id);
    if (bits) s += "-" + std::to_string(bits);
    return s;
}

} // namespace

std::string describe_suite(const ike::SelectedSuite& s, bool ike)
{
    std::string out = encr_with_bits(s.encr, s.encr_key_bits);
    if (s.integ) out += "/" + integ_name(s.integ);
    if (ike && s.prf) out += "/" + prf_name(s.prf);
    if (s.dh) out += "/" + dh_name(s.dh);
    if (!ike && s.esn) out += "/ESN";
    return out;
}

std::string describe_proposal(const ike::ProposalSpec& p)
{
    std::string out;
    auto group = [&out](const std::vector<ike::Transform>& ts, auto&& name) {
        if (ts.empty()) return;
        if (!out.empty()) out += "/";
        for (std::size_t i = 0; i < ts.size(); ++i) {
            if (i) out += ",";
            out += name(ts[i]);
        }
    };
    group(p.encr, [](const ike::Transform& t) { return encr_with_bits(t.id, t.key_bits); });
    group(p.integ, [](const ike::Transform& t) { return integ_name(t.id); });
    group(p.prf, [](const ike::Transform& t) { return prf_name(t.id); });
    group(p.dh, [](const ike::Transform& t) { return dh_name(t.id); });
    if (p.protocol == ike::ProtocolId::esp)
        group(p.esn, [](const ike::Transform& t) { return std::string(t.id ? "ESN" : "NO_EXT_SEQ"); });
    return out;
}

} // namespace ravelin::iked

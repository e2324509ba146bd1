// A stream: one kind of traffic from one TX port, written on the command
// line as space- or comma-free "key=value" words:
//
//   port=0 ip=4 src=198.18.1.2+16 dst=198.18.2.2+256 sport=1000+8 dport=2000
//   proto=udp size=imix rate=2Mpps flows=256 dmac=02:00:00:00:00:01 esp=0x2002+1
//
// Address and port ranges are "base+count". Packet n of a stream belongs to
// flow n % flows, and flow f uses src base + f % count(src), dst base +
// f % count(dst), the same for the ports, and with esp=SPI+N the SA SPI + f
// % N. flows defaults to the largest count.
//
// Every packet carries an 18-byte stamp at the start of its L4 payload:
//
//    0      2        4                       10                    18
//   | magic | stream | sequence (48 bit, BE) | TX TSC (64 bit, BE)  |
//
// so the receiver can count per stream, find loss, reordering and
// duplicates, and measure latency against the same TSC.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "rate.hh"
#include "size_schedule.hh"
#include "ravelin/types.hh"

namespace ravelin::pktgen {

inline constexpr uint16_t stamp_magic = 0x5276;   // "Rv"
inline constexpr unsigned stamp_len = 18;
inline constexpr unsigned eth_len = 14;
inline constexpr unsigned ipv4_len = 20;
inline constexpr unsigned ipv6_len = 40;
inline constexpr unsigned udp_len = 8;
inline constexpr unsigned tcp_len = 20;
inline constexpr uint64_t max_stamp_seq = (uint64_t(1) << 48) - 1;

using MacAddr = std::array<uint8_t, 6>;

struct AddrRange {
    IpAddress base;
    uint32_t count = 1;
    IpAddress at(uint64_t i) const noexcept { return nth(uint32_t(i % count)); }
    IpAddress nth(uint32_t off) const noexcept;   // base + off (low 32 bits), off < count
    void write_nth(uint8_t* p, uint32_t off) const noexcept;   // nth(off)'s octets at p
};

struct L4PortRange {
    uint16_t base = 0;
    uint32_t count = 1;
    uint16_t at(uint64_t i) const noexcept { return nth(uint32_t(i % count)); }
    uint16_t nth(uint32_t off) const noexcept { return uint16_t(base + off); }
};

enum class L4Proto : uint8_t { udp = 17, tcp_syn = 6 };

struct StreamSpec {
    unsigned id = 0;
    uint16_t port = 0;
    IpFamily family = IpFamily::v4;
    AddrRange src, dst;
    L4PortRange sport{1024, 1}, dport{1024, 1};
    L4Proto proto = L4Proto::udp;
    std::string size_spec = "64";
    std::optional<RateSpec> rate;       // none: share of the global rate
    uint64_t flows = 1;
    std::optional<MacAddr> dmac;        // none: --dst-mac of the port
    std::optional<MacAddr> smac;        // none: the port's MAC
    std::optional<uint32_t> esp_spi;    // ESP with this SA (and the next esp_count - 1)
    uint32_t esp_count = 1;
    uint8_t ttl = 64;
    uint8_t tos = 0;
    std::string text;                   // as given, for the results

    // Smallest frame (incl. FCS) that holds this stream's headers and stamp.
    unsigned min_frame_size() const noexcept;
};

// Where a flow falls in each of its stream's ranges: flow % count of each.
struct FlowPoint {
    uint64_t flow = 0;
    uint32_t src = 0, dst = 0, sport = 0, dport = 0;
};

FlowPoint flow_point(const StreamSpec& s, uint64_t flow) noexcept;

// The flow point of packet `seq` of a stream (flow seq % flows), for a
// caller that asks for one packet after the other: the next packet's point
// is the last one stepped by one, with a compare per range instead of the
// five 64-bit divisions flow_point() makes (the cursor alone took the
// generator from 8.4 to 9.9 Mpps of 64 B into memif). Any other seq is
// computed afresh.
class FlowCursor {
public:
    const FlowPoint& seek(const StreamSpec& s, uint64_t seq) noexcept
    {
        if (valid_ && seq == next_seq_) step(s);
        else p_ = flow_point(s, seq % s.flows);
        valid_ = true;
        next_seq_ = seq + 1;
        return p_;
    }

private:
    void step(const StreamSpec& s) noexcept
    {
        if (++p_.flow == s.flows) {
            p_ = {};
            return;
        }
        auto bump = [](uint32_t& v, uint32_t count) { v = v + 1 == count ? 0 : v + 1; };
        bump(p_.src, s.src.count);
        bump(p_.dst, s.dst.count);
        bump(p_.sport, s.sport.count);
        bump(p_.dport, s.dport.count);
    }

    FlowPoint p_;
    uint64_t next_seq_ = 0;
    bool valid_ = false;
};

std::optional<StreamSpec> parse_stream(std::string_view text, unsigned id, std::string* why);
std::optional<MacAddr> parse_mac(std::string_view s);
std::string mac_to_string(const MacAddr& m);

struct Stamp {
    uint16_t stream = 0;
    uint64_t seq = 0;
    uint64_t tsc = 0;
};

void write_stamp(uint8_t* p, const Stamp& s) noexcept;
bool read_stamp(const uint8_t* p, uint32_t avail, Stamp& out) noexcept;

// Write the IP packet of `flow` (IP header, UDP or TCP SYN header, stamp)
// at `ip`; `ip_len` is the IP total length (>= headers + stamp, checked by
// the caller via min_frame_size). The rest of the payload is left as it is.
// IPv6 UDP and TCP get a real checksum over the whole packet, so `ip` must
// have ip_len readable bytes.
//
// In two steps, for a caller that writes the headers somewhere else first:
// write_ip_headers() writes only the headers and the stamp (it reads
// nothing at `ip`), with the L4 checksum 0; write_l4_checksum() then fills
// the checksum in the packet where it lies, if the stream needs one (TCP,
// and UDP over IPv6).
void write_ip_headers(const StreamSpec& s, const FlowPoint& flow, uint8_t* ip, unsigned ip_len,
                      const Stamp& stamp) noexcept;
void write_l4_checksum(const StreamSpec& s, uint8_t* ip) noexcept;
inline void write_ip_packet(const StreamSpec& s, uint64_t flow, uint8_t* ip, unsigned ip_len,
                            const Stamp& stamp) noexcept
{
    write_ip_headers(s, flow_point(s, flow), ip, ip_len, stamp);
    write_l4_checksum(s, ip);
}

// Octets write_eth() and write_ip_headers() write at the start of a frame.
unsigned header_len(const StreamSpec& s) noexcept;

void write_eth(uint8_t* p, const MacAddr& dst, const MacAddr& src, uint16_t ether_type) noexcept;

// What the receiver needs from a frame. Lengths come from the IP header
// (Ethernet padding is ignored); anything inconsistent is `other`.
struct ParsedFrame {
    enum class Kind : uint8_t { other, arp, ip, esp } kind = Kind::other;
    IpFamily family = IpFamily::v4;
    uint32_t l3 = 0;        // offset of the IP header
    uint32_t l3_len = 0;    // IP total length
    uint8_t proto = 0;      // IPv4 protocol / IPv6 next header
    uint32_t l4 = 0;        // offset of the L4 header
    uint32_t esp = 0;       // offset of the ESP header (after UDP for ESP-in-UDP)
};

ParsedFrame parse_frame(const uint8_t* p, uint32_t len) noexcept;
// For an IP packet at `ip` (IPv4 or IPv6 without extension headers), the
// stamp of a UDP or TCP payload. `len` is the bytes available.
bool stamp_of_ip(const uint8_t* ip, uint32_t len, Stamp& out) noexcept;

} // namespace ravelin::pktgen

// Inbound ESP (RFC 4303 §3.4, ESP-in-UDP RFC 3948), one packet at a time,
// read top to bottom in packet order.
//
// Flow: SA stopped? -> bounds (outer IP length, ESP header, IV, trailer,
// ICV) -> replay check (changes nothing) -> open(): ICV, then decryption ->
// replay update (only now, so forgeries never move the window) -> trailer:
// pad length, padding bytes, next header -> strip to the inner packet
// (tunnel, with RFC 6040 ECN) or rebuild the IP header (transport) -> count,
// check lifetimes. Each failure returns its own DropReason; the caller
// counts and frees.
//
// The SA and its replay window belong to the calling worker (sa.owner).
// Inbound policy checks are the caller's, it has the SPD.
//
// Not handled here: IPv6 transport-mode packets with extension headers
// before ESP (unsupported), and RFC 3948 §3.1.2 transport-mode checksum
// fix-ups for NAT-T (the inner TCP/UDP checksum is left as received).
#include <bit>
#include <cstring>

#include <rte_ip.h>
#include <rte_mbuf.h>

#include "esp.hh"
#include "esp_common.hh"
#include "packet.hh"

namespace ravelin::dp {
namespace {

using namespace esp_detail;

constexpr uint8_t ecn_mask = 0x03;
constexpr uint8_t ecn_not_ect = 0x00;
constexpr uint8_t ecn_ect1 = 0x01;
constexpr uint8_t ecn_ect0 = 0x02;
constexpr uint8_t ecn_ce = 0x03;

// What a decapsulation body knows before it runs. The generic body reads
// the SA's mode and transform sizes per packet and calls the transform
// through its pointer; a gcm kind (sa.hh, EspKind) is tunnel mode with
// AES-GCM-16, so those are constants and the cipher call is direct. One
// body, instantiated for each, keeps the two byte-identical. The outer
// header's family and UDP encapsulation are the packet's own either way.
struct GenericSpec {
    static uint32_t iv_len(const DpSa& sa) noexcept { return sa.xform.iv_len; }
    static uint32_t icv_len(const DpSa& sa) noexcept { return sa.xform.icv_len; }
    static bool tunnel(const DpSa& sa) noexcept { return sa.mode == SaMode::tunnel; }
    static bool open(EspContext& ctx, const DpSa& sa, uint8_t* esp, uint32_t len, uint32_t esn_hi) noexcept
    {
        return sa.xform.open(ctx.mgr, sa.xform, sa.keys, esp, len, esn_hi);
    }
};

// sa.cc's gcm_kind() checks that the transform has exactly these sizes.
template <unsigned KeyBytes, bool Esn>
struct GcmTunnelSpec {
    static constexpr uint32_t iv_len(const DpSa&) noexcept { return 8; }
    static constexpr uint32_t icv_len(const DpSa&) noexcept { return 16; }
    static constexpr bool tunnel(const DpSa&) noexcept { return true; }
    static bool open(EspContext& ctx, const DpSa& sa, uint8_t* esp, uint32_t len, uint32_t esn_hi) noexcept
    {
        return gcm_open<KeyBytes, Esn>(ctx.mgr, sa.xform, sa.keys, esp, len, esn_hi);
    }
};

// What is left once the ESP trailer has been checked.
struct Payload {
    uint32_t offset;   // from the start of the packet
    uint32_t len;
    uint8_t next_header;
};

// Length of the outer IP packet from its own header, so Ethernet padding
// after a short packet never shifts where the ICV is looked for. 0 if the
// header is not a usable IPv4/IPv6 header.
inline uint32_t outer_ip_len(const uint8_t* p, uint32_t data_len) noexcept
{
    if (p[0] >> 4 == 4) return load_be16(p + 2);
    if (p[0] >> 4 == 6 && data_len >= sizeof(rte_ipv6_hdr)) return sizeof(rte_ipv6_hdr) + load_be16(p + 4);
    return 0;
}

inline uint8_t ip_tos(const uint8_t* ip) noexcept
{
    return ip[0] >> 4 == 4 ? ip[1] : uint8_t(ip[0] << 4 | ip[1] >> 4);
}

// After open() succeeded: RFC 4303 §2.4-2.6 trailer.
//
//   ... payload | 1 2 3 ... pad | pad length | next header | (ICV, verified)
//                                              ^ esp + len - 1
//
// The padding (at most 15 octets with the block sizes we use) is compared
// with two 8-octet masked compares when 16 octets from its start are in
// the packet, which they are whenever the ICV is 16 octets; else memcmp.
inline bool padding_ok(const uint8_t* p, uint32_t pad, uint32_t readable) noexcept
{
    if constexpr (std::endian::native == std::endian::little) {
        if (likely(pad <= 16 && readable >= 16)) {
            uint64_t a0, a1, b0, b1;
            std::memcpy(&a0, p, 8);
            std::memcpy(&a1, p + 8, 8);
            std::memcpy(&b0, pad_pattern.data(), 8);
            std::memcpy(&b1, pad_pattern.data() + 8, 8);
            // Octet i of memory is bits 8i..8i+7 of a little-endian word.
            const uint64_t m0 = pad >= 8 ? ~uint64_t(0) : (uint64_t(1) << (pad * 8)) - 1;
            const uint64_t m1 = pad <= 8 ? 0 : pad >= 16 ? ~uint64_t(0) : (uint64_t(1) << ((pad - 8) * 8)) - 1;
            return (((a0 ^ b0) & m0) | ((a1 ^ b1) & m1)) == 0;
        }
    }
    return std::memcmp(p, pad_pattern.data(), pad) == 0;
}

inline DropReason read_trailer(const uint8_t* esp, uint32_t len, uint32_t hdr, uint32_t icv_len,
                               uint32_t esp_offset, Payload& out) noexcept
{
    const uint32_t pad = esp[len - 2];
    if (unlikely(pad + trailer_fixed > len - hdr)) return DropReason::bad_padding;
    out.len = len - hdr - trailer_fixed - pad;
    if (unlikely(!padding_ok(esp + hdr + out.len, pad, pad + trailer_fixed + icv_len)))
        return DropReason::bad_padding;
    out.offset = esp_offset + hdr;
    out.next_header = esp[len - 1];
    return DropReason::none;
}

// Write back an ECN field that RFC 6040 decapsulation changed.
inline void set_inner_tos(uint8_t* ip, uint8_t tos) noexcept
{
    if (ip[0] >> 4 == 4) {
        auto* h = reinterpret_cast<rte_ipv4_hdr*>(ip);
        h->type_of_service = tos;
        h->hdr_checksum = 0;
        h->hdr_checksum = rte_ipv4_cksum(h);
    } else {
        ip[0] = uint8_t((ip[0] & 0xf0) | tos >> 4);
        ip[1] = uint8_t((ip[1] & 0x0f) | tos << 4);
    }
}

// Tunnel mode: keep exactly the inner packet. Its length comes from its own
// header: it may be shorter than the ESP payload (TFC padding, RFC 4303
// §2.7). The header checks are all that validate_ip() makes, so `info` is
// filled here and the caller does not parse the inner header again.
//
//   | outer IP | [UDP] | ESP | IV | inner IP packet | [TFC] | trailer | ICV |
//                                  ^ new data start
[[gnu::always_inline]] inline DropReason decap_tunnel(uint8_t* pkt, rte_mbuf* m, const Payload& pl,
                                                      IpInfo& info) noexcept
{
    uint8_t* inner = pkt + pl.offset;
    uint32_t inner_len;
    uint8_t old_tos;
    if (likely(pl.next_header == ipproto_ipip)) {
        if (unlikely(pl.len < sizeof(rte_ipv4_hdr) || inner[0] >> 4 != 4)) return DropReason::bad_ip_header;
        const uint32_t hl = (inner[0] & 0x0fu) * 4u;
        inner_len = load_be16(inner + 2);
        if (unlikely(hl < sizeof(rte_ipv4_hdr) || hl > inner_len || inner_len > pl.len))
            return DropReason::bad_ip_header;
        old_tos = inner[1];
        packet_detail::set_info_v4(info, reinterpret_cast<const rte_ipv4_hdr*>(inner), hl);
    } else if (pl.next_header == ipproto_ipv6) {
        if (unlikely(pl.len < sizeof(rte_ipv6_hdr) || inner[0] >> 4 != 6)) return DropReason::bad_ip_header;
        inner_len = sizeof(rte_ipv6_hdr) + load_be16(inner + 4);
        if (unlikely(inner_len > pl.len)) return DropReason::bad_ip_header;
        old_tos = uint8_t(inner[0] << 4 | inner[1] >> 4);
        packet_detail::set_info_v6(info, reinterpret_cast<const rte_ipv6_hdr*>(inner));
    } else {
        return DropReason::bad_next_header;
    }
    uint8_t tos = old_tos;
    if (unlikely(!ecn_decapsulate(ip_tos(pkt), tos))) return DropReason::ecn_not_ect;
    if (unlikely(tos != old_tos)) set_inner_tos(inner, tos);
    // rte_pktmbuf_adj() + rte_pktmbuf_trim() on the one segment (checked by
    // the caller), whose bounds open_packet() has checked.
    m->data_off = uint16_t(m->data_off + pl.offset);
    m->pkt_len -= m->data_len - inner_len;
    m->data_len = uint16_t(inner_len);
    return DropReason::none;
}

// Transport mode (RFC 4303 §3.1.1): move the IP header up against the
// payload and give it back the next header from the trailer.
//
//   | IP hdr | [UDP] | ESP | IV | payload | trailer | ICV |
//                        | IP hdr | payload |
DropReason decap_transport(uint8_t* pkt, rte_mbuf* m, uint32_t esp_offset, const Payload& pl) noexcept
{
    const bool v4 = pkt[0] >> 4 == 4;
    const uint32_t hl = v4 ? (pkt[0] & 0x0fu) * 4u : uint32_t(sizeof(rte_ipv6_hdr));
    const uint8_t proto = v4 ? pkt[9] : pkt[6];
    // ESP right after the IP header, or after a UDP header there; anything
    // else (IPv6 extension headers) we do not rebuild.
    const bool plain = proto == ipproto_esp && esp_offset == hl;
    const bool udp = proto == ipproto_udp && esp_offset == hl + 8;
    if (unlikely(!plain && !udp)) return DropReason::unsupported;

    uint8_t* nip = pkt + pl.offset - hl;
    std::memmove(nip, pkt, hl);
    if (v4) {
        auto* h = reinterpret_cast<rte_ipv4_hdr*>(nip);
        h->next_proto_id = pl.next_header;
        h->total_length = net16(uint16_t(hl + pl.len));
        h->hdr_checksum = 0;
        h->hdr_checksum = rte_ipv4_cksum(h);
    } else {
        auto* h = reinterpret_cast<rte_ipv6_hdr*>(nip);
        h->proto = pl.next_header;
        h->payload_len = net16(uint16_t(pl.len));
    }
    rte_pktmbuf_adj(m, uint16_t(pl.offset - hl));
    rte_pktmbuf_trim(m, uint16_t(m->data_len - (hl + pl.len)));
    return DropReason::none;
}

// Bounds, replay, ICV, replay update, trailer.
template <typename Spec>
inline DropReason open_packet(EspContext& ctx, DpSa& sa, uint8_t* pkt, uint32_t ip_len, uint32_t esp_offset,
                              Payload& pl) noexcept
{
    const uint32_t icv_len = Spec::icv_len(sa);
    const uint32_t hdr = esp_hdr_len + Spec::iv_len(sa);
    if (unlikely(esp_offset > ip_len || ip_len - esp_offset < hdr + trailer_fixed + icv_len))
        return DropReason::runt;
    uint8_t* esp = pkt + esp_offset;
    const uint32_t len = ip_len - esp_offset - icv_len;   // up to the ICV

    SeqNum seq;
    if (unlikely(!sa.replay.check(load_be32(esp + 4), seq))) return DropReason::replay;
    if (unlikely(!Spec::open(ctx, sa, esp, len, uint32_t(seq >> 32)))) return DropReason::auth_failed;
    if (unlikely(!sa.replay.update(seq))) return DropReason::replay;
    return read_trailer(esp, len, hdr, icv_len, esp_offset, pl);
}

template <typename Spec>
inline DropReason decap(EspContext& ctx, DpSa& sa, rte_mbuf* m, uint32_t esp_offset, IpInfo& inner) noexcept
{
    if (unlikely(sa.state.hard_reached.load(std::memory_order_relaxed))) return sa_stopped(ctx, sa);
    if (unlikely(m->nb_segs != 1)) return DropReason::multi_segment;
    uint8_t* pkt = rte_pktmbuf_mtod(m, uint8_t*);
    const uint32_t data_len = m->data_len;
    if (unlikely(data_len < sizeof(rte_ipv4_hdr))) return DropReason::runt;
    const uint32_t ip_len = outer_ip_len(pkt, data_len);
    if (unlikely(ip_len == 0)) return DropReason::bad_ip_header;
    if (unlikely(ip_len > data_len)) return DropReason::runt;

    Payload pl;
    if (DropReason r = open_packet<Spec>(ctx, sa, pkt, ip_len, esp_offset, pl); r != DropReason::none) return r;
    if (likely(Spec::tunnel(sa))) {
        if (DropReason r = decap_tunnel(pkt, m, pl, inner); unlikely(r != DropReason::none)) return r;
        account(ctx, sa, m->data_len);
        ctx.counters->stats.decrypted.inc();
        return DropReason::none;
    }
    if (DropReason r = decap_transport(pkt, m, esp_offset, pl); unlikely(r != DropReason::none)) return r;
    account(ctx, sa, m->data_len);
    ctx.counters->stats.decrypted.inc();
    // The rebuilt header's IpInfo for the caller.
    return validate_ip(m, inner);
}

// flatten: the whole body in one function, down to the IPsec-MB call (with
// LTO, gcm_open too); the cold paths stay out of line (noinline).
template <unsigned KeyBytes, bool Esn>
[[gnu::flatten]] DropReason decap_gcm_tunnel(EspContext& ctx, DpSa& sa, rte_mbuf* m, uint32_t esp_offset,
                                             IpInfo& inner) noexcept
{
    return decap<GcmTunnelSpec<KeyBytes, Esn>>(ctx, sa, m, esp_offset, inner);
}

} // namespace

// RFC 6040 §4.2, normal mode: what the inner ECN field becomes.
//
//   inner \ outer | Not-ECT  ECT(0)  ECT(1)  CE
//   --------------+----------------------------------
//   Not-ECT       | Not-ECT  Not-ECT Not-ECT drop
//   ECT(0)        | ECT(0)   ECT(0)  ECT(1)  CE
//   ECT(1)        | ECT(1)   ECT(1)  ECT(1)  CE
//   CE            | CE       CE      CE      CE
bool ecn_decapsulate(uint8_t outer_tos, uint8_t& inner_tos) noexcept
{
    const uint8_t o = outer_tos & ecn_mask, i = inner_tos & ecn_mask;
    if (o == ecn_not_ect || o == ecn_ect0) return true;
    if (i == ecn_not_ect) return o != ecn_ce;
    if (o == ecn_ce) inner_tos |= ecn_ce;
    else if (i == ecn_ect0) inner_tos = uint8_t((inner_tos & ~ecn_mask) | ecn_ect1);
    return true;
}

// Not inlined into esp_decap(), which then is only a jump to the SA's body
// (no frame of its own to set up per packet).
[[gnu::noinline]] DropReason esp_decap_generic(EspContext& ctx, DpSa& sa, rte_mbuf* m, uint32_t esp_offset,
                                               IpInfo& inner) noexcept
{
    return decap<GenericSpec>(ctx, sa, m, esp_offset, inner);
}

DropReason esp_decap(EspContext& ctx, DpSa& sa, rte_mbuf* m, uint32_t esp_offset, IpInfo& inner) noexcept
{
    switch (sa.decap_kind) {
    case EspKind::gcm256_esn: return decap_gcm_tunnel<32, true>(ctx, sa, m, esp_offset, inner);
    case EspKind::gcm256: return decap_gcm_tunnel<32, false>(ctx, sa, m, esp_offset, inner);
    case EspKind::gcm128_esn: return decap_gcm_tunnel<16, true>(ctx, sa, m, esp_offset, inner);
    case EspKind::gcm128: return decap_gcm_tunnel<16, false>(ctx, sa, m, esp_offset, inner);
    case EspKind::generic: break;
    }
    return esp_decap_generic(ctx, sa, m, esp_offset, inner);
}

} // namespace ravelin::dp

// Outbound ESP (RFC 4303 §3.3, ESP-in-UDP RFC 3948): a burst's packets,
// each with its SA, each packet in turn.
//
// Flow: SA stopped? -> sequence number left? -> look at the inner IP header
// -> sizes: padding, MTU, head/tailroom (all checked before the packet is
// touched, so a refused packet is still the caller's original and can be
// quoted in an ICMP error) -> take the sequence number -> append trailer,
// prepend headers -> seal() (encrypts and writes the ICV) -> fill the outer
// header's per-packet fields -> count, check lifetimes. The body is
// chosen once per stretch of SAs of one kind, and an SA's counters are
// written once per run of its packets.
//
// The SA belongs to the calling worker (sa.owner), so the sequence number
// and counters are plain single-writer updates. Nothing here allocates,
// locks or logs; the only indirect call is the transform chosen at install.
//
// Outer IPv4 identification: the low 16 bits of the ESP sequence number. It
// is unique per SA for 65536 packets, exactly what a per-SA counter would
// give (RFC 6864 §4.1), and costs nothing to keep.
//
// ESP-in-UDP over IPv6 carries a real UDP checksum (RFC 8200 §8.1: zero is
// only allowed under RFC 6935/6936 conditions both ends would have to agree
// on, which IKE does not negotiate). It is computed in software after
// sealing; a NIC offload would make it free and can replace it later.
#include <cstring>

#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include "esp.hh"
#include "esp_common.hh"
#include "packet.hh"

namespace ravelin::dp {
namespace {

using namespace esp_detail;

// What an encapsulation body knows before it runs. The generic body reads
// the SA's mode, outer family, UDP encapsulation and transform sizes per
// packet and calls the transform through its pointer; a gcm kind (sa.hh,
// EspKind) is tunnel mode over IPv4 without UDP with AES-GCM-16, so all of
// that is constant and the cipher call is direct. One body, instantiated
// for each, keeps the two byte-identical.
struct GenericSpec {
    static uint32_t iv_len(const DpSa& sa) noexcept { return sa.xform.iv_len; }
    static uint32_t icv_len(const DpSa& sa) noexcept { return sa.xform.icv_len; }
    static uint32_t block_len(const DpSa& sa) noexcept { return sa.xform.block_len; }
    static bool esn(const DpSa& sa) noexcept { return sa.xform.esn; }
    static uint32_t outer_len(const DpSa& sa) noexcept { return sa.outer_len; }
    static bool outer_v4(const DpSa& sa) noexcept { return sa.outer_family == IpFamily::v4; }
    static bool udp_encap(const DpSa& sa) noexcept { return sa.udp_encap; }
    static constexpr bool trailers_laid = false;
    static void seal(EspContext& ctx, const DpSa& sa, uint8_t* esp, uint32_t len, uint32_t esn_hi) noexcept
    {
        sa.xform.seal(ctx.mgr, sa.xform, sa.keys, esp, len, esn_hi);
    }
};

// sa.cc's gcm_kind() checks that the transform has exactly these sizes.
template <unsigned KeyBytes, bool Esn>
struct GcmTunnel4Spec {
    static constexpr uint32_t iv_len(const DpSa&) noexcept { return 8; }
    static constexpr uint32_t icv_len(const DpSa&) noexcept { return 16; }
    static constexpr uint32_t block_len(const DpSa&) noexcept { return 4; }
    static constexpr bool esn(const DpSa&) noexcept { return Esn; }
    static constexpr uint32_t outer_len(const DpSa&) noexcept { return sizeof(rte_ipv4_hdr); }
    static constexpr bool outer_v4(const DpSa&) noexcept { return true; }
    static constexpr bool udp_encap(const DpSa&) noexcept { return false; }
    static constexpr bool trailers_laid = true;   // lay_trailers() before the burst
    static void seal(EspContext& ctx, const DpSa& sa, uint8_t* esp, uint32_t len, uint32_t esn_hi) noexcept
    {
        gcm_seal<KeyBytes, Esn>(ctx.mgr, sa.xform, sa.keys, esp, len, esn_hi);
    }
};

// What encapsulation needs from the packet before it is modified.
struct Plan {
    uint32_t payload_len;   // octets that go between the IV and the padding
    uint32_t pad;
    uint32_t tail;          // padding + pad length + next header + ICV
    uint32_t front;         // octets inserted in front of the payload
    uint32_t total;         // resulting IP packet length
    uint8_t next_header;
};

// RFC 4303 §2.4: pad so that payload + pad length + next header is a
// multiple of the block size (a power of two: 4, 8 or 16).
template <typename Spec>
inline Plan plan(const DpSa& sa, uint32_t ip_len, uint32_t payload_len, uint32_t front_extra, uint8_t nh) noexcept
{
    Plan p;
    p.payload_len = payload_len;
    p.pad = (0u - (payload_len + trailer_fixed)) & (Spec::block_len(sa) - 1u);
    p.tail = p.pad + trailer_fixed + Spec::icv_len(sa);
    p.front = front_extra + esp_hdr_len + Spec::iv_len(sa);
    p.total = ip_len + p.front + p.tail;
    p.next_header = nh;
    return p;
}

inline DropReason check_room(const DpSa& sa, const rte_mbuf* m, const Plan& p) noexcept
{
    if (unlikely(p.total > sa.outer_mtu)) return DropReason::mtu_exceeded;
    if (unlikely(rte_pktmbuf_headroom(m) < p.front + eth_hdr_len || rte_pktmbuf_tailroom(m) < p.tail))
        return DropReason::no_buffer_space;
    return DropReason::none;
}

// rte_pktmbuf_prepend/append for a single-segment mbuf whose head- and
// tailroom check_room() has already checked: no second check, no walk to
// the last segment.
inline uint8_t* prepend_checked(rte_mbuf* m, uint32_t len) noexcept
{
    m->data_off = uint16_t(m->data_off - len);
    m->data_len = uint16_t(m->data_len + len);
    m->pkt_len += len;
    return rte_pktmbuf_mtod(m, uint8_t*);
}
inline uint8_t* append_checked(rte_mbuf* m, uint32_t len) noexcept
{
    uint8_t* t = rte_pktmbuf_mtod_offset(m, uint8_t*, m->data_len);
    m->data_len = uint16_t(m->data_len + len);
    m->pkt_len += len;
    return t;
}

// The outer header template, with a fixed-size copy for each size an SA
// can have (sa.cc), so none of them is a libc call.
inline void copy_outer(uint8_t* dst, const DpSa& sa, uint32_t outer_len) noexcept
{
    switch (outer_len) {
    case 0: break;
    case 8: std::memcpy(dst, sa.outer_template, 8); break;
    case 20: std::memcpy(dst, sa.outer_template, 20); break;
    case 28: std::memcpy(dst, sa.outer_template, 28); break;
    case 40: std::memcpy(dst, sa.outer_template, 40); break;
    case 48: std::memcpy(dst, sa.outer_template, 48); break;
    default: std::memcpy(dst, sa.outer_template, outer_len); break;
    }
}

// The ESP trailer in front of the ICV: padding 1 2 3 ..., pad length, next
// header. Padding is at most 15 octets (block_len <= 16). With a tail of 16
// or more (always with a 16-octet ICV) one fixed 16-octet copy writes it;
// what lands past the padding is overwritten by the last two octets and
// by the ICV.
inline void write_trailer(uint8_t* t, uint32_t pad, uint32_t tail, uint8_t next_header) noexcept
{
    if (likely(tail >= 16)) std::memcpy(t, pad_pattern.data(), 16);
    else std::memcpy(t, pad_pattern.data(), pad);
    t[pad] = uint8_t(pad);
    t[pad + 1] = next_header;
}

// Appends the trailer and seals. `esp` points at the (already reserved)
// ESP header. Returns the sequence number used.
//
//   | SPI | Seq | IV | payload | 1 2 3 .. pad | pad len | next hdr | ICV |
template <typename Spec>
inline SeqNum seal_packet(EspContext& ctx, DpSa& sa, rte_mbuf* m, uint8_t* esp, const Plan& p) noexcept
{
    const SeqNum seq = ++sa.state.seq;
    uint8_t* t = append_checked(m, p.tail);
    if constexpr (!Spec::trailers_laid) write_trailer(t, p.pad, p.tail, p.next_header);
    std::memcpy(esp, &sa.spi_be, 4);
    store_be32(esp + 4, uint32_t(seq));
    const uint32_t len = esp_hdr_len + Spec::iv_len(sa) + p.payload_len + p.pad + trailer_fixed;
    Spec::seal(ctx, sa, esp, len, uint32_t(seq >> 32));
    return seq;
}

// ESP-in-UDP length, and over IPv6 the checksum, once the payload is final.
inline void finish_udp(uint8_t* udp_p, const uint8_t* ip6, uint32_t udp_len) noexcept
{
    auto* udp = reinterpret_cast<rte_udp_hdr*>(udp_p);
    udp->dgram_len = net16(uint16_t(udp_len));
    if (ip6) {
        udp->dgram_cksum = 0;
        udp->dgram_cksum = rte_ipv6_udptcp_cksum(reinterpret_cast<const rte_ipv6_hdr*>(ip6), udp);
    }
}

// Outer IPv4 per-packet fields (RFC 791; DSCP/ECN RFC 2983, RFC 6040 §4.1
// normal mode: the ECN field is copied as it is, CE included).
//
// The header checksum is the template's precomputed sum (sa.cc) plus the
// four per-packet fields, in network-order 16-bit words: the same value
// rte_ipv4_cksum() would compute over the whole header.
inline void finish_outer_v4(uint8_t* o, uint16_t template_sum, uint32_t total, SeqNum seq, uint8_t tos,
                            uint8_t df_bit) noexcept
{
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(o);
    static_assert(RTE_IPV4_HDR_DF_FLAG == 0x40 << 8);
    const uint16_t frag = uint16_t(df_bit << 8);   // DF (0x40 or 0), offset 0
    ip->type_of_service = tos;
    ip->total_length = net16(uint16_t(total));
    ip->packet_id = net16(uint16_t(seq));
    ip->fragment_offset = net16(frag);
    uint32_t sum = uint32_t(template_sum) + tos + uint16_t(total) + uint16_t(seq) + frag;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    ip->hdr_checksum = net16(uint16_t(~sum));
}

inline void finish_outer_v6(uint8_t* o, uint32_t total, uint8_t tc) noexcept
{
    auto* ip = reinterpret_cast<rte_ipv6_hdr*>(o);
    ip->vtc_flow = net32(6u << 28 | uint32_t(tc) << 20);
    ip->payload_len = net16(uint16_t(total - sizeof(rte_ipv6_hdr)));
}

// Tunnel mode: the whole inner packet is the payload.
//
//   before: | inner IP packet |
//   after:  | outer IP | [UDP] | ESP | IV | inner IP packet | trailer | ICV |
template <typename Spec>
inline DropReason encap_tunnel(EspContext& ctx, DpSa& sa, rte_mbuf* m, RunAccount& acct) noexcept
{
    const uint8_t* inner = rte_pktmbuf_mtod(m, const uint8_t*);
    const uint32_t inner_len = m->data_len;
    if (unlikely(inner_len < sizeof(rte_ipv4_hdr))) return DropReason::runt;
    uint8_t nh, tos;
    uint8_t inner_df;   // DF as the IPv4 flags octet's 0x40 bit (other bits masked off below)
    if (likely(inner[0] >> 4 == 4)) {
        nh = ipproto_ipip;
        tos = inner[1];
        inner_df = inner[6];
    } else if (inner[0] >> 4 == 6 && inner_len >= sizeof(rte_ipv6_hdr)) {
        nh = ipproto_ipv6;
        tos = uint8_t(inner[0] << 4 | inner[1] >> 4);
        inner_df = 0x40;   // IPv6 is never fragmented on the way
    } else {
        return DropReason::bad_ip_header;
    }
    const uint32_t outer_len = Spec::outer_len(sa);
    const Plan p = plan<Spec>(sa, inner_len, inner_len, outer_len, nh);
    if (DropReason r = check_room(sa, m, p); r != DropReason::none) return r;

    uint8_t* outer = prepend_checked(m, p.front);
    copy_outer(outer, sa, outer_len);
    const SeqNum seq = seal_packet<Spec>(ctx, sa, m, outer + outer_len, p);
    const uint8_t out_tos = tos & sa.tos_mask;
    if (Spec::outer_v4(sa)) {
        finish_outer_v4(outer, sa.outer_v4_sum, p.total, seq, out_tos, uint8_t((inner_df & sa.df_keep) | sa.df_set));
        if (Spec::udp_encap(sa)) finish_udp(outer + sizeof(rte_ipv4_hdr), nullptr, p.total - sizeof(rte_ipv4_hdr));
    } else {
        finish_outer_v6(outer, p.total, out_tos);
        if (Spec::udp_encap(sa)) finish_udp(outer + sizeof(rte_ipv6_hdr), outer, p.total - sizeof(rte_ipv6_hdr));
    }
    acct.add(ctx, sa, inner_len);
    return DropReason::none;
}

// Transport mode inserts ESP right after the IPv6 header, so it only takes
// packets with no extension header to walk (RFC 8200 §4) and no ESP or AH
// already there.
constexpr bool ipv6_needs_walk(uint8_t nh)
{
    return is_ipv6_extension(nh) || nh == 50 || nh == 51;
}

// Transport mode (RFC 4303 §3.1.1): ESP goes after the packet's IP header.
//
//   before: | IP hdr | payload |
//   after:  | IP hdr | [UDP] | ESP | IV | payload | trailer | ICV |
//
// Only the IP header (20-60 octets) moves; the payload stays where it is.
DropReason encap_transport(EspContext& ctx, DpSa& sa, rte_mbuf* m, RunAccount& acct) noexcept
{
    const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*);
    const uint32_t len = m->data_len;
    if (unlikely(len < sizeof(rte_ipv4_hdr))) return DropReason::runt;
    const bool v4 = ip[0] >> 4 == 4;
    uint32_t hl;
    uint8_t proto;
    if (v4) {
        hl = (ip[0] & 0x0fu) * 4u;
        if (unlikely(hl < sizeof(rte_ipv4_hdr) || hl > len)) return DropReason::bad_ip_header;
        proto = ip[9];
    } else if (ip[0] >> 4 == 6 && len >= sizeof(rte_ipv6_hdr)) {
        hl = sizeof(rte_ipv6_hdr);
        proto = ip[6];
        if (unlikely(ipv6_needs_walk(proto))) return DropReason::unsupported;
    } else {
        return DropReason::bad_ip_header;
    }
    const Plan p = plan<GenericSpec>(sa, len, len - hl, sa.outer_len, proto);
    if (DropReason r = check_room(sa, m, p); r != DropReason::none) return r;

    uint8_t* nip = prepend_checked(m, p.front);
    std::memmove(nip, nip + p.front, hl);
    copy_outer(nip + hl, sa, sa.outer_len);   // UDP header or nothing
    seal_packet<GenericSpec>(ctx, sa, m, nip + hl + sa.outer_len, p);
    const uint8_t out_proto = sa.udp_encap ? ipproto_udp : ipproto_esp;
    if (v4) {
        auto* h = reinterpret_cast<rte_ipv4_hdr*>(nip);
        h->next_proto_id = out_proto;
        h->total_length = rte_cpu_to_be_16(uint16_t(p.total));
        h->hdr_checksum = 0;
        h->hdr_checksum = rte_ipv4_cksum(h);
        if (sa.udp_encap) finish_udp(nip + hl, nullptr, p.total - hl);
    } else {
        auto* h = reinterpret_cast<rte_ipv6_hdr*>(nip);
        h->proto = out_proto;
        h->payload_len = rte_cpu_to_be_16(uint16_t(p.total - hl));
        if (sa.udp_encap) finish_udp(nip + hl, nip, p.total - hl);
    }
    acct.add(ctx, sa, len);
    return DropReason::none;
}

// RFC 4303 §3.3.3: the sequence number must not cycle. Stop the SA once the
// control plane has been told; until then keep dropping and retrying.
[[gnu::cold, gnu::noinline]] DropReason seq_exhausted(EspContext& ctx, DpSa& sa) noexcept
{
    if (raise_event(ctx, sa, EventType::seq_exhausted)) sa.state.hard_reached.store(true, std::memory_order_relaxed);
    return DropReason::seq_exhausted;
}

// The checks before any body: SA stopped, one segment, sequence number left.
template <typename Spec>
inline DropReason encap_checks(EspContext& ctx, DpSa& sa, const rte_mbuf* m, RunAccount& acct) noexcept
{
    if (unlikely(sa.state.hard_reached.load(std::memory_order_relaxed))) return sa_stopped(ctx, sa);
    if (unlikely(m->nb_segs != 1)) return DropReason::multi_segment;
    // Without ESN the last usable number is 2^32 - 1, with ESN 2^64 - 1.
    const SeqNum last = Spec::esn(sa) ? UINT64_MAX : UINT32_MAX;
    if (unlikely(sa.state.seq >= last)) {
        acct.flush();   // the event carries the run's packets so far
        return seq_exhausted(ctx, sa);
    }
    return DropReason::none;
}

// Tunnel mode: every packet's trailer, written before the first packet of
// the burst is sealed. Its last octets are in the final block the cipher
// reads, with one wide load; octet stores just before that load cannot be
// forwarded to it, and the load would wait for them to reach the cache
// (some 20 cycles a packet at 64 octets). Written ahead, they are there.
// The trailer lands in the tailroom after the inner packet, where
// encap_tunnel() appends it; a packet without room for it is dropped there
// (check_room()), and a packet it drops for another reason (a runt, a
// stopped SA) keeps octets in its tailroom, which no one reads.
template <typename Spec>
inline void lay_trailers(DpSa* const* sas, rte_mbuf* const* ms, uint16_t n) noexcept
{
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = ms[i];
        uint8_t* inner = rte_pktmbuf_mtod(m, uint8_t*);
        const uint32_t len = m->data_len;
        const Plan p = plan<Spec>(*sas[i], len, len, 0, inner[0] >> 4 == 6 ? ipproto_ipv6 : ipproto_ipip);
        if (unlikely(rte_pktmbuf_tailroom(m) < p.tail)) continue;
        write_trailer(inner + len, p.pad, p.tail, p.next_header);
    }
}

// Packets of SAs of one kind, in order, through one body
// (`body(sa, m, acct)`, after encap_checks). Consecutive packets of one SA
// are counted once (RunAccount). The keys of the packet `ahead` places on
// are fetched while this one is sealed, if its SA is another
// (sa_prefetch_keys).
template <typename Spec, typename Body>
inline void encap_runs(EspContext& ctx, DpSa* const* sas, rte_mbuf* const* ms, uint16_t n, DropReason* result,
                       Body body) noexcept
{
    if constexpr (Spec::trailers_laid) lay_trailers<Spec>(sas, ms, n);
    constexpr uint16_t ahead = 2;
    auto fetch_keys = [&](uint16_t k) {   // k >= 1: a packet whose SA is not the one before's
        if (k < n && sas[k] != sas[k - 1]) sa_prefetch_keys(sas[k], ms[k]->data_len);
    };
    if (n) sa_prefetch_keys(sas[0], ms[0]->data_len);
    for (uint16_t k = 1; k < ahead; ++k) fetch_keys(k);
    uint32_t sealed = 0;
    for (uint16_t i = 0; i < n;) {
        DpSa& sa = *sas[i];
        RunAccount acct(sa.state);
        do {
            fetch_keys(uint16_t(i + ahead));
            DropReason r = encap_checks<Spec>(ctx, sa, ms[i], acct);
            if (likely(r == DropReason::none)) r = body(sa, ms[i], acct);
            result[i] = r;
        } while (++i < n && sas[i] == &sa);
        sealed += acct.finish(ctx);
    }
    ctx.counters->stats.encrypted.inc(sealed);
}

// flatten: the whole body in one function, down to the IPsec-MB call (with
// LTO, gcm_seal too); the cold paths stay out of line (noinline).
template <unsigned KeyBytes, bool Esn>
[[gnu::flatten]] void encap_runs_gcm_tunnel4(EspContext& ctx, DpSa* const* sas, rte_mbuf* const* ms, uint16_t n,
                                             DropReason* result) noexcept
{
    using Spec = GcmTunnel4Spec<KeyBytes, Esn>;
    encap_runs<Spec>(ctx, sas, ms, n, result, [&](DpSa& sa, rte_mbuf* m, RunAccount& acct) {
        return encap_tunnel<Spec>(ctx, sa, m, acct);
    });
}

// Not inlined into esp_encap_burst(), which then is only a jump to the
// kind's body (no frame of its own to set up).
[[gnu::noinline]] void encap_runs_generic(EspContext& ctx, DpSa* const* sas, rte_mbuf* const* ms, uint16_t n,
                                          DropReason* result) noexcept
{
    encap_runs<GenericSpec>(ctx, sas, ms, n, result, [&](DpSa& sa, rte_mbuf* m, RunAccount& acct) {
        return sa.mode == SaMode::tunnel ? encap_tunnel<GenericSpec>(ctx, sa, m, acct)
                                         : encap_transport(ctx, sa, m, acct);
    });
}

void encap_kind_runs(EspKind kind, EspContext& ctx, DpSa* const* sas, rte_mbuf* const* ms, uint16_t n,
                     DropReason* result) noexcept
{
    switch (kind) {
    case EspKind::gcm256_esn: return encap_runs_gcm_tunnel4<32, true>(ctx, sas, ms, n, result);
    case EspKind::gcm256: return encap_runs_gcm_tunnel4<32, false>(ctx, sas, ms, n, result);
    case EspKind::gcm128_esn: return encap_runs_gcm_tunnel4<16, true>(ctx, sas, ms, n, result);
    case EspKind::gcm128: return encap_runs_gcm_tunnel4<16, false>(ctx, sas, ms, n, result);
    case EspKind::generic: break;
    }
    encap_runs_generic(ctx, sas, ms, n, result);
}

} // namespace

void esp_encap_burst(EspContext& ctx, DpSa* const* sas, rte_mbuf* const* ms, uint16_t n, DropReason* result) noexcept
{
    // Stretches of SAs of one kind (with one set of algorithms, the whole list).
    for (uint16_t i = 0; i < n;) {
        const EspKind kind = sas[i]->encap_kind;
        uint16_t end = uint16_t(i + 1);
        while (end < n && (sas[end] == sas[end - 1] || sas[end]->encap_kind == kind)) ++end;
        encap_kind_runs(kind, ctx, sas + i, ms + i, uint16_t(end - i), result + i);
        i = end;
    }
}

DropReason esp_encap(EspContext& ctx, DpSa& sa, rte_mbuf* m) noexcept
{
    DpSa* sas[1] = {&sa};
    DropReason r;
    encap_kind_runs(sa.encap_kind, ctx, sas, &m, 1, &r);
    return r;
}

DropReason esp_encap_generic(EspContext& ctx, DpSa& sa, rte_mbuf* m) noexcept
{
    DpSa* sas[1] = {&sa};
    DropReason r;
    encap_runs_generic(ctx, sas, &m, 1, &r);
    return r;
}

} // namespace ravelin::dp

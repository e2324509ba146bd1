// Building and freeing data-plane SAs.
//
// Flow: sa_create() runs on the lcore that applies SA commands, never on a
// worker's fast path. It checks the descriptor, allocates a cache-aligned
// DpSa from hugepage memory, derives the transform and expanded keys, and
// precomputes the outer header so esp_encap() only fills in the per-packet
// fields (lengths, id, TOS/TC, DF, checksums). sa_free() runs after the RCU
// grace period, when no worker can still see the SA; it wipes the keys.
//
// outer_template holds
//   tunnel mode:    outer IPv4 (20) or IPv6 (40) header, then the UDP header
//                   (8) with ESP-in-UDP; outer_len = 20, 28, 40 or 48
//   transport mode: only the UDP header with ESP-in-UDP (outer_len = 8),
//                   inserted after the packet's own IP header; else empty
#include "sa.hh"

#include <cstring>
#include <new>

#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_malloc.h>
#include <rte_udp.h>

namespace ravelin::dp {
namespace {

constexpr uint8_t ipproto_esp = 50;
constexpr uint8_t ipproto_udp = 17;
constexpr uint8_t outer_ttl = 64;
constexpr unsigned esp_hdr_len = 8;

// RFC 3948 §2.1: UDP source and destination are the NAT-T ports. The
// length is set per packet; the IPv4 checksum stays 0 (RFC 3948 §2.1
// allows it for ESP-in-UDP), IPv6 gets a real one per packet (esp_out.cc).
void build_udp(uint8_t* p, const SaDescriptor& d)
{
    auto* udp = reinterpret_cast<rte_udp_hdr*>(p);
    udp->src_port = rte_cpu_to_be_16(d.encap_local_port);
    udp->dst_port = rte_cpu_to_be_16(d.encap_remote_port);
    udp->dgram_len = 0;
    udp->dgram_cksum = 0;
}

// Outer IPv4 header (RFC 791) without the per-packet fields.
unsigned build_ipv4(uint8_t* p, const SaDescriptor& d)
{
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(p);
    ip->version_ihl = 0x45;
    ip->time_to_live = outer_ttl;
    ip->next_proto_id = d.udp_encap ? ipproto_udp : ipproto_esp;
    ip->src_addr = rte_cpu_to_be_32(d.local.v4_host());
    ip->dst_addr = rte_cpu_to_be_32(d.remote.v4_host());
    return sizeof(rte_ipv4_hdr);
}

// Outer IPv6 header (RFC 8200): version 6, traffic class and flow label 0
// until a packet sets the class.
unsigned build_ipv6(uint8_t* p, const SaDescriptor& d)
{
    auto* ip = reinterpret_cast<rte_ipv6_hdr*>(p);
    ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
    ip->proto = d.udp_encap ? ipproto_udp : ipproto_esp;
    ip->hop_limits = outer_ttl;
    std::memcpy(ip->src_addr, d.local.bytes.data(), 16);
    std::memcpy(ip->dst_addr, d.remote.bytes.data(), 16);
    return sizeof(rte_ipv6_hdr);
}

void build_template(DpSa& sa, const SaDescriptor& d)
{
    unsigned n = 0;
    if (d.mode == SaMode::tunnel)
        n = d.local.family == IpFamily::v4 ? build_ipv4(sa.outer_template, d) : build_ipv6(sa.outer_template, d);
    if (d.udp_encap) {
        build_udp(sa.outer_template + n, d);
        n += sizeof(rte_udp_hdr);
    }
    sa.outer_len = uint8_t(n);
    if (d.mode == SaMode::tunnel && d.local.family == IpFamily::v4) {
        // Per-packet fields (TOS, length, id, DF, checksum) are 0 here.
        uint32_t sum = 0;
        for (unsigned i = 0; i < sizeof(rte_ipv4_hdr); i += 2)
            sum += uint32_t(sa.outer_template[i]) << 8 | sa.outer_template[i + 1];
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        sa.outer_v4_sum = uint16_t(sum);
    }
}

// The gcm kinds' bodies (esp_out.cc, esp_in.cc) take AES-GCM-16's sizes as
// constants; a transform without exactly those stays generic.
EspKind gcm_kind(const EspTransform& x)
{
    if (x.cipher != EspCipher::aes_gcm16 || x.integ != EspInteg::none || x.iv_len != 8 || x.icv_len != 16 ||
        x.block_len != 4)
        return EspKind::generic;
    if (x.key_len == 16) return x.esn ? EspKind::gcm128_esn : EspKind::gcm128;
    if (x.key_len == 32) return x.esn ? EspKind::gcm256_esn : EspKind::gcm256;
    return EspKind::generic;
}

// Which esp_encap()/esp_decap() body the SA takes (sa.hh, EspKind).
void choose_kinds(DpSa& sa)
{
    if (sa.mode != SaMode::tunnel) return;
    const EspKind k = gcm_kind(sa.xform);
    sa.decap_kind = k;
    if (sa.outer_family == IpFamily::v4 && !sa.udp_encap) sa.encap_kind = k;
}

const char* check_descriptor(const SaDescriptor& d)
{
    if (d.local.family != IpFamily::v4 && d.local.family != IpFamily::v6) return "bad address family";
    if (d.mode == SaMode::tunnel && d.local.family != d.remote.family)
        return "tunnel endpoints of different address families";
    if (d.replay_window > max_replay_window) return "replay window too large";
    if (d.cipher_key_len > max_cipher_key_len - salt_len(d.cipher)) return "cipher key too long";
    if (d.integ_key_len > max_integ_key_len) return "integrity key too long";
    return nullptr;
}

} // namespace

DpSa* sa_create(IMB_MGR* mgr, const SaDescriptor& d, uint16_t outer_mtu, WorkerId owner,
                const char** error) noexcept
{
    const char* dummy;
    if (!error) error = &dummy;
    if ((*error = check_descriptor(d))) return nullptr;

    void* mem = rte_zmalloc_socket("ravelin_sa", sizeof(DpSa), RTE_CACHE_LINE_SIZE, SOCKET_ID_ANY);
    if (!mem) {
        *error = "out of hugepage memory for the SA";
        return nullptr;
    }
    DpSa* sa = new (mem) DpSa{};
    if (!make_transform(mgr, d, sa->xform, sa->keys)) {
        *error = "unsupported algorithm, key length or integrity combination";
        sa_free(sa);
        return nullptr;
    }
    sa->spi_be = rte_cpu_to_be_32(d.spi.value);
    sa->spi = d.spi;
    sa->direction = d.direction;
    sa->mode = d.mode;
    sa->outer_family = d.local.family;
    sa->udp_encap = d.udp_encap;
    sa->tos_mask = d.copy_dscp ? 0xff : 0x03;
    sa->df_keep = d.df == DfMode::copy ? 0x40 : 0;
    sa->df_set = d.df == DfMode::set ? 0x40 : 0;
    sa->owner = owner;
    sa->reqid = d.reqid;
    sa->outer_mtu = outer_mtu;
    build_template(*sa, d);
    choose_kinds(*sa);

    sa->lifetime = d.lifetime;
    // 1, not the first lifetime limit: the first packet stamps first_used_tsc
    // (lifetime_crossed() then sets the real limit).
    sa->state.next_packet_limit = 1;
    sa->state.next_byte_limit = first_limit(d.lifetime.soft_bytes, d.lifetime.hard_bytes);
    sa->replay.reset(d.replay_window, d.esn);
    *error = nullptr;
    return sa;
}

void sa_free(DpSa* sa) noexcept
{
    if (!sa) return;
    secure_wipe(&sa->keys, sizeof sa->keys);
    secure_wipe(sa->xform.salt, sizeof sa->xform.salt);
    sa->~DpSa();
    rte_free(sa);
}

unsigned sa_overhead(const DpSa& sa) noexcept
{
    const EspTransform& x = sa.xform;
    // In front: outer header (+UDP), ESP header, IV. Behind: up to
    // block_len - 1 octets of padding, pad length, next header, ICV.
    return sa.outer_len + esp_hdr_len + x.iv_len + (x.block_len - 1u) + 2u + x.icv_len;
}

} // namespace ravelin::dp

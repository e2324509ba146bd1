// The data plane's SA: a cache-aligned plain struct, built once from an
// SaDescriptor when the SA is installed and never changed afterwards except
// for its worker-owned state.
//
//  line 0-1  read-only hot fields and the outer header template
//  line 2    state: sequence number, counters, lifetime flags (owner only)
//  line 3..  replay window bitmap (owner only)
//  then      expanded keys (read-only)
//
// The SA belongs to one worker (`owner`): only that worker touches `state`
// and `replay`, so neither needs atomics. Counters are Counter (relaxed
// atomics) so the telemetry thread can read them while the owner writes.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include <rte_prefetch.h>

#include "counters.hh"
#include "crypto.hh"
#include "replay.hh"
#include "spd.hh"
#include "ravelin/events.hh"
#include "ravelin/sa_descriptor.hh"

namespace ravelin::dp {

// Largest outer header we prepend: IPv6 (40) + UDP (8).
inline constexpr unsigned max_outer_header = 48;

// Which esp_encap()/esp_decap() body an SA takes, chosen once in
// sa_create() (STYLE.md §7). The gcm kinds are straight-line functions for
// AES-GCM-16 with its fixed sizes (8-octet IV, 16-octet ICV, 4-octet
// alignment) and a direct cipher call; encapsulation takes them for tunnel
// mode over IPv4 without UDP, decapsulation for tunnel mode. Every other
// SA takes the generic body, which reads mode, family, encapsulation and
// sizes from the SA per packet. Both produce the same bytes and the same
// drops (esp_test).
enum class EspKind : uint8_t { generic, gcm128, gcm128_esn, gcm256, gcm256_esn };

struct alignas(64) DpSaState {
    SeqNum seq = 0;               // outbound: last sequence number used
    Counter packets;
    Counter bytes;                // inner packet bytes (before ESP / after decap)
    Counter last_used_tsc;
    // TSC of the first packet, 0 until then. Stamped in the cold
    // lifetime_crossed() path: a new SA's next_packet_limit is 1, so the
    // first packet takes that path once and the per-packet cost is nil.
    Counter first_used_tsc;
    // The next lifetime threshold to look at (soft, then hard; UINT64_MAX
    // when none is left), so the per-packet check is two compares and the
    // full SaLifetime stays in the cold part of the SA.
    uint64_t next_packet_limit = UINT64_MAX;
    uint64_t next_byte_limit = UINT64_MAX;
    bool soft_raised = false;     // soft-lifetime event already raised
    // Hard limit or sequence exhaustion: drop everything. Atomic only so the
    // stats thread may read it; the owner's stores are rare (once per SA).
    std::atomic<bool> hard_reached{false};
};
static_assert(sizeof(DpSaState) == 64);

struct alignas(64) DpSa {
    // --- read-only, hot -------------------------------------------------
    uint32_t spi_be = 0;          // SPI in network byte order, as on the wire
    Spi spi;
    SaDirection direction = SaDirection::inbound;
    SaMode mode = SaMode::tunnel;
    IpFamily outer_family = IpFamily::v4;
    bool udp_encap = false;
    // The SA's copy_dscp and df settings, as sealing applies them: outer
    // TOS / traffic class = inner & tos_mask (0xff copies DSCP and ECN,
    // 0x03 only ECN; RFC 2983, RFC 6040); outer IPv4 DF, as the flags
    // octet's 0x40 bit, = (inner DF & df_keep) | df_set (copy keeps, set
    // sets, clear does neither).
    uint8_t tos_mask = 0xff;
    uint8_t df_keep = 0x40, df_set = 0;
    WorkerId owner;
    uint32_t reqid = 0;           // matched by inbound policies
    uint32_t slot = UINT32_MAX;   // index in the SA table, set before publication
    uint16_t outer_mtu = 1500;    // IP MTU of the path the ESP packets take
    uint8_t outer_len = 0;        // bytes of outer_template in use (tunnel mode)
    EspKind encap_kind = EspKind::generic;
    EspKind decap_kind = EspKind::generic;
    // Tunnel mode over IPv4: one's-complement sum of the outer IPv4
    // template's 16-bit words (network order, folded), so the per-packet
    // header checksum only adds the fields that change (RFC 1071 / 1624).
    uint16_t outer_v4_sum = 0;
    EspTransform xform;
    // Outer IPv4/IPv6 header (+UDP) with addresses, protocol and ports
    // filled in; length, id, checksum, TOS/TC and DF set per packet.
    alignas(16) uint8_t outer_template[max_outer_header];

    // --- worker-owned state ----------------------------------------------
    DpSaState state;
    alignas(64) ReplayWindow replay;

    // --- read-only key material and cold configuration --------------------
    SaKeys keys;
    SaLifetime lifetime;
    // Inbound: what decrypted packets must match (set before publication).
    SaSelector selector;

    // Packets of this SA dropped after the SA was found (replay,
    // auth_failed, policy_mismatch, mtu_exceeded, ...), by reason: what an
    // operator needs to tell "tunnel up, no traffic" apart. Written by the
    // owner on the drop path only, read by the stats thread.
    alignas(64) std::array<Counter, drop_reason_count> drops;
};

static_assert(offsetof(DpSa, state) % 64 == 0, "SA state must start a cache line");
static_assert(offsetof(DpSa, state) <= 128, "hot read-only SA fields must fit two cache lines");
static_assert(offsetof(DpSa, keys) % 64 == 0);

// Build an SA from its descriptor: derive the transform, expand keys, build
// the outer header template. `mgr` is any initialised IPsec-MB manager (key
// expansion does not depend on the worker). Returns nullptr (with `error`
// set) if the descriptor is unusable. The SA is allocated with rte_zmalloc
// (cache-aligned, hugepage-backed) and must be freed with sa_free(), which
// wipes the keys.
DpSa* sa_create(IMB_MGR* mgr, const SaDescriptor& d, uint16_t outer_mtu, WorkerId owner,
                const char** error) noexcept;
void sa_free(DpSa* sa) noexcept;

// The tighter of two lifetime limits where 0 means "none"; UINT64_MAX if
// neither: the next threshold DpSaState watches.
constexpr uint64_t first_limit(uint64_t soft, uint64_t hard) noexcept
{
    if (soft == 0) return hard ? hard : UINT64_MAX;
    if (hard == 0) return soft;
    return soft < hard ? soft : hard;
}

// Start loading what sealing with an outbound SA reads. With many tunnels,
// consecutive packets belong to different SAs and each SA is cold: some 10
// lines at 64 B and 20 at 1420 B, otherwise fetched one instruction at a
// time. Two steps, because the first level cache can only wait for so many
// lines at once:
//
// sa_prefetch_hot: the hot lines and the state. Worker::outbound calls it
// for every SA of a burst as it checks the SA (which reads line 0 anyway),
// so the burst's SAs load side by side.
//
// sa_prefetch_keys: the AES round keys and the GHASH powers the cipher will
// multiply `payload_len` octets by. esp_encap_burst calls it two packets
// ahead of sealing. Fetched for the whole burst at once, with the hot lines,
// they measured slower (243 against 199 cycles a packet with 10 000
// tunnels; into the second level cache, 290-330): the first level's
// misses queue up.
//
// The key lines follow IPsec-MB's AES-GCM layout for its AVX-512 code
// (intel-ipsec-mb.h, gcm_key_data): 15 round keys, then H^48 ... H^1, H^n
// at octet 16 * (63 - n). A packet of n blocks (AAD and data) uses at most
// H^n ... H^1, the table's last lines. For other ciphers the key lines
// fetched are just not the ones used.
inline void sa_prefetch_hot(const DpSa* sa) noexcept
{
    const char* p = reinterpret_cast<const char*>(sa);
    rte_prefetch0(p);
    rte_prefetch0(p + 64);
    rte_prefetch0(&sa->state);
}
inline void sa_prefetch_keys(const DpSa* sa, uint32_t payload_len) noexcept
{
    const char* k = reinterpret_cast<const char*>(&sa->keys.gcm);
    constexpr unsigned round_keys_end = 256;   // 240 octets of round keys: lines 0-3
    for (unsigned off = 0; off < round_keys_end; off += 64) rte_prefetch0(k + off);
    const unsigned powers = std::min(payload_len / 16 + 2, 48u);
    const unsigned first = std::max((16 * (63 - powers)) & ~63u, round_keys_end);
    for (unsigned off = first; off < sizeof sa->keys.gcm; off += 64) rte_prefetch0(k + off);
}

// Worst-case bytes ESP adds in front of and behind the inner packet.
unsigned sa_overhead(const DpSa& sa) noexcept;

} // namespace ravelin::dp

// Pieces shared by esp_out.cc and esp_in.cc: byte access, the ESP trailer's
// padding pattern, per-SA accounting and lifetime events. Private to those
// two files (not part of the data plane's interface).
//
// Events are level-triggered (shared/ravelin/events.hh): a state flag is set
// only once its event is on the ring, so an event lost to a full ring is
// raised again by a later packet.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include <rte_branch_prediction.h>
#include <rte_cycles.h>
#include <rte_ring_elem.h>

#include "esp.hh"

namespace ravelin::dp::esp_detail {

inline constexpr uint32_t esp_hdr_len = 8;      // SPI + sequence number
inline constexpr uint32_t trailer_fixed = 2;    // pad length + next header
inline constexpr uint32_t eth_hdr_len = 14;
inline constexpr uint8_t ipproto_ipip = 4;
inline constexpr uint8_t ipproto_udp = 17;
inline constexpr uint8_t ipproto_ipv6 = 41;
inline constexpr uint8_t ipproto_esp = 50;

// RFC 4303 §2.4 default padding: 1, 2, 3, ... (at most 255 octets).
inline constexpr std::array<uint8_t, 256> pad_pattern = [] {
    std::array<uint8_t, 256> a{};
    for (unsigned i = 0; i < a.size(); ++i) a[i] = uint8_t(i + 1);
    return a;
}();

// Raise one event for the control plane. Returns false (and counts it as
// lost) if the ring is full; with no ring (tests) there is nobody to tell.
inline bool raise_event(EspContext& ctx, const DpSa& sa, EventType type) noexcept
{
    if (!ctx.events) return true;
    DataplaneEvent ev;
    ev.type = type;
    ev.spi = sa.spi;
    ev.direction = uint8_t(sa.direction);
    ev.packets = sa.state.packets.get();
    ev.bytes = sa.state.bytes.get();
    if (rte_ring_mp_enqueue_elem(ctx.events, &ev, sizeof ev) != 0) {
        ctx.counters->stats.events_lost.inc();
        return false;
    }
    ctx.counters->stats.events_raised.inc();
    return true;
}

// A lifetime threshold was crossed (RFC 4301 §4.4.2.1). Hard stops the SA
// at once, even if its event could not be queued: the limits then stay
// crossed so the sa_expired path retries the event. Soft is raised once.
// A new SA's packet limit is 1, so its first packet comes here too and
// stamps first_used_tsc (channel listings) without a per-packet test.
[[gnu::cold, gnu::noinline]] inline void lifetime_crossed(EspContext& ctx, DpSa& sa) noexcept
{
    DpSaState& s = sa.state;
    if (s.first_used_tsc.get() == 0) {
        // A fresh reading, not the iteration's: the SA may have been
        // published after the iteration began (the worker preempted in
        // between), and its first use must not predate its install (the
        // control plane's install-to-first-packet latency). account()
        // dates this packet's last use after this call, and the
        // iteration's next packets, with it too: last use is never before
        // first use.
        ctx.now_tsc = std::max(ctx.now_tsc, rte_rdtsc());
        // 0 means "not used". (Not now_tsc | 1: that is a tick after an
        // even now_tsc, which the last use below would then precede.)
        s.first_used_tsc.inc(ctx.now_tsc + (ctx.now_tsc == 0));
    }

    const SaLifetime& l = sa.lifetime;
    const uint64_t p = s.packets.get(), b = s.bytes.get();
    auto over = [](uint64_t v, uint64_t limit) { return limit != 0 && v >= limit; };
    if (over(p, l.hard_packets) || over(b, l.hard_bytes)) {
        s.hard_reached.store(true, std::memory_order_relaxed);
        if (raise_event(ctx, sa, EventType::hard_lifetime)) s.next_packet_limit = s.next_byte_limit = UINT64_MAX;
        return;
    }
    if (!s.soft_raised && (over(p, l.soft_packets) || over(b, l.soft_bytes))) {
        if (!raise_event(ctx, sa, EventType::soft_lifetime)) return;
        s.soft_raised = true;
    }
    // Watch the soft limits until their event is out, then only the hard ones.
    s.next_packet_limit = first_limit(s.soft_raised ? 0 : l.soft_packets, l.hard_packets);
    s.next_byte_limit = first_limit(s.soft_raised ? 0 : l.soft_bytes, l.hard_bytes);
}

// Count one packet on the SA: two adds, a store and two compares.
[[gnu::always_inline]] inline void account(EspContext& ctx, DpSa& sa, uint32_t bytes) noexcept
{
    DpSaState& s = sa.state;
    s.packets.inc();
    s.bytes.inc(bytes);
    if (unlikely(s.packets.get() >= s.next_packet_limit || s.bytes.get() >= s.next_byte_limit))
        lifetime_crossed(ctx, sa);   // may move ctx.now_tsc forward (an SA's first packet)
    // Counter has no store; adding the difference is the same single writer store.
    s.last_used_tsc.inc(ctx.now_tsc - s.last_used_tsc.get());
}

// Counts a run of packets on one SA (one burst's packets of it, in order)
// against the thresholds account() checks per packet, but writes the SA's
// counters once per run: the run keeps its own counts, and how far each is
// from the next threshold, and compares those. A crossing writes the
// counts first, so lifetime_crossed() and its event see exactly the
// packets up to and including the one that crossed.
class RunAccount {
public:
    explicit RunAccount(DpSaState& s) noexcept : s_(s) { rebase(); }
    RunAccount(const RunAccount&) = delete;
    RunAccount& operator=(const RunAccount&) = delete;

    [[gnu::always_inline]] void add(EspContext& ctx, DpSa& sa, uint32_t bytes) noexcept
    {
        ++packets_;
        bytes_ += bytes;
        if (unlikely(packets_ >= packet_room_ || bytes_ >= byte_room_)) cross(ctx, sa);
    }
    // Writes the counts so far, for an event raised outside a threshold
    // crossing (sequence exhaustion) to carry them, as one by one it would.
    void flush() noexcept
    {
        if (packets_ == 0) return;
        write();
        rebase();
    }
    // Writes what is left; returns how many packets the run counted.
    uint32_t finish(const EspContext& ctx) noexcept
    {
        if (packets_ == 0) return done_;
        write();
        stamp(ctx);
        return done_;
    }

private:
    static uint64_t room(uint64_t limit, uint64_t now) noexcept { return limit > now ? limit - now : 0; }
    void rebase() noexcept
    {
        packet_room_ = room(s_.next_packet_limit, s_.packets.get());
        byte_room_ = room(s_.next_byte_limit, s_.bytes.get());
    }
    void write() noexcept
    {
        s_.packets.inc(packets_);
        s_.bytes.inc(bytes_);
        done_ += uint32_t(packets_);
        packets_ = bytes_ = 0;
    }
    // Counter has no store; adding the difference is the same single writer store.
    void stamp(const EspContext& ctx) noexcept { s_.last_used_tsc.inc(ctx.now_tsc - s_.last_used_tsc.get()); }
    [[gnu::cold, gnu::noinline]] void cross(EspContext& ctx, DpSa& sa) noexcept
    {
        write();
        lifetime_crossed(ctx, sa);   // may move ctx.now_tsc forward (an SA's first packet)
        stamp(ctx);
        rebase();
    }

    DpSaState& s_;
    uint64_t packets_ = 0, bytes_ = 0;          // not yet written to s_
    uint64_t packet_room_ = 0, byte_room_ = 0;  // from s_'s counts to its next thresholds
    uint32_t done_ = 0;
};

// The SA is stopped. If its hard-lifetime event is still owed, try again.
[[gnu::cold, gnu::noinline]] inline DropReason sa_stopped(EspContext& ctx, DpSa& sa) noexcept
{
    const DpSaState& s = sa.state;
    if (s.packets.get() >= s.next_packet_limit || s.bytes.get() >= s.next_byte_limit) lifetime_crossed(ctx, sa);
    return DropReason::sa_expired;
}

} // namespace ravelin::dp::esp_detail

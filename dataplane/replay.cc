// Anti-replay window (RFC 4303 §3.4.3, Appendix A2).
//
// The bitmap is a ring of max_replay_window bits: the bit of sequence number
// s lives at s & (max_replay_window - 1), whatever the configured window W
// (1..4096). Because W never exceeds the ring, the W numbers in the window
// [top - W + 1, top] always sit in distinct bits. When top moves forward,
// exactly the bits of the numbers that newly enter the ring, (old top, new
// top], are cleared, word by word; a jump of a whole ring or more clears it
// all. Clearing whole words around the new top instead (WireGuard's way)
// would need a ring one word larger than the largest window, and the header
// fixes the ring at 4096 bits.
//
// With ESN the high half of the sequence number is inferred from the
// window's position (A2.2): the full number is the unique one in
// [top - W + 1, top - W + 1 + 2^32). With the window off (W = 0) the same rule
// runs with a span of 2^31, i.e. the number is taken to be within half of
// the 32-bit space of top. Numbers that would fall before 0 (no epoch -1)
// are rejected, as is 0 itself: the first packet of an SA carries 1.
#include "replay.hh"

namespace ravelin::dp {

namespace {

constexpr uint32_t ring_bits = max_replay_window;
constexpr uint32_t ring_mask = ring_bits - 1;
static_assert((ring_bits & ring_mask) == 0, "the ring is indexed with a mask");
static_assert(ring_bits % 64 == 0);

// Inference span with anti-replay off: half of the 32-bit space.
constexpr uint32_t off_span = uint32_t(1) << 31;

// RFC 4303 A2.2 with W = span (>= 1). Returns false, with full = seq_lo,
// when the number would belong to the epoch before 0.
inline bool infer_esn(SeqNum top, uint32_t span, uint32_t seq_lo, SeqNum& full) noexcept
{
    const uint32_t tl = uint32_t(top);
    const uint64_t th = top >> 32;
    const uint32_t bl = tl - span + 1;   // low half of the window's bottom, mod 2^32
    uint64_t hi = th;
    if (tl >= span - 1) {
        // Case A: the window lies within one epoch; anything below its
        // bottom must be from the next epoch. (th + 1 = 2^32 wraps the
        // 64-bit number to a small value, which the caller sees as too old.)
        hi += seq_lo < bl;
    } else if (seq_lo >= bl) {
        // Case B: the window straddles two epochs and seq_lo is in the
        // upper part of it, i.e. in the previous epoch.
        if (th == 0) {
            full = seq_lo;
            return false;
        }
        hi = th - 1;
    }
    full = hi << 32 | seq_lo;
    return true;
}

} // namespace

void ReplayWindow::reset(uint16_t window, bool esn) noexcept
{
    // reset() cannot fail; the config loader refuses larger windows, this
    // only keeps the bitmap invariant if one slips through.
    window_ = window > max_replay_window ? uint16_t(max_replay_window) : window;
    esn_ = esn;
    top_ = 0;
    bits_.fill(0);
    // Sequence number 0 counts as already seen, so it is refused without a
    // branch of its own until it leaves the window.
    bits_[0] = 1;
}

bool ReplayWindow::check_slow(uint32_t seq_lo, SeqNum& full) const noexcept
{
    if (window_ == 0) {
        // RFC 4303 §3.4.3: no checks when anti-replay is off, but ESN still
        // needs the high half for the ICV. An "epoch -1" number is taken to
        // be in epoch 0.
        full = seq_lo;
        if (esn_) infer_esn(top_, off_span, seq_lo, full);
        return true;
    }
    if (esn_) {
        if (!infer_esn(top_, window_, seq_lo, full)) return false;
    } else {
        full = seq_lo;
    }
    if (full > top_) return true;
    if (top_ - full >= window_) return false;   // left of the window
    const uint32_t slot = uint32_t(full) & ring_mask;
    return !(bits_[slot >> 6] >> (slot & 63) & 1);
}

// Clear `count` (< ring_bits) consecutive ring slots starting at `slot`,
// wrapping at the end of the ring: at most ring_bits / 64 + 1 word stores.
static void clear_slots(std::array<uint64_t, max_replay_window / 64>& bits, uint32_t slot,
                        uint32_t count) noexcept
{
    while (count != 0) {
        const uint32_t bit = slot & 63;
        const uint32_t n = count < 64 - bit ? count : 64 - bit;
        const uint64_t mask = n == 64 ? ~uint64_t(0) : ((uint64_t(1) << n) - 1) << bit;
        bits[slot >> 6] &= ~mask;
        slot = (slot + n) & ring_mask;
        count -= n;
    }
}

bool ReplayWindow::update_slow(SeqNum full) noexcept
{
    if (window_ == 0) {
        // Only the top is kept, for ESN inference (update() does this inline).
        if (full > top_) top_ = full;
        return true;
    }
    if (full > top_) {
        const SeqNum gap = full - top_;
        if (gap >= ring_bits)
            bits_.fill(0);
        else
            clear_slots(bits_, uint32_t(top_ + 1) & ring_mask, uint32_t(gap));
        top_ = full;
    } else if (top_ - full >= window_) {
        return false;
    }
    const uint32_t slot = uint32_t(full) & ring_mask;
    uint64_t& word = bits_[slot >> 6];
    const uint64_t bit = uint64_t(1) << (slot & 63);
    if (word & bit) return false;
    word |= bit;
    return true;
}

} // namespace ravelin::dp

// Anti-replay window for ESP with optional extended sequence numbers
// (RFC 4303 §3.4.3 and Appendix A2).
//
// Owned by one worker (the SA's owner), so nothing here is atomic. The check
// runs before decryption and changes nothing; the update runs only after the
// ICV has verified, so forged packets can never move the window.
#pragma once

#include <array>
#include <cstdint>

#include "ravelin/sa_descriptor.hh"
#include "ravelin/types.hh"

namespace ravelin::dp {

class ReplayWindow {
public:
    // window: 0 disables the replay check (but ESN inference still works);
    // otherwise 1..max_replay_window packets.
    void reset(uint16_t window, bool esn) noexcept;

    // Given the low 32 bits carried in the packet, work out the full 64-bit
    // sequence number (the high half is inferred with ESN, RFC 4303 A2.2, and
    // is always 0 without it) and say whether it may be accepted. Does not
    // modify the window.
    //
    // Inline fast path: the number right after top (the in-order packet),
    // which is top + 1 whatever the ESN and window settings, and always
    // acceptable. Everything else goes to check_slow().
    bool check(uint32_t seq_lo, SeqNum& full) const noexcept
    {
        if (__builtin_expect(seq_lo == uint32_t(top_) + 1u && seq_lo != 0, 1)) {
            full = top_ + 1;
            return true;
        }
        return check_slow(seq_lo, full);
    }

    // Record `full` as received after its ICV verified. Returns false (and
    // changes nothing) if it is a replay after all.
    //
    // Inline fast path: window off (only the top moves), or the number
    // right after top, whose ring slot is the only one that enters the
    // window (cleared and set again: just set). The rest is update_slow().
    bool update(SeqNum full) noexcept
    {
        if (window_ == 0) {
            if (full > top_) top_ = full;
            return true;
        }
        if (__builtin_expect(full == top_ + 1 && full != 0, 1)) {
            const uint32_t slot = uint32_t(full) & (max_replay_window - 1);
            bits_[slot >> 6] |= uint64_t(1) << (slot & 63);
            top_ = full;
            return true;
        }
        return update_slow(full);
    }

    SeqNum top() const noexcept { return top_; }
    uint16_t size() const noexcept { return window_; }
    bool esn() const noexcept { return esn_; }

private:
    bool check_slow(uint32_t seq_lo, SeqNum& full) const noexcept;
    bool update_slow(SeqNum full) noexcept;

    static constexpr unsigned words = max_replay_window / 64;
    // bit (seq % max_replay_window) set = seen; positions above top_ are
    // cleared lazily when the window slides.
    std::array<uint64_t, words> bits_{};
    SeqNum top_ = 0;
    uint16_t window_ = 0;
    bool esn_ = false;
};

} // namespace ravelin::dp

// Receive-side accounting of one stream: which sequence numbers arrived, in
// what order, and how late.
//
// Sequence numbers are the generator's own (in the payload stamp), one
// counter per stream starting at 0, so loss is "sent minus distinct
// received" and needs no window: the window only tells a late packet (a
// reordering) from a second copy (a duplicate).
//
//   next_ = highest seen + 1
//   |<------------ window ------------>|
//   [ seen bits of next_-W .. next_-1  ] next_ ...
//
// seq == next_        in order
// seq >  next_        ahead: the numbers skipped are missing (for now)
// seq <  next_, in W  late: reordered, or a duplicate if its bit is set
// seq <  next_-W      too old to tell: counted as reordered and distinct
//
// One writer (the RX lcore); readers of a running test use the relaxed
// snapshot the RX loop publishes, not these fields.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ravelin::pktgen {

class SeqTracker {
public:
    static constexpr unsigned window = 4096;

    enum class Outcome : uint8_t { in_order, ahead, late, duplicate, too_old };

    Outcome record(uint64_t seq) noexcept;
    void reset() noexcept { *this = SeqTracker{}; }

    uint64_t received() const noexcept { return received_; }    // every arrival
    uint64_t distinct() const noexcept { return distinct_; }    // without duplicates
    uint64_t duplicates() const noexcept { return duplicates_; }
    uint64_t reordered() const noexcept { return reordered_; }  // arrived after a later number
    uint64_t too_old() const noexcept { return too_old_; }      // subset of reordered
    uint64_t next_expected() const noexcept { return next_; }
    // Packets of the `sent` first sequence numbers that never arrived.
    uint64_t lost(uint64_t sent) const noexcept { return sent > distinct_ ? sent - distinct_ : 0; }

private:
    bool test_and_set(uint64_t seq) noexcept
    {
        uint64_t& w = bits_[(seq / 64) % words];
        const uint64_t b = uint64_t(1) << (seq % 64);
        const bool was = w & b;
        w |= b;
        return was;
    }
    void clear_range(uint64_t from, uint64_t to) noexcept;   // [from, to)

    static constexpr unsigned words = window / 64;
    std::array<uint64_t, words> bits_{};
    uint64_t next_ = 0;
    uint64_t received_ = 0, distinct_ = 0, duplicates_ = 0, reordered_ = 0, too_old_ = 0;
};

// Latency histogram in nanoseconds, log-linear: exact below 16 ns, then 16
// buckets per power of two (at most 6.25 % relative bucket width) up to
// 2^64. Fixed size, no allocation on record().
class LatencyHistogram {
public:
    static constexpr unsigned sub_bits = 4;
    static constexpr unsigned sub = 1u << sub_bits;
    static constexpr unsigned buckets = (64 - sub_bits + 1) * sub;

    void record(uint64_t ns) noexcept
    {
        ++counts_[index(ns)];
        ++count_;
        sum_ += ns;
        if (ns < min_) min_ = ns;
        if (ns > max_) max_ = ns;
    }
    void merge(const LatencyHistogram& o) noexcept;
    void reset() noexcept { *this = LatencyHistogram{}; }

    uint64_t count() const noexcept { return count_; }
    uint64_t min() const noexcept { return count_ ? min_ : 0; }
    uint64_t max() const noexcept { return max_; }
    double mean() const noexcept { return count_ ? double(sum_) / double(count_) : 0; }
    // Upper edge of the bucket holding the q-quantile (0 < q <= 1); 0 when empty.
    uint64_t percentile(double q) const noexcept;

    static unsigned index(uint64_t v) noexcept
    {
        if (v < sub) return unsigned(v);
        const unsigned e = 63u - unsigned(__builtin_clzll(v));          // >= sub_bits
        const unsigned s = unsigned(v >> (e - sub_bits)) & (sub - 1);
        return (e - sub_bits + 1) * sub + s;
    }
    static uint64_t lower_edge(unsigned i) noexcept;
    static uint64_t upper_edge(unsigned i) noexcept;   // inclusive

    // Non-empty buckets as (lower edge, upper edge, count).
    struct Bucket {
        uint64_t lo, hi, count;
    };
    std::vector<Bucket> nonzero() const;

private:
    std::array<uint64_t, buckets> counts_{};
    uint64_t count_ = 0, sum_ = 0, min_ = UINT64_MAX, max_ = 0;
};

} // namespace ravelin::pktgen

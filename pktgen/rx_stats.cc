#include "rx_stats.hh"

namespace ravelin::pktgen {

void SeqTracker::clear_range(uint64_t from, uint64_t to) noexcept
{
    if (to - from >= window) {
        bits_.fill(0);
        return;
    }
    for (uint64_t s = from; s < to; ++s) bits_[(s / 64) % words] &= ~(uint64_t(1) << (s % 64));
}

SeqTracker::Outcome SeqTracker::record(uint64_t seq) noexcept
{
    ++received_;
    if (seq >= next_) {
        // The numbers from next_ to seq enter the window: forget what their
        // slots held (numbers a whole window older).
        clear_range(next_, seq + 1);
        const bool in_order = seq == next_;
        test_and_set(seq);
        next_ = seq + 1;
        ++distinct_;
        return in_order ? Outcome::in_order : Outcome::ahead;
    }
    if (next_ - seq > window) {
        ++reordered_;
        ++too_old_;
        ++distinct_;
        return Outcome::too_old;
    }
    if (test_and_set(seq)) {
        ++duplicates_;
        return Outcome::duplicate;
    }
    ++reordered_;
    ++distinct_;
    return Outcome::late;
}

void LatencyHistogram::merge(const LatencyHistogram& o) noexcept
{
    for (unsigned i = 0; i < buckets; ++i) counts_[i] += o.counts_[i];
    count_ += o.count_;
    sum_ += o.sum_;
    if (o.count_ && o.min_ < min_) min_ = o.min_;
    if (o.max_ > max_) max_ = o.max_;
}

uint64_t LatencyHistogram::lower_edge(unsigned i) noexcept
{
    if (i < sub) return i;
    const unsigned e = i / sub + sub_bits - 1;
    const uint64_t s = i % sub;
    return (uint64_t(1) << e) | (s << (e - sub_bits));
}

uint64_t LatencyHistogram::upper_edge(unsigned i) noexcept
{
    if (i + 1 >= buckets) return UINT64_MAX;
    return lower_edge(i + 1) - 1;
}

uint64_t LatencyHistogram::percentile(double q) const noexcept
{
    if (count_ == 0) return 0;
    if (q <= 0) return min();
    // The rank of the q-quantile, 1-based, at least 1.
    uint64_t rank = uint64_t(q * double(count_) + 0.999999);
    if (rank == 0) rank = 1;
    if (rank > count_) rank = count_;
    uint64_t seen = 0;
    for (unsigned i = 0; i < buckets; ++i) {
        seen += counts_[i];
        if (seen >= rank) {
            const uint64_t hi = upper_edge(i);
            return hi < max_ ? hi : max_;
        }
    }
    return max_;
}

std::vector<LatencyHistogram::Bucket> LatencyHistogram::nonzero() const
{
    std::vector<Bucket> out;
    for (unsigned i = 0; i < buckets; ++i)
        if (counts_[i]) out.push_back({lower_edge(i), upper_edge(i), counts_[i]});
    return out;
}

} // namespace ravelin::pktgen

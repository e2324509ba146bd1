// Frame sizes of a stream: one fixed size or a weighted mix (IMIX).
//
// A mix is turned into a fixed, repeating order that spreads each size as
// evenly as its weight allows (smooth weighted round robin), so a short
// measurement window sees the same proportions as a long one and the order
// is the same on every run. Sizes are Ethernet frame sizes counted with the
// 4-byte FCS, like RFC 2544 and shared/baseline/ANCHORS.md: "64" is 60 bytes
// in the mbuf.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ravelin::pktgen {

inline constexpr unsigned min_frame = 64;
inline constexpr unsigned max_frame = 1518;
inline constexpr unsigned fcs_len = 4;
// Bytes on the wire per frame besides the frame itself: preamble + SFD (8)
// and the minimum inter-frame gap (12).
inline constexpr unsigned l1_overhead = 20;
// Upper bound of the repeating order's length, so a mix cannot ask for an
// unbounded table.
inline constexpr unsigned max_schedule_period = 10000;

struct SizeWeight {
    uint16_t size = 0;     // frame size including FCS
    uint32_t weight = 0;
};

class SizeSchedule {
public:
    // "64", "imix" (7x64 : 4x570 : 1x1420, the variant that fits a 1500-byte
    // MTU after ESP), "imix-classic" (7x64 : 4x570 : 1x1518) or a list
    // "64:7,570:4,1420:1" (size:weight, weight defaults to 1).
    static std::optional<SizeSchedule> parse(std::string_view spec, std::string* why = nullptr);
    static SizeSchedule fixed(uint16_t size);

    // The next size in the repeating order.
    uint16_t next() noexcept
    {
        const uint16_t s = order_[pos_];
        if (++pos_ == order_.size()) pos_ = 0;
        return s;
    }
    // The size `ahead` steps from now, without consuming it.
    uint16_t peek(std::size_t ahead) const noexcept { return order_[(pos_ + ahead) % order_.size()]; }
    void rewind() noexcept { pos_ = 0; }

    double mean() const noexcept { return mean_; }
    uint16_t min() const noexcept { return min_; }
    uint16_t max() const noexcept { return max_; }
    const std::vector<SizeWeight>& mix() const noexcept { return mix_; }
    const std::vector<uint16_t>& order() const noexcept { return order_; }
    const std::string& name() const noexcept { return name_; }

private:
    void build();

    std::string name_;
    std::vector<SizeWeight> mix_;
    std::vector<uint16_t> order_;
    std::size_t pos_ = 0;
    double mean_ = 0;
    uint16_t min_ = 0, max_ = 0;
};

} // namespace ravelin::pktgen

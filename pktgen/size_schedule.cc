#include "size_schedule.hh"

#include <charconv>
#include <cstdint>

namespace ravelin::pktgen {
namespace {

bool fail(std::string* why, std::string msg)
{
    if (why) *why = std::move(msg);
    return false;
}

bool parse_uint(std::string_view s, uint64_t& v)
{
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

bool parse_list(std::string_view spec, std::vector<SizeWeight>& out, std::string* why)
{
    while (!spec.empty()) {
        const auto comma = spec.find(',');
        std::string_view item = spec.substr(0, comma);
        spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
        const auto colon = item.find(':');
        uint64_t size = 0, weight = 1;
        if (!parse_uint(item.substr(0, colon), size))
            return fail(why, "size '" + std::string(item) + "' is not a number");
        if (colon != std::string_view::npos && !parse_uint(item.substr(colon + 1), weight))
            return fail(why, "weight in '" + std::string(item) + "' is not a number");
        if (size < min_frame || size > max_frame)
            return fail(why, "frame size " + std::to_string(size) + " outside " + std::to_string(min_frame) +
                                 ".." + std::to_string(max_frame) + " (sizes include the 4-byte FCS)");
        if (weight == 0 || weight > max_schedule_period)
            return fail(why, "weight " + std::to_string(weight) + " outside 1.." +
                                 std::to_string(max_schedule_period));
        out.push_back({uint16_t(size), uint32_t(weight)});
    }
    if (out.empty()) return fail(why, "empty size list");
    uint64_t total = 0;
    for (auto& w : out) total += w.weight;
    if (total > max_schedule_period)
        return fail(why, "weights add up to " + std::to_string(total) + ", at most " +
                             std::to_string(max_schedule_period));
    return true;
}

} // namespace

std::optional<SizeSchedule> SizeSchedule::parse(std::string_view spec, std::string* why)
{
    SizeSchedule s;
    s.name_ = std::string(spec);
    std::string_view list = spec;
    if (spec == "imix") list = "64:7,570:4,1420:1";
    else if (spec == "imix-classic") list = "64:7,570:4,1518:1";
    if (!parse_list(list, s.mix_, why)) return std::nullopt;
    s.build();
    return s;
}

SizeSchedule SizeSchedule::fixed(uint16_t size)
{
    SizeSchedule s;
    s.name_ = std::to_string(size);
    s.mix_.push_back({size, 1});
    s.build();
    return s;
}

// Smooth weighted round robin: every step each size earns its weight, the
// richest is sent and pays the total. Over one period every size appears
// exactly `weight` times, spread out rather than in runs.
void SizeSchedule::build()
{
    uint64_t total = 0, bytes = 0;
    min_ = UINT16_MAX;
    max_ = 0;
    for (auto& w : mix_) {
        total += w.weight;
        bytes += uint64_t(w.size) * w.weight;
        min_ = std::min(min_, w.size);
        max_ = std::max(max_, w.size);
    }
    mean_ = double(bytes) / double(total);
    std::vector<int64_t> current(mix_.size(), 0);
    order_.clear();
    order_.reserve(total);
    for (uint64_t step = 0; step < total; ++step) {
        std::size_t best = 0;
        for (std::size_t i = 0; i < mix_.size(); ++i) {
            current[i] += mix_[i].weight;
            if (current[i] > current[best]) best = i;
        }
        current[best] -= int64_t(total);
        order_.push_back(mix_[best].size);
    }
    pos_ = 0;
}

} // namespace ravelin::pktgen

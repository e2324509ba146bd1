#include "rate.hh"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "size_schedule.hh"

namespace ravelin::pktgen {
namespace {

bool ends_with(std::string_view s, std::string_view suffix)
{
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

} // namespace

std::optional<RateSpec> RateSpec::parse(std::string_view s, std::string* why)
{
    auto fail = [&](std::string msg) -> std::optional<RateSpec> {
        if (why) *why = std::move(msg);
        return std::nullopt;
    };
    if (s == "max" || s == "0") return RateSpec{};
    struct Suffix {
        std::string_view text;
        RateUnit unit;
        double mult;
    };
    static constexpr Suffix suffixes[] = {
        {"Mpps", RateUnit::pps, 1e6}, {"kpps", RateUnit::pps, 1e3}, {"pps", RateUnit::pps, 1},
        {"Gbps", RateUnit::l2_bps, 1e9}, {"Mbps", RateUnit::l2_bps, 1e6}, {"kbps", RateUnit::l2_bps, 1e3},
        {"bps", RateUnit::l2_bps, 1}, {"%", RateUnit::line_percent, 1},
    };
    for (const auto& suf : suffixes) {
        if (!ends_with(s, suf.text)) continue;
        std::string num(s.substr(0, s.size() - suf.text.size()));
        char* end = nullptr;
        const double v = std::strtod(num.c_str(), &end);
        if (num.empty() || end != num.c_str() + num.size() || !std::isfinite(v) || v <= 0)
            return fail("rate '" + std::string(s) + "': '" + num + "' is not a positive number");
        if (suf.unit == RateUnit::line_percent && v > 100)
            return fail("rate '" + std::string(s) + "': more than 100 % of the line");
        return RateSpec{suf.unit, v * suf.mult};
    }
    return fail("rate '" + std::string(s) + "': give a unit: Mpps, kpps, pps, Gbps, Mbps, kbps, bps, % or 'max'");
}

std::string RateSpec::to_string() const
{
    char buf[64];
    switch (unit) {
    case RateUnit::max: return "max";
    case RateUnit::pps: std::snprintf(buf, sizeof buf, "%.6gpps", value); break;
    case RateUnit::l2_bps: std::snprintf(buf, sizeof buf, "%.6gbps", value); break;
    case RateUnit::line_percent: std::snprintf(buf, sizeof buf, "%.6g%%", value); break;
    }
    return buf;
}

double RateSpec::units_per_second(double line_bps) const noexcept
{
    switch (unit) {
    case RateUnit::max: return 0;
    case RateUnit::pps:
    case RateUnit::l2_bps: return value;
    case RateUnit::line_percent: return line_bps * value / 100.0;
    }
    return 0;
}

uint64_t RateSpec::cost(RateUnit u, unsigned frame) noexcept
{
    switch (u) {
    case RateUnit::max:
    case RateUnit::pps: return 1;
    case RateUnit::l2_bps: return uint64_t(frame) * 8;
    case RateUnit::line_percent: return uint64_t(frame + l1_overhead) * 8;
    }
    return 1;
}

double RateSpec::packets_per_second(double mean_frame, double line_bps) const noexcept
{
    switch (unit) {
    case RateUnit::max: return 0;
    case RateUnit::pps: return value;
    case RateUnit::l2_bps: return value / (mean_frame * 8);
    case RateUnit::line_percent: return line_bps * value / 100.0 / ((mean_frame + l1_overhead) * 8);
    }
    return 0;
}

void Pacer::start(uint64_t now_tsc, double units_per_second, uint64_t tsc_hz, uint64_t max_credit) noexcept
{
    t0_ = now_tsc;
    spent_ = forgiven_ = 0;
    max_credit_ = max_credit;
    if (units_per_second <= 0 || tsc_hz == 0) {
        rate_q_ = 0;
        return;
    }
    const double q = units_per_second / double(tsc_hz) * double(uint64_t(1) << frac_bits);
    // At least 1: a rate so low it rounds to zero must not become "unlimited".
    rate_q_ = q < 1 ? 1 : q > 1.8e19 ? UINT64_MAX : uint64_t(q);
}

uint64_t Pacer::available(uint64_t now_tsc) noexcept
{
    if (rate_q_ == 0) return UINT64_MAX / 2;
    const unsigned __int128 elapsed = now_tsc > t0_ ? now_tsc - t0_ : 0;
    const unsigned __int128 earned128 = (elapsed * rate_q_) >> frac_bits;
    const uint64_t earned = earned128 > UINT64_MAX / 2 ? UINT64_MAX / 2 : uint64_t(earned128);
    if (earned <= spent_) return 0;
    uint64_t credit = earned - spent_;
    if (credit > max_credit_) {
        forgiven_ += credit - max_credit_;
        spent_ += credit - max_credit_;
        credit = max_credit_;
    }
    return credit;
}

} // namespace ravelin::pktgen

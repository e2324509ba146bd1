// Offered rate: how it is written, what it means in packets per second, and
// the TSC-driven pacer the TX loop asks before each burst.
//
// Units:
//   pps       packets per second ("2.5Mpps", "100kpps", "1000pps")
//   bit/s     layer-2 bits: frames including FCS, without preamble and gap
//             ("5Gbps", "800Mbps", "1e9bps")
//   % of line layer-1 bits: frame + 20 bytes of preamble and inter-frame gap,
//             as RFC 2544 counts the line ("50%")
//   "max"     as fast as the port takes packets (no pacing)
//
// The pacer counts in "units" (packets, L2 bits or L1 bits); each packet
// costs its units, so a mix of sizes at a bit rate is paced exactly and
// not by its average.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ravelin::pktgen {

enum class RateUnit : uint8_t { max, pps, l2_bps, line_percent };

struct RateSpec {
    RateUnit unit = RateUnit::max;
    double value = 0;   // pps, bit/s or percent

    static std::optional<RateSpec> parse(std::string_view s, std::string* why = nullptr);
    std::string to_string() const;
    RateSpec scaled(double f) const { return RateSpec{unit, value * f}; }

    // Units per second, and what one frame of `frame` bytes (incl. FCS)
    // costs in those units.
    double units_per_second(double line_bps) const noexcept;
    static uint64_t cost(RateUnit u, unsigned frame) noexcept;
    // Packets per second for frames of mean size `mean_frame`; 0 for "max".
    double packets_per_second(double mean_frame, double line_bps) const noexcept;
};

// A token bucket fed by the TSC. Units are earned at a fixed rate from
// start(); a packet may go when the units earned minus the units spent
// cover its cost. Credit beyond `max_credit` (a stall of the TX loop) is
// forgiven, not sent as one huge burst; forgiven units are counted.
//
// Rate as 16.48 fixed-point units per TSC tick (resolution ~1e-5 units/s
// at 2.6 GHz, up to 65536 units per tick), products in 128 bits: no drift
// over hours, no floating point and no division per burst.
class Pacer {
public:
    // units_per_second <= 0: unlimited.
    void start(uint64_t now_tsc, double units_per_second, uint64_t tsc_hz, uint64_t max_credit) noexcept;

    // Units that may be spent at `now` (saturated at max_credit; a huge
    // value when unlimited).
    uint64_t available(uint64_t now_tsc) noexcept;
    void spend(uint64_t units) noexcept { spent_ += units; }

    bool unlimited() const noexcept { return rate_q_ == 0; }
    uint64_t forgiven() const noexcept { return forgiven_; }
    uint64_t spent() const noexcept { return spent_; }

private:
    uint64_t t0_ = 0;
    static constexpr unsigned frac_bits = 48;
    uint64_t rate_q_ = 0;     // units per tick << frac_bits
    uint64_t spent_ = 0;      // includes forgiven units
    uint64_t forgiven_ = 0;
    uint64_t max_credit_ = 0;
};

} // namespace ravelin::pktgen

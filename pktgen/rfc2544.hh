// RFC 2544 §26.1 throughput: the highest offered rate at which the device
// forwards every frame (no-drop rate, NDR), found by binary search over
// trials of fixed duration; with a loss ratio > 0 the same search gives a
// partial-drop rate (PDR: the highest rate whose loss stays at or below the
// ratio).
//
// The search is pure: the caller runs each trial at next_rate() and reports
// what it sent and received. A trial fails when its loss ratio is above the
// limit, or when the generator could not offer the rate it was asked for
// (on a back-pressured port such as memif, a device that cannot keep up
// shows as frames the port did not accept rather than as loss).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ravelin::pktgen {

struct SearchParams {
    double max_rate = 0;          // upper bound, in the caller's unit (pps, bit/s or %)
    double min_rate = 0;          // a rate known to pass (e.g. the NDR when searching a PDR); 0: none
    double resolution = 0.005;    // stop when the bracket is below this fraction of max_rate
    double loss_ratio = 0;        // 0: NDR; e.g. 0.001 for a PDR at 0.1 %
    double min_offered = 0.99;    // a trial must offer at least this fraction of its rate
    unsigned max_trials = 24;
};

struct SearchTrial {
    double rate = 0;              // asked for
    double offered = 0;           // what the generator achieved, same unit
    uint64_t tx = 0;
    uint64_t rx = 0;
    double loss_ratio = 0;
    bool pass = false;
    std::string why;              // for a failure: "loss" or "offered"
};

class ThroughputSearch {
public:
    explicit ThroughputSearch(const SearchParams& p);

    bool done() const noexcept { return done_; }
    double next_rate() const noexcept { return next_; }
    // Record the trial run at next_rate(); `offered` in the rate's unit.
    const SearchTrial& report(uint64_t tx, uint64_t rx, double offered);

    // Highest passing rate (0 if none passed).
    double result() const noexcept { return best_; }
    const std::vector<SearchTrial>& trials() const noexcept { return trials_; }
    const SearchParams& params() const noexcept { return p_; }

private:
    void advance();

    SearchParams p_;
    std::vector<SearchTrial> trials_;
    double lo_ = 0;      // highest rate known to pass (or the lower bound)
    double hi_ = 0;      // lowest rate known to fail (or above max)
    double next_ = 0;
    double best_ = 0;
    bool done_ = false;
};

} // namespace ravelin::pktgen

#include "rfc2544.hh"

#include <algorithm>

namespace ravelin::pktgen {

ThroughputSearch::ThroughputSearch(const SearchParams& p) : p_(p)
{
    p_.resolution = std::max(p_.resolution, 1e-6);
    lo_ = std::max(0.0, std::min(p_.min_rate, p_.max_rate));
    hi_ = p_.max_rate;
    best_ = lo_;   // min_rate is a rate known to pass
    // The first trial is at the top: a device that takes the full rate
    // needs one trial only.
    next_ = p_.max_rate;
    done_ = p_.max_rate <= 0 || p_.max_trials == 0;
}

const SearchTrial& ThroughputSearch::report(uint64_t tx, uint64_t rx, double offered)
{
    SearchTrial t;
    t.rate = next_;
    t.offered = offered;
    t.tx = tx;
    t.rx = rx;
    t.loss_ratio = tx == 0 ? 1.0 : rx >= tx ? 0.0 : double(tx - rx) / double(tx);
    if (tx == 0) t.why = "nothing sent";
    else if (t.loss_ratio > p_.loss_ratio) t.why = "loss";
    else if (offered < p_.min_offered * next_) t.why = "offered";
    t.pass = t.why.empty();
    trials_.push_back(t);
    if (t.pass) {
        lo_ = std::max(lo_, next_);
        best_ = std::max(best_, next_);
    } else {
        hi_ = std::min(hi_, next_);
    }
    advance();
    return trials_.back();
}

void ThroughputSearch::advance()
{
    if (trials_.size() >= p_.max_trials) {
        done_ = true;
        return;
    }
    // The top passed: nothing above it to find.
    if (best_ >= p_.max_rate) {
        done_ = true;
        return;
    }
    if (hi_ - lo_ <= p_.resolution * p_.max_rate) {
        done_ = true;
        return;
    }
    next_ = (lo_ + hi_) / 2;
}

} // namespace ravelin::pktgen

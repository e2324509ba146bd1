// Tests for the anti-replay window: hand cases from RFC 4303 Appendix A2.2
// and around the 2^32 boundary, then a differential test against a naive
// model (a std::set of accepted numbers and the RFC's rules done the slow,
// obvious way) over millions of random packets. The model and the window
// must agree on every decision and every inferred 64-bit sequence number.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>

#include "replay.hh"

namespace ravelin::dp {
namespace {

constexpr uint64_t two32 = uint64_t(1) << 32;

// --- naive model ----------------------------------------------------------

class Model {
public:
    Model(uint32_t window, bool esn) : w_(window), esn_(esn) {}

    // RFC 4303 A2.2 stated as a set: the full number is the candidate
    // (epoch th-1, th or th+1) in [top - W + 1, top - W + 1 + 2^32), where
    // W is 2^31 with the window off. Computed in 128 bits so nothing wraps.
    bool check(uint32_t lo, uint64_t& full) const
    {
        full = lo;
        if (esn_) {
            const __int128 span = w_ ? w_ : __int128(1) << 31;
            const __int128 bottom = __int128(top_) - span + 1;
            __int128 pick = -1;
            const int64_t th = int64_t(top_ >> 32);
            for (int64_t h = th - 1; h <= th + 1; ++h) {
                const __int128 c = __int128(h) * two32 + lo;
                if (c >= bottom && c < bottom + two32) pick = c;
            }
            if (pick < 0) return w_ == 0;            // epoch -1 does not exist
            if (pick >= __int128(1) << 64) {         // past the 64-bit space
                full = uint64_t(pick);
                return w_ == 0;
            }
            full = uint64_t(pick);
        }
        if (w_ == 0) return true;                    // anti-replay off
        if (full == 0) return false;                 // first packet is 1
        if (full > top_) return true;                // right of the window
        if (top_ - full >= w_) return false;         // left of the window
        return !seen_.count(full);                   // inside: new or replay
    }

    bool update(uint64_t full)
    {
        if (w_ != 0) {
            if (full == 0) return false;
            if (full <= top_ && (top_ - full >= w_ || seen_.count(full))) return false;
            seen_.insert(full);
            // Keep the set small: anything left of the window is decided
            // by the "too old" rule alone.
            if (seen_.size() > 2 * w_ + 64 && full > top_) {
                const uint64_t keep = full >= w_ ? full - w_ + 1 : 0;
                seen_.erase(seen_.begin(), seen_.lower_bound(keep));
            }
        }
        if (full > top_) top_ = full;
        return true;
    }

    uint64_t top() const { return top_; }

private:
    uint32_t w_;
    bool esn_;
    uint64_t top_ = 0;
    std::set<uint64_t> seen_;
};

// --- hand cases -----------------------------------------------------------

ReplayWindow make(uint16_t w, bool esn, uint64_t top = 0)
{
    ReplayWindow r;
    r.reset(w, esn);
    if (top) {
        EXPECT_TRUE(r.update(top));
    }
    return r;
}

// check() must agree with `ok` and, when it accepts, infer `want`.
void expect(const ReplayWindow& r, uint32_t lo, bool ok, uint64_t want = 0)
{
    SeqNum full = 0;
    EXPECT_EQ(r.check(lo, full), ok) << std::hex << "seq_lo 0x" << lo << " top 0x" << r.top();
    if (ok) {
        EXPECT_EQ(full, want) << std::hex << "seq_lo 0x" << lo << " top 0x" << r.top();
    }
}

TEST(Replay, SequenceZeroNeverValid)
{
    for (bool esn : {false, true}) {
        auto r = make(64, esn);
        expect(r, 0, false);
        EXPECT_FALSE(r.update(0));
        expect(r, 1, true, 1);
        EXPECT_TRUE(r.update(1));
        expect(r, 0, false);
    }
    auto big = make(4096, false, 5000);
    expect(big, 0, false);   // now left of the window
}

TEST(Replay, BasicWindow)
{
    auto r = make(64, false);
    for (uint32_t s = 1; s <= 100; ++s) {
        if (s == 37) continue;  // lost, for now
        expect(r, s, true, s);
        EXPECT_TRUE(r.update(s));
        expect(r, s, false);
    }
    expect(r, 37, true, 37);    // 100 - 63: the bottom edge
    EXPECT_TRUE(r.update(37)) << "a fresh number inside the window";
    EXPECT_FALSE(r.update(37));
    expect(r, 36, false);       // left of the window
    EXPECT_FALSE(r.update(36));
    expect(r, 101, true, 101);
}

TEST(Replay, WindowOfOne)
{
    auto r = make(1, false, 10);
    expect(r, 10, false);
    expect(r, 9, false);
    expect(r, 11, true, 11);
}

TEST(Replay, NonPowerOfTwoWindow)
{
    auto r = make(1000, false, 5000);
    expect(r, 4001, true, 4001);
    expect(r, 4000, false);
    EXPECT_FALSE(r.update(4000));
    EXPECT_TRUE(r.update(4001));
    expect(r, 4001, false);
}

// A jump that lands in the same ring word as numbers still in the window
// must clear only the numbers it passes over.
TEST(Replay, SlideKeepsOldBitsSharingAWord)
{
    auto r = make(4096, false);
    for (uint32_t s = 1; s <= 4096; ++s) ASSERT_TRUE(r.update(s));
    ASSERT_TRUE(r.update(4106));           // window is now [11, 4106]
    for (uint32_t s = 11; s <= 63; ++s) expect(r, s, false);
    expect(r, 10, false);
    for (uint32_t s = 4097; s <= 4105; ++s) expect(r, s, true, s);
    for (uint32_t s = 4107; s <= 4200; ++s) expect(r, s, true, s);
}

TEST(Replay, FarJumpClearsEverything)
{
    for (uint64_t gap : {63u, 64u, 65u, 4095u, 4096u, 4097u, 100000u}) {
        auto r = make(4096, false);
        for (uint32_t s = 1; s <= 5000; ++s) ASSERT_TRUE(r.update(s));
        ASSERT_TRUE(r.update(5000 + gap));
        for (uint64_t s = 5001; s < 5000 + gap && s <= 5000 + 5000; ++s)
            if (5000 + gap - s < 4096) expect(r, uint32_t(s), true, s);
        for (uint64_t s = 5000 + gap - 4095; s <= 5000; ++s) expect(r, uint32_t(s), false);
    }
}

TEST(Replay, TopOfThe32BitSpaceWithoutEsn)
{
    auto r = make(64, false, 0xFFFFFFFF);
    expect(r, 0xFFFFFFFF, false);
    expect(r, 0xFFFFFFC0, true, 0xFFFFFFC0);
    expect(r, 0xFFFFFFBF, false);
    expect(r, 1, false);   // no wrap without ESN
}

// RFC 4303 A2.2 case A: Tl >= W - 1, the window lies within one epoch.
TEST(Replay, EsnCaseA)
{
    const uint64_t th = 1;
    auto r = make(64, true, th << 32 | 100);
    expect(r, 50, true, th << 32 | 50);
    expect(r, 37, true, th << 32 | 37);              // Seql = Tl - W + 1: still Th
    expect(r, 36, true, (th + 1) << 32 | 36);        // below the bottom: Th + 1
    expect(r, 0, true, (th + 1) << 32);
    expect(r, 100, false);                           // the top itself
    expect(r, 101, true, th << 32 | 101);
    expect(r, 0xFFFFFFFF, true, th << 32 | 0xFFFFFFFF);
}

// RFC 4303 A2.2 case B: Tl < W - 1, the window straddles two epochs.
TEST(Replay, EsnCaseB)
{
    const uint64_t th = 1;
    auto r = make(64, true, th << 32 | 10);
    const uint32_t bl = 10u - 63u;                   // 0xFFFFFFCB
    expect(r, bl, true, (th - 1) << 32 | bl);        // Seql >= Bl: Th - 1
    expect(r, 0xFFFFFFFF, true, (th - 1) << 32 | 0xFFFFFFFF);
    expect(r, bl - 1, true, th << 32 | (bl - 1));    // Seql < Bl: Th, far ahead
    expect(r, 0, true, th << 32);                    // full number 2^32 is valid
    expect(r, 5, true, th << 32 | 5);
    expect(r, 10, false);
    expect(r, 11, true, th << 32 | 11);
    ASSERT_TRUE(r.update((th - 1) << 32 | 0xFFFFFFF0));
    expect(r, 0xFFFFFFF0, false);                    // replay from the previous epoch
}

// Case B before the first wrap: there is no epoch -1.
TEST(Replay, EsnNoEpochBeforeZero)
{
    auto r = make(64, true, 10);
    expect(r, 0xFFFFFFF0, false);
    expect(r, 0xFFFFFFCB, false);
    expect(r, 0xFFFFFFCA, true, 0xFFFFFFCA);         // Seql < Bl: epoch 0, ahead
    expect(r, 0, false);                             // full 0
    expect(r, 3, true, 3);
}

TEST(Replay, EsnWrap)
{
    auto r = make(64, true, 0xFFFFFFF0);
    expect(r, 0, true, two32);                       // 2^32 follows 2^32 - 1
    ASSERT_TRUE(r.update(two32 + 2));
    expect(r, 0xFFFFFFF0, false);                    // seen before the wrap
    expect(r, 0xFFFFFFF5, true, 0xFFFFFFF5);         // late packet from epoch 0
    ASSERT_TRUE(r.update(0xFFFFFFF5));
    expect(r, 0xFFFFFFF5, false);
    expect(r, 1, true, two32 + 1);
    expect(r, 2, false);
    expect(r, 0xFFFFFFC3, true, 0xFFFFFFC3);         // top - 63
    expect(r, 0xFFFFFFC2, true, two32 + 0xFFFFFFC2);   // below the bottom: next epoch
}

TEST(Replay, EsnEndOf64BitSpace)
{
    auto r = make(64, true, ~uint64_t(0) - 10);
    expect(r, 0xFFFFFFFF, true, ~uint64_t(0));
    expect(r, 5, false);                             // would be epoch 2^32
}

TEST(Replay, WindowOffAcceptsEverything)
{
    auto plain = make(0, false);
    expect(plain, 0, true, 0);
    EXPECT_TRUE(plain.update(7));
    EXPECT_TRUE(plain.update(7));
    expect(plain, 7, true, 7);

    // ESN still infers the high half, within 2^31 of the top.
    const uint64_t top = two32 | 5;
    auto esn = make(0, true, top);
    expect(esn, 5, true, top);
    expect(esn, 0xFFFFFFF0, true, 0xFFFFFFF0);
    expect(esn, 0x80000005, true, two32 | 0x80000005);   // 2^31 ahead
    expect(esn, 0x80000006, true, 0x80000006);           // 2^31 - 1 behind
    auto fresh = make(0, true);
    expect(fresh, 0xFFFFFFFF, true, 0xFFFFFFFF);         // no epoch -1: epoch 0
}

// --- differential test ----------------------------------------------------

struct Walk {
    uint16_t window;
    bool esn;
    uint64_t start;   // sender's counter before the first packet
    uint32_t steps;
};

// How often each outcome came up, so a generator change that stops
// exercising a path shows up as a failure rather than silently.
struct Tally {
    uint64_t ahead = 0, inside = 0, replay = 0, too_old = 0, no_epoch = 0;
    // Genuine packets accepted from the epoch before or after the top's, and
    // genuine packets put in the wrong epoch (A2.2 places anything left of
    // the window in the next epoch; the ICV then fails).
    uint64_t prev_epoch = 0, next_epoch = 0, misinferred = 0;
};

void count(Tally& t, bool ok, SeqNum got, uint64_t top, uint64_t window, uint64_t truth, bool forged)
{
    if (ok) {
        ++(got > top ? t.ahead : t.inside);
        const bool genuine = !forged && got == truth;
        t.prev_epoch += genuine && (got >> 32) < (top >> 32);
        t.next_epoch += genuine && (got >> 32) > (top >> 32);
        t.misinferred += !forged && got != truth;
    } else if (got > top || got == 0) {
        ++t.no_epoch;
    } else {
        ++(top - got >= window ? t.too_old : t.replay);
    }
}

// A sender walking forward with loss, reordering, duplicates, far jumps,
// very old packets and forgeries (the true 64-bit number of each packet).
class Sender {
public:
    Sender(const Walk& run, std::mt19937_64& rng)
        : rng_(rng), counter_(run.start), limit_(run.esn ? ~uint64_t(0) : 0xFFFFFFFF),
          w_(run.window ? run.window : 4096), esn_(run.esn)
    {
    }

    uint64_t uni(uint64_t lo, uint64_t hi) { return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_); }

    uint64_t next(bool& forged)
    {
        forged = false;
        const unsigned kind = unsigned(uni(0, 99));
        uint64_t truth = counter_;
        if (kind < 70) {
            truth = advance(kind < 60 ? 1 : uni(1, 4));
        } else if (kind < 80) {
            truth = behind(uni(0, 2 * w_ + 64));             // reordered or just too old
        } else if (kind < 88) {
            if (seen_) truth = recent_[uni(0, std::min(seen_, 64u) - 1)];   // duplicate
        } else if (kind == 88 && esn_ && (counter_ >> 32) != 0xFFFFFFFF) {
            // Close in on the next epoch boundary so that reordering straddles
            // it; a jump of more than 2^32 - W cannot be inferred, so go at
            // most 2^31 at a time.
            const uint64_t target = (((counter_ >> 32) + 1) << 32) - uni(1, 2 * w_ + 64);
            truth = target - counter_ < (uint64_t(1) << 31) ? advance(target > counter_ ? target - counter_ : 0)
                                                             : advance(uint64_t(1) << 31);
        } else if (kind < 92) {
            static constexpr uint64_t gaps[] = {63, 64, 65, 4095, 4096, 4097};
            truth = advance(kind <= 89 ? gaps[uni(0, 5)] : uni(1, kind == 91 ? (uint64_t(1) << 31) : 100000));
        } else if (kind < 95) {
            truth = behind(uni(0, uint64_t(1) << 33));       // ancient, maybe epochs back
        } else {
            truth = uni(0, 0xFFFFFFFF);
            forged = true;
        }
        recent_[seen_++ % 64] = truth;
        return truth;
    }

private:
    uint64_t advance(uint64_t gap) { return counter_ = limit_ - counter_ < gap ? limit_ : counter_ + gap; }
    uint64_t behind(uint64_t back) const { return counter_ > back ? counter_ - back : 0; }

    std::mt19937_64& rng_;
    uint64_t counter_;
    uint64_t limit_;
    uint64_t w_;
    bool esn_;
    uint64_t recent_[64] = {};
    unsigned seen_ = 0;
};

// Feed the sender's packets to the window and the model. A genuine packet's
// ICV verifies only if the receiver inferred its true 64-bit number (and
// even then fails now and then); forgeries never verify.
void differential(const Walk& run, std::mt19937_64& rng, Tally& tally)
{
    ReplayWindow win;
    win.reset(run.window, run.esn);
    Model model(run.window, run.esn);
    if (run.start) {
        ASSERT_TRUE(win.update(run.start));
        ASSERT_TRUE(model.update(run.start));
    }
    Sender sender(run, rng);
    for (uint32_t step = 0; step < run.steps; ++step) {
        bool forged;
        const uint64_t truth = sender.next(forged);
        const uint32_t lo = uint32_t(truth);
        SeqNum got = 0, want = 0;
        const uint64_t top = win.top();
        const bool ok = win.check(lo, got);
        ASSERT_EQ(ok, model.check(lo, want)) << std::hex << "step " << std::dec << step << std::hex << " lo 0x"
                                             << lo << " top 0x" << top << " truth 0x" << truth;
        ASSERT_EQ(got, want) << std::hex << "lo 0x" << lo << " top 0x" << top;
        count(tally, ok, got, top, run.window ? run.window : 4096, truth, forged);
        if (ok && !forged && got == truth && sender.uni(0, 49) != 0) {
            ASSERT_TRUE(win.update(got));
            ASSERT_TRUE(model.update(got));
            if (run.window != 0 && sender.uni(0, 99) == 0) {
                ASSERT_FALSE(win.update(got)) << "second update is a replay";
            }
        } else if (!ok && got <= top && sender.uni(0, 9) == 0) {
            // update() must refuse what check() refused, and change nothing.
            ASSERT_FALSE(model.update(got));
            ASSERT_FALSE(win.update(got));
        }
        ASSERT_EQ(win.top(), model.top());
    }
}

TEST(Replay, DifferentialAgainstModel)
{
    std::mt19937_64 rng(0x5eed4303);
    std::vector<uint16_t> sizes = {0, 1, 2, 31, 32, 64, 1000, 1024, 4096};
    for (int i = 0; i < 3; ++i) sizes.push_back(uint16_t(std::uniform_int_distribution<int>(3, 4095)(rng)));
    uint64_t total = 0;
    Tally tally;
    for (uint16_t w : sizes) {
        const std::vector<Walk> runs = {
            {w, false, 0, 250000},
            {w, false, 0xFFFFF000, 50000},
            {w, true, 0, 250000},
            {w, true, 0xFFFFF000, 250000},
            {w, true, 0x1FFFFF000, 250000},
            {w, true, ~uint64_t(0) - 300000, 50000},
        };
        for (const Walk& run : runs) {
            SCOPED_TRACE(testing::Message() << "window " << w << " esn " << run.esn << " start 0x"
                                            << std::hex << run.start);
            differential(run, rng, tally);
            if (HasFatalFailure()) return;
            total += run.steps;
        }
    }
    std::printf("replay differential: %llu packets: %llu ahead, %llu inside, %llu replays, %llu too old,\n"
                "  %llu before the first epoch or 0, %llu genuine from the previous epoch,\n"
                "  %llu genuine from the next epoch, %llu misinferred (ICV would fail)\n",
                (unsigned long long)total, (unsigned long long)tally.ahead, (unsigned long long)tally.inside,
                (unsigned long long)tally.replay, (unsigned long long)tally.too_old,
                (unsigned long long)tally.no_epoch, (unsigned long long)tally.prev_epoch,
                (unsigned long long)tally.next_epoch,
                (unsigned long long)tally.misinferred);
    for (uint64_t n : {tally.ahead, tally.inside, tally.replay, tally.too_old, tally.no_epoch,
                       tally.prev_epoch, tally.next_epoch, tally.misinferred})
        EXPECT_GT(n, 1000u);
}

} // namespace
} // namespace ravelin::dp

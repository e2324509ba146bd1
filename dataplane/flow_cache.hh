// A worker's memory of SPD answers for IPv4 5-tuples, in front of rte_acl.
//
// With many policies, rte_acl's trie no longer fits in the core's caches:
// with 10 000 tunnels a lookup missed the L2 about twice a packet, and those
// misses cannot be prefetched (each node's address comes from the one
// before). The cache asks one set instead, whose address is a hash of the
// tuple, so the worker computes it for the whole burst and fetches the
// lines before it reads any (docs/architecture.md, worker step 2).
//
// Four-way set associative, a set is two adjacent 64-byte lines (with two
// ways in 8 192 sets, a third of 10 000 tunnels' tuples shared a set with
// two others and missed every time; with four ways in the default 16 384
// sets, ~0.4 %). An entry remembers the tuple, the answer (a policy of
// that Spd, or none) and the generation of the Spd it came from; an entry of another generation is a miss, so a new
// Spd needs no flush, and an answer is only ever used while the Spd that
// gave it is the one the worker holds (its entries live as long as it).
// The cache is the worker's own: no locks, no atomics.
//
// Hostile traffic (a new tuple each packet) makes every lookup a miss: the
// packet then costs the hash, the probe and the insert on top of the
// classification it would have had anyway. The hash mixes every bit of the
// tuple and is seeded per worker, so which tuples share a set is not
// known outside. Clear packets from the unprotected side do not use a
// cache at all (Worker::inbound_clear).
#pragma once

#include <bit>
#include <cstdint>

#include <rte_memory.h>
#include <rte_prefetch.h>

#include "spd.hh"

namespace ravelin::dp {

// An IPv4 packet's 5-tuple as two words: what flow_key() puts into a
// FlowKey for it, so equal tuples mean equal keys and equal answers.
struct Tuple4 {
    uint64_t addrs;   // source and destination address as on the wire
    uint64_t rest;    // protocol | source port << 32 | destination port << 48
    bool operator==(const Tuple4&) const = default;
};

class FlowCache {
public:
    FlowCache() = default;
    ~FlowCache();
    FlowCache(const FlowCache&) = delete;
    FlowCache& operator=(const FlowCache&) = delete;

    static constexpr unsigned ways_per_set = 4;
    static constexpr unsigned max_log2_sets = 24;   // 2^26 tuples, 2 GiB

    // Allocate 2^log2_sets sets (128 bytes each, log2_sets <= 24) from DPDK
    // memory on `socket` (the worker's NUMA node), else on any node. False
    // if there is no memory; the cache then stays off (ready() is false).
    bool init(unsigned log2_sets, uint64_t seed, int socket = SOCKET_ID_ANY) noexcept;
    bool ready() const noexcept { return sets_ != nullptr; }
    uint32_t entries() const noexcept { return ready() ? (mask_ + 1) * ways_per_set : 0; }

    // The set a tuple lives in: the addresses, seeded, through an odd
    // multiplier (a bijection; the seed goes in first, so which tuples
    // collide before the finaliser depends on it too), the protocol and
    // ports rotated beside them, then
    // MurmurHash3's 64-bit finaliser, so that every bit of the tuple moves
    // the low bits the set is taken from.
    uint32_t set_of(const Tuple4& t) const noexcept
    {
        uint64_t h = ((t.addrs ^ seed_) * 0x9e3779b97f4a7c15ull) ^ std::rotl(t.rest, 29);
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ull;
        h ^= h >> 33;
        return uint32_t(h) & mask_;
    }
    // The set's first line (ways 0 and 1, the two newest inserts, where
    // nearly every tuple is found); the second is left to the hardware's
    // adjacent-line fetch rather than taking another fill buffer.
    void prefetch(uint32_t set) const noexcept { rte_prefetch0(&sets_[set].way[0]); }

    // The answer remembered for `t` under `generation`: true and `out` set
    // (to nullptr when no policy matched), or false.
    bool find(uint32_t set, uint64_t generation, const Tuple4& t, const SpdEntry*& out) const noexcept
    {
        const Set& s = sets_[set];
        for (const Entry& e : s.way)
            if (e.generation == generation && e.tuple == t) {
                out = e.answer;
                return true;
            }
        return false;
    }

    // Remember an answer in way 0. The ways are in the order their tuples
    // were inserted, newest first (a hit does not move a tuple): the
    // others move down one, into the first way that holds nothing of this
    // generation, or else the last (the oldest insert) is forgotten.
    void insert(uint32_t set, uint64_t generation, const Tuple4& t, const SpdEntry* answer) noexcept
    {
        Entry* w = sets_[set].way;
        unsigned free = ways_per_set - 1;
        for (unsigned i = ways_per_set; i-- > 0;) {
            if (w[i].generation != generation) free = i;
            else if (w[i].tuple == t) return;   // a repeat in one burst
        }
        for (unsigned i = free; i > 0; --i) w[i] = w[i - 1];
        w[0] = Entry{t, generation, answer};
    }

private:
    struct Entry {
        Tuple4 tuple;
        uint64_t generation;   // 0: empty (Spd generations start at 1)
        const SpdEntry* answer;
    };
    struct alignas(128) Set {
        Entry way[ways_per_set];
    };
    static_assert(sizeof(Set) == 128);
    Set* sets_ = nullptr;
    uint32_t mask_ = 0;
    uint64_t seed_ = 0;
};

} // namespace ravelin::dp

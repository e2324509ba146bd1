// Neighbour resolution (ARP, IPv6 ND) and the gateway's answers to ARP, ND
// and ping, all run on the main lcore.
//
// Workers only read the table: lookup() is an rte_hash lookup (lock-free
// readers) plus one atomic load of the MAC word. Entries are never deleted,
// so a reader can never see a freed slot and no RCU is needed; a MAC change
// is a single 64-bit store. On a miss the worker asks the main lcore to
// resolve (a ring of ResolveRequest) and drops the packet, counted as
// neighbor_unresolved.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <rte_ether.h>
#include <rte_mbuf.h>

#include "ravelin/types.hh"

struct rte_hash;

namespace ravelin::dp {

class Fib;

// Sent by workers to the main lcore; 4-byte multiple for rte_ring elements.
struct ResolveRequest {
    IpAddress ip;
    uint8_t pad = 0;
    uint16_t port = 0;
};
static_assert(sizeof(ResolveRequest) % 4 == 0);

struct NeighborInfo {
    IpAddress ip;
    uint16_t port = 0;
    bool resolved = false;
    bool pinned = false;   // static: from the config, never learned over
    rte_ether_addr mac{};
};

class NeighborTable {
public:
    static std::unique_ptr<NeighborTable> create(const std::string& name, uint32_t capacity);
    ~NeighborTable();
    NeighborTable(const NeighborTable&) = delete;
    NeighborTable& operator=(const NeighborTable&) = delete;

    // Worker side: the MAC of `ip` if resolved.
    bool lookup(const IpAddress& ip, rte_ether_addr& mac) const noexcept;

    // Main lcore: a MAC from an ARP or ND message. Updates only an entry
    // that exists (one we asked for with want()) and is not pinned: frames
    // from the link can neither create entries, so they cannot fill the
    // table, nor move a static neighbour. True when the entry took the MAC.
    bool learn(const IpAddress& ip, uint16_t port, const rte_ether_addr& mac);
    // Main lcore: create or update a pinned (static) entry: the config's
    // [[neighbor]] sections, and tests. False when the table is full.
    bool add(const IpAddress& ip, uint16_t port, const rte_ether_addr& mac);
    // Main lcore: should we send a request for `ip` now? Creates the entry
    // and rate-limits requests to one per `interval` TSC ticks per address;
    // never for a pinned entry.
    bool want(const IpAddress& ip, uint16_t port, uint64_t now, uint64_t interval);

    std::vector<NeighborInfo> snapshot() const;

    // Bumped whenever a MAC is learned or changes. Workers cache resolved
    // next hops and trust the cache only while this has not moved.
    uint32_t generation() const noexcept { return generation_.load(std::memory_order_acquire); }

private:
    struct Entry {
        std::atomic<uint64_t> mac_word{0};   // bit 63: valid; low 48 bits: MAC
        IpAddress ip;
        uint16_t port = 0;
        bool pinned = false;
        uint64_t requested_tsc = 0;
    };
    NeighborTable() = default;
    Entry* find(const IpAddress& ip) const;
    Entry* find_or_add(const IpAddress& ip, uint16_t port, bool pinned);
    void set_mac(Entry& e, uint16_t port, const rte_ether_addr& mac);

    rte_hash* hash_ = nullptr;
    std::unique_ptr<Entry[]> entries_;
    uint32_t capacity_ = 0;
    std::atomic<uint32_t> used_{0};
    std::atomic<uint32_t> generation_{1};
};

// What the main lcore does with a punted control frame (data at Ethernet).
enum class ControlAction { reply, consumed };

// Answer ARP requests and IPv6 neighbour solicitations for our addresses,
// learn from ARP and neighbour advertisements, answer ICMP/ICMPv6 echo
// requests to us. On `reply` the frame was rewritten in place and must be
// sent out of the port it came from; otherwise the caller frees it.
ControlAction handle_control(rte_mbuf* m, const rte_ether_addr& port_mac, const Fib& fib,
                             NeighborTable& neighbors);

// Build an ARP request or a neighbour solicitation for `target`.
rte_mbuf* make_solicitation(rte_mempool* pool, const rte_ether_addr& src_mac,
                            const IpAddress& src, const IpAddress& target);

} // namespace ravelin::dp

// A poll-mode worker: run to completion on one lcore, bursts in, bursts out.
//
// Each worker owns one RX queue and one TX queue on every port, the SAs
// whose `owner` it is (their sequence numbers, replay windows and counters),
// its counters and its IPsec-MB manager. Everything it shares with others
// is read-only or published through RCU (SA table, SPDs) or lock-free
// (neighbour table, rings); see docs/architecture.md.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <emmintrin.h>

#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "config.hh"
#include "counters.hh"
#include "esp.hh"
#include "flow_cache.hh"
#include "neighbor.hh"
#include "packet.hh"
#include "route.hh"
#include "sa_table.hh"
#include "spd.hh"

struct rte_rcu_qsbr;

namespace ravelin::dp {

inline constexpr unsigned max_workers = 16;
inline constexpr unsigned max_ports = 16;
inline constexpr unsigned max_burst = 64;

struct PortInfo {
    uint16_t id = 0;
    PortRole role = PortRole::protected_side;
    rte_ether_addr mac{};
    uint64_t mac_word = 0;   // mac as check_frame_fast() compares it (mac_word())
    uint16_t mtu = 1500;
};

// Our IPv4 addresses (network order) as Worker::is_local() asks about a
// destination: the first four in fixed slots, compared all at once, any
// further ones in a list. A free slot holds 255.255.255.255, which never
// gets that far (classify drops 224.0.0.0/3 before it asks).
class LocalAddrsV4 {
public:
    void add(uint32_t a)
    {
        if (used_ < first_.size()) first_[used_++] = a;
        else more_.push_back(a);
    }
    bool contains(uint32_t a) const noexcept
    {
        const __m128i slots = _mm_load_si128(reinterpret_cast<const __m128i*>(first_.data()));
        bool hit = _mm_movemask_epi8(_mm_cmpeq_epi32(slots, _mm_set1_epi32(int(a)))) != 0;
        if (unlikely(!more_.empty()))
            for (uint32_t x : more_) hit |= x == a;
        return hit;
    }

private:
    alignas(16) std::array<uint32_t, 4> first_{UINT32_MAX, UINT32_MAX, UINT32_MAX, UINT32_MAX};
    std::vector<uint32_t> more_;
    unsigned used_ = 0;
};

// State shared by all workers and the main lcore. Immutable after start
// except where a member says otherwise.
struct SharedState {
    std::vector<PortInfo> ports;            // indexed by DPDK port id (may have gaps)
    std::vector<uint16_t> port_ids;         // the configured ports, the ones workers poll
    const Fib* fib = nullptr;
    LocalAddrsV4 local_v4;
    NeighborTable* neighbors = nullptr;     // lock-free readers
    SaTable* sas = nullptr;                 // RCU
    std::atomic<Spd*> spd_out{nullptr};     // RCU
    std::atomic<Spd*> spd_in{nullptr};      // RCU
    rte_rcu_qsbr* rcu = nullptr;
    rte_ring* events = nullptr;             // workers -> control plane (MP/SC)
    rte_ring* punt_ike = nullptr;           // workers -> control plane (MP/SC)
    rte_ring* control = nullptr;            // workers -> main lcore: ARP, ND, echo (MP/SC)
    rte_ring* resolve = nullptr;            // workers -> main lcore: ResolveRequest (MP/SC)
    rte_ring* control_tx = nullptr;         // main lcore -> worker 0: frames to send (SP/SC)
    rte_ring* acquires = nullptr;           // workers -> main lcore: channel::Acquire (MP/SC)
    // handoff[from][to]: single producer, single consumer, keeps order.
    std::array<std::array<rte_ring*, max_workers>, max_workers> handoff{};
    unsigned workers = 1;
    unsigned burst = 32;
    // Tuples in each worker's outbound flow cache (a power of two, at least
    // 4), or 0 for none: every outbound lookup then goes to rte_acl.
    unsigned flow_cache_tuples = 65536;
    std::atomic<bool> stop{false};
};

class Worker {
public:
    // `socket`: the NUMA node of the worker's lcore, where its flow caches
    // are allocated.
    Worker(SharedState& shared, WorkerId id, int socket = SOCKET_ID_ANY);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // The poll loop; returns when shared.stop is set.
    void run() noexcept;

    // One iteration of the loop (for tests that drive a worker by hand).
    void poll_once() noexcept;

    // Process a burst as if received on `port` (data at the Ethernet
    // header). Used by poll_once and by tests and benchmarks.
    void process_rx(uint16_t port, rte_mbuf** pkts, uint16_t n) noexcept;
    // Hand the buffered TX packets to the ports; returns how many packets
    // were buffered (sent or dropped as tx_full).
    unsigned flush_tx() noexcept;

    WorkerId id() const noexcept { return id_; }
    // False if the worker's IPsec-MB manager could not be set up.
    bool crypto_ready() const noexcept { return esp_.mgr != nullptr; }
    // False if a flow cache the configuration asks for could not be
    // allocated (its SPD lookups then all go to rte_acl).
    bool flow_cache_ready(SaDirection d) const noexcept
    {
        if (d == SaDirection::outbound) return flows_out_.ready() || !out_cache_wanted_;
        return flows_in_.ready();
    }
    const WorkerCounters& counters() const noexcept { return counters_; }

private:
    struct Item {
        rte_mbuf* m;
        IpInfo info;
        uint32_t esp_offset;
        DpSa* sa;
    };
    // The items are left uninitialised (an anonymous union member is not
    // constructed): a Burst lives on the stack for every burst, and
    // value-initialising max_burst Items each time cost more than the
    // packets' own work. Only items[0, n) are ever read.
    struct Burst {
        union {
            std::array<Item, max_burst> items;
        };
        uint16_t n = 0;
        Burst() noexcept {}
        // Field by field: an Item whose fields were just written one by
        // one, copied as a whole with wide loads, would stall on store
        // forwarding (IpInfo is written with one 8-octet store).
        void add(rte_mbuf* m, const IpInfo& info, uint32_t esp_offset, DpSa* sa) noexcept
        {
            Item& d = items[n++];
            d.m = m;
            d.info = info;
            d.esp_offset = esp_offset;
            d.sa = sa;
        }
        void add(const Item& it) noexcept { add(it.m, it.info, it.esp_offset, it.sa); }
    };
    static_assert(std::is_trivially_destructible_v<Item>);

    void rx_burst(uint16_t port, rte_mbuf** pkts, uint16_t n) noexcept;
    void classify(uint16_t port, rte_mbuf* m, Burst& out, Burst& in_esp, Burst& in_clear) noexcept;
    bool is_local(const rte_mbuf* m, const IpInfo& info) const noexcept;
    void local_delivery(rte_mbuf* m, const IpInfo& info, Burst& in_esp) noexcept;
    void outbound(Burst& b) noexcept;
    void outbound_one(Item& it, const Spd& spd, const SpdEntry* p) noexcept;
    struct HopEntry;
    // The hop the last IPv4 packet of a burst took (forward_remembered()).
    struct HopMemo {
        const HopEntry* entry = nullptr;
    };
    void outbound_protect(Item& it, uint32_t sa_slot, uint32_t reqid) noexcept;
    void sealed(Item& it, DpSa& sa, DropReason r, IpFamily family) noexcept;
    void trap(Item& it, uint32_t reqid) noexcept;
    void inbound_esp(Burst& b) noexcept;
    DpSa* remembered_sa() const noexcept;
    void inbound_looked_up(Burst& b, uint16_t first, Burst& ask_spd, HopMemo& hop) noexcept;
    [[gnu::always_inline]] void inbound_sa(Item& it, Burst& ask_spd, HopMemo& hop) noexcept;
    void inbound_accept(Item& it, Burst& ask_spd, HopMemo& hop) noexcept;
    void inbound_clear(Burst& b) noexcept;
    void inbound_policy(Burst& b) noexcept;
    // The last IPv4 lookup of the burst before: a flow that spans bursts
    // is classified once, not once per burst. Valid while its Spd (by
    // generation) is the one in use.
    struct SpdMemo {
        uint64_t generation = 0;
        Tuple4 tuple{0, 0};
        const SpdEntry* entry = nullptr;
    };
    void spd_lookup(const Spd& spd, Burst& b, const SpdEntry** out, SpdMemo& memo, FlowCache* cache) noexcept;
    void process_handoff(rte_mbuf** pkts, uint16_t n) noexcept;
    void handoff(rte_mbuf* m, WorkerId owner, uint32_t lo, uint32_t hi) noexcept;
    void handoff_outbound(rte_mbuf* m, WorkerId owner, uint32_t slot, uint32_t reqid) noexcept;
    void handoff_inbound(rte_mbuf* m, WorkerId owner, uint32_t slot, uint32_t esp_offset) noexcept;
    void mtu_error(Item& it, DpSa& sa) noexcept;
    bool icmp_error_allowed() noexcept;
    void egress_too_big(rte_mbuf* m, uint16_t mtu) noexcept;
    [[gnu::always_inline]] void forward(rte_mbuf* m, IpFamily family) noexcept;
    [[gnu::always_inline]] const HopEntry* forward_hop(rte_mbuf* m, IpFamily family) noexcept;
    [[gnu::always_inline]] void forward_remembered(rte_mbuf* m, IpFamily family, HopMemo& hop) noexcept;
    void read_hop_generation() noexcept;
    [[gnu::always_inline]] void send_via(rte_mbuf* m, const HopEntry& e) noexcept;
    [[gnu::always_inline]] void forward_routed(rte_mbuf* m, IpFamily family) noexcept;
    [[gnu::noinline]] bool resolve_hop(rte_mbuf* m, IpFamily family, HopEntry& e) noexcept;
    void punt(rte_ring* ring, rte_mbuf* m, Counter& counter) noexcept;
    unsigned send_control_frames() noexcept;
    void drop(rte_mbuf* m, DropReason r) noexcept;
    // A drop after the SA lookup: counted for the worker and for the SA.
    [[gnu::cold, gnu::noinline]] void drop_sa(rte_mbuf* m, DpSa& sa, DropReason r) noexcept;

    SharedState& shared_;
    WorkerId id_;
    WorkerCounters counters_;
    EspContext esp_;
    struct TxBuffer {
        std::array<rte_mbuf*, 2 * max_burst> pkts;
        uint16_t n = 0;
    };
    std::array<TxBuffer, max_ports> tx_{};
    // The smallest port MTU: a packet up to it fits every port; send_via()
    // checks larger ones against their port's.
    uint16_t min_port_mtu_ = UINT16_MAX;

    // Resolved next hops by destination address: the route lookup and the
    // neighbour hash lookup happen once per destination, not per packet.
    // Valid while the neighbour table's generation is unchanged (the FIB
    // itself never changes after start).
    struct HopEntry {
        uint64_t key[2];        // destination address bytes (IPv4: key[0] low 32 bits)
        // Neighbour generation | family << 32 (0 = empty). The family is
        // part of the key: ::a.b.c.d must not hit a.b.c.d.
        uint64_t tag;
        uint8_t eth[16];        // the Ethernet header to prepend (14 octets used)
        uint16_t port;
    };
    static constexpr unsigned hop_cache_size = 256;
    std::array<HopEntry, hop_cache_size> hop_cache_{};
    SpdMemo spd_out_memo_, spd_in_memo_;
    // The inbound SA of the last SPI looked up (remembered_sa()).
    struct {
        uint32_t slot = UINT32_MAX;
        DpSa* sa = nullptr;
    } in_sa_memo_;
    uint32_t hop_generation_ = 0;   // neighbour generation, read once per burst
    uint64_t hop_tag_v4_ = 0;       // the tag an IPv4 entry of this generation has
    FlowCache flows_out_, flows_in_;   // SPD answers by IPv4 5-tuple (flow_cache.hh)
    bool out_cache_wanted_ = false;    // flow_cache_tuples was not 0

    // Busy-time accounting (WorkerStats::busy_cycles, poll_cycles): when
    // the current loop iteration started (0: none yet) and whether the
    // previous one did any work.
    uint64_t poll_start_tsc_ = 0;
    bool poll_busy_ = false;

    // ICMP errors this worker may send: at most icmp_errors_per_window per
    // 100 ms window.
    static constexpr uint32_t icmp_errors_per_window = 100;
    uint64_t icmp_window_tsc_ = 0;
    uint64_t icmp_window_start_ = 0;
    uint32_t icmp_in_window_ = 0;

    // Acquires this worker raised, by reqid hash: at most one per reqid per
    // acquire_interval (100 ms), so a flood into a trap policy costs the
    // control plane one message, not one per packet. Only trap() looks.
    struct AcquireSent {
        uint32_t reqid = 0;
        uint64_t tsc = 0;
    };
    static constexpr unsigned acquire_slots = 64;
    std::array<AcquireSent, acquire_slots> acquire_sent_{};
    uint64_t acquire_interval_tsc_ = 0;
};

} // namespace ravelin::dp

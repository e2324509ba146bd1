// The worker's poll loop and its stages, in packet order.
//
//   rx burst (every port, this worker's queue)
//     -> classify: Ethernet/IP checks; ARP/ND/echo -> main lcore; IKE -> punt;
//        ESP to us -> in_esp; from a protected port -> out; else -> in_clear
//     -> out:      SPD-O (one rte_acl call per burst) -> protect: SA owner?
//                  hand off : esp_encap -> route outer -> tx
//     -> in_esp:   SPI lookup (bulk) -> owner? hand off : esp_decap ->
//                  SPD-I check (must be protect by this SA's reqid) -> route -> tx
//     -> in_clear: SPD-I -> bypass -> route -> tx
//   hand-off rings from the other workers -> the same protect/decap steps
//   tx flush; RCU quiescent state.
//
// Ownership: an SA's sequence number, replay window and counters are only
// touched by its owner worker; a packet for an SA owned elsewhere is handed
// to the owner through an SPSC ring (per worker pair, so order is kept).
// Nothing here locks, allocates, throws or makes a syscall.
#include "worker.hh"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_random.h>
#include <rte_rcu_qsbr.h>

#include "packet.hh"
#include "ravelin/channel.hh"

namespace ravelin::dp {

namespace {

// Hand-off kinds, stored in the low byte of the mbuf's hash.fdir.hi.
constexpr uint32_t handoff_outbound_kind = 1;
constexpr uint32_t handoff_inbound_kind = 2;

} // namespace

Worker::Worker(SharedState& shared, WorkerId id, int socket) : shared_(shared), id_(id)
{
    esp_.mgr = crypto_manager_create();
    esp_.events = shared.events;
    esp_.counters = &counters_;
    icmp_window_tsc_ = rte_get_tsc_hz() / 10;
    acquire_interval_tsc_ = rte_get_tsc_hz() / 10;
    // Outbound: flow_cache_tuples, by default 65 536 (2 MiB of hugepage
    // memory; only the sets of live tuples are ever in the CPU's caches).
    // With a tuple per tunnel for 10 000 tunnels, ~0.4 % share a set with
    // four others and keep missing (~4 % with half the sets: 8 cycles a
    // packet at 10 000 tunnels, as each miss walks rte_acl's trie).
    // Inbound, only decrypted packets of SAs with several policies ask it
    // (inbound_policy; clear packets from outside do not): 4 096 tuples.
    // Without the memory, rte_acl alone (Dataplane::create warns).
    for (uint16_t port : shared.port_ids)   // set up before the workers
        min_port_mtu_ = std::min(min_port_mtu_, shared.ports[port].mtu);
    out_cache_wanted_ = shared.flow_cache_tuples != 0;
    if (out_cache_wanted_)
        flows_out_.init(unsigned(std::countr_zero(shared.flow_cache_tuples / FlowCache::ways_per_set)), rte_rand(),
                        socket);
    flows_in_.init(10, rte_rand(), socket);
}

Worker::~Worker() { crypto_manager_free(esp_.mgr); }

void Worker::run() noexcept
{
    rte_rcu_qsbr_thread_register(shared_.rcu, id_.value);
    rte_rcu_qsbr_thread_online(shared_.rcu, id_.value);
    while (!shared_.stop.load(std::memory_order_relaxed)) poll_once();
    rte_rcu_qsbr_thread_offline(shared_.rcu, id_.value);
    rte_rcu_qsbr_thread_unregister(shared_.rcu, id_.value);
}

void Worker::poll_once() noexcept
{
    // One TSC read per iteration: it dates this iteration's packets
    // (SA last-use, ICMP rate limit) and closes the busy-time accounting of
    // the previous iteration, which ran from its own read to this one.
    const uint64_t now = rte_rdtsc();
    if (poll_start_tsc_ != 0) {
        const uint64_t cycles = now - poll_start_tsc_;
        counters_.stats.poll_cycles.inc(cycles);
        if (poll_busy_) counters_.stats.busy_cycles.inc(cycles);
    }
    poll_start_tsc_ = now;
    esp_.now_tsc = now;
    read_hop_generation();

    rte_mbuf* pkts[max_burst];
    unsigned work = 0;
    for (uint16_t port : shared_.port_ids) {
        uint16_t n = rte_eth_rx_burst(port, id_.value, pkts, uint16_t(shared_.burst));
        if (n) rx_burst(port, pkts, n);
        work += n;
    }
    for (unsigned from = 0; from < shared_.workers; ++from) {
        rte_ring* r = shared_.handoff[from][id_.value];
        if (!r) continue;
        unsigned n = rte_ring_sc_dequeue_burst(r, reinterpret_cast<void**>(pkts), shared_.burst, nullptr);
        if (n) process_handoff(pkts, uint16_t(n));
        work += n;
    }
    if (id_.value == 0) work += send_control_frames();
    work += flush_tx();
    poll_busy_ = work != 0;
    rte_rcu_qsbr_quiescent(shared_.rcu, id_.value);
}

void Worker::drop(rte_mbuf* m, DropReason r) noexcept
{
    counters_.drop(r);
    rte_pktmbuf_free(m);
}

void Worker::drop_sa(rte_mbuf* m, DpSa& sa, DropReason r) noexcept
{
    sa.drops[std::size_t(r)].inc();
    drop(m, r);
}

void Worker::punt(rte_ring* ring, rte_mbuf* m, Counter& counter) noexcept
{
    if (rte_ring_mp_enqueue(ring, m) != 0) return drop(m, DropReason::punt_full);
    counter.inc();
}

namespace {

// The cache key of a destination: its address bytes as two words.
inline void hop_key(const rte_mbuf* m, IpFamily family, uint64_t key[2]) noexcept
{
    if (family == IpFamily::v4) {
        key[0] = rte_pktmbuf_mtod(m, const rte_ipv4_hdr*)->dst_addr;
        key[1] = 0;
    } else {
        std::memcpy(key, rte_pktmbuf_mtod(m, const rte_ipv6_hdr*)->dst_addr, 16);
    }
}

inline unsigned hop_index(const uint64_t key[2], unsigned size) noexcept
{
    uint64_t h = (key[0] ^ key[1] * 0x9e3779b97f4a7c15ull) * 0x9e3779b97f4a7c15ull;
    return unsigned(h >> 32) & (size - 1);
}

// The neighbour generation and the family in one word, so a cache hit is
// three compares. Never 0 (the family is 4 or 6), which marks an empty entry.
inline uint64_t hop_tag(uint32_t generation, IpFamily family) noexcept
{
    return generation | uint64_t(family) << 32;
}

} // namespace

// Once per burst: cache entries filled before the neighbour table last
// changed no longer match.
void Worker::read_hop_generation() noexcept
{
    hop_generation_ = shared_.neighbors->generation();
    hop_tag_v4_ = hop_tag(hop_generation_, IpFamily::v4);
}

// Slow path of forward(): route, neighbour lookup, and fill the cache entry
// with the packet's whole Ethernet header.
bool Worker::resolve_hop(rte_mbuf* m, IpFamily family, HopEntry& e) noexcept
{
    IpInfo info{family, 0, 0, false};
    IpAddress dst = ip_dst(m, info);
    const NextHop* nh = shared_.fib->lookup(dst);
    if (!nh) return drop(m, DropReason::no_route), false;
    const IpAddress& target = nh->on_link ? dst : nh->gateway;
    rte_ether_hdr eth;
    if (!shared_.neighbors->lookup(target, eth.dst_addr)) {
        ResolveRequest req{target, 0, nh->port};
        rte_ring_mp_enqueue_elem(shared_.resolve, &req, sizeof(req));   // best effort
        return drop(m, DropReason::neighbor_unresolved), false;
    }
    eth.src_addr = shared_.ports[nh->port].mac;
    eth.ether_type = rte_cpu_to_be_16(family == IpFamily::v4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6);
    std::memcpy(e.eth, &eth, sizeof(eth));
    hop_key(m, family, e.key);
    e.port = nh->port;
    e.tag = hop_tag(hop_generation_, family);
    return true;
}

// A packet we route (not one we originate): TTL / hop limit first.
inline void Worker::forward_routed(rte_mbuf* m, IpFamily family) noexcept
{
    if (!decrement_ttl(m, family)) return drop(m, DropReason::ttl_expired);
    forward(m, family);
}

// Route, resolve the next hop, add the Ethernet header and queue for TX.
// Inline in every caller: on a cache hit this is a hash, three compares
// and one 14-octet copy of the prebuilt header.
inline void Worker::forward(rte_mbuf* m, IpFamily family) noexcept
{
    (void)forward_hop(m, family);
}

// forward(), returning the hop the packet took (null if it was dropped
// unrouted): packets to the same destination can go the same way with
// send_via() for as long as nothing else is forwarded in between (which
// may reuse the cache entry).
inline const Worker::HopEntry* Worker::forward_hop(rte_mbuf* m, IpFamily family) noexcept
{
    uint64_t key[2];
    hop_key(m, family, key);
    HopEntry& e = hop_cache_[hop_index(key, hop_cache_size)];
    if (unlikely(e.tag != hop_tag(hop_generation_, family) || e.key[0] != key[0] || e.key[1] != key[1]))
        if (!resolve_hop(m, family, e)) return nullptr;
    send_via(m, e);
    return &e;
}

// forward() for the packets of one burst: the next packet to the IPv4
// destination the last one went to takes its hop without the hash. The
// memo is checked against the entry itself (destination and tag), so an
// entry another packet's lookup has taken over since is not used.
inline void Worker::forward_remembered(rte_mbuf* m, IpFamily family, HopMemo& hop) noexcept
{
    if (family != IpFamily::v4) return forward(m, family);
    const uint32_t dst = rte_pktmbuf_mtod(m, const rte_ipv4_hdr*)->dst_addr;
    const HopEntry* e = hop.entry;
    if (e && e->key[0] == dst && e->tag == hop_tag_v4_) return send_via(m, *e);
    hop.entry = forward_hop(m, family);
}

// Add the hop's Ethernet header and queue for TX.
inline void Worker::send_via(rte_mbuf* m, const HopEntry& e) noexcept
{
    // Ports of different MTUs: a packet larger than the smallest is checked
    // against its own port's (decrypted or bypassed traffic from a port
    // with a larger MTU; ESP has its own check against the SA's).
    if (unlikely(m->data_len > min_port_mtu_) && m->data_len > shared_.ports[e.port].mtu)
        return egress_too_big(m, shared_.ports[e.port].mtu);
    // Every packet that gets here had its Ethernet header taken off or
    // was given room for one (esp_encap, make_too_big); still checked.
    if (unlikely(m->data_off < sizeof(rte_ether_hdr))) return drop(m, DropReason::no_buffer_space);
    m->data_off = uint16_t(m->data_off - sizeof(rte_ether_hdr));
    m->data_len = uint16_t(m->data_len + sizeof(rte_ether_hdr));
    m->pkt_len += sizeof(rte_ether_hdr);
    // The 14 octets as two overlapping 8-octet copies.
    uint8_t* eth = rte_pktmbuf_mtod(m, uint8_t*);
    std::memcpy(eth, e.eth, 8);
    std::memcpy(eth + 6, e.eth + 6, 8);
    TxBuffer& tx = tx_[e.port];
    tx.pkts[tx.n++] = m;
    if (unlikely(tx.n == tx.pkts.size())) flush_tx();
}

void Worker::process_rx(uint16_t port, rte_mbuf** pkts, uint16_t n) noexcept
{
    esp_.now_tsc = rte_rdtsc();
    read_hop_generation();
    rx_burst(port, pkts, n);
}

// A received burst; poll_once() or process_rx() has set the burst's time
// and neighbour generation.
void Worker::rx_burst(uint16_t port, rte_mbuf** pkts, uint16_t n) noexcept
{
    counters_.stats.rx_packets.inc(n);
    Burst out, in_esp, in_clear;
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        m->port = port;
        classify(port, m, out, in_esp, in_clear);
    }
    if (out.n) outbound(out);
    if (in_esp.n) inbound_esp(in_esp);
    if (in_clear.n) inbound_clear(in_clear);
}

void Worker::classify(uint16_t port, rte_mbuf* m, Burst& out, Burst& in_esp, Burst& in_clear) noexcept
{
    const PortInfo& p = shared_.ports[port];
    IpInfo info;
    if (unlikely(!check_frame_fast(m, p.mac_word, info))) {
        const FrameCheck c = check_frame(m, p.mac, info);
        if (c.action == FrameAction::control) return punt(shared_.control, m, counters_.stats.punted_control);
        if (c.action == FrameAction::drop) return drop(m, c.reason);
    }
    if (is_local(m, info)) return local_delivery(m, info, in_esp);
    if (p.role == PortRole::protected_side) out.add(m, info, 0, nullptr);
    else in_clear.add(m, info, 0, nullptr);
}

// Is the packet addressed to the gateway itself? IPv4 compares against
// the local addresses without branching on each; IPv6 asks the FIB.
inline bool Worker::is_local(const rte_mbuf* m, const IpInfo& info) const noexcept
{
    if (likely(info.family == IpFamily::v4))
        return shared_.local_v4.contains(rte_pktmbuf_mtod(m, const rte_ipv4_hdr*)->dst_addr);
    return shared_.fib->is_local(ip_dst(m, info));
}

// Packets addressed to the gateway itself (is_local() said so).
//
//  ESP in UDP (RFC 3948 §2.2):  | IP | UDP (4500) | SPI (non-zero) | ...
//  IKE on 4500 (RFC 3948 §2.2): | IP | UDP (4500) | 0x00000000 (non-ESP marker) | IKE
void Worker::local_delivery(rte_mbuf* m, const IpInfo& info, Burst& in_esp) noexcept
{
    if (info.fragment) return drop(m, DropReason::unsupported);
    if (info.proto == proto_esp) return in_esp.add(m, info, info.l3_len, nullptr);
    if (info.proto == proto_udp && has_bytes(m, info.l3_len, 8)) {
        auto* udp = rte_pktmbuf_mtod_offset(m, const rte_udp_hdr*, info.l3_len);
        uint16_t dport = net16(udp->dst_port);
        if (dport == natt_port && has_bytes(m, info.l3_len + 8u, 4)) {
            uint32_t marker;
            std::memcpy(&marker, rte_pktmbuf_mtod_offset(m, const uint8_t*, info.l3_len + 8u), 4);
            if (marker != 0) return in_esp.add(m, info, info.l3_len + 8u, nullptr);
            return punt(shared_.punt_ike, m, counters_.stats.punted_ike);
        }
        if (dport == natt_port && m->data_len == info.l3_len + 9u)
            return (void)rte_pktmbuf_free(m);   // NAT-T keepalive (RFC 3948 §2.3): nothing to do
        if (dport == ike_port) return punt(shared_.punt_ike, m, counters_.stats.punted_ike);
    }
    if (info.proto == proto_icmp || info.proto == proto_icmpv6) {
        rte_pktmbuf_prepend(m, sizeof(rte_ether_hdr));
        return punt(shared_.control, m, counters_.stats.punted_control);
    }
    return drop(m, DropReason::not_for_us);
}

namespace {

// May outbound traffic of Child SA `reqid` be sealed with `sa` (the SA in
// its policy's slot)? A rekey puts a new SA of the same reqid there; an SA
// of another tunnel that took over a freed slot never is.
inline bool serves(const DpSa* sa, uint32_t reqid) noexcept
{
    return sa && sa->reqid == reqid && sa->direction == SaDirection::outbound;
}

inline Tuple4 tuple_v4(const rte_mbuf* m, const IpInfo& info) noexcept
{
    const uint8_t* ip = rte_pktmbuf_mtod(m, const uint8_t*);
    Tuple4 t;
    std::memcpy(&t.addrs, ip + offsetof(rte_ipv4_hdr, src_addr), 8);
    t.rest = info.proto;
    const bool has_ports = info.proto == proto_tcp || info.proto == proto_udp || info.proto == proto_sctp;
    if (has_ports && !info.l4_hidden && has_bytes(m, info.l3_len, 4)) {
        uint32_t ports;
        std::memcpy(&ports, ip + info.l3_len, 4);
        t.rest |= uint64_t(ports) << 32;
    }
    return t;
}

inline void flow_key_v4(const Tuple4& t, FlowKey& key) noexcept
{
    std::memset(&key, 0, sizeof(key));
    key.proto = uint8_t(t.rest);
    key.src[0] = uint32_t(t.addrs);
    key.dst[0] = uint32_t(t.addrs >> 32);
    const uint32_t ports = uint32_t(t.rest >> 32);
    std::memcpy(&key.sport, &ports, 4);   // sport, dport: adjacent, wire order
}

// selector_matches() without a FlowKey for IPv4: the tuple is read in place.
inline bool exact_selector_matches(const SaSelector& s, const rte_mbuf* m, const IpInfo& info) noexcept
{
    if (info.family != IpFamily::v4) {
        FlowKey key;
        flow_key(m, info, key);
        return selector_matches(s, key, info.family, info.l4_hidden);
    }
    if (s.family != IpFamily::v4 || (info.l4_hidden && s.proto != 0)) return false;
    uint64_t addrs;   // source and destination, as Tuple4 has them
    std::memcpy(&addrs, rte_pktmbuf_mtod_offset(m, const uint8_t*, offsetof(rte_ipv4_hdr, src_addr)), 8);
    const uint32_t src = uint32_t(addrs), dst = uint32_t(addrs >> 32);
    if (((dst & s.local_mask[0]) != s.local[0]) | ((src & s.remote_mask[0]) != s.remote[0])) return false;
    if (s.proto == 0) return true;
    const Tuple4 t = tuple_v4(m, info);
    const uint16_t sport = net16(uint16_t(t.rest >> 32));
    const uint16_t dport = net16(uint16_t(t.rest >> 48));
    return uint8_t(t.rest) == s.proto && s.local_ports.contains(dport) && s.remote_ports.contains(sport);
}

} // namespace

// One rte_acl call per family for the burst, for what the flow cache does
// not know. A packet whose 5-tuple equals the one before it of the same
// family (the common case for a flow in a burst) reuses that packet's
// answer; IPv4 tuples are compared in place, without building a FlowKey.
// The other IPv4 tuples go to `cache` (if any): every set's lines are
// fetched before any is read, and only the tuples it does not know are
// classified (and then remembered; a tuple seen twice in one burst before
// it is known is classified twice). IPv6 goes to rte_acl.
void Worker::spd_lookup(const Spd& spd, Burst& b, const SpdEntry** out, SpdMemo& memo, FlowCache* cache) noexcept
{
    static_assert(offsetof(FlowKey, dport) == offsetof(FlowKey, sport) + 2);
    FlowKey keys4[max_burst + 1], keys6[max_burst];
    const FlowKey* k4[max_burst + 1];
    const FlowKey* k6[max_burst];
    // Which answer a packet takes: its index among the family's distinct
    // tuples, with v6_bit set for IPv6.
    constexpr uint16_t v6_bit = 0x8000;
    uint16_t which[max_burst];
    Tuple4 t4[max_burst + 1];
    uint32_t set4[max_burst + 1];
    const SpdEntry* r4[max_burst + 1];
    uint32_t n4 = 0, n6 = 0;
    Tuple4 prev4{0, ~uint64_t(0)};   // no packet has this (rest's bits 8-31 are 0)
    const uint64_t generation = spd.generation();
    const bool cached = cache && cache->ready();
    // Answer 0 is the memo's when it is this Spd's: a first packet of the
    // memo's flow takes it, the others are looked up from 1 on.
    const uint32_t looked_up_from = memo.generation == generation ? 1 : 0;
    if (looked_up_from) {
        prev4 = memo.tuple;
        r4[0] = memo.entry;
        n4 = 1;
    }
    for (uint16_t i = 0; i < b.n; ++i) {
        const Item& it = b.items[i];
        if (likely(it.info.family == IpFamily::v4)) {
            const Tuple4 t = tuple_v4(it.m, it.info);
            if (t == prev4) { which[i] = uint16_t(n4 - 1); continue; }
            prev4 = t;
            t4[n4] = t;
            if (cached) cache->prefetch(set4[n4] = cache->set_of(t));
            which[i] = uint16_t(n4++);
        } else {
            flow_key(it.m, it.info, keys6[n6]);
            if (n6 > 0 && std::memcmp(&keys6[n6], &keys6[n6 - 1], sizeof(FlowKey)) == 0) {
                which[i] = uint16_t(v6_bit | (n6 - 1));
                continue;
            }
            k6[n6] = &keys6[n6];
            which[i] = uint16_t(v6_bit | n6++);
        }
    }
    // The tuples the cache does not know: classified together.
    uint16_t missed[max_burst + 1];
    uint32_t misses = 0;
    for (uint32_t j = looked_up_from; j < n4; ++j) {
        if (cached && cache->find(set4[j], generation, t4[j], r4[j])) continue;
        flow_key_v4(t4[j], keys4[misses]);
        k4[misses] = &keys4[misses];
        missed[misses++] = uint16_t(j);
    }
    if (misses) {
        const SpdEntry* rm[max_burst + 1];
        spd.lookup_v4(k4, misses, rm);
        for (uint32_t x = 0; x < misses; ++x) {
            const uint16_t j = missed[x];
            r4[j] = rm[x];
            if (cached) cache->insert(set4[j], generation, t4[j], rm[x]);
        }
        if (cached) counters_.stats.spd_cache_misses.inc(misses);
    }
    if (n4) memo = {generation, prev4, r4[n4 - 1]};
    if (likely(n6 == 0)) {
        for (uint16_t i = 0; i < b.n; ++i) out[i] = r4[which[i]];
        return;
    }
    const SpdEntry* r6[max_burst];
    spd.lookup_v6(k6, n6, r6);
    for (uint16_t i = 0; i < b.n; ++i) out[i] = which[i] & v6_bit ? r6[which[i] & ~v6_bit] : r4[which[i]];
}

// Three passes over the burst.
//  1. Check: every packet this worker seals goes into a list with its SA,
//     whose hot lines start loading (sa_prefetch_hot), for all the burst's
//     SAs side by side; the rest (bypass, discard, other workers' SAs,
//     drops) go their way now. A policy's SA is checked once per stretch
//     of packets with that policy.
//  2. Seal the list (esp_encap_burst: one body per stretch of SAs of one
//     kind, consecutive packets of one SA counted once, the keys of the
//     packet two on fetched meanwhile).
//  3. Send what was sealed: a packet to the IPv4 peer of the packet
//     before takes its hop without a lookup (forward_remembered).
// With one tunnel, the list is one SA's run. With a tunnel per packet (many
// Child SAs), no packet pays for setting up a run of its own, and the SAs'
// misses overlap. (A list of runs instead of an SA per packet measured
// ~12 cycles slower with 10 000 tunnels; docs/performance.md.)
//
// flatten (here and in inbound_esp): the ESP body of the SA's kind, down to
// the IPsec-MB call, is inlined into the burst loop (release builds are
// LTO), so a packet does not pay the body's call frame (~20 instructions:
// callee-saved registers, the dispatch). Cold paths stay out of line.
[[gnu::flatten]] void Worker::outbound(Burst& b) noexcept
{
    const Spd& spd = *shared_.spd_out.load(std::memory_order_acquire);
    const SpdEntry* e[max_burst];
    spd_lookup(spd, b, e, spd_out_memo_, &flows_out_);
    const bool need_l4 = spd.needs_l4();
    DpSa* sas[max_burst];
    rte_mbuf* ms[max_burst];
    uint16_t at[max_burst], n = 0;
    const SpdEntry* last_p = nullptr;   // the last policy whose SA is this worker's ...
    DpSa* last_sa = nullptr;            // ... and that SA, checked and fetched
    for (uint16_t i = 0; i < b.n; ++i) {
        Item& it = b.items[i];
        const SpdEntry* p = e[i];
        if (p != last_p || !p) {
            DpSa* sa = p && p->action == PolicyAction::protect ? shared_.sas->get(p->sa_slot) : nullptr;
            if (!serves(sa, p->reqid) || sa->owner != id_) {
                outbound_one(it, spd, p);
                continue;
            }
            sa_prefetch_hot(sa);
            last_p = p;
            last_sa = sa;
        }
        if (unlikely(it.info.l4_hidden && need_l4)) drop(it.m, DropReason::l4_hidden);
        else if (unlikely(!decrement_ttl(it.m, it.info.family))) drop(it.m, DropReason::ttl_expired);
        else sas[n] = last_sa, ms[n] = it.m, at[n++] = i;
    }
    DropReason res[max_burst];
    esp_encap_burst(esp_, sas, ms, n, res);
    HopMemo hop;
    for (uint16_t k = 0; k < n; ++k) {
        DpSa& sa = *sas[k];
        Item& it = b.items[at[k]];
        if (likely(res[k] == DropReason::none && sa.mode == SaMode::tunnel))
            forward_remembered(it.m, sa.outer_family, hop);
        else   // transport mode keeps the packet's own IP header, whatever the endpoint family
            sealed(it, sa, res[k], sa.mode == SaMode::transport ? it.info.family : sa.outer_family);
    }
}

// One packet and its policy `p` (null: none matched).
void Worker::outbound_one(Item& it, const Spd& spd, const SpdEntry* p) noexcept
{
    if (it.info.l4_hidden && spd.needs_l4()) return drop(it.m, DropReason::l4_hidden);
    if (!p) return drop(it.m, DropReason::no_policy);
    if (likely(p->action == PolicyAction::protect)) return outbound_protect(it, p->sa_slot, p->reqid);
    if (p->action == PolicyAction::bypass) {
        counters_.stats.bypassed.inc();
        return forward_routed(it.m, it.info.family);
    }
    drop(it.m, DropReason::policy_discard);
}

// After esp_encap(): forward, answer "too big", or drop.
inline void Worker::sealed(Item& it, DpSa& sa, DropReason r, IpFamily family) noexcept
{
    if (likely(r == DropReason::none)) return forward(it.m, family);
    if (r == DropReason::mtu_exceeded) return mtu_error(it, sa);
    drop_sa(it.m, sa, r);
}

// `reqid` is the Child SA the policy (or the hand-off) meant (serves()).
void Worker::outbound_protect(Item& it, uint32_t sa_slot, uint32_t reqid) noexcept
{
    DpSa* sa = shared_.sas->get(sa_slot);
    if (unlikely(!sa)) return trap(it, reqid);
    if (!serves(sa, reqid)) return drop(it.m, DropReason::no_sa);
    if (sa->owner != id_) return handoff_outbound(it.m, sa->owner, sa_slot, reqid);
    if (!decrement_ttl(it.m, it.info.family)) return drop(it.m, DropReason::ttl_expired);
    sealed(it, *sa, esp_encap(esp_, *sa, it.m), sa->mode == SaMode::transport ? it.info.family : sa->outer_family);
}

// The policy's reqid slot is empty: its Child SA is not negotiated yet
// (start_action = trap) or was deleted. Ask the control plane for it
// (RFC 4301 §4.4.1: the SPD entry triggers SA creation), rate-limited per
// reqid, and drop the packet.
[[gnu::cold, gnu::noinline]] void Worker::trap(Item& it, uint32_t reqid) noexcept
{
    AcquireSent& sent = acquire_sent_[(reqid * 0x9e3779b1u) >> 26];
    if (sent.reqid != reqid || esp_.now_tsc - sent.tsc >= acquire_interval_tsc_) {
        sent = {reqid, esp_.now_tsc};
        channel::Acquire a;
        a.reqid = reqid;
        a.src = ip_src(it.m, it.info);
        a.dst = ip_dst(it.m, it.info);
        a.protocol = it.info.proto;
        FlowKey key;
        flow_key(it.m, it.info, key);
        a.src_port = rte_be_to_cpu_16(key.sport);
        a.dst_port = rte_be_to_cpu_16(key.dport);
        if (shared_.acquires && rte_ring_mp_enqueue_elem(shared_.acquires, &a, sizeof a) == 0)
            counters_.stats.acquires_raised.inc();
        else
            counters_.stats.acquires_lost.inc();
    }
    drop(it.m, DropReason::no_sa_acquire);
}

// The ESP packet would not fit: tell the sender the MTU it can use
// (RFC 4301 §8.2.1 / RFC 1191 / RFC 8201) by rewriting its packet into the
// ICMP error, and count the drop.
void Worker::mtu_error(Item& it, DpSa& sa) noexcept
{
    counters_.drop(DropReason::mtu_exceeded);
    sa.drops[std::size_t(DropReason::mtu_exceeded)].inc();
    if (!icmp_error_allowed()) return (void)rte_pktmbuf_free(it.m);
    const IpAddress* from = shared_.fib->address_on(it.m->port, it.info.family);
    uint16_t room = uint16_t(sa.outer_mtu - std::min<unsigned>(sa.outer_mtu, sa_overhead(sa)));
    if (!from || !make_too_big(it.m, it.info, *from, room)) return (void)rte_pktmbuf_free(it.m);
    counters_.stats.icmp_errors_sent.inc();
    forward(it.m, it.info.family);
}

// Rate limit (RFC 4443 §2.4(f), RFC 1812 §4.3.2.8): a flood of oversized
// packets must not become a flood of errors.
bool Worker::icmp_error_allowed() noexcept
{
    if (esp_.now_tsc - icmp_window_start_ > icmp_window_tsc_) {
        icmp_window_start_ = esp_.now_tsc;
        icmp_in_window_ = 0;
    }
    if (icmp_in_window_ >= icmp_errors_per_window) return false;
    ++icmp_in_window_;
    return true;
}

// A packet (data at its IP header) larger than the MTU of the port its hop
// leaves by: dropped and counted; with DF (IPv4) or IPv6, its sender is
// told the MTU, from our address on the port it came in by. No fragmenting.
// A packet of our own (ESP of an SA whose mtu is above its port's) gets no
// error: we would send it to ourselves.
[[gnu::cold, gnu::noinline]] void Worker::egress_too_big(rte_mbuf* m, uint16_t mtu) noexcept
{
    counters_.drop(DropReason::mtu_exceeded);
    IpInfo info;
    if (validate_ip(m, info) != DropReason::none || shared_.fib->is_local(ip_src(m, info)) || !icmp_error_allowed())
        return (void)rte_pktmbuf_free(m);
    const IpAddress* from = shared_.fib->address_on(m->port, info.family);
    if (!from || !make_too_big(m, info, *from, mtu)) return (void)rte_pktmbuf_free(m);
    counters_.stats.icmp_errors_sent.inc();
    forward(m, info.family);
}

[[gnu::flatten]] void Worker::inbound_esp(Burst& b) noexcept
{
    Burst ask_spd;
    HopMemo hop;
    uint16_t i = 0;
    // The common burst: its packets carry the SPI the burst before ended
    // with. They take that SA as long as they do, with no lookup at all.
    if (DpSa* sa = remembered_sa()) {
        for (; i < b.n; ++i) {
            Item& it = b.items[i];
            if (!has_bytes(it.m, it.esp_offset, 8)) break;
            uint32_t spi;
            std::memcpy(&spi, rte_pktmbuf_mtod_offset(it.m, const uint8_t*, it.esp_offset), 4);
            if (spi != sa->spi_be) break;
            it.sa = sa;
            inbound_sa(it, ask_spd, hop);
        }
    }
    if (i < b.n) inbound_looked_up(b, i, ask_spd, hop);
    if (ask_spd.n) inbound_policy(ask_spd);
}

// Packets [first, n) of the burst, each with the SA its SPI finds in the
// table. SPIs are copied out of the packets (ESP after a 14-byte Ethernet
// header is only 2-byte aligned, and the hash reads whole words), and only
// SPIs that differ from the one before are looked up. A packet too short
// for an ESP header takes found[max_burst], always null.
inline void Worker::inbound_looked_up(Burst& b, uint16_t first, Burst& ask_spd, HopMemo& hop) noexcept
{
    uint32_t spi_values[max_burst];
    const uint32_t* spis[max_burst];
    uint16_t lookup_of[max_burst], n_lookups = 0;
    for (uint16_t i = first; i < b.n; ++i) {
        const Item& it = b.items[i];
        if (unlikely(!has_bytes(it.m, it.esp_offset, 8))) {
            lookup_of[i] = max_burst;
            continue;
        }
        std::memcpy(&spi_values[i], rte_pktmbuf_mtod_offset(it.m, const uint8_t*, it.esp_offset), 4);
        if (n_lookups == 0 || spi_values[i] != *spis[n_lookups - 1]) spis[n_lookups++] = &spi_values[i];
        lookup_of[i] = uint16_t(n_lookups - 1);
    }
    DpSa* found[max_burst + 1];
    found[max_burst] = nullptr;
    if (n_lookups) {
        shared_.sas->lookup_inbound(spis, n_lookups, found);
        if (DpSa* last = found[n_lookups - 1]) in_sa_memo_ = {last->slot, last};
    }
    for (uint16_t i = first; i < b.n; ++i) {
        Item& it = b.items[i];
        it.sa = found[lookup_of[i]];
        if (unlikely(!it.sa)) {
            drop(it.m, lookup_of[i] == max_burst ? DropReason::runt : DropReason::no_sa);
            continue;
        }
        inbound_sa(it, ask_spd, hop);
    }
}

// One packet and the SA its SPI found: decrypted here if the SA is this
// worker's, handed to its owner if not.
[[gnu::always_inline]] inline void Worker::inbound_sa(Item& it, Burst& ask_spd, HopMemo& hop) noexcept
{
    if (it.sa->owner != id_) return handoff_inbound(it.m, it.sa->owner, it.sa->slot, it.esp_offset);
    // esp_decap() fills it.info with the inner packet's facts.
    if (DropReason r = esp_decap(esp_, *it.sa, it.m, it.esp_offset, it.info); r != DropReason::none)
        return drop_sa(it.m, *it.sa, r);
    inbound_accept(it, ask_spd, hop);
}

// The inbound SA the last burst's last looked-up SPI found, if it is still
// published in its slot: for packets with its SPI, the same answer
// lookup_inbound() would give. An SA in its slot now is published (RCU:
// not freed while this burst runs), so reading it is safe even if another
// SA took the address; inbound SPIs are unique in the table.
inline DpSa* Worker::remembered_sa() const noexcept
{
    DpSa* sa = in_sa_memo_.sa;
    if (!sa || shared_.sas->get(in_sa_memo_.slot) != sa) return nullptr;
    return sa->direction == SaDirection::inbound ? sa : nullptr;
}

// RFC 4301 §5.2 step 4: a decrypted packet must match the selectors of the
// SA that carried it. Most SAs have one selector set, checked here and now;
// packets of SAs with several are collected in `ask_spd` for
// inbound_policy(). Order is kept per SA: all of an SA's packets take the
// same way.
inline void Worker::inbound_accept(Item& it, Burst& ask_spd, HopMemo& hop) noexcept
{
    if (!it.sa->selector.exact) return ask_spd.add(it);
    if (!exact_selector_matches(it.sa->selector, it.m, it.info)) return drop_sa(it.m, *it.sa, DropReason::policy_mismatch);
    if (!decrement_ttl(it.m, it.info.family)) return drop(it.m, DropReason::ttl_expired);
    forward_remembered(it.m, it.info.family, hop);
}

// Decrypted packets of SAs with several selector sets go through the
// inbound SPD, whose matching entry must say "protect" with this SA's reqid.
void Worker::inbound_policy(Burst& b) noexcept
{
    const Spd& spd = *shared_.spd_in.load(std::memory_order_acquire);
    const SpdEntry* e[max_burst];
    spd_lookup(spd, b, e, spd_in_memo_, &flows_in_);
    for (uint16_t i = 0; i < b.n; ++i) {
        Item& it = b.items[i];
        if (!e[i] || e[i]->action != PolicyAction::protect || e[i]->reqid != it.sa->reqid ||
            (it.info.l4_hidden && spd.needs_l4())) {
            drop_sa(it.m, *it.sa, DropReason::policy_mismatch);
            continue;
        }
        forward_routed(it.m, it.info.family);
    }
}

void Worker::inbound_clear(Burst& b) noexcept
{
    const Spd& spd = *shared_.spd_in.load(std::memory_order_acquire);
    const SpdEntry* e[max_burst];
    // Clear packets from the unprotected side are anyone's to make up: they
    // do not get to evict the flow cache's tuples, and a flood of new
    // tuples pays rte_acl alone.
    spd_lookup(spd, b, e, spd_in_memo_, nullptr);
    for (uint16_t i = 0; i < b.n; ++i) {
        Item& it = b.items[i];
        if (it.info.l4_hidden && spd.needs_l4()) { drop(it.m, DropReason::l4_hidden); continue; }
        if (!e[i]) { drop(it.m, DropReason::no_policy); continue; }
        if (e[i]->action == PolicyAction::discard) { drop(it.m, DropReason::policy_discard); continue; }
        // Clear traffic where the policy demands protection.
        if (e[i]->action == PolicyAction::protect) { drop(it.m, DropReason::policy_mismatch); continue; }
        counters_.stats.bypassed.inc();
        forward_routed(it.m, it.info.family);
    }
}

// What travels with a handed-off packet, in the mbuf's hash.fdir words
// (free once the packet is received): the kind in the low byte of `hi`;
// outbound: the slot above it and the expected reqid in `lo`; inbound: the
// ESP offset above it and the slot in `lo` (the owner re-checks the SPI).
void Worker::handoff(rte_mbuf* m, WorkerId owner, uint32_t lo, uint32_t hi) noexcept
{
    m->hash.fdir.lo = lo;
    m->hash.fdir.hi = hi;
    if (rte_ring_sp_enqueue(shared_.handoff[id_.value][owner.value], m) != 0)
        return drop(m, DropReason::handoff_full);
    counters_.stats.handoff_out.inc();
}

void Worker::handoff_outbound(rte_mbuf* m, WorkerId owner, uint32_t slot, uint32_t reqid) noexcept
{
    handoff(m, owner, reqid, handoff_outbound_kind | slot << 8);
}

void Worker::handoff_inbound(rte_mbuf* m, WorkerId owner, uint32_t slot, uint32_t esp_offset) noexcept
{
    handoff(m, owner, slot, handoff_inbound_kind | esp_offset << 8);
}

void Worker::process_handoff(rte_mbuf** pkts, uint16_t n) noexcept
{
    counters_.stats.handoff_in.inc(n);
    Burst ask_spd;
    HopMemo hop;
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        const uint32_t lo = m->hash.fdir.lo, hi = m->hash.fdir.hi;
        Item it{m, {}, 0, nullptr};
        if (DropReason r = validate_ip(m, it.info); r != DropReason::none) { drop(m, r); continue; }
        if ((hi & 0xff) == handoff_outbound_kind) {
            outbound_protect(it, hi >> 8, lo);   // checks the SA is still this tunnel's
            continue;
        }
        it.esp_offset = hi >> 8;
        it.sa = shared_.sas->get(lo);
        // The SA may have been replaced or removed while the packet waited.
        if (!it.sa || it.sa->owner != id_) { drop(m, DropReason::no_sa); continue; }
        uint32_t spi = 0;
        if (has_bytes(m, it.esp_offset, 4)) std::memcpy(&spi, rte_pktmbuf_mtod_offset(m, const uint8_t*, it.esp_offset), 4);
        if (spi != it.sa->spi_be) {
            drop(m, DropReason::no_sa);   // slot reused by another SA meanwhile
            continue;
        }
        if (DropReason r = esp_decap(esp_, *it.sa, m, it.esp_offset, it.info); r != DropReason::none) {
            drop_sa(m, *it.sa, r);
            continue;
        }
        inbound_accept(it, ask_spd, hop);
    }
    if (ask_spd.n) inbound_policy(ask_spd);
}

unsigned Worker::send_control_frames() noexcept
{
    rte_mbuf* pkts[max_burst];
    unsigned n = rte_ring_sc_dequeue_burst(shared_.control_tx, reinterpret_cast<void**>(pkts), max_burst, nullptr);
    for (unsigned i = 0; i < n; ++i) {
        TxBuffer& tx = tx_[pkts[i]->port];
        tx.pkts[tx.n++] = pkts[i];
        if (tx.n == tx.pkts.size()) flush_tx();
    }
    return n;
}

unsigned Worker::flush_tx() noexcept
{
    unsigned total = 0;
    for (uint16_t port : shared_.port_ids) {
        TxBuffer& tx = tx_[port];
        if (!tx.n) continue;
        uint16_t sent = rte_eth_tx_burst(port, id_.value, tx.pkts.data(), tx.n);
        counters_.stats.tx_packets.inc(sent);
        for (uint16_t i = sent; i < tx.n; ++i) drop(tx.pkts[i], DropReason::tx_full);
        total += tx.n;
        tx.n = 0;
    }
    return total;
}

} // namespace ravelin::dp

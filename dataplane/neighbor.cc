// Neighbour table and the main lcore's ARP / ND / echo handling.
//
// ARP (RFC 826) and ND (RFC 4861) frames reach us from the workers' punt
// path with the data at the Ethernet header. Replies are built in place.
#include "neighbor.hh"

#include <algorithm>
#include <cstring>

#include <rte_arp.h>
#include <rte_hash.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_hash_crc.h>

#include "packet.hh"
#include "route.hh"

namespace ravelin::dp {

namespace {

constexpr uint64_t valid_bit = 1ull << 63;

uint64_t pack_mac(const rte_ether_addr& mac)
{
    uint64_t w = 0;
    for (int i = 0; i < 6; ++i) w = w << 8 | mac.addr_bytes[i];
    return w | valid_bit;
}

rte_ether_addr unpack_mac(uint64_t w)
{
    rte_ether_addr mac;
    for (int i = 5; i >= 0; --i, w >>= 8) mac.addr_bytes[i] = uint8_t(w);
    return mac;
}

} // namespace

std::unique_ptr<NeighborTable> NeighborTable::create(const std::string& name, uint32_t capacity)
{
    std::unique_ptr<NeighborTable> t(new NeighborTable());
    rte_hash_parameters p{};
    p.name = name.c_str();
    p.entries = std::max<uint32_t>(capacity, 8);   // rte_hash's minimum
    p.key_len = sizeof(IpAddress);
    // The key is 17 bytes; rte_jhash reads whole 32-bit words past its
    // end, rte_hash_crc reads exactly key_len bytes.
    p.hash_func = rte_hash_crc;
    p.socket_id = SOCKET_ID_ANY;
    // Lock-free readers; the main lcore is the only writer and never deletes.
    p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
    t->hash_ = rte_hash_create(&p);
    if (!t->hash_) return nullptr;
    t->entries_ = std::make_unique<Entry[]>(capacity);
    t->capacity_ = capacity;
    return t;
}

NeighborTable::~NeighborTable() { rte_hash_free(hash_); }

bool NeighborTable::lookup(const IpAddress& ip, rte_ether_addr& mac) const noexcept
{
    void* data = nullptr;
    if (rte_hash_lookup_data(hash_, &ip, &data) < 0) return false;
    uint64_t w = entries_[uintptr_t(data)].mac_word.load(std::memory_order_acquire);
    if (!(w & valid_bit)) return false;
    mac = unpack_mac(w);
    return true;
}

NeighborTable::Entry* NeighborTable::find(const IpAddress& ip) const
{
    void* data = nullptr;
    if (rte_hash_lookup_data(hash_, &ip, &data) < 0) return nullptr;
    return &entries_[uintptr_t(data)];
}

NeighborTable::Entry* NeighborTable::find_or_add(const IpAddress& ip, uint16_t port, bool pinned)
{
    if (Entry* e = find(ip)) {
        e->pinned = e->pinned || pinned;
        return e;
    }
    uint32_t slot = used_.load(std::memory_order_relaxed);
    if (slot >= capacity_) return nullptr;
    Entry& e = entries_[slot];
    e.ip = ip;
    e.port = port;
    e.pinned = pinned;
    // The slot is fully written before the key becomes visible to readers.
    if (rte_hash_add_key_data(hash_, &ip, reinterpret_cast<void*>(uintptr_t(slot))) < 0) return nullptr;
    used_.store(slot + 1, std::memory_order_release);
    return &e;
}

void NeighborTable::set_mac(Entry& e, uint16_t port, const rte_ether_addr& mac)
{
    e.port = port;
    uint64_t word = pack_mac(mac);
    if (e.mac_word.exchange(word, std::memory_order_release) != word)
        generation_.fetch_add(1, std::memory_order_release);
}

bool NeighborTable::learn(const IpAddress& ip, uint16_t port, const rte_ether_addr& mac)
{
    Entry* e = find(ip);
    if (!e || e->pinned) return false;
    set_mac(*e, port, mac);
    return true;
}

bool NeighborTable::add(const IpAddress& ip, uint16_t port, const rte_ether_addr& mac)
{
    Entry* e = find_or_add(ip, port, true);
    if (!e) return false;
    set_mac(*e, port, mac);
    return true;
}

bool NeighborTable::want(const IpAddress& ip, uint16_t port, uint64_t now, uint64_t interval)
{
    Entry* e = find_or_add(ip, port, false);
    if (!e || e->pinned || (e->requested_tsc != 0 && now - e->requested_tsc < interval)) return false;
    e->requested_tsc = now;
    return true;
}

std::vector<NeighborInfo> NeighborTable::snapshot() const
{
    std::vector<NeighborInfo> out;
    uint32_t n = used_.load(std::memory_order_acquire);
    for (uint32_t i = 0; i < n; ++i) {
        uint64_t w = entries_[i].mac_word.load(std::memory_order_acquire);
        out.push_back({entries_[i].ip, entries_[i].port, (w & valid_bit) != 0, entries_[i].pinned, unpack_mac(w)});
    }
    return out;
}

namespace {

// Believe a neighbour's MAC only from a sender that is on-link on the port
// the frame came in on, and only if it is a unicast MAC: otherwise anyone on
// one link could redirect traffic for hosts on another, or make us flood.
bool may_learn(const Fib& fib, const IpAddress& sender, uint16_t port, const rte_ether_addr& mac)
{
    const NextHop* nh = fib.lookup(sender);
    return nh && nh->on_link && nh->port == port && rte_is_unicast_ether_addr(&mac) &&
           !rte_is_zero_ether_addr(&mac) && !fib.is_local(sender);
}

ControlAction handle_arp(rte_mbuf* m, const rte_ether_addr& port_mac, const Fib& fib,
                         NeighborTable& neighbors)
{
    if (!has_bytes(m, sizeof(rte_ether_hdr), sizeof(rte_arp_hdr))) return ControlAction::consumed;
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    auto* arp = reinterpret_cast<rte_arp_hdr*>(eth + 1);
    if (arp->arp_hardware != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
        arp->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) || arp->arp_hlen != 6 ||
        arp->arp_plen != 4)
        return ControlAction::consumed;
    IpAddress sender = IpAddress::v4(rte_be_to_cpu_32(arp->arp_data.arp_sip));
    IpAddress target = IpAddress::v4(rte_be_to_cpu_32(arp->arp_data.arp_tip));
    bool for_us = fib.is_local(target);
    // RFC 826 merge: update the sender if we already have (or want) it.
    if (may_learn(fib, sender, m->port, arp->arp_data.arp_sha))
        neighbors.learn(sender, m->port, arp->arp_data.arp_sha);
    if (!for_us || arp->arp_opcode != rte_cpu_to_be_16(RTE_ARP_OP_REQUEST))
        return ControlAction::consumed;
    arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
    arp->arp_data.arp_tha = arp->arp_data.arp_sha;
    arp->arp_data.arp_tip = arp->arp_data.arp_sip;
    arp->arp_data.arp_sha = port_mac;
    arp->arp_data.arp_sip = rte_cpu_to_be_32(target.v4_host());
    eth->dst_addr = eth->src_addr;
    eth->src_addr = port_mac;
    return ControlAction::reply;
}

// ICMPv6 checksum over the pseudo-header; the field must be zero on entry.
void icmp6_checksum(rte_ipv6_hdr* ip, uint8_t* icmp)
{
    uint16_t ck = rte_ipv6_udptcp_cksum(ip, icmp);
    std::memcpy(icmp + 2, &ck, 2);
}

IpAddress v6_at(const uint8_t* p)
{
    IpAddress a;
    a.family = IpFamily::v6;
    std::memcpy(a.bytes.data(), p, 16);
    return a;
}

//  Neighbor Solicitation / Advertisement (RFC 4861 §4.3, §4.4):
//  | type | code | checksum | flags/reserved (4) | target address (16) | options...
//  option: | type (1 = source, 2 = target link-layer) | len (units of 8) | MAC |
ControlAction handle_nd(rte_mbuf* m, rte_ipv6_hdr* ip, uint8_t* icmp, uint32_t icmp_len,
                        const rte_ether_addr& port_mac, const Fib& fib, NeighborTable& neighbors)
{
    if (icmp_len < 24 || ip->hop_limits != 255) return ControlAction::consumed;
    IpAddress target = v6_at(icmp + 8);
    const uint8_t* lladdr = nullptr;
    for (uint32_t off = 24; off + 8 <= icmp_len && icmp[off + 1] != 0; off += icmp[off + 1] * 8u)
        if ((icmp[off] == 1 || icmp[off] == 2) && icmp[off + 1] == 1) lladdr = icmp + off + 2;
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    rte_ether_addr mac;
    std::memcpy(mac.addr_bytes, lladdr ? lladdr : eth->src_addr.addr_bytes, 6);
    if (icmp[0] == 136) {   // advertisement: update the target if we asked for it
        if (may_learn(fib, target, m->port, mac)) neighbors.learn(target, m->port, mac);
        return ControlAction::consumed;
    }
    if (!fib.is_local(target)) return ControlAction::consumed;
    IpAddress sender = v6_at(ip->src_addr);
    bool unspecified = sender == IpAddress{IpFamily::v6, {}};
    if (!unspecified && may_learn(fib, sender, m->port, mac)) neighbors.learn(sender, m->port, mac);
    // Answer with an NA carrying our MAC: exactly 32 octets of ICMPv6, so
    // drop the NS's options or, for an NS without any (DAD), make room.
    constexpr uint16_t na_frame = sizeof(rte_ether_hdr) + sizeof(rte_ipv6_hdr) + 32;
    if (m->data_len > na_frame) rte_pktmbuf_trim(m, uint16_t(m->data_len - na_frame));
    else if (m->data_len < na_frame && !rte_pktmbuf_append(m, uint16_t(na_frame - m->data_len)))
        return ControlAction::consumed;
    ip->payload_len = rte_cpu_to_be_16(32);
    // RFC 4861 §7.2.4: answer the sender, or all-nodes if it has no address yet (DAD).
    static const uint8_t all_nodes[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    uint8_t reply_dst[16];
    std::memcpy(reply_dst, unspecified ? all_nodes : ip->src_addr, 16);
    std::memcpy(ip->dst_addr, reply_dst, 16);
    std::memcpy(ip->src_addr, target.bytes.data(), 16);
    icmp[0] = 136;
    icmp[1] = 0;
    icmp[2] = icmp[3] = 0;
    icmp[4] = unspecified ? 0x20 : 0x60;   // solicited (unless DAD) + override
    icmp[5] = icmp[6] = icmp[7] = 0;
    icmp[24] = 2;
    icmp[25] = 1;
    std::memcpy(icmp + 26, port_mac.addr_bytes, 6);
    icmp6_checksum(ip, icmp);
    static constexpr rte_ether_addr all_nodes_mac{{0x33, 0x33, 0, 0, 0, 1}};
    eth->dst_addr = unspecified ? all_nodes_mac : eth->src_addr;
    eth->src_addr = port_mac;
    return ControlAction::reply;
}

void swap_eth(rte_ether_hdr* eth, const rte_ether_addr& port_mac)
{
    eth->dst_addr = eth->src_addr;
    eth->src_addr = port_mac;
}

ControlAction handle_ipv6(rte_mbuf* m, const rte_ether_addr& port_mac, const Fib& fib,
                          NeighborTable& neighbors)
{
    constexpr uint32_t l2 = sizeof(rte_ether_hdr);
    if (!has_bytes(m, l2, sizeof(rte_ipv6_hdr) + 8)) return ControlAction::consumed;
    auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv6_hdr*, l2);
    uint32_t plen = rte_be_to_cpu_16(ip->payload_len);
    if (ip->proto != proto_icmpv6 || !has_bytes(m, l2 + sizeof(rte_ipv6_hdr), plen))
        return ControlAction::consumed;
    auto* icmp = reinterpret_cast<uint8_t*>(ip + 1);
    if (icmp[0] == 135 || icmp[0] == 136)
        return handle_nd(m, ip, icmp, plen, port_mac, fib, neighbors);
    if (icmp[0] != 128 || !fib.is_local(v6_at(ip->dst_addr))) return ControlAction::consumed;
    uint8_t tmp[16];   // echo request -> reply
    std::memcpy(tmp, ip->src_addr, 16);
    std::memcpy(ip->src_addr, ip->dst_addr, 16);
    std::memcpy(ip->dst_addr, tmp, 16);
    ip->hop_limits = 64;
    icmp[0] = 129;
    icmp[2] = icmp[3] = 0;
    icmp6_checksum(ip, icmp);
    swap_eth(rte_pktmbuf_mtod(m, rte_ether_hdr*), port_mac);
    return ControlAction::reply;
}

ControlAction handle_ipv4(rte_mbuf* m, const rte_ether_addr& port_mac, const Fib& fib)
{
    constexpr uint32_t l2 = sizeof(rte_ether_hdr);
    if (!has_bytes(m, l2, sizeof(rte_ipv4_hdr))) return ControlAction::consumed;
    auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, l2);
    uint32_t ihl = (ip->version_ihl & 0x0f) * 4u;
    uint32_t total = rte_be_to_cpu_16(ip->total_length);
    if (ip->next_proto_id != proto_icmp || total < ihl + sizeof(rte_icmp_hdr) ||
        !has_bytes(m, l2, total))
        return ControlAction::consumed;
    auto* icmp = reinterpret_cast<rte_icmp_hdr*>(reinterpret_cast<uint8_t*>(ip) + ihl);
    if (icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || !fib.is_local(IpAddress::v4(rte_be_to_cpu_32(ip->dst_addr))))
        return ControlAction::consumed;
    uint32_t src = ip->src_addr;
    ip->src_addr = ip->dst_addr;
    ip->dst_addr = src;
    ip->time_to_live = 64;
    ip->hdr_checksum = 0;
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
    icmp->icmp_cksum = 0;
    uint16_t ck = rte_raw_cksum(icmp, total - ihl);
    icmp->icmp_cksum = ck == 0xffff ? ck : uint16_t(~ck);
    swap_eth(rte_pktmbuf_mtod(m, rte_ether_hdr*), port_mac);
    return ControlAction::reply;
}

} // namespace

ControlAction handle_control(rte_mbuf* m, const rte_ether_addr& port_mac, const Fib& fib,
                             NeighborTable& neighbors)
{
    if (!has_bytes(m, 0, sizeof(rte_ether_hdr))) return ControlAction::consumed;
    uint16_t type = rte_be_to_cpu_16(rte_pktmbuf_mtod(m, rte_ether_hdr*)->ether_type);
    switch (type) {
    case RTE_ETHER_TYPE_ARP: return handle_arp(m, port_mac, fib, neighbors);
    case RTE_ETHER_TYPE_IPV4: return handle_ipv4(m, port_mac, fib);
    case RTE_ETHER_TYPE_IPV6: return handle_ipv6(m, port_mac, fib, neighbors);
    default: return ControlAction::consumed;
    }
}

namespace {

// A zeroed frame of `len` bytes with the Ethernet header filled in, or
// nullptr with nothing leaked when the pool is empty.
rte_ether_hdr* new_frame(rte_mempool* pool, uint16_t len, const rte_ether_addr& dst,
                         const rte_ether_addr& src, uint16_t type, rte_mbuf*& m)
{
    m = rte_pktmbuf_alloc(pool);
    char* frame = m ? rte_pktmbuf_append(m, len) : nullptr;
    if (!frame) {
        rte_pktmbuf_free(m);
        m = nullptr;
        return nullptr;
    }
    std::memset(frame, 0, len);
    auto* eth = reinterpret_cast<rte_ether_hdr*>(frame);
    eth->dst_addr = dst;
    eth->src_addr = src;
    eth->ether_type = rte_cpu_to_be_16(type);
    return eth;
}

rte_mbuf* arp_request(rte_mempool* pool, const rte_ether_addr& src_mac, const IpAddress& src,
                      const IpAddress& target)
{
    static constexpr rte_ether_addr broadcast{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}};
    rte_mbuf* m;
    rte_ether_hdr* eth = new_frame(pool, sizeof(rte_ether_hdr) + sizeof(rte_arp_hdr), broadcast, src_mac,
                                   RTE_ETHER_TYPE_ARP, m);
    if (!eth) return nullptr;
    auto* arp = reinterpret_cast<rte_arp_hdr*>(eth + 1);
    arp->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
    arp->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    arp->arp_hlen = 6;
    arp->arp_plen = 4;
    arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REQUEST);
    arp->arp_data.arp_sha = src_mac;
    arp->arp_data.arp_sip = rte_cpu_to_be_32(src.v4_host());
    arp->arp_data.arp_tip = rte_cpu_to_be_32(target.v4_host());
    return m;
}

rte_mbuf* neighbor_solicit(rte_mempool* pool, const rte_ether_addr& src_mac, const IpAddress& src,
                           const IpAddress& target)
{
    // Solicited-node multicast ff02::1:ffXX:XXXX and its MAC 33:33:ff:XX:XX:XX.
    const uint8_t* t = target.bytes.data();
    const rte_ether_addr mcast{{0x33, 0x33, 0xff, t[13], t[14], t[15]}};
    rte_mbuf* m;
    rte_ether_hdr* eth = new_frame(pool, sizeof(rte_ether_hdr) + sizeof(rte_ipv6_hdr) + 32, mcast, src_mac,
                                   RTE_ETHER_TYPE_IPV6, m);
    if (!eth) return nullptr;
    auto* ip = reinterpret_cast<rte_ipv6_hdr*>(eth + 1);
    ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
    ip->payload_len = rte_cpu_to_be_16(32);
    ip->proto = proto_icmpv6;
    ip->hop_limits = 255;
    std::memcpy(ip->src_addr, src.bytes.data(), 16);
    uint8_t snm[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15]};
    std::memcpy(ip->dst_addr, snm, 16);
    auto* icmp = reinterpret_cast<uint8_t*>(ip + 1);
    icmp[0] = 135;
    std::memcpy(icmp + 8, t, 16);
    icmp[24] = 1;   // source link-layer address option
    icmp[25] = 1;
    std::memcpy(icmp + 26, src_mac.addr_bytes, 6);
    icmp6_checksum(ip, icmp);
    return m;
}

} // namespace

rte_mbuf* make_solicitation(rte_mempool* pool, const rte_ether_addr& src_mac, const IpAddress& src,
                            const IpAddress& target)
{
    return target.family == IpFamily::v4 ? arp_request(pool, src_mac, src, target)
                                         : neighbor_solicit(pool, src_mac, src, target);
}

} // namespace ravelin::dp

// Forwarding table: the gateway's own addresses, connected subnets and
// static routes, looked up with rte_lpm / rte_lpm6.
//
// Built once at start from the config and never modified afterwards, so
// workers read it without RCU. (Dynamic routes would need a rebuilt Fib
// published like the SPD.)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config.hh"
#include "ravelin/types.hh"

struct rte_lpm;
struct rte_lpm6;

namespace ravelin::dp {

struct NextHop {
    uint16_t port = 0;          // DPDK port id
    bool on_link = true;        // resolve the packet's destination itself
    IpAddress gateway;          // when !on_link
};

// One of the gateway's own addresses.
struct LocalAddress {
    InterfaceAddress ifaddr;
    uint16_t port = 0;
};

class Fib {
public:
    // port_ids[i] is the DPDK port id of config.ports[i].
    static std::unique_ptr<Fib> build(const DataplaneConfig& config,
                                      const std::vector<uint16_t>& port_ids,
                                      const std::string& name, std::string& error);
    ~Fib();
    Fib(const Fib&) = delete;
    Fib& operator=(const Fib&) = delete;

    // Next hop for `dst`, or nullptr if there is no route.
    const NextHop* lookup(const IpAddress& dst) const noexcept;

    // Is this one of our addresses?
    bool is_local(const IpAddress& a) const noexcept;

    // Our first address of `family` on `port` (source of ICMP errors and of
    // ARP/ND requests), or nullptr.
    const IpAddress* address_on(uint16_t port, IpFamily family) const noexcept;

    const std::vector<LocalAddress>& locals() const noexcept { return locals_; }

private:
    Fib() = default;
    rte_lpm* v4_ = nullptr;
    rte_lpm6* v6_ = nullptr;
    std::vector<NextHop> hops_;
    uint32_t default_hop_[2] = {UINT32_MAX, UINT32_MAX};   // /0 routes (IPv4, IPv6), index into hops_
    std::vector<LocalAddress> locals_;
};

} // namespace ravelin::dp

// Forwarding table built from port addresses (connected routes) and static
// routes; LPM next-hop values index hops_.
#include "route.hh"

#include <cstring>

#include <rte_lpm.h>
#include <rte_lpm6.h>

namespace ravelin::dp {

namespace {

IpPrefix network_of(const InterfaceAddress& a)
{
    IpPrefix p{a.addr, a.prefix_len};
    for (unsigned bit = a.prefix_len; bit < a.addr.size() * 8; ++bit)
        p.addr.bytes[bit / 8] &= uint8_t(~(0x80u >> (bit % 8)));
    return p;
}

int port_index(const DataplaneConfig& c, const std::string& name)
{
    for (std::size_t i = 0; i < c.ports.size(); ++i)
        if (c.ports[i].name == name) return int(i);
    return -1;
}

} // namespace

std::unique_ptr<Fib> Fib::build(const DataplaneConfig& config, const std::vector<uint16_t>& port_ids,
                                const std::string& name, std::string& error)
{
    std::unique_ptr<Fib> fib(new Fib());
    rte_lpm_config c4{};
    c4.max_rules = 4096;
    c4.number_tbl8s = 256;
    fib->v4_ = rte_lpm_create((name + "4").c_str(), SOCKET_ID_ANY, &c4);
    rte_lpm6_config c6{};
    c6.max_rules = 4096;
    c6.number_tbl8s = 1 << 12;
    fib->v6_ = rte_lpm6_create((name + "6").c_str(), SOCKET_ID_ANY, &c6);
    if (!fib->v4_ || !fib->v6_) {
        error = "cannot create LPM tables (out of hugepage memory?)";
        return nullptr;
    }
    auto add = [&](const IpPrefix& p, const NextHop& hop) {
        uint32_t id = uint32_t(fib->hops_.size());
        fib->hops_.push_back(hop);
        // LPM depths start at 1: a default route (/0) is the fallback of a miss.
        if (p.len == 0) {
            fib->default_hop_[p.addr.family == IpFamily::v4 ? 0 : 1] = id;
            return true;
        }
        int rc = p.addr.family == IpFamily::v4
                     ? rte_lpm_add(fib->v4_, p.addr.v4_host(), p.len, id)
                     : rte_lpm6_add(fib->v6_, p.addr.bytes.data(), p.len, id);
        if (rc < 0) error = "cannot add route (table full)";
        return rc >= 0;
    };
    for (std::size_t i = 0; i < config.ports.size(); ++i) {
        for (const auto& a : config.ports[i].addresses) {
            fib->locals_.push_back({a, port_ids[i]});
            if (!add(network_of(a), NextHop{port_ids[i], true, {}})) return nullptr;
        }
    }
    for (const auto& r : config.routes) {
        int pi = port_index(config, r.port);
        if (pi < 0) {
            error = "route names unknown port " + r.port;
            return nullptr;
        }
        NextHop hop{port_ids[std::size_t(pi)], !r.via.has_value(), r.via.value_or(IpAddress{})};
        if (!add(r.prefix, hop)) return nullptr;
    }
    return fib;
}

Fib::~Fib()
{
    rte_lpm_free(v4_);
    rte_lpm6_free(v6_);
}

const NextHop* Fib::lookup(const IpAddress& dst) const noexcept
{
    uint32_t id = 0;
    int rc = dst.family == IpFamily::v4 ? rte_lpm_lookup(v4_, dst.v4_host(), &id)
                                        : rte_lpm6_lookup(v6_, dst.bytes.data(), &id);
    if (rc != 0) id = default_hop_[dst.family == IpFamily::v4 ? 0 : 1];
    return id < hops_.size() ? &hops_[id] : nullptr;
}

bool Fib::is_local(const IpAddress& a) const noexcept
{
    for (const auto& l : locals_)
        if (l.ifaddr.addr == a) return true;
    return false;
}

const IpAddress* Fib::address_on(uint16_t port, IpFamily family) const noexcept
{
    for (const auto& l : locals_)
        if (l.port == port && l.ifaddr.addr.family == family) return &l.ifaddr.addr;
    return nullptr;
}

} // namespace ravelin::dp

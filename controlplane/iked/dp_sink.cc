#include "dp_sink.hh"

#include <fmt/format.h>

#include "datagram.hh"
#include "logging.hh"
#include "names.hh"

namespace ravelin::iked {

namespace {

using u128 = unsigned __int128;

u128 to_int(const IpAddress& a)
{
    u128 v = 0;
    for (std::size_t i = 0; i < a.size(); ++i) v = v << 8 | a.bytes[i];
    return v;
}

IpAddress from_int(u128 v, IpFamily family)
{
    IpAddress a;
    a.family = family;
    for (std::size_t i = a.size(); i-- > 0;) {
        a.bytes[i] = uint8_t(v);
        v >>= 8;
    }
    return a;
}

const char* dir_name(SaDirection d) { return d == SaDirection::inbound ? "in" : "out"; }

} // namespace

std::vector<IpPrefix> range_to_prefixes(const IpAddress& start, const IpAddress& end)
{
    std::vector<IpPrefix> out;
    if (start.family != end.family) return out;
    const unsigned bits = start.family == IpFamily::v4 ? 32 : 128;
    u128 lo = to_int(start), hi = to_int(end);
    if (lo > hi) return out;
    for (;;) {
        // The largest block of 2^host addresses aligned at lo that ends at or before hi.
        unsigned host = 0;
        while (host < bits) {
            if (host + 1 == 128) {   // 2^128 does not fit: only the whole IPv6 space
                if (lo == 0 && hi == ~u128(0)) host = 128;
                break;
            }
            u128 size = u128(1) << (host + 1);
            if ((lo & (size - 1)) != 0 || lo + (size - 1) > hi) break;
            ++host;
        }
        out.push_back(IpPrefix{from_int(lo, start.family), uint8_t(bits - host)});
        if (host == bits) break;
        u128 last = lo + (u128(1) << host) - 1;
        if (last >= hi) break;
        lo = last + 1;
    }
    return out;
}

std::vector<PolicyDescriptor> child_policies(const std::vector<ike::TrafficSelector>& local_ts,
                                             const std::vector<ike::TrafficSelector>& remote_ts)
{
    std::vector<PolicyDescriptor> out;
    for (const auto& l : local_ts)
        for (const auto& r : remote_ts) {
            if (l.start.family != r.start.family) continue;   // no policy across families
            // RFC 7296 §2.9: a protocol applies when both selectors name it.
            if (l.protocol && r.protocol && l.protocol != r.protocol) continue;
            uint8_t proto = l.protocol ? l.protocol : r.protocol;
            for (const IpPrefix& lp : range_to_prefixes(l.start, l.end))
                for (const IpPrefix& rp : range_to_prefixes(r.start, r.end))
                    for (SaDirection dir : {SaDirection::outbound, SaDirection::inbound}) {
                        PolicyDescriptor p;
                        p.direction = dir;
                        p.local = lp;
                        p.remote = rp;
                        p.protocol = proto;
                        p.local_ports = {l.start_port, l.end_port};
                        p.remote_ports = {r.start_port, r.end_port};
                        p.action = PolicyAction::protect;
                        // More specific selectors win (lower value).
                        p.priority = 1000 - lp.len - rp.len - (proto ? 1 : 0) -
                                     (p.local_ports.any() ? 0 : 1) - (p.remote_ports.any() ? 0 : 1);
                        out.push_back(p);
                    }
        }
    if (out.size() > channel::max_policies_per_command) out.clear();
    return out;
}

// --- the sink -------------------------------------------------------------------------

DataplaneSaSink::Tunnel& DataplaneSaSink::tunnel(uint32_t reqid, const std::string& connection,
                                                 const std::string& child,
                                                 const std::vector<ike::TrafficSelector>& local_ts,
                                                 const std::vector<ike::TrafficSelector>& remote_ts)
{
    auto [it, fresh] = tunnels_.try_emplace(reqid);
    Tunnel& t = it->second;
    auto policies = child_policies(local_ts, remote_ts);
    if (policies.empty()) {
        ++stats_.too_many_policies;
        logger("chd")->error("{}/{}: reqid {}: {} x {} traffic selectors need more than {} data-plane policies "
                             "(or none apply); the child's traffic is not protected",
                             connection, child, reqid, local_ts.size(), remote_ts.size(),
                             channel::max_policies_per_command);
    }
    t.connection = connection;
    t.child = child;
    // Narrowing may differ between SAs of one child: the latest selectors win.
    if (fresh || policies != t.policies) {
        t.policies = std::move(policies);
        send_policies(reqid, t);
    }
    return t;
}

void DataplaneSaSink::remember(uint32_t seq, std::string what)
{
    // Bounded: results come back within milliseconds; an entry that was
    // never answered (the data plane died) must not pile up.
    if (in_flight_.size() > 4096) in_flight_.erase(in_flight_.begin());
    in_flight_[seq] = std::move(what);
}

void DataplaneSaSink::send_policies(uint32_t reqid, const Tunnel& t)
{
    channel::Command cmd;
    cmd.type = channel::CommandType::policies_set;
    cmd.policies = {};
    cmd.policies.reqid = reqid;
    cmd.policies.count = uint8_t(t.policies.size());
    std::copy(t.policies.begin(), t.policies.end(), cmd.policies.policies.begin());
    uint32_t seq = channel_.send(cmd);
    ++stats_.policy_sets;
    remember(seq, fmt::format("{}/{}: policies of reqid {} ({})", t.connection, t.child, reqid, t.policies.size()));
}

void DataplaneSaSink::send_sa_add(const SaDescriptor& d, const Tunnel& t)
{
    channel::Command cmd;
    cmd.type = channel::CommandType::sa_add;
    cmd.sa_add = {};
    cmd.sa_add.sa = d;
    cmd.sa_add.connection.set(t.connection);
    cmd.sa_add.child.set(t.child);
    uint32_t seq = channel_.send(cmd);   // wipes the keys in cmd
    remember(seq, fmt::format("{}/{}: install {} SA {:08x}", t.connection, t.child, dir_name(d.direction),
                              d.spi.value));
}

void DataplaneSaSink::send_sa_delete(uint32_t spi, SaDirection dir, const char* why)
{
    channel::Command cmd;
    cmd.type = channel::CommandType::sa_delete;
    cmd.sa_delete = {Spi(spi), dir};
    uint32_t seq = channel_.send(cmd);
    remember(seq, fmt::format("remove {} SA {:08x} ({})", dir_name(dir), spi, why));
}

void DataplaneSaSink::install_inbound(const ike::ChildSaRecord& sa)
{
    Tunnel& t = tunnel(sa.reqid, sa.connection, sa.child, sa.local_ts, sa.remote_ts);
    send_sa_add(sa.inbound, t);
    SaDescriptor& kept = t.inbound[sa.inbound.spi.value];
    kept = sa.inbound;
    ++stats_.installed;
}

void DataplaneSaSink::install_outbound(const ike::ChildSaRecord& sa)
{
    Tunnel& t = tunnel(sa.reqid, sa.connection, sa.child, sa.local_ts, sa.remote_ts);
    // Stamped before the command goes out: the ring write can wake the data
    // plane, which may install the SA and see its first packet before this
    // process runs again (a later stamp made such samples negative and lost).
    if (first_use_wait_.size() >= 4096) first_use_wait_.erase(first_use_wait_.begin());
    first_use_wait_[sa.outbound.spi.value] = DataplaneChannel::monotonic_ns();
    send_sa_add(sa.outbound, t);
    t.outbound = sa.outbound.spi.value;
    ++stats_.installed;
    // An adopted outbound SA was just replaced in place; the adopted
    // inbound ones go after the grace period.
    if (t.adopted_out || !t.adopted_in.empty()) {
        t.adopted_out.reset();
        t.adopted_until = std::min(t.adopted_until, Clock::now() + adopted_grace);
    }
}

void DataplaneSaSink::remove_inbound(const ike::ChildSaRecord& sa)
{
    auto it = tunnels_.find(sa.reqid);
    uint32_t spi = sa.inbound.spi.value;
    send_sa_delete(spi, SaDirection::inbound, "deleted");
    ++stats_.removed;
    if (it == tunnels_.end()) return;
    if (auto in = it->second.inbound.find(spi); in != it->second.inbound.end()) {
        wipe_keys(in->second);
        it->second.inbound.erase(in);
    }
    release_if_unused(sa.reqid);
}

void DataplaneSaSink::remove_outbound(const ike::ChildSaRecord& sa)
{
    auto it = tunnels_.find(sa.reqid);
    uint32_t spi = sa.outbound.spi.value;
    ++stats_.removed;
    first_use_wait_.erase(spi);
    // After a rekey the data plane already swapped in the new SA: nothing to remove.
    if (it != tunnels_.end() && it->second.outbound && *it->second.outbound != spi) return;
    send_sa_delete(spi, SaDirection::outbound, "deleted");
    if (it == tunnels_.end()) return;
    it->second.outbound.reset();
    release_if_unused(sa.reqid);
}

void DataplaneSaSink::install_trap(const ike::TrapRecord& trap)
{
    Tunnel& t = tunnel(trap.reqid, trap.connection, trap.child, trap.local_ts, trap.remote_ts);
    t.trap = true;
}

void DataplaneSaSink::remove_trap(const ike::TrapRecord& trap)
{
    auto it = tunnels_.find(trap.reqid);
    if (it == tunnels_.end()) return;
    it->second.trap = false;
    release_if_unused(trap.reqid);
}

void DataplaneSaSink::release_if_unused(uint32_t reqid)
{
    auto it = tunnels_.find(reqid);
    if (it == tunnels_.end()) return;
    const Tunnel& t = it->second;
    if (t.trap || t.outbound || !t.inbound.empty() || t.adopted_out || !t.adopted_in.empty()) return;
    Tunnel gone = std::move(it->second);
    tunnels_.erase(it);
    gone.policies.clear();
    send_policies(reqid, gone);
}

void DataplaneSaSink::adopt(const channel::SaInfo& info, ike::TimePoint deadline)
{
    auto [it, fresh] = tunnels_.try_emplace(info.reqid);
    Tunnel& t = it->second;
    if (fresh) {
        t.connection = std::string(info.connection.view());
        t.child = std::string(info.child.view());
    }
    if (info.direction == SaDirection::inbound) t.adopted_in.insert(info.spi.value);
    else t.adopted_out = info.spi.value;
    t.adopted_until = std::min(t.adopted_until, deadline);
    ++stats_.adopted;
    logger("chd")->info("{}/{}: adopted {} SA {:08x} (reqid {}) from the running data plane", t.connection, t.child,
                        dir_name(info.direction), info.spi.value, info.reqid);
}

void DataplaneSaSink::tick(ike::TimePoint now)
{
    std::vector<uint32_t> done;
    for (auto& [reqid, t] : tunnels_) {
        if (t.adopted_until > now) continue;
        for (uint32_t spi : t.adopted_in) {
            send_sa_delete(spi, SaDirection::inbound, "adopted, replaced");
            ++stats_.adopted_removed;
        }
        t.adopted_in.clear();
        if (t.adopted_out) {
            send_sa_delete(*t.adopted_out, SaDirection::outbound, "adopted, expired");
            ++stats_.adopted_removed;
            t.adopted_out.reset();
        }
        t.adopted_until = ike::TimePoint::max();
        done.push_back(reqid);
    }
    for (uint32_t reqid : done) release_if_unused(reqid);
}

void DataplaneSaSink::reinstall()
{
    in_flight_.clear();
    for (auto it = tunnels_.begin(); it != tunnels_.end();) {
        Tunnel& t = it->second;
        t.adopted_in.clear();
        t.adopted_out.reset();
        t.adopted_until = ike::TimePoint::max();
        t.outbound.reset();   // the daemon rekeys the child: see the header
        if (!t.trap && t.inbound.empty()) {
            it = tunnels_.erase(it);
            continue;
        }
        send_policies(it->first, t);
        for (const auto& [spi, d] : t.inbound) send_sa_add(d, t);
        ++it;
    }
}

std::vector<std::pair<std::string, std::string>> DataplaneSaSink::installed_children() const
{
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& [reqid, t] : tunnels_)
        if (t.outbound || !t.inbound.empty()) out.emplace_back(t.connection, t.child);
    return out;
}

std::optional<uint64_t> DataplaneSaSink::first_used(uint32_t spi, uint64_t first_use_ns)
{
    auto it = first_use_wait_.find(spi);
    if (it == first_use_wait_.end() || !first_use_ns) return std::nullopt;
    uint64_t installed = it->second;
    first_use_wait_.erase(it);
    // An SA used before we stamped it cannot be: a clock oddity, not a sample.
    if (first_use_ns < installed) return std::nullopt;
    return first_use_ns - installed;
}

void DataplaneSaSink::on_result(uint32_t seq, const channel::Result& r)
{
    auto it = in_flight_.find(seq);
    std::string what = it != in_flight_.end() ? it->second : fmt::format("command {}", seq);
    if (it != in_flight_.end()) in_flight_.erase(it);
    if (r.status == channel::Status::ok) return;
    // A delete of something already gone is not worth a warning.
    if (r.status == channel::Status::not_found) {
        logger("chd")->debug("{}: not found in the data plane", what);
        return;
    }
    ++stats_.command_failures;
    logger("chd")->error("data plane refused: {}: {} (status {})", what,
                         std::string_view(r.error.data(), strnlen(r.error.data(), r.error.size())),
                         unsigned(r.status));
}

// --- the transport ----------------------------------------------------------------------

void DataplaneTransport::send(const ike::Endpoint& local, const ike::Endpoint& remote, ike::ByteView message)
{
    static const uint8_t marker[marker_len] = {0, 0, 0, 0};
    bool nat_t = local.port == nat_t_port_;
    if (channel_.transmit(local.addr, local.port, remote.addr, remote.port,
                          nat_t ? ike::ByteView(marker, marker_len) : ike::ByteView(), message))
        ++stats_.tx_ike;
    else
        ++stats_.tx_errors;
}

void DataplaneTransport::send_keepalive(const ike::Endpoint& local, const ike::Endpoint& remote)
{
    static const uint8_t keepalive[1] = {0xff};
    if (channel_.transmit(local.addr, local.port, remote.addr, remote.port, {}, ike::ByteView(keepalive, 1)))
        ++stats_.tx_keepalive;
    else
        ++stats_.tx_errors;
}

void DataplaneTransport::receive(const channel::Frame& frame, const UdpTransport::Deliver& deliver)
{
    ike::ByteView data(frame.payload.data(), frame.length);
    switch (classify_datagram(frame.local_port == nat_t_port_, data)) {
    case DatagramKind::keepalive: ++stats_.rx_keepalive; return;
    case DatagramKind::esp: ++stats_.rx_esp_dropped; return;
    case DatagramKind::malformed: ++stats_.rx_malformed; return;
    case DatagramKind::ike: break;
    }
    ++stats_.rx_ike;
    deliver(ike::Endpoint{frame.local, frame.local_port}, ike::Endpoint{frame.remote, frame.remote_port}, data);
}

} // namespace ravelin::iked

// The main lcore's side of the control-plane channel (shared/ravelin/channel.hh).
//
// One housekeeping pass, every step bounded so a flood on one ring cannot
// starve the others or the main loop:
//
//   heartbeat -> commands (at most commands_per_pass, and only while the
//   pending replies have room) -> publish: rebuild the two SPDs once if
//   any policy changed, wait a grace period, free the old ones -> results
//   (stamped with the time the change became visible) and sa_list output
//   into the replies ring, in command order -> transmit frames -> frames
//   waiting for a next hop -> IKE punt -> events -> acquires.
//
// Ownership: the main lcore is the only writer of the SA table, the SPDs,
// the reqid map and the SA records; it holds sas_->writer_lock() while it
// changes the table or the records, because the stats thread reads both.
// Commands and frames are used in place in their ring slots (zero-copy
// peek API) and key bytes are wiped in the slot before it is released.
#include "dataplane.hh"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <rte_cycles.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <rte_ring_peek_zc.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace ravelin::dp {

using namespace ravelin::channel;

namespace {

constexpr unsigned commands_per_pass = 32;
constexpr std::size_t max_pending_replies = 256;
constexpr unsigned listing_per_pass = 128;
constexpr unsigned frames_per_pass = 32;
constexpr unsigned punts_per_pass = 64;
constexpr unsigned events_per_pass = 32;
constexpr std::size_t max_pending_tx = 64;

// The i-th of n elements a zero-copy start returned (ptr2 after a wrap).
template <typename T>
T* zc_element(const rte_ring_zc_data& z, unsigned i)
{
    return i < z.n1 ? static_cast<T*>(z.ptr1) + i : static_cast<T*>(z.ptr2) + (i - z.n1);
}

void set_error(channel::Result& r, Status s, std::string_view why)
{
    r.status = s;
    r.error.fill(0);
    std::memcpy(r.error.data(), why.data(), std::min(why.size(), r.error.size() - 1));
}

bool prefix_ok(const IpPrefix& p)
{
    if (p.addr.family != IpFamily::v4 && p.addr.family != IpFamily::v6) return false;
    unsigned bits = p.addr.family == IpFamily::v4 ? 32 : 128;
    if (p.len > bits) return false;
    for (unsigned b = p.len; b < bits; ++b)   // host bits must be zero
        if (p.addr.bytes[b / 8] & (0x80 >> (b % 8))) return false;
    return true;
}

const char* policy_problem(const PolicyDescriptor& p)
{
    if (uint8_t(p.direction) > uint8_t(SaDirection::outbound)) return "policy direction invalid";
    if (uint8_t(p.action) > uint8_t(PolicyAction::discard)) return "policy action invalid";
    if (!prefix_ok(p.local) || !prefix_ok(p.remote)) return "policy prefix invalid (family, length or host bits)";
    if (p.local.addr.family != p.remote.addr.family) return "policy mixes IPv4 and IPv6";
    if (p.local_ports.lo > p.local_ports.hi || p.remote_ports.lo > p.remote_ports.hi) return "policy port range invalid";
    return nullptr;
}

} // namespace

bool Dataplane::open_channel(const std::string& path, std::string& error)
{
    channel_ = Channel::create(path, shared_.workers, error);
    return channel_ != nullptr;
}

// TSC to CLOCK_MONOTONIC from the latest anchor (tsc1_, mono1_ns_, taken on
// every main-loop pass), with the TSC rate measured between the start anchor
// and it: rte_get_tsc_hz() is an estimate whose error grows with uptime
// (0.1 % is 60 ms after a minute), which would make the control plane's
// install-to-first-packet latencies meaningless.
void Dataplane::anchor_clock() noexcept
{
    tsc1_ = rte_rdtsc();
    mono1_ns_ = monotonic_ns();
    tsc_hz_ = static_cast<long double>(rte_get_tsc_hz());
    if (mono1_ns_ > mono0_ns_ + 100'000'000 && tsc1_ > tsc0_)
        tsc_hz_ = static_cast<long double>(tsc1_ - tsc0_) * 1e9L / static_cast<long double>(mono1_ns_ - mono0_ns_);
}

uint64_t Dataplane::tsc_to_ns(uint64_t tsc) const noexcept
{
    if (tsc == 0) return 0;
    const long double hz = tsc_hz_ > 0 ? tsc_hz_ : static_cast<long double>(rte_get_tsc_hz());
    long double d = (static_cast<long double>(tsc) - static_cast<long double>(tsc1_)) * 1e9L / hz;
    return uint64_t(static_cast<long double>(mono1_ns_) + d);
}

uint16_t Dataplane::mtu_for(const IpAddress& local) const noexcept
{
    for (const auto& l : fib_->locals())
        if (l.ifaddr.addr == local) return shared_.ports[l.port].mtu;
    return default_mtu_;
}

// Attached = a control plane wrote its pid and that process exists
// (checked once a second: a killed control plane leaves its pid behind).
bool Dataplane::control_attached(uint64_t now)
{
    uint32_t pid = channel_ ? channel_->control_pid() : 0;
    if (pid == 0) {
        cp_pid_ = 0;
        cp_alive_ = false;
    } else if (pid != cp_pid_ || now - cp_checked_tsc_ > rte_get_tsc_hz()) {
        cp_pid_ = pid;
        cp_checked_tsc_ = now;
        cp_alive_ = kill(pid_t(pid), 0) == 0 || errno == EPERM;
    }
    ch_.control_pid.store(pid, std::memory_order_relaxed);
    ch_.attached.store(cp_alive_, std::memory_order_relaxed);
    return cp_alive_;
}

void Dataplane::channel_pass(uint64_t now)
{
    bool attached = control_attached(now);
    anchor_clock();
    if (channel_) {
        channel_->heartbeat(mono1_ns_);
        take_commands();
        finish_commands();
        take_transmits(now);
    }
    retry_pending_tx(now);
    deliver_punts(attached);
    forward_events(attached);
    forward_acquires(attached);
}

// --- commands -------------------------------------------------------------------

void Dataplane::take_commands()
{
    if (listing_.active || replies_pending_.size() >= max_pending_replies) return;
    unsigned want = unsigned(std::min<std::size_t>(commands_per_pass, max_pending_replies - replies_pending_.size()));
    rte_ring* ring = channel_->ring(RingId::commands);
    rte_ring_zc_data z{};
    unsigned n = rte_ring_dequeue_zc_burst_elem_start(ring, sizeof(Command), want, &z, nullptr);
    unsigned used = 0;
    while (used < n) {
        Command& c = *zc_element<Command>(z, used++);
        Reply r;
        r.type = ReplyType::result;
        r.seq = c.seq;
        const uint16_t version = c.version;
        const CommandType type = c.type;
        apply(c, r, unsigned(pass_results_.size()));
        // The key bytes never outlive the command: wipe them in the slot
        // (a wrong version may lay the slot out differently: wipe it all).
        if (version != channel::version) secure_wipe(&c, sizeof c);
        else if (type == CommandType::sa_add) wipe_keys(c.sa_add.sa);
        if (version == channel::version && type == CommandType::sa_list && r.result.status == Status::ok) {
            // The listing answers after this pass's results; later commands wait for it.
            listing_ = {true, r.seq, 0};
            break;
        }
        pass_results_.push_back(r);
    }
    rte_ring_dequeue_zc_elem_finish(ring, used);
}

void Dataplane::apply(Command& c, Reply& r, unsigned index)
{
    channel::Result& res = r.result;
    if (c.version != channel::version) {
        return set_error(res, Status::bad_version,
                         fmt::format("command version {}, this data plane speaks {}", c.version, channel::version));
    }
    switch (c.type) {
    case CommandType::hello: return;
    case CommandType::sa_add: return cmd_sa_add(c.sa_add, res);
    case CommandType::sa_delete: return cmd_sa_delete(c.sa_delete, res);
    case CommandType::policies_set: return cmd_policies_set(c.policies, res, index);
    case CommandType::sa_list: return;   // take_commands() starts the listing
    case CommandType::flush: return cmd_flush(index);
    }
    set_error(res, Status::bad_command, fmt::format("unknown command type {}", uint16_t(c.type)));
}

void Dataplane::cmd_sa_add(const SaAdd& a, channel::Result& r)
{
    const SaDescriptor& d = a.sa;   // used in place; the caller wipes the keys
    if (uint8_t(d.direction) > uint8_t(SaDirection::outbound) || uint8_t(d.mode) > uint8_t(SaMode::transport))
        return set_error(r, Status::bad_command, "SA direction or mode invalid");
    const uint32_t reqid = d.reqid;
    if (reqid == 0) return set_error(r, Status::invalid_sa, "reqid 0: the channel's SAs need a reqid");
    if (config_reqids_.count(reqid)) return set_error(r, Status::invalid_sa, "reqid belongs to a configured SA");
    const bool inbound = d.direction == SaDirection::inbound;
    auto it = reqids_.find(reqid);
    uint32_t out_slot = it != reqids_.end() ? it->second.out_slot : no_slot;
    uint32_t same_spi = sas_->find(d.spi, d.direction);
    if (same_spi != no_slot && (inbound || same_spi != out_slot))
        return set_error(r, Status::spi_in_use, fmt::format("SPI {:#010x} is installed already", d.spi.value));
    const char* why = "unknown";
    DpSa* sa = sa_create(mgr_, d, a.outer_mtu ? a.outer_mtu : mtu_for(d.local),
                         WorkerId(uint16_t(d.spi.value % shared_.workers)), &why);
    if (!sa) return set_error(r, Status::invalid_sa, why);
    std::lock_guard lock(sas_->writer_lock());
    uint32_t slot;
    if (inbound) {
        // The SA carries its selectors when exactly one inbound protect
        // policy of its reqid names them; otherwise workers ask the SPD.
        // They are the selectors the SA was negotiated with (ravelin-iked
        // sends a child's policies before its SAs) and stay with it for its
        // life, as RFC 4301 §5.2 checks inbound traffic against the SA's
        // own selectors: a later policies_set (a rekey narrowed otherwise)
        // applies to the SAs installed after it.
        if (it != reqids_.end()) {
            const PolicyDescriptor* one = nullptr;
            unsigned n = 0;
            for (const PolicyDescriptor& p : it->second.policies)
                if (p.direction == SaDirection::inbound && p.action == PolicyAction::protect) one = &p, ++n;
            if (n == 1) sa->selector = make_selector(*one);
        }
        slot = sas_->install(sa);
        if (slot == no_slot) {
            sa_free(sa);
            return set_error(r, Status::table_full, "SA table full");
        }
    } else {
        ReqidState& rs = reqids_[reqid];
        if (rs.out_slot == no_slot) rs.out_slot = sas_->reserve();
        if (rs.out_slot == no_slot) {
            sa_free(sa);
            return set_error(r, Status::table_full, "SA table full");
        }
        slot = rs.out_slot;
        sas_->replace(slot, sa);   // first SA fills the slot; a rekey swaps it (old freed after a grace period)
    }
    SaRecord& rec = sa_records_[slot];
    rec = SaRecord{};
    rec.from_channel = true;
    rec.installed_ns = monotonic_ns();
    rec.local = d.local;
    rec.remote = d.remote;
    rec.connection = a.connection;
    rec.child = a.child;
    if (!a.connection.view().empty())
        reqid_names_[reqid] = {std::string(a.connection.view()), std::string(a.child.view())};
    spdlog::info("channel: SA {:#010x} {} reqid {} installed in slot {} ({}/{})", d.spi.value,
                 inbound ? "in" : "out", reqid, slot, rec.connection.view(), rec.child.view());
}

void Dataplane::cmd_sa_delete(const SaDelete& d, channel::Result& r)
{
    if (uint8_t(d.direction) > uint8_t(SaDirection::outbound))
        return set_error(r, Status::bad_command, "SA direction invalid");
    uint32_t slot = sas_->find(d.spi, d.direction);
    if (slot == no_slot || !sa_records_[slot].from_channel)
        return set_error(r, Status::not_found, "no SA with this SPI and direction was installed by the channel");
    if (d.direction == SaDirection::outbound) {
        // Only the SA its reqid's slot holds now (a late delete of an SA a
        // rekey replaced finds the successor there and must not remove it).
        const DpSa* sa = sas_->get(slot);
        auto it = sa ? reqids_.find(sa->reqid) : reqids_.end();
        if (it == reqids_.end() || it->second.out_slot != slot)
            return set_error(r, Status::not_found, "the reqid's outbound slot holds another SA");
    }
    std::lock_guard lock(sas_->writer_lock());
    sas_->remove(slot);   // an outbound slot stays reserved: its policies now trap
    sa_records_[slot] = SaRecord{};
    spdlog::info("channel: SA {:#010x} {} removed", d.spi.value, d.direction == SaDirection::inbound ? "in" : "out");
}

void Dataplane::cmd_policies_set(const PoliciesSet& p, channel::Result& r, unsigned index)
{
    const uint32_t reqid = p.reqid;
    const unsigned count = p.count;   // read once: the slot is shared memory
    if (count > max_policies_per_command)
        return set_error(r, Status::bad_command, fmt::format("{} policies, at most {}", count, max_policies_per_command));
    if (reqid == 0) return set_error(r, Status::policy_error, "reqid 0: the channel's policies need a reqid");
    if (config_reqids_.count(reqid)) return set_error(r, Status::policy_error, "reqid belongs to a configured SA");
    std::vector<PolicyDescriptor> policies(p.policies.begin(), p.policies.begin() + count);
    bool traps = false;
    for (PolicyDescriptor& pd : policies) {
        if (const char* why = policy_problem(pd)) return set_error(r, Status::policy_error, why);
        pd.sa = Spi(0);   // the reqid names the SAs
        traps |= pd.direction == SaDirection::outbound && pd.action == PolicyAction::protect;
    }
    ReqidState& rs = reqids_[reqid];
    if (traps && rs.out_slot == no_slot) {
        rs.out_slot = sas_->reserve();
        if (rs.out_slot == no_slot) return set_error(r, Status::table_full, "SA table full (no slot for the reqid)");
    }
    policy_undo_.push_back({reqid, std::move(rs.policies), index});
    rs.policies = std::move(policies);
    spd_dirty_ = true;
}

void Dataplane::cmd_flush(unsigned index)
{
    {
        std::lock_guard lock(sas_->writer_lock());
        for (uint32_t slot = 0; slot < sa_records_.size(); ++slot)
            if (sa_records_[slot].from_channel) {
                sas_->remove(slot);
                sa_records_[slot] = SaRecord{};
            }
    }
    for (auto& [reqid, rs] : reqids_)
        if (!rs.policies.empty()) {
            policy_undo_.push_back({reqid, std::move(rs.policies), index});
            rs.policies.clear();
            spd_dirty_ = true;
        }
    spdlog::info("channel: flushed every SA and policy the control plane installed");
}

// The SPDs are built from the config's rules plus every reqid's policies:
// once per pass, however many policies_set commands the pass applied.
bool Dataplane::publish_spds(std::string& error)
{
    std::vector<SpdRule> rules = config_rules_;
    for (const auto& [reqid, rs] : reqids_)
        for (const PolicyDescriptor& p : rs.policies) {
            SpdRule rule{p, 0, 0};
            if (p.action == PolicyAction::protect) {
                rule.reqid = reqid;
                if (p.direction == SaDirection::outbound) rule.sa_slot = rs.out_slot;
            }
            rules.push_back(rule);
        }
    ++spd_generation_;
    auto out = Spd::build(SaDirection::outbound, rules, fmt::format("rvl_spdo_{}", spd_generation_), error);
    if (!out) return false;
    auto in = Spd::build(SaDirection::inbound, rules, fmt::format("rvl_spdi_{}", spd_generation_), error);
    if (!in) return false;
    shared_.spd_out.store(out.get(), std::memory_order_release);
    shared_.spd_in.store(in.get(), std::memory_order_release);
    // Workers may still be inside the old SPDs: they go after a grace period.
    retired_spds_.push_back({rte_rcu_qsbr_start(shared_.rcu), std::move(spd_out_), std::move(spd_in_), {}});
    spd_out_ = std::move(out);
    spd_in_ = std::move(in);
    return true;
}

void Dataplane::reclaim_spds()
{
    // Tokens grow: the first one not yet safe ends the walk.
    while (!retired_spds_.empty() &&
           rte_rcu_qsbr_check(shared_.rcu, retired_spds_.front().token, false) == 1) {
        for (uint32_t slot : retired_spds_.front().slots) sas_->release(slot);
        retired_spds_.pop_front();
    }
}

// Reqids with no policies and no outbound SA left give their slot back,
// once no SPD a worker may still be in names it: the current one no longer
// does (its policies are gone), retired ones may until reclaim_spds().
void Dataplane::release_unused_reqids()
{
    for (auto it = reqids_.begin(); it != reqids_.end();) {
        ReqidState& rs = it->second;
        if (rs.policies.empty() && (rs.out_slot == no_slot || !sas_->get(rs.out_slot))) {
            if (rs.out_slot != no_slot) {
                if (retired_spds_.empty()) sas_->release(rs.out_slot);
                else retired_spds_.back().slots.push_back(rs.out_slot);
            }
            it = reqids_.erase(it);
        } else {
            ++it;
        }
    }
}

void Dataplane::finish_commands()
{
    if (pass_results_.empty() && !listing_.active) return flush_replies();
    if (spd_dirty_) {
        std::string error;
        if (!publish_spds(error)) {
            // Undo this pass's policy changes, newest first; their commands fail.
            for (auto u = policy_undo_.rbegin(); u != policy_undo_.rend(); ++u) {
                reqids_[u->reqid].policies = std::move(u->old);
                channel::Result& res = pass_results_[u->result].result;
                if (res.status == Status::ok) set_error(res, Status::policy_error, "SPD build failed: " + error);
            }
            spdlog::warn("channel: policy change refused: {}", error);
        }
        spd_dirty_ = false;
    }
    policy_undo_.clear();
    release_unused_reqids();
    uint64_t applied = monotonic_ns();
    for (Reply& r : pass_results_) {
        r.result.applied_ns = applied;
        (r.result.status == Status::ok ? ch_.commands_applied : ch_.commands_failed).inc();
        replies_pending_.push_back(r);
    }
    pass_results_.clear();
    continue_listing();
    flush_replies();
}

// sa_list: one sa_info per installed SA (configured ones too, without
// names), then list_end, then the command's result; as much per pass as
// the pending replies have room for.
void Dataplane::continue_listing()
{
    if (!listing_.active) return;
    unsigned emitted = 0;
    while (listing_.next_slot < sas_->capacity() && emitted < listing_per_pass &&
           replies_pending_.size() < max_pending_replies) {
        const DpSa* sa = sas_->get(listing_.next_slot++);
        if (!sa) continue;
        Reply r;
        r.type = ReplyType::sa_info;
        r.seq = listing_.seq;
        r.sa_info = sa_info(*sa);
        replies_pending_.push_back(r);
        ++emitted;
    }
    if (listing_.next_slot < sas_->capacity() || replies_pending_.size() + 2 > max_pending_replies) return;
    Reply end;
    end.type = ReplyType::list_end;
    end.seq = listing_.seq;
    replies_pending_.push_back(end);
    Reply done;
    done.seq = listing_.seq;
    done.result.applied_ns = monotonic_ns();
    replies_pending_.push_back(done);
    ch_.commands_applied.inc();
    listing_ = Listing{};
}

SaInfo Dataplane::sa_info(const DpSa& sa) const
{
    SaInfo i;
    const SaRecord& rec = sa_records_[sa.slot];
    i.spi = sa.spi;
    i.direction = sa.direction;
    i.mode = sa.mode;
    i.hard_reached = sa.state.hard_reached.load(std::memory_order_relaxed);
    i.reqid = sa.reqid;
    i.worker = sa.owner.value;
    i.packets = sa.state.packets.get();
    i.bytes = sa.state.bytes.get();
    i.installed_ns = rec.installed_ns;
    i.first_use_ns = tsc_to_ns(sa.state.first_used_tsc.get());
    i.last_use_ns = tsc_to_ns(sa.state.last_used_tsc.get());
    i.local = rec.local;
    i.remote = rec.remote;
    i.connection = rec.connection;
    i.child = rec.child;
    return i;
}

bool Dataplane::put_reply(const Reply& r)
{
    rte_ring_zc_data z{};
    if (rte_ring_enqueue_zc_burst_elem_start(channel_->ring(RingId::replies), sizeof(Reply), 1, &z, nullptr) != 1)
        return false;
    std::memcpy(z.ptr1, &r, sizeof r);
    rte_ring_enqueue_zc_elem_finish(channel_->ring(RingId::replies), 1);
    return true;
}

// Results are never lost: what does not fit stays pending (and commands
// wait) until the control plane reads.
void Dataplane::flush_replies()
{
    while (!replies_pending_.empty() && put_reply(replies_pending_.front())) replies_pending_.pop_front();
    ch_.replies_pending.store(uint32_t(replies_pending_.size()), std::memory_order_relaxed);
}

// --- IKE frames -----------------------------------------------------------------

void Dataplane::send_frame(rte_mbuf* m, uint16_t port, const rte_ether_addr& mac)
{
    auto* eth = reinterpret_cast<rte_ether_hdr*>(rte_pktmbuf_prepend(m, sizeof(rte_ether_hdr)));
    const bool v4 = (*rte_pktmbuf_mtod_offset(m, uint8_t*, sizeof(rte_ether_hdr)) >> 4) == 4;
    eth->dst_addr = mac;
    eth->src_addr = shared_.ports[port].mac;
    eth->ether_type = rte_cpu_to_be_16(v4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6);
    m->port = port;
    if (rte_ring_sp_enqueue(shared_.control_tx, m) != 0) {   // worker 0 sends it
        rte_pktmbuf_free(m);
        ch_.transmit_dropped[unsigned(FrameDrop::ring_full)].inc();
        return;
    }
    ch_.transmit_sent.inc();
}

void Dataplane::take_transmits(uint64_t now)
{
    rte_ring* ring = channel_->ring(RingId::transmit);
    rte_ring_zc_data z{};
    unsigned n = rte_ring_dequeue_zc_burst_elem_start(ring, sizeof(Frame), frames_per_pass, &z, nullptr);
    for (unsigned i = 0; i < n; ++i) {
        const Frame& f = *zc_element<Frame>(z, i);
        FrameDrop why = check_frame(f);
        const NextHop* nh = nullptr;
        if (why == FrameDrop::none && !fib_->is_local(f.local)) why = FrameDrop::not_local;
        if (why == FrameDrop::none && !(nh = fib_->lookup(f.remote))) why = FrameDrop::no_route;
        rte_mbuf* m = nullptr;
        if (why == FrameDrop::none) m = packet_from_frame(pool_, f, shared_.ports[nh->port].mtu, ++ip_id_, why);
        if (!m) {
            ch_.transmit_dropped[unsigned(why)].inc();
            continue;
        }
        const IpAddress target = nh->on_link ? f.remote : nh->gateway;
        rte_ether_addr mac;
        if (neighbors_->lookup(target, mac)) {
            send_frame(m, nh->port, mac);
            continue;
        }
        // Hold it for the ARP/ND answer (the same request path workers use).
        solicit(target, nh->port, now);
        if (pending_tx_.size() >= max_pending_tx) {
            rte_pktmbuf_free(m);
            ch_.transmit_dropped[unsigned(FrameDrop::pending_full)].inc();
            continue;
        }
        pending_tx_.push_back({m, target, nh->port, now + rte_get_tsc_hz()});
    }
    rte_ring_dequeue_zc_elem_finish(ring, n);
    ch_.transmit_pending.store(uint32_t(pending_tx_.size()), std::memory_order_relaxed);
}

void Dataplane::retry_pending_tx(uint64_t now)
{
    std::size_t kept = 0;
    for (PendingTx& p : pending_tx_) {
        rte_ether_addr mac;
        if (neighbors_->lookup(p.target, mac)) {
            send_frame(p.m, p.port, mac);
        } else if (int64_t(now - p.deadline) > 0) {
            rte_pktmbuf_free(p.m);
            ch_.transmit_dropped[unsigned(FrameDrop::unresolved)].inc();
        } else {
            pending_tx_[kept++] = p;
        }
    }
    pending_tx_.resize(kept);
    ch_.transmit_pending.store(uint32_t(kept), std::memory_order_relaxed);
}

// IKE datagrams the workers punted: copied into Frames in the punt ring,
// written in place; the mbufs go back to the pool either way.
void Dataplane::deliver_punts(bool attached)
{
    rte_mbuf* pkts[punts_per_pass];
    unsigned n = rte_ring_sc_dequeue_burst(shared_.punt_ike, reinterpret_cast<void**>(pkts), punts_per_pass, nullptr);
    if (!n) return;
    unsigned delivered = 0, room = 0;
    rte_ring_zc_data z{};
    if (attached && channel_)
        room = rte_ring_enqueue_zc_burst_elem_start(channel_->ring(RingId::punt), sizeof(Frame), n, &z, nullptr);
    for (unsigned i = 0; i < n; ++i) {
        FrameDrop why = FrameDrop::none;
        if (!attached || !channel_) why = FrameDrop::no_control_plane;
        else if (delivered == room) why = FrameDrop::ring_full;
        else why = frame_from_packet(pkts[i], *zc_element<Frame>(z, delivered));
        if (why == FrameDrop::none) ++delivered;
        else ch_.punt_dropped[unsigned(why)].inc();
    }
    if (room) rte_ring_enqueue_zc_elem_finish(channel_->ring(RingId::punt), delivered);
    rte_pktmbuf_free_bulk(pkts, n);
    ch_.punt_delivered.inc(delivered);
    ike_drained_.store(ike_drained_.load(std::memory_order_relaxed) + (n - delivered), std::memory_order_relaxed);
}

// Lifetime and sequence events: logged, kept for `stats`, and forwarded.
// An event that cannot be forwarded is counted; the worker raises it again.
void Dataplane::forward_events(bool attached)
{
    DataplaneEvent ev[events_per_pass];
    unsigned n = rte_ring_sc_dequeue_burst_elem(shared_.events, ev, sizeof(DataplaneEvent), events_per_pass, nullptr);
    if (!n) return;
    {
        std::lock_guard lock(events_lock_);
        for (unsigned i = 0; i < n; ++i) {
            spdlog::info("SA {:#010x} {}: {} after {} packets, {} bytes", ev[i].spi.value,
                         ev[i].direction ? "out" : "in", event_name(ev[i].type), ev[i].packets, ev[i].bytes);
            recent_events_.push_back(ev[i]);
            if (recent_events_.size() > recent_events_kept) recent_events_.pop_front();
        }
    }
    for (unsigned i = 0; i < n; ++i) {
        Reply r;
        r.type = ReplyType::event;
        r.event = ev[i];
        if (attached && put_reply(r)) ch_.events_forwarded.inc();
        else ch_.events_dropped.inc();
    }
}

void Dataplane::forward_acquires(bool attached)
{
    Acquire a[events_per_pass];
    unsigned n = rte_ring_sc_dequeue_burst_elem(shared_.acquires, a, sizeof(Acquire), events_per_pass, nullptr);
    for (unsigned i = 0; i < n; ++i) {
        Reply r;
        r.type = ReplyType::acquire;
        r.acquire = a[i];
        if (attached && put_reply(r)) ch_.acquires_forwarded.inc();
        else ch_.acquires_dropped.inc();
    }
}

} // namespace ravelin::dp

// Building the data plane from its config, and the main lcore's loop.
//
// The main lcore is the only writer of the SA table, the SPDs and the
// neighbour table. It never touches a packet on the fast path: it consumes
// what workers punt to it (ARP, ND, echo), asks for neighbour resolution,
// and serves the control-plane channel (dataplane_channel.cc): commands,
// replies, events, acquires, IKE punt and transmit.
#include "dataplane.hh"

#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace ravelin::dp {

namespace {

constexpr uint16_t rx_descriptors = 1024;
constexpr uint16_t tx_descriptors = 1024;

std::string device_name(const std::string& devargs) { return devargs.substr(0, devargs.find(',')); }

std::string ip_string(const IpAddress& a)
{
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(a.family == IpFamily::v4 ? AF_INET : AF_INET6, a.bytes.data(), buf, sizeof buf);
    return buf;
}

// The selectors of an inbound SA, when exactly one inbound policy protects
// with it; otherwise an inexact selector (the worker then asks the SPD).
SaSelector inbound_selector(const DataplaneConfig& config, Spi spi)
{
    const PolicyDescriptor* found = nullptr;
    for (const PolicyConfig& pc : config.policies) {
        const PolicyDescriptor& p = pc.policy;
        if (p.direction != SaDirection::inbound || p.action != PolicyAction::protect || p.sa != spi) continue;
        if (found) return SaSelector{};
        found = &p;
    }
    return found ? make_selector(*found) : SaSelector{};
}

} // namespace

// An mbuf holds the largest frame any port takes, and what ESP adds in
// place: the outer headers go into the headroom (RTE_PKTMBUF_HEADROOM, 128
// octets, against at most 86 with the Ethernet header), padding, pad
// length, next header and ICV into the tailroom (at most 15 + 2 + 32).
// Up to MTU 1970 that is DPDK's default buffer; above, the data part after
// the headroom is rounded up to whole KiB (NICs size receive buffers in
// KiB steps: a smaller remainder would split jumbo frames into segments).
uint16_t Dataplane::mbuf_data_room(const DataplaneConfig& config) noexcept
{
    constexpr uint32_t esp_tailroom = 64;
    unsigned mtu = 0;
    for (const PortConfig& p : config.ports) mtu = std::max<unsigned>(mtu, p.mtu);
    const uint32_t data = RTE_ALIGN_CEIL(RTE_ETHER_HDR_LEN + std::min(mtu, max_mtu) + esp_tailroom, 1024u);
    return uint16_t(std::max<uint32_t>(RTE_MBUF_DEFAULT_BUF_SIZE, RTE_PKTMBUF_HEADROOM + data));
}

std::unique_ptr<Dataplane> Dataplane::create(const DataplaneConfig& config, std::string& error)
{
    std::unique_ptr<Dataplane> dp(new Dataplane());
    SharedState& s = dp->shared_;
    dp->tsc0_ = rte_rdtsc();
    dp->mono0_ns_ = monotonic_ns();
    dp->tsc1_ = dp->tsc0_;
    dp->mono1_ns_ = dp->mono0_ns_;
    s.workers = config.workers;
    s.burst = std::min<unsigned>(config.burst, max_burst);
    s.flow_cache_tuples = config.flow_cache_tuples;
    static_assert(max_flow_cache_tuples == FlowCache::ways_per_set << FlowCache::max_log2_sets);
    if (!valid_flow_cache_tuples(s.flow_cache_tuples)) {
        error = "flow_cache_tuples = " + std::to_string(s.flow_cache_tuples) + " must be 0 or a power of two from 4 to " +
                std::to_string(max_flow_cache_tuples);
        return nullptr;
    }
    if (s.workers == 0 || s.workers > max_workers) {
        error = "workers must be 1.." + std::to_string(max_workers);
        return nullptr;
    }
    for (const PortConfig& pc : config.ports)
        if (pc.mtu > max_mtu) {
            error = "port " + pc.name + ": mtu = " + std::to_string(pc.mtu) + " is above " + std::to_string(max_mtu);
            return nullptr;
        }
    const uint16_t data_room = mbuf_data_room(config);
    dp->pool_ = rte_pktmbuf_pool_create("rvl_mbufs", config.mbufs, 256, 0, data_room, int(rte_socket_id()));
    if (!dp->pool_) {
        error = "cannot create the mbuf pool (" + std::to_string(config.mbufs) + " mbufs of " +
                std::to_string(data_room) + " octets, ~" +
                std::to_string((uint64_t(config.mbufs) * (data_room + 192u)) >> 20) + " MiB): " +
                rte_strerror(rte_errno) +
                (config.hugepages ? "; not enough free hugepages? lower mbufs"
                                  : "; raise memory_mb or lower mbufs");
        return nullptr;
    }
    size_t rcu_size = rte_rcu_qsbr_get_memsize(s.workers);
    dp->rcu_mem_ = rte_zmalloc("rvl_rcu", rcu_size, RTE_CACHE_LINE_SIZE);
    s.rcu = static_cast<rte_rcu_qsbr*>(dp->rcu_mem_);
    if (!s.rcu || rte_rcu_qsbr_init(s.rcu, s.workers) != 0) {
        error = "cannot create the RCU state";
        return nullptr;
    }
    dp->mgr_ = crypto_manager_create();
    if (!dp->mgr_) {
        error = "cannot initialise Intel IPsec-MB";
        return nullptr;
    }
    if (!dp->setup_rings(config, error) || !dp->setup_ports(config, error)) return nullptr;
    dp->fib_ = Fib::build(config, dp->port_ids_, "rvl_fib", error);
    if (!dp->fib_) return nullptr;
    s.fib = dp->fib_.get();
    for (const auto& l : dp->fib_->locals())
        if (l.ifaddr.addr.family == IpFamily::v4) s.local_v4.add(rte_cpu_to_be_32(l.ifaddr.addr.v4_host()));
    dp->neighbors_ = NeighborTable::create("rvl_neigh", 4096);
    if (!dp->neighbors_) {
        error = "cannot create the neighbour table";
        return nullptr;
    }
    s.neighbors = dp->neighbors_.get();
    dp->main_rt_priority_ = config.main_rt_priority;
    for (const auto& n : config.neighbors) {
        rte_ether_addr mac;
        std::copy(n.mac.begin(), n.mac.end(), mac.addr_bytes);
        auto port = std::find(dp->port_names_.begin(), dp->port_names_.end(), n.port);
        if (port == dp->port_names_.end() ||
            !dp->neighbors_->add(n.address, dp->port_ids_[std::size_t(port - dp->port_names_.begin())], mac)) {
            error = "cannot add the static neighbour " + ip_string(n.address);
            return nullptr;
        }
    }
    if (!dp->install_sas(config, error) || !dp->build_spds(config, error)) return nullptr;
    // Worker w runs on the w-th worker lcore (run()); its flow caches are
    // allocated on that lcore's NUMA node.
    unsigned lcore = rte_get_next_lcore(unsigned(-1), 1, 0);
    for (unsigned w = 0; w < s.workers; ++w, lcore = rte_get_next_lcore(lcore, 1, 0)) {
        const int socket = lcore < RTE_MAX_LCORE ? int(rte_lcore_to_socket_id(lcore)) : SOCKET_ID_ANY;
        dp->workers_.push_back(std::make_unique<Worker>(s, WorkerId(uint16_t(w)), socket));
        if (!dp->workers_.back()->crypto_ready()) {
            error = "cannot initialise Intel IPsec-MB for worker " + std::to_string(w);
            return nullptr;
        }
        for (SaDirection d : {SaDirection::outbound, SaDirection::inbound})
            if (!dp->workers_.back()->flow_cache_ready(d))
                spdlog::warn("worker {}: no DPDK memory for its {} flow cache; those SPD lookups all go to rte_acl", w,
                             d == SaDirection::outbound ? "outbound" : "inbound");
    }
    // Ask for the static next hops right away so the first packets find them.
    for (const auto& r : config.routes)
        if (r.via) {
            ResolveRequest req{*r.via, 0, 0};
            if (const NextHop* nh = s.fib->lookup(*r.via)) req.port = nh->port;
            rte_ring_mp_enqueue_elem(s.resolve, &req, sizeof(req));
        }
    return dp;
}

bool Dataplane::setup_rings(const DataplaneConfig& config, std::string& error)
{
    SharedState& s = shared_;
    unsigned size = rte_align32pow2(std::max(config.ring_size, 64u));
    auto ring = [&](const std::string& name, unsigned flags, unsigned esize = 0) {
        rte_ring* r = esize ? rte_ring_create_elem(name.c_str(), esize, size, SOCKET_ID_ANY, flags)
                            : rte_ring_create(name.c_str(), size, SOCKET_ID_ANY, flags);
        if (r) rings_.push_back(r);
        else error = "cannot create ring " + name;
        return r;
    };
    s.events = ring("rvl_events", RING_F_SC_DEQ, sizeof(DataplaneEvent));
    s.punt_ike = ring("rvl_punt_ike", RING_F_SC_DEQ);
    s.control = ring("rvl_control", RING_F_SC_DEQ);
    s.resolve = ring("rvl_resolve", RING_F_SC_DEQ, sizeof(ResolveRequest));
    s.control_tx = ring("rvl_control_tx", RING_F_SP_ENQ | RING_F_SC_DEQ);
    static_assert(sizeof(channel::Acquire) % 4 == 0);
    s.acquires = ring("rvl_acquires", RING_F_SC_DEQ, sizeof(channel::Acquire));
    if (!s.events || !s.punt_ike || !s.control || !s.resolve || !s.control_tx || !s.acquires) return false;
    for (unsigned from = 0; from < s.workers; ++from)
        for (unsigned to = 0; to < s.workers; ++to) {
            if (from == to) continue;
            auto name = "rvl_ho_" + std::to_string(from) + "_" + std::to_string(to);
            s.handoff[from][to] = ring(name, RING_F_SP_ENQ | RING_F_SC_DEQ);
            if (!s.handoff[from][to]) return false;
        }
    return true;
}

bool Dataplane::setup_ports(const DataplaneConfig& config, std::string& error)
{
    SharedState& s = shared_;
    uint16_t nq = uint16_t(s.workers);
    for (const PortConfig& pc : config.ports) {
        uint16_t id = 0;
        std::string name = device_name(pc.device);
        std::string where = config.source + ":" + std::to_string(pc.line) + ": port " + pc.name + ": ";
        if (rte_eth_dev_get_port_by_name(name.c_str(), &id) != 0 || id >= max_ports) {
            error = where + "no DPDK port named " + name + " (device failed to probe?)";
            return false;
        }
        rte_eth_dev_info info{};
        rte_eth_dev_info_get(id, &info);
        if (info.max_rx_queues < nq || info.max_tx_queues < nq) {
            error = where + "device has " + std::to_string(info.max_rx_queues) + " RX queues, " +
                    std::to_string(nq) + " workers need " + std::to_string(nq) +
                    " (net_af_packet: add qpairs=" + std::to_string(nq) + ")";
            return false;
        }
        rte_eth_conf conf{};
        if (int rc = rte_eth_dev_configure(id, nq, nq, &conf); rc < 0) {
            error = where + "configure failed: " + rte_strerror(-rc);
            return false;
        }
        // Virtual devices may not support it (the config's MTU checks still
        // apply); a device that refuses a jumbo MTU would drop those frames.
        if (int rc = rte_eth_dev_set_mtu(id, pc.mtu); rc < 0 && (rc != -ENOTSUP || pc.mtu > 1500))
            spdlog::warn("{}the device did not take mtu = {} ({}); frames above its own MTU may be dropped by it",
                         where, pc.mtu, rte_strerror(-rc));
        for (uint16_t q = 0; q < nq; ++q) {
            if (rte_eth_rx_queue_setup(id, q, rx_descriptors, rte_eth_dev_socket_id(id), nullptr, pool_) < 0 ||
                rte_eth_tx_queue_setup(id, q, tx_descriptors, rte_eth_dev_socket_id(id), nullptr) < 0) {
                error = where + "queue setup failed";
                return false;
            }
        }
        if (int rc = rte_eth_dev_start(id); rc < 0) {
            error = where + "start failed: " + rte_strerror(-rc);
            return false;
        }
        // Neighbour discovery needs multicast; where a PMD has no all-multicast
        // mode, promiscuous will do: the workers check the destination MAC.
        if (rte_eth_allmulticast_enable(id) != 0) rte_eth_promiscuous_enable(id);
        if (s.ports.size() <= id) s.ports.resize(id + 1u);
        PortInfo& p = s.ports[id];
        p.id = id;
        p.role = pc.role;
        p.mtu = pc.mtu;
        rte_eth_macaddr_get(id, &p.mac);
        p.mac_word = mac_word(p.mac);
        port_ids_.push_back(id);
        s.port_ids.push_back(id);
        port_names_.push_back(pc.name);
    }
    return true;
}

bool Dataplane::install_sas(const DataplaneConfig& config, std::string& error)
{
    uint32_t capacity = std::max<uint32_t>(1024, uint32_t(config.sas.size()) * 2);
    sas_ = SaTable::create("rvl_sad", capacity, shared_.rcu);
    if (!sas_) {
        error = "cannot create the SA table";
        return false;
    }
    shared_.sas = sas_.get();
    sas_->on_free([this](const DpSa& sa) {   // writer lock held
        auto name = reqid_names_.find(sa.reqid);
        if (name == reqid_names_.end()) return;   // a configured SA: no tunnel name
        retired_totals_[name->second].add(sa);
    });
    sa_records_.assign(capacity, SaRecord{});
    uint16_t default_mtu = 1500;
    for (const PortConfig& pc : config.ports)
        if (pc.role == PortRole::unprotected_side) { default_mtu = pc.mtu; break; }
    default_mtu_ = default_mtu;
    uint32_t synthetic_reqid = 0x40000000;
    for (const SaConfig& c : config.sas) {
        SaDescriptor d = c.sa;
        if (d.reqid == 0) d.reqid = ++synthetic_reqid;   // manual SAs: one reqid each
        WorkerId owner(uint16_t(c.worker.value_or(uint16_t(d.spi.value % shared_.workers))));
        const char* why = "unknown";
        DpSa* sa = sa_create(mgr_, d, c.mtu.value_or(default_mtu), owner, &why);
        wipe_keys(d);
        if (!sa) {
            error = config.source + ":" + std::to_string(c.line) + ": sa: " + why;
            return false;
        }
        if (d.direction == SaDirection::inbound) sa->selector = inbound_selector(config, d.spi);
        uint32_t slot = sas_->install(sa);
        if (slot == no_slot) {
            sa_free(sa);
            error = config.source + ":" + std::to_string(c.line) + ": sa: SA table full or SPI in use";
            return false;
        }
        config_reqids_.insert(d.reqid);
        SaRecord& rec = sa_records_[slot];
        rec.installed_ns = mono0_ns_;
        rec.local = d.local;
        rec.remote = d.remote;
    }
    return true;
}

bool Dataplane::build_spds(const DataplaneConfig& config, std::string& error)
{
    std::vector<SpdRule> rules;
    for (const PolicyConfig& pc : config.policies) {
        SpdRule r{pc.policy, 0, 0};
        if (pc.policy.action == PolicyAction::protect) {
            r.sa_slot = sas_->find(pc.policy.sa, pc.policy.direction);
            DpSa* sa = sas_->get(r.sa_slot);
            if (!sa) {
                error = config.source + ":" + std::to_string(pc.line) + ": policy names an SA that is not installed";
                return false;
            }
            r.reqid = sa->reqid;
        }
        rules.push_back(r);
    }
    config_rules_ = rules;   // the channel's policies are added to these on every rebuild
    spd_out_ = Spd::build(SaDirection::outbound, rules, "rvl_spdo", error);
    spd_in_ = Spd::build(SaDirection::inbound, rules, "rvl_spdi", error);
    if (!spd_out_ || !spd_in_) return false;
    shared_.spd_out.store(spd_out_.get(), std::memory_order_release);
    shared_.spd_in.store(spd_in_.get(), std::memory_order_release);
    return true;
}

Dataplane::~Dataplane()
{
    workers_.clear();
    channel_.reset();   // unlinks the file: the control plane sees this instance go
    for (PendingTx& p : pending_tx_) rte_pktmbuf_free(p.m);
    for (uint16_t id : port_ids_) {
        rte_eth_dev_stop(id);
        rte_eth_dev_close(id);
    }
    sas_.reset();
    spd_out_.reset();
    spd_in_.reset();
    retired_spds_.clear();   // the workers have stopped
    for (rte_ring* r : rings_) {
        // Rings of mbufs give their packets back to the pool; element rings
        // (events, resolve requests, acquires) hold plain structs.
        void* obj;
        if (r != shared_.events && r != shared_.resolve && r != shared_.acquires)
            while (rte_ring_dequeue(r, &obj) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(obj));
        rte_ring_free(r);
    }
    crypto_manager_free(mgr_);
    rte_free(rcu_mem_);
    rte_mempool_free(pool_);
}

static int worker_main(void* arg)
{
    static_cast<Worker*>(arg)->run();
    return 0;
}

int Dataplane::run()
{
    unsigned w = 0;
    unsigned lcore;
    RTE_LCORE_FOREACH_WORKER(lcore) {
        if (w == workers_.size()) break;
        rte_eal_remote_launch(worker_main, workers_[w++].get(), lcore);
    }
    if (w != workers_.size()) {
        spdlog::error("{} workers configured but only {} worker lcores", workers_.size(), w);
        request_stop();
    }
    // Without this the kernel may stretch each sleep by its default 50 µs
    // timer slack.
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    if (main_rt_priority_) {
        sched_param sp{};
        sp.sched_priority = int(main_rt_priority_);
        if (int rc = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp); rc != 0)
            spdlog::warn("main_rt_priority = {}: cannot make the main lcore SCHED_FIFO ({}); it runs at normal "
                         "priority", main_rt_priority_, std::strerror(rc));
    }
    uint64_t sleep_ns = busy_sleep_ns;
    uint32_t bell = 0;
    while (!shared_.stop.load(std::memory_order_relaxed)) {
        uint32_t rung = channel_ ? channel_->header().doorbell.load(std::memory_order_acquire) : 0;
        bool busy = rung != bell || work_waiting();
        bell = rung;
        housekeeping();
        sleep_ns = busy ? busy_sleep_ns : std::min(sleep_ns * 2, idle_sleep_ns);
        if (channel_) {
            channel::wait_doorbell(channel_->header(), rung, sleep_ns);
        } else {
            timespec ts{0, long(sleep_ns)};
            nanosleep(&ts, nullptr);
        }
    }
    rte_eal_mp_wait_lcore();
    return 0;
}

bool Dataplane::work_waiting() const noexcept
{
    bool from_control_plane = channel_ && (!rte_ring_empty(channel_->ring(channel::RingId::commands)) ||
                                           !rte_ring_empty(channel_->ring(channel::RingId::transmit)));
    return from_control_plane || !rte_ring_empty(shared_.control) || !rte_ring_empty(shared_.resolve) ||
           !rte_ring_empty(shared_.events) || !rte_ring_empty(shared_.punt_ike) ||
           !rte_ring_empty(shared_.acquires) || listing_.active || !replies_pending_.empty() ||
           !pending_tx_.empty();
}

void Dataplane::housekeeping()
{
    uint64_t now = rte_rdtsc();
    drain_control();
    drain_resolve(now);
    channel_pass(now);
    sas_->reclaim();
    reclaim_spds();
}

void Dataplane::drain_control()
{
    rte_mbuf* pkts[max_burst];
    unsigned n = rte_ring_sc_dequeue_burst(shared_.control, reinterpret_cast<void**>(pkts), max_burst, nullptr);
    for (unsigned i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        const PortInfo& port = shared_.ports[m->port];
        if (handle_control(m, port.mac, *fib_, *neighbors_) != ControlAction::reply ||
            rte_ring_sp_enqueue(shared_.control_tx, m) != 0)
            rte_pktmbuf_free(m);
    }
}

void Dataplane::drain_resolve(uint64_t now)
{
    ResolveRequest req[max_burst];
    unsigned n = rte_ring_sc_dequeue_burst_elem(shared_.resolve, req, sizeof(ResolveRequest), max_burst, nullptr);
    for (unsigned i = 0; i < n; ++i) solicit(req[i].ip, req[i].port, now);
}

void Dataplane::solicit(const IpAddress& ip, uint16_t port, uint64_t now)
{
    // At most one request per address per second.
    if (!neighbors_->want(ip, port, now, rte_get_tsc_hz())) return;
    const IpAddress* src = fib_->address_on(port, ip.family);
    if (!src) return;
    rte_mbuf* m = make_solicitation(pool_, shared_.ports[port].mac, *src, ip);
    if (!m) return;
    m->port = port;
    if (rte_ring_sp_enqueue(shared_.control_tx, m) != 0) rte_pktmbuf_free(m);
}

void Dataplane::TunnelTotals::add(const DpSa& sa) noexcept
{
    const unsigned d = unsigned(sa.direction);
    packets[d] += sa.state.packets.get();
    bytes[d] += sa.state.bytes.get();
    for (std::size_t r = 1; r < drop_reason_count; ++r) drops[d][r] += sa.drops[r].get();
}

namespace {

// Drop counts by reason name, the reasons that counted something only.
template <typename Get>
nlohmann::json drops_by_name(Get get)
{
    nlohmann::json out = nlohmann::json::object();
    for (std::size_t r = 1; r < drop_reason_count; ++r)
        if (uint64_t n = get(r)) out[std::string(drop_reasons[r].name)] = n;
    return out;
}

nlohmann::json drops_json(const DpSa& sa)
{
    return drops_by_name([&](std::size_t r) { return sa.drops[r].get(); });
}

nlohmann::json drops_json(const uint64_t (&drops)[drop_reason_count])
{
    return drops_by_name([&](std::size_t r) { return drops[r]; });
}

} // namespace

nlohmann::json Dataplane::stats_json()
{
    using nlohmann::json;
    json out;
    json drops = json::object(), stats = json::object(), workers = json::array();
    for (const auto& wp : workers_) {
        const WorkerCounters& c = wp->counters();
        json wd = json::object(), ws = json::object();
        for (std::size_t r = 1; r < drop_reason_count; ++r) {
            std::string name(drop_reasons[r].name);
            wd[name] = c.drops[r].get();
            drops[name] = drops.value(name, uint64_t(0)) + c.drops[r].get();
        }
        const WorkerStats& st = c.stats;
        std::pair<const char*, const Counter*> fields[] = {
            {"rx_packets", &st.rx_packets},   {"tx_packets", &st.tx_packets},
            {"encrypted", &st.encrypted},     {"decrypted", &st.decrypted},
            {"bypassed", &st.bypassed},       {"punted_ike", &st.punted_ike},
            {"punted_control", &st.punted_control}, {"handoff_out", &st.handoff_out},
            {"handoff_in", &st.handoff_in},   {"events_raised", &st.events_raised},
            {"events_lost", &st.events_lost}, {"icmp_errors_sent", &st.icmp_errors_sent},
            {"acquires_raised", &st.acquires_raised}, {"acquires_lost", &st.acquires_lost},
            {"spd_cache_misses", &st.spd_cache_misses},
            {"busy_cycles", &st.busy_cycles}, {"poll_cycles", &st.poll_cycles}};
        for (auto& [name, ctr] : fields) {
            ws[name] = ctr->get();
            stats[name] = stats.value(name, uint64_t(0)) + ctr->get();
        }
        workers.push_back({{"worker", wp->id().value}, {"drops", wd}, {"stats", ws}});
    }
    out["drops"] = drops;
    out["stats"] = stats;
    out["workers"] = workers;
    json sas = json::array();
    {
        std::lock_guard lock(sas_->writer_lock());
        uint64_t hz = rte_get_tsc_hz(), now = rte_rdtsc();
        for (uint32_t i = 0; i < sas_->capacity(); ++i) {
            const DpSa* sa = sas_->get(i);
            if (!sa) continue;
            uint64_t last = sa->state.last_used_tsc.get();
            sas.push_back({{"spi", sa->spi.value},
                           {"direction", sa->direction == SaDirection::inbound ? "in" : "out"},
                           {"mode", sa->mode == SaMode::tunnel ? "tunnel" : "transport"},
                           {"worker", sa->owner.value},
                           {"reqid", sa->reqid},
                           {"packets", sa->state.packets.get()},
                           {"bytes", sa->state.bytes.get()},
                           {"idle_seconds", last ? double(now - last) / double(hz) : -1.0},
                           {"expired", sa->state.hard_reached.load(std::memory_order_relaxed)},
                           {"drops", drops_json(*sa)},
                           {"connection", std::string(sa_records_[i].connection.view())},
                           {"child", std::string(sa_records_[i].child.view())}});
        }
    }
    out["sas"] = sas;
    // Per tunnel: the SAs that are gone plus those still here, so each series
    // only grows within this data plane's life (docs/metrics.md).
    json tunnels = json::array();
    {
        std::lock_guard lock(sas_->writer_lock());
        std::map<std::pair<std::string, std::string>, TunnelTotals> all = retired_totals_;
        auto add = [&](const DpSa& sa) {
            if (auto name = reqid_names_.find(sa.reqid); name != reqid_names_.end()) all[name->second].add(sa);
        };
        for (uint32_t i = 0; i < sas_->capacity(); ++i)
            if (const DpSa* sa = sas_->get(i)) add(*sa);
        // Retired SAs are in neither the table nor retired_totals_ until
        // freed: without them a tunnel's totals would dip for a grace period.
        sas_->for_each_retired(add);
        for (const auto& [name, t] : all)
            for (SaDirection d : {SaDirection::inbound, SaDirection::outbound})
                tunnels.push_back({{"connection", name.first}, {"child", name.second},
                                   {"direction", d == SaDirection::inbound ? "in" : "out"},
                                   {"packets", t.packets[unsigned(d)]}, {"bytes", t.bytes[unsigned(d)]},
                                   {"drops", drops_json(t.drops[unsigned(d)])}});
    }
    out["tunnels"] = tunnels;
    json neigh = json::array();
    for (const auto& n : neighbors_->snapshot()) {
        char mac[RTE_ETHER_ADDR_FMT_SIZE];
        rte_ether_format_addr(mac, sizeof mac, &n.mac);
        neigh.push_back({{"ip", ip_string(n.ip)}, {"port", n.port}, {"resolved", n.resolved}, {"static", n.pinned},
                         {"mac", n.resolved ? mac : ""}});
    }
    out["neighbors"] = neigh;
    json events = json::array();
    {
        std::lock_guard lock(events_lock_);
        for (const auto& e : recent_events_)
            events.push_back({{"type", event_name(e.type)}, {"spi", e.spi.value},
                              {"direction", e.direction ? "out" : "in"},
                              {"packets", e.packets}, {"bytes", e.bytes}});
    }
    out["events"] = events;
    out["punted_ike_drained"] = ike_drained_.load(std::memory_order_relaxed);
    json ch = json::object();
    auto reasons = [](const std::array<Counter, frame_drop_count>& a) {
        json r = json::object();
        for (unsigned i = 1; i < frame_drop_count; ++i) r[std::string(frame_drop_name(FrameDrop(i)))] = a[i].get();
        return r;
    };
    ch["open"] = channel_ != nullptr;
    ch["path"] = channel_ ? channel_->path() : "";
    ch["attached"] = ch_.attached.load(std::memory_order_relaxed);
    ch["control_pid"] = ch_.control_pid.load(std::memory_order_relaxed);
    ch["commands_applied"] = ch_.commands_applied.get();
    ch["commands_failed"] = ch_.commands_failed.get();
    ch["replies_pending"] = ch_.replies_pending.load(std::memory_order_relaxed);
    ch["punt_delivered"] = ch_.punt_delivered.get();
    ch["punt_dropped"] = reasons(ch_.punt_dropped);
    ch["transmit_sent"] = ch_.transmit_sent.get();
    ch["transmit_dropped"] = reasons(ch_.transmit_dropped);
    ch["transmit_pending"] = ch_.transmit_pending.load(std::memory_order_relaxed);
    ch["events_forwarded"] = ch_.events_forwarded.get();
    ch["events_dropped"] = ch_.events_dropped.get();
    ch["acquires_forwarded"] = ch_.acquires_forwarded.get();
    ch["acquires_dropped"] = ch_.acquires_dropped.get();
    out["channel"] = ch;
    json ports = json::array();
    for (std::size_t i = 0; i < port_ids_.size(); ++i) {
        rte_eth_stats es{};
        rte_eth_stats_get(port_ids_[i], &es);
        ports.push_back({{"name", port_names_[i]}, {"port", port_ids_[i]}, {"ipackets", es.ipackets},
                         {"opackets", es.opackets}, {"imissed", es.imissed}, {"ierrors", es.ierrors},
                         {"oerrors", es.oerrors}, {"rx_nombuf", es.rx_nombuf}});
    }
    out["ports"] = ports;
    // Ring occupancy: a ring that stays near capacity is where drops
    // (handoff_full, punt_full, events_lost, acquires_lost) come from.
    json rings = json::array();
    auto add_ring = [&](const rte_ring* r, std::string name) {
        rings.push_back({{"ring", std::move(name)}, {"entries", rte_ring_count(r)},
                         {"capacity", rte_ring_get_capacity(r)}});
    };
    for (const rte_ring* r : rings_) {
        std::string name = r->name;
        add_ring(r, name.starts_with("rvl_") ? name.substr(4) : name);
    }
    if (channel_) {
        constexpr const char* names[channel::ring_count] = {"channel_commands", "channel_replies", "channel_punt",
                                                            "channel_transmit"};
        for (unsigned i = 0; i < channel::ring_count; ++i) add_ring(channel_->ring(channel::RingId(i)), names[i]);
    }
    out["rings"] = rings;
    return out;
}

} // namespace ravelin::dp

// See engine.hh for the lcore layout and who owns what.
//
// TX, per stream and poll: frames a tx_burst did not take are retried first
// (a memif ring or a NIC queue that is full pushes back; nothing is dropped
// at the generator), then the pacer says how many units may go, the next
// sizes that fit are built into fresh mbufs, stamped, sealed for ESP
// streams, and sent.
//
// RX, per port and poll: count, answer ARP for the configured prefixes,
// open ESP with the SA named by the SPI, read the stamp of the (inner)
// packet, and account it on its stream.
#include "engine.hh"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>

#include <rte_cycles.h>
#include <rte_branch_prediction.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include "crypto.hh"
#include "esp.hh"

namespace ravelin::pktgen {

namespace {

constexpr unsigned max_burst = 256;
// One queue pair per port: a memif server (the gateway) refuses a peer
// with more rings than it has. ARP replies made by the RX loop reach the
// TX loop through a ring and leave on the same queue.
constexpr uint16_t tx_queue = 0;
constexpr unsigned ctl_ring_size = 256;

inline uint32_t load_be32(const uint8_t* p) noexcept
{
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

} // namespace

// A frame sealed once and sent again and again (EngineConfig::esp_replay).
struct ReplayFrame {
    std::vector<uint8_t> bytes;   // from the Ethernet header, without FCS
    uint32_t wire = 0;            // bytes on the wire, FCS included
};

struct TxStream {
    const StreamSpec* spec = nullptr;
    SizeSchedule sizes;
    RateUnit unit = RateUnit::max;
    double units_per_s = 0;
    Pacer pacer;
    MacAddr dmac{}, smac{};
    uint16_t port = 0;
    std::vector<dp::DpSa*> sas;
    std::vector<ReplayFrame> replay;   // frame seq % size; empty: build each one
    FlowCursor flows;                  // the flow of packet seq, stepped
    // A clear frame's headers are written here, where the lines stay in
    // this core's cache, and copied into the mbuf whole (see build()); the
    // Ethernet header once, at setup.
    alignas(64) std::array<uint8_t, 128> head{};
    unsigned head_len = 0;
    uint64_t seq = 0;
    uint64_t limit = 0;                // 0: none
    bool done = false;
    unsigned npending = 0;
    rte_mbuf* pending[max_burst];
    uint32_t pending_wire[max_burst];
    uint16_t pending_clear[max_burst];
    Count tx_packets, tx_bytes, tx_clear_bytes, build_failed;
};

struct RxStream {
    SeqTracker tracker;
    LatencyHistogram latency;
};

struct PortState {
    uint16_t id = 0;
    uint16_t index = 0;                // in Impl::ports
    std::string name;
    MacAddr mac{};
    uint32_t link_mbps = 0;
    rte_ring* ctl = nullptr;           // ARP replies, RX loop -> TX loop
    PortCounters c;
};

struct Engine::Impl {
    Engine* owner = nullptr;
    EngineConfig cfg;
    rte_mempool* pool = nullptr;
    std::deque<PortState> ports;       // PortState holds atomics: never moved
    std::vector<std::unique_ptr<TxStream>> tx;
    std::vector<RxStream> rx;
    std::unique_ptr<EspPeer> esp;
    IMB_MGR* tx_mgr = nullptr;
    IMB_MGR* rx_mgr = nullptr;
    dp::WorkerCounters tx_wc, rx_wc;
    uint64_t tsc_hz = 0;
    uint64_t ns_per_tick_q32 = 0;
    unsigned burst = 32;

    // Trial control, written by the clock.
    std::atomic<bool> tx_stop{false}, rx_stop{false};
    std::atomic<unsigned> streams_done{0};
    uint64_t t0 = 0, deadline = 0, next_sample = 0, tx_end = 0, drain_end = 0, interval_ticks = 0;
    std::vector<Sample> timeline;
    Sample last{};
    bool tty = false;

    ~Impl();
    bool setup_ports(std::string& error);
    bool setup_streams(std::string& error);
    void prepare_trial(const TrialSpec& spec);
    void tx_poll(uint64_t now) noexcept;
    void tx_stream(TxStream& s, uint64_t now) noexcept;
    bool build(TxStream& s, rte_mbuf* m, uint16_t size, uint64_t now, uint32_t& wire) noexcept;
    bool seal_replay_frames(TxStream& s);
    void tx_flush_pending(TxStream& s, bool first = false) noexcept;
    void tx_drop_pending() noexcept;
    void ctl_flush() noexcept;
    void rx_poll() noexcept;
    void rx_one(PortState& p, rte_mbuf* m, uint64_t now) noexcept;
    bool arp_reply(PortState& p, rte_mbuf* m) noexcept;
    bool clock_step(uint64_t now);
    Sample sample(uint64_t now) const;
    void progress(const Sample& s, const Sample& prev);
};

Engine::Impl::~Impl()
{
    esp.reset();
    if (tx_mgr) dp::crypto_manager_free(tx_mgr);
    if (rx_mgr) dp::crypto_manager_free(rx_mgr);
    for (auto& p : ports) {
        rte_eth_dev_stop(p.id);
        rte_eth_dev_close(p.id);
        if (p.ctl) {
            void* obj;
            while (rte_ring_dequeue(p.ctl, &obj) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(obj));
            rte_ring_free(p.ctl);
        }
    }
    if (pool) rte_mempool_free(pool);
}

std::unique_ptr<Engine> Engine::create(const EngineConfig& cfg, std::string& error)
{
    std::unique_ptr<Engine> e(new Engine);
    e->impl_ = std::make_unique<Impl>();
    Impl& m = *e->impl_;
    m.owner = e.get();
    m.cfg = cfg;
    m.burst = std::clamp(cfg.burst, 1u, max_burst);
    m.tsc_hz = rte_get_tsc_hz();
    m.ns_per_tick_q32 = uint64_t(1e9 * 4294967296.0 / double(m.tsc_hz));
    e->tsc_hz_ = m.tsc_hz;
    m.tty = cfg.progress && isatty(STDERR_FILENO);
    m.pool = rte_pktmbuf_pool_create("pktgen_pool", std::max(cfg.mbufs, 2047u), 256, 0,
                                     RTE_MBUF_DEFAULT_BUF_SIZE, int(rte_socket_id()));
    if (!m.pool) {
        error = "cannot create the mbuf pool (" + std::to_string(cfg.mbufs) +
                " mbufs): hugepages free? (grep HugePages_Free /proc/meminfo)";
        return nullptr;
    }
    m.tx_mgr = dp::crypto_manager_create();
    m.rx_mgr = dp::crypto_manager_create();
    if (!m.tx_mgr || !m.rx_mgr) {
        error = "cannot initialise Intel IPsec-MB";
        return nullptr;
    }
    if (!cfg.sa_config.empty()) {
        m.esp = EspPeer::load(cfg.sa_config, cfg.esp_seq_start, !cfg.rx_count_only, error);
        if (!m.esp) return nullptr;
    }
    // Build the sealing SAs before the ports start: a memif client in
    // zero-copy mode shares the memory it has at start, and hugepage memory
    // allocated later fails.
    if (m.esp)
        for (const StreamSpec& s : cfg.streams)
            for (uint32_t i = 0; s.esp_spi && i < s.esp_count; ++i)
                if (!m.esp->sealing_sa(*s.esp_spi + i, error)) {
                    error = "stream " + std::to_string(s.id) + ": " + error;
                    return nullptr;
                }
    if (!m.setup_ports(error) || !m.setup_streams(error)) return nullptr;
    // Line rate: --line-rate, else the TX port of the first stream.
    e->line_bps_ = cfg.line_bps;
    if (e->line_bps_ <= 0 && !m.tx.empty()) {
        const uint32_t mbps = m.ports[m.tx.front()->port].link_mbps;
        if (mbps != 0 && mbps != RTE_ETH_SPEED_NUM_UNKNOWN) e->line_bps_ = double(mbps) * 1e6;
    }
    return e;
}

Engine::~Engine() = default;

bool Engine::Impl::setup_ports(std::string& error)
{
    const uint16_t n = rte_eth_dev_count_avail();
    if (n == 0) {
        error = "no DPDK ports: give devices in the EAL arguments (--vdev net_memif0,... or -a PCI)";
        return false;
    }
    uint16_t id;
    RTE_ETH_FOREACH_DEV(id)
    {
        PortState& p = ports.emplace_back();
        p.id = id;
        p.index = uint16_t(ports.size() - 1);
        char name[RTE_ETH_NAME_MAX_LEN];
        if (rte_eth_dev_get_name_by_port(id, name) == 0) p.name = name;
        rte_eth_conf conf{};
        int r = rte_eth_dev_configure(id, 1, 1, &conf);
        if (r < 0) {
            error = "port " + std::to_string(id) + " (" + p.name + "): configure: " + rte_strerror(-r);
            return false;
        }
        uint16_t rxd = uint16_t(cfg.rxd), txd = uint16_t(cfg.txd);
        rte_eth_dev_adjust_nb_rx_tx_desc(id, &rxd, &txd);
        const int socket = rte_eth_dev_socket_id(id);
        r = rte_eth_rx_queue_setup(id, 0, rxd, socket < 0 ? SOCKET_ID_ANY : unsigned(socket), nullptr, pool);
        if (r == 0) r = rte_eth_tx_queue_setup(id, tx_queue, txd, socket < 0 ? SOCKET_ID_ANY : unsigned(socket), nullptr);
        if (r < 0) {
            error = "port " + std::to_string(id) + " (" + p.name + "): queue setup: " + rte_strerror(-r);
            return false;
        }
        p.ctl = rte_ring_create(("pg_ctl" + std::to_string(id)).c_str(), ctl_ring_size, SOCKET_ID_ANY,
                                RING_F_SP_ENQ | RING_F_SC_DEQ);
        if (!p.ctl) {
            error = "cannot create a ring: " + std::string(rte_strerror(rte_errno));
            return false;
        }
        r = rte_eth_dev_start(id);
        if (r < 0) {
            error = "port " + std::to_string(id) + " (" + p.name + "): start: " + rte_strerror(-r);
            return false;
        }
        rte_eth_promiscuous_enable(id);   // best effort; some PMDs have no such mode
        rte_ether_addr mac;
        rte_eth_macaddr_get(id, &mac);
        std::memcpy(p.mac.data(), mac.addr_bytes, 6);
    }
    // memif and other virtual links come up once the peer has connected.
    const uint64_t until = rte_get_tsc_cycles() + uint64_t(cfg.link_wait_s * double(rte_get_tsc_hz()));
    for (auto& p : ports) {
        rte_eth_link link{};
        for (;;) {
            rte_eth_link_get_nowait(p.id, &link);
            if (link.link_status == RTE_ETH_LINK_UP || cfg.link_wait_s <= 0) break;
            if (rte_get_tsc_cycles() >= until) {
                error = "port " + std::to_string(p.id) + " (" + p.name + "): link still down after " +
                        std::to_string(cfg.link_wait_s) + " s (is the peer running? memif: same socket and id)";
                return false;
            }
            usleep(10000);
        }
        p.link_mbps = link.link_speed;
    }
    for (auto& a : cfg.arp)
        if (a.port >= ports.size()) {
            error = "--arp: port " + std::to_string(a.port) + " does not exist (" + std::to_string(ports.size()) +
                    " ports)";
            return false;
        }
    return true;
}

bool Engine::Impl::setup_streams(std::string& error)
{
    rx.resize(cfg.streams.size());
    for (const StreamSpec& spec : cfg.streams) {
        auto s = std::make_unique<TxStream>();
        s->spec = &spec;
        s->head_len = header_len(spec);
        s->port = spec.port;
        if (spec.port >= ports.size()) {
            error = "stream " + std::to_string(spec.id) + ": port " + std::to_string(spec.port) +
                    " does not exist (" + std::to_string(ports.size()) + " ports)";
            return false;
        }
        s->smac = spec.smac ? *spec.smac : ports[spec.port].mac;
        if (spec.dmac) s->dmac = *spec.dmac;
        else if (spec.port < cfg.dst_mac.size() && cfg.dst_mac[spec.port]) s->dmac = *cfg.dst_mac[spec.port];
        else {
            error = "stream " + std::to_string(spec.id) + ": no dmac= and no --dst-mac for port " +
                    std::to_string(spec.port) + " (the gateway only routes frames sent to its own MAC)";
            return false;
        }
        // A clear frame's Ethernet header is the stream's for good: build()
        // writes only what follows it.
        write_eth(s->head.data(), s->dmac, s->smac,
                  spec.family == IpFamily::v4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6);
        if (spec.esp_spi) {
            if (!esp) {
                error = "stream " + std::to_string(spec.id) + ": esp= needs --sa-config";
                return false;
            }
            for (uint32_t i = 0; i < spec.esp_count; ++i) {
                dp::DpSa* sa = esp->sealing_sa(*spec.esp_spi + i, error);
                if (!sa) {
                    error = "stream " + std::to_string(spec.id) + ": " + error;
                    return false;
                }
                s->sas.push_back(sa);
            }
        }
        tx.push_back(std::move(s));
    }
    return true;
}

void Engine::Impl::prepare_trial(const TrialSpec& spec)
{
    const RateSpec global = spec.rate_override ? *spec.rate_override : cfg.rate;
    unsigned shared = 0;
    for (auto& s : tx)
        if (!s->spec->rate || spec.rate_override) ++shared;
    for (auto& sp : tx) {
        TxStream& s = *sp;
        s.sizes = *SizeSchedule::parse(spec.size_override ? *spec.size_override : s.spec->size_spec);
        const RateSpec r = (s.spec->rate && !spec.rate_override) ? *s.spec->rate
                                                                 : global.scaled(1.0 / std::max(shared, 1u));
        s.unit = r.unit;
        s.units_per_s = r.units_per_second(owner->line_bps_);
        s.seq = 0;
        s.limit = spec.count;
        s.done = false;
        s.npending = 0;
        s.tx_packets.reset();
        s.tx_bytes.reset();
        s.tx_clear_bytes.reset();
        s.build_failed.reset();
    }
    if (esp && cfg.esp_seq_restart)
        for (dp::DpSa* sa : esp->sealing_sas()) sa->state.seq = (cfg.esp_seq_start ? cfg.esp_seq_start : 1) - 1;
    for (auto& sp : tx)
        if (cfg.esp_replay && !sp->sas.empty() && !seal_replay_frames(*sp)) {
            // No mbuf at all between trials, or an SA that will not seal:
            // a benchmark that silently built every frame instead would lie.
            std::fprintf(stderr, "ravelin-pktgen: stream %u: cannot seal its --esp-replay frames\n",
                         unsigned(sp->spec->id));
            std::exit(1);
        }
    for (auto& r : rx) {
        r.tracker.reset();
        r.latency.reset();
    }
    for (auto& p : ports) {
        PortCounters& c = p.c;
        for (Count* x : {&c.tx_packets, &c.tx_bytes, &c.tx_backpressure, &c.tx_bursts, &c.tx_bursts_short, &c.rx_packets, &c.rx_bytes, &c.rx_stamped,
                         &c.rx_unstamped, &c.rx_arp, &c.rx_arp_replied, &c.rx_esp_ok, &c.rx_esp_no_sa,
                         &c.rx_esp_failed})
            x->reset();
        rte_eth_stats_reset(p.id);
    }
    tx_stop = false;
    rx_stop = false;
    streams_done = 0;
    timeline.clear();
    last = Sample{};
    interval_ticks = uint64_t(cfg.interval_s * double(tsc_hz));
    if (interval_ticks == 0) interval_ticks = tsc_hz;
    t0 = rte_rdtsc();
    deadline = spec.duration_s > 0 ? t0 + uint64_t(spec.duration_s * double(tsc_hz)) : UINT64_MAX;
    next_sample = t0 + interval_ticks;
    tx_end = drain_end = 0;
    for (auto& sp : tx) {
        // Credit for two bursts of the largest frame: enough to fill a burst
        // after a short stall, never a flood after a long one.
        const uint64_t credit = RateSpec::cost(sp->unit, sp->sizes.max()) * burst * 2;
        sp->pacer.start(t0, sp->units_per_s, tsc_hz, credit);
    }
}

// ---- TX -------------------------------------------------------------------

bool Engine::Impl::build(TxStream& s, rte_mbuf* m, uint16_t size, uint64_t now, uint32_t& wire) noexcept
{
    const StreamSpec& spec = *s.spec;
    const FlowPoint& flow = s.flows.seek(spec, s.seq);
    const Stamp stamp{uint16_t(spec.id), s.seq, now};
    const unsigned ip_len = size - fcs_len - eth_len;
    uint8_t* d = rte_pktmbuf_mtod(m, uint8_t*);
    if (s.sas.empty()) {
        // The mbuf's lines were last read by the receiver's core (memif
        // zero-copy shares them): written field by field, each store waits
        // in the store buffer for its line; the finished headers are copied
        // with two or three wide stores instead.
        uint8_t* h = s.head.data();   // its Ethernet header written at setup
        write_ip_headers(spec, flow, h + eth_len, ip_len, stamp);
        if (s.head_len <= 64) std::memcpy(d, h, 64);   // past the headers: the payload, left as it is
        else std::memcpy(d, h, s.head_len);
        write_l4_checksum(spec, d + eth_len);
        m->data_len = uint16_t(size - fcs_len);
        m->pkt_len = m->data_len;
        wire = size;
        return true;
    }
    write_ip_headers(spec, flow, d, ip_len, stamp);
    write_l4_checksum(spec, d);
    m->data_len = uint16_t(ip_len);
    m->pkt_len = ip_len;
    dp::DpSa& sa = *s.sas[flow.flow % s.sas.size()];
    dp::EspContext ctx{tx_mgr, nullptr, &tx_wc, now};
    if (dp::esp_encap(ctx, sa, m) != dp::DropReason::none) return false;
    d = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, eth_len));
    if (!d) return false;
    write_eth(d, s.dmac, s.smac, sa.outer_family == IpFamily::v4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6);
    wire = m->pkt_len + fcs_len;
    return true;
}

// Frame i has the schedule's i-th size and flow i, as build() would make
// it; the pool holds whole periods of the schedule so that frame seq % n
// always has the size the pacer charged for.
bool Engine::Impl::seal_replay_frames(TxStream& s)
{
    const std::size_t period = s.sizes.order().size();
    const std::size_t n = (cfg.esp_replay + period - 1) / period * period;
    s.replay.assign(n, {});
    const uint64_t now = rte_rdtsc();
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    bool ok = m != nullptr;
    for (std::size_t i = 0; ok && i < n; ++i) {
        rte_pktmbuf_reset(m);
        s.seq = i;
        uint32_t wire = 0;
        ok = build(s, m, s.sizes.peek(i), now, wire);
        const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
        if (ok) s.replay[i] = {std::vector<uint8_t>(d, d + m->data_len), wire};
    }
    rte_pktmbuf_free(m);
    s.seq = 0;
    return ok;
}

void Engine::Impl::tx_flush_pending(TxStream& s, bool first) noexcept
{
    PortState& p = ports[s.port];
    const uint16_t k = rte_eth_tx_burst(p.id, tx_queue, s.pending, uint16_t(s.npending));
    uint64_t wire = 0, clear = 0;
    for (unsigned i = 0; i < k; ++i) {
        wire += s.pending_wire[i];
        clear += s.pending_clear[i];
    }
    if (k) {
        s.tx_packets.inc(k);
        s.tx_bytes.inc(wire);
        s.tx_clear_bytes.inc(clear);
        p.c.tx_packets.inc(k);
        p.c.tx_bytes.inc(wire);
    }
    p.c.tx_bursts.inc();
    if (k < s.npending) {
        p.c.tx_bursts_short.inc();
        if (first) p.c.tx_backpressure.inc(s.npending - k);
        std::memmove(s.pending, s.pending + k, (s.npending - k) * sizeof(s.pending[0]));
        std::memmove(s.pending_wire, s.pending_wire + k, (s.npending - k) * sizeof(s.pending_wire[0]));
        std::memmove(s.pending_clear, s.pending_clear + k, (s.npending - k) * sizeof(s.pending_clear[0]));
    }
    s.npending -= k;
}

void Engine::Impl::tx_stream(TxStream& s, uint64_t now) noexcept
{
    if (s.npending) {
        tx_flush_pending(s);
        if (s.npending) return;
    }
    if (s.done) return;
    const uint64_t avail = s.pacer.available(now);
    unsigned n = 0;
    uint64_t spend = 0;
    while (n < burst && (s.limit == 0 || s.seq + n < s.limit)) {
        const uint64_t c = RateSpec::cost(s.unit, s.sizes.peek(n));
        if (spend + c > avail) break;
        spend += c;
        ++n;
    }
    if (n == 0) {
        if (s.limit && s.seq >= s.limit && !s.done) {
            s.done = true;
            streams_done.fetch_add(1, std::memory_order_relaxed);
        }
        return;
    }
    // Pool empty (mbufs in flight at the receiver): nothing consumed,
    // try again next poll.
    if (rte_pktmbuf_alloc_bulk(pool, s.pending, n) != 0) return;
    unsigned built = 0;
    for (unsigned i = 0; i < n; ++i) {
        rte_mbuf* m = s.pending[i];
        const uint16_t size = s.sizes.next();
        uint32_t wire = 0;
        if (!s.replay.empty()) {
            const ReplayFrame& f = s.replay[s.seq % s.replay.size()];
            std::memcpy(rte_pktmbuf_mtod(m, uint8_t*), f.bytes.data(), f.bytes.size());
            m->data_len = uint16_t(f.bytes.size());
            m->pkt_len = m->data_len;
            wire = f.wire;
        } else if (!build(s, m, size, now, wire)) {
            s.build_failed.inc();
            rte_pktmbuf_free(m);
            ++s.seq;
            continue;
        }
        s.pending[built] = m;
        s.pending_wire[built] = wire;
        s.pending_clear[built] = size;
        ++built;
        ++s.seq;
    }
    s.pacer.spend(spend);
    s.npending = built;
    if (built) tx_flush_pending(s, true);
}

void Engine::Impl::tx_poll(uint64_t now) noexcept
{
    for (auto& s : tx) tx_stream(*s, now);
}

void Engine::Impl::tx_drop_pending() noexcept
{
    for (auto& s : tx) {
        // Retry what is left for a moment: a trial's last packets should
        // not be lost to a full ring at the very end.
        for (int i = 0; i < 1000 && s->npending; ++i) tx_flush_pending(*s);
        if (s->npending) rte_pktmbuf_free_bulk(s->pending, s->npending);
        s->npending = 0;
    }
}

// ---- RX -------------------------------------------------------------------

// ARP request for an address we answer for (RFC 826): turn it into the
// reply in place.
//
//   | htype 1 | ptype 0x0800 | hlen 6 | plen 4 | op | sha | spa | tha | tpa |
bool Engine::Impl::arp_reply(PortState& p, rte_mbuf* m) noexcept
{
    if (m->data_len < eth_len + 28) return false;
    uint8_t* d = rte_pktmbuf_mtod(m, uint8_t*);
    uint8_t* a = d + eth_len;
    if (a[0] != 0 || a[1] != 1 || a[2] != 0x08 || a[3] != 0 || a[4] != 6 || a[5] != 4 || a[6] != 0 || a[7] != 1)
        return false;
    const IpAddress target = IpAddress::v4(load_be32(a + 24));
    bool ours = false;
    for (auto& ans : cfg.arp)
        if (ans.port == p.index && ans.prefix.contains(target)) ours = true;
    if (!ours) return false;
    uint8_t sha[6], spa[4];
    std::memcpy(sha, a + 8, 6);
    std::memcpy(spa, a + 14, 4);
    a[7] = 2;
    std::memcpy(a + 8, p.mac.data(), 6);
    std::memcpy(a + 14, target.bytes.data(), 4);
    std::memcpy(a + 18, sha, 6);
    std::memcpy(a + 24, spa, 4);
    std::memcpy(d, sha, 6);
    std::memcpy(d + 6, p.mac.data(), 6);
    return rte_ring_sp_enqueue(p.ctl, m) == 0;
}

// TX loop: send what the RX loop queued (ARP replies); what the port does
// not take is dropped (the gateway asks again).
void Engine::Impl::ctl_flush() noexcept
{
    for (auto& p : ports) {
        rte_mbuf* m[16];
        const unsigned n = rte_ring_sc_dequeue_burst(p.ctl, reinterpret_cast<void**>(m), 16, nullptr);
        if (n == 0) continue;
        const uint16_t k = rte_eth_tx_burst(p.id, tx_queue, m, uint16_t(n));
        if (k < n) rte_pktmbuf_free_bulk(m + k, n - k);
    }
}

void Engine::Impl::rx_one(PortState& p, rte_mbuf* m, uint64_t now) noexcept
{
    uint8_t* d = rte_pktmbuf_mtod(m, uint8_t*);
    const ParsedFrame f = m->nb_segs == 1 ? parse_frame(d, m->data_len) : ParsedFrame{};
    Stamp st;
    bool stamped = false;
    switch (f.kind) {
    case ParsedFrame::Kind::arp:
        p.c.rx_arp.inc();
        if (arp_reply(p, m)) {
            p.c.rx_arp_replied.inc();
            return;   // on the way to the TX loop
        }
        break;
    case ParsedFrame::Kind::esp: {
        dp::DpSa* sa = esp ? esp->opening_sa(load_be32(d + f.esp)) : nullptr;
        if (!sa) {
            p.c.rx_esp_no_sa.inc();
            break;
        }
        rte_pktmbuf_adj(m, uint16_t(f.l3));
        dp::EspContext ctx{rx_mgr, nullptr, &rx_wc, now};
        if (dp::esp_decap(ctx, *sa, m, f.esp - f.l3) != dp::DropReason::none) {
            p.c.rx_esp_failed.inc();
            break;
        }
        p.c.rx_esp_ok.inc();
        stamped = stamp_of_ip(rte_pktmbuf_mtod(m, const uint8_t*), m->data_len, st);
        break;
    }
    case ParsedFrame::Kind::ip:
        stamped = stamp_of_ip(d + f.l3, f.l3_len, st);
        break;
    case ParsedFrame::Kind::other:
        break;
    }
    if (stamped && st.stream < rx.size()) {
        RxStream& r = rx[st.stream];
        r.tracker.record(st.seq);
        const uint64_t ticks = now > st.tsc ? now - st.tsc : 0;
        r.latency.record(uint64_t((unsigned __int128)ticks * ns_per_tick_q32 >> 32));
        p.c.rx_stamped.inc();
    } else {
        p.c.rx_unstamped.inc();
    }
    rte_pktmbuf_free(m);
}

void Engine::Impl::rx_poll() noexcept
{
    rte_mbuf* pkts[max_burst];
    for (auto& p : ports) {
        const uint16_t n = rte_eth_rx_burst(p.id, 0, pkts, uint16_t(burst));
        if (n == 0) continue;
        uint64_t bytes = 0;
        for (uint16_t i = 0; i < n; ++i) bytes += pkts[i]->pkt_len + fcs_len;
        p.c.rx_packets.inc(n);
        p.c.rx_bytes.inc(bytes);
        if (cfg.rx_count_only) {
            // Only ARP is looked at (a gateway must resolve us); the rest
            // is counted above and freed.
            unsigned keep = 0;
            for (uint16_t i = 0; i < n; ++i) {
                const uint8_t* d = rte_pktmbuf_mtod(pkts[i], const uint8_t*);
                if (unlikely(pkts[i]->data_len >= eth_len && d[12] == 0x08 && d[13] == 0x06)) {
                    p.c.rx_arp.inc();
                    if (arp_reply(p, pkts[i])) {
                        p.c.rx_arp_replied.inc();
                        continue;
                    }
                }
                pkts[keep++] = pkts[i];
            }
            rte_pktmbuf_free_bulk(pkts, keep);
            continue;
        }
        const uint64_t now = rte_rdtsc();
        for (uint16_t i = 0; i < n; ++i) rx_one(p, pkts[i], now);
    }
}

// ---- the clock ------------------------------------------------------------

Sample Engine::Impl::sample(uint64_t now) const
{
    Sample s;
    s.t = double(now - t0) / double(tsc_hz);
    for (auto& p : ports) {
        s.tx_packets += p.c.tx_packets.get();
        s.tx_bytes += p.c.tx_bytes.get();
        s.rx_packets += p.c.rx_packets.get();
        s.rx_stamped += p.c.rx_stamped.get();
    }
    return s;
}

void Engine::Impl::progress(const Sample& s, const Sample& prev)
{
    if (!tty) return;
    const double dt = s.t - prev.t;
    if (dt <= 0) return;
    const double txp = double(s.tx_packets - prev.tx_packets) / dt, rxp = double(s.rx_packets - prev.rx_packets) / dt;
    const double txb = double(s.tx_bytes - prev.tx_bytes) * 8 / dt;
    const double loss = s.tx_packets ? 100.0 * (double(s.tx_packets) - double(s.rx_stamped)) / double(s.tx_packets) : 0;
    std::fprintf(stderr, "\r%7.1fs  tx %8.3f Mpps %7.3f Gbit/s  rx %8.3f Mpps  sent %12llu  rcvd %12llu  not yet back %6.2f%%   ",
                 s.t, txp / 1e6, txb / 1e9, rxp / 1e6, (unsigned long long)s.tx_packets,
                 (unsigned long long)s.rx_stamped, loss);
    std::fflush(stderr);
}

// Returns true when the trial is over (RX drained).
bool Engine::Impl::clock_step(uint64_t now)
{
    if (now >= next_sample) {
        Sample s = sample(now);
        timeline.push_back(s);
        progress(s, last);
        last = s;
        next_sample += interval_ticks;
        if (next_sample <= now) next_sample = now + interval_ticks;
    }
    if (!tx_stop.load(std::memory_order_relaxed)) {
        const bool all_done = !tx.empty() && streams_done.load(std::memory_order_relaxed) == tx.size();
        if (now >= deadline || all_done || owner->stopped()) {
            tx_stop.store(true, std::memory_order_relaxed);
            tx_end = now;
            drain_end = now + uint64_t(cfg.drain_s * double(tsc_hz));
        }
        return false;
    }
    if (now >= drain_end) {
        rx_stop.store(true, std::memory_order_relaxed);
        return true;
    }
    return false;
}

namespace {

struct Roles {
    Engine::Impl* m;
    bool tx, rx;
};

int loop_main(void* arg)
{
    auto* r = static_cast<Roles*>(arg);
    Engine::Impl& m = *r->m;
    bool tx_on = r->tx;
    while (!m.rx_stop.load(std::memory_order_relaxed)) {
        const uint64_t now = rte_rdtsc();
        if (r->tx) m.ctl_flush();
        if (tx_on) {
            if (m.tx_stop.load(std::memory_order_relaxed)) {
                m.tx_drop_pending();
                tx_on = false;
            } else {
                m.tx_poll(now);
            }
        }
        if (r->rx) m.rx_poll();
    }
    if (tx_on) m.tx_drop_pending();
    return 0;
}

} // namespace

TrialResult Engine::run_trial(const TrialSpec& spec)
{
    Impl& m = *impl_;
    m.prepare_trial(spec);
    std::vector<unsigned> workers;
    unsigned id;
    RTE_LCORE_FOREACH_WORKER(id) workers.push_back(id);
    Roles both{&m, true, true}, tx_only{&m, true, false}, rx_only{&m, false, true};
    if (workers.empty()) {
        // One lcore: TX, RX and the clock in one loop.
        bool tx_on = true;
        for (;;) {
            const uint64_t now = rte_rdtsc();
            m.ctl_flush();
            if (tx_on) {
                if (m.tx_stop.load(std::memory_order_relaxed)) {
                    m.tx_drop_pending();
                    tx_on = false;
                } else {
                    m.tx_poll(now);
                }
            }
            m.rx_poll();
            if (m.clock_step(now)) break;
        }
        if (tx_on) m.tx_drop_pending();
    } else {
        if (workers.size() == 1) {
            rte_eal_remote_launch(loop_main, &both, workers[0]);
        } else {
            rte_eal_remote_launch(loop_main, &tx_only, workers[0]);
            rte_eal_remote_launch(loop_main, &rx_only, workers[1]);
        }
        while (!m.clock_step(rte_rdtsc())) usleep(200);
        for (unsigned w : workers) rte_eal_wait_lcore(w);
    }
    const uint64_t end = rte_rdtsc();
    Sample fin = m.sample(end);
    m.timeline.push_back(fin);
    if (m.tty) {
        m.progress(fin, m.last);
        std::fputc('\n', stderr);
    }

    TrialResult r;
    r.duration_s = double((m.tx_end ? m.tx_end : end) - m.t0) / double(m.tsc_hz);
    r.timeline = m.timeline;
    for (std::size_t i = 0; i < m.tx.size(); ++i) {
        TxStream& s = *m.tx[i];
        RxStream& x = m.rx[i];
        StreamResult sr;
        sr.id = s.spec->id;
        sr.tx_packets = s.tx_packets.get();
        sr.tx_bytes = s.tx_bytes.get();
        sr.tx_clear_bytes = s.tx_clear_bytes.get();
        sr.rx_packets = x.tracker.received();
        sr.rx_distinct = x.tracker.distinct();
        sr.lost = x.tracker.lost(sr.tx_packets);
        sr.duplicates = x.tracker.duplicates();
        sr.reordered = x.tracker.reordered();
        sr.too_old = x.tracker.too_old();
        sr.latency = x.latency;
        r.tx_packets += sr.tx_packets;
        r.tx_bytes += sr.tx_bytes;
        r.tx_clear_bytes += sr.tx_clear_bytes;
        r.rx_stamped += sr.rx_packets;
        r.rx_distinct += sr.rx_distinct;
        r.lost += sr.lost;
        r.streams.push_back(std::move(sr));
    }
    r.offered_pps = r.duration_s > 0 ? double(r.tx_packets) / r.duration_s : 0;
    return r;
}

double Engine::mean_frame(const std::optional<std::string>& size_override) const
{
    double sum = 0;
    for (auto& s : impl_->tx) sum += SizeSchedule::parse(size_override ? *size_override : s->spec->size_spec)->mean();
    return impl_->tx.empty() ? 0 : sum / double(impl_->tx.size());
}

nlohmann::json Engine::ports_json() const
{
    nlohmann::json a = nlohmann::json::array();
    for (auto& p : impl_->ports) {
        rte_eth_stats st{};
        rte_eth_stats_get(p.id, &st);
        const PortCounters& c = p.c;
        a.push_back({{"port", p.id},
                     {"name", p.name},
                     {"mac", mac_to_string(p.mac)},
                     {"link_mbps", p.link_mbps},
                     {"tx_packets", c.tx_packets.get()},
                     {"tx_bytes", c.tx_bytes.get()},
                     {"tx_backpressure", c.tx_backpressure.get()},
                     {"tx_bursts", c.tx_bursts.get()},
                     {"tx_bursts_short", c.tx_bursts_short.get()},
                     {"rx_packets", c.rx_packets.get()},
                     {"rx_bytes", c.rx_bytes.get()},
                     {"rx_stamped", c.rx_stamped.get()},
                     {"rx_unstamped", c.rx_unstamped.get()},
                     {"rx_arp", c.rx_arp.get()},
                     {"rx_arp_replied", c.rx_arp_replied.get()},
                     {"rx_esp_ok", c.rx_esp_ok.get()},
                     {"rx_esp_no_sa", c.rx_esp_no_sa.get()},
                     {"rx_esp_failed", c.rx_esp_failed.get()},
                     {"ethdev", {{"ipackets", st.ipackets}, {"opackets", st.opackets}, {"ibytes", st.ibytes},
                                 {"obytes", st.obytes}, {"imissed", st.imissed}, {"ierrors", st.ierrors},
                                 {"oerrors", st.oerrors}, {"rx_nombuf", st.rx_nombuf}}}});
    }
    return a;
}

nlohmann::json Engine::setup_json() const
{
    const Impl& m = *impl_;
    nlohmann::json streams = nlohmann::json::array();
    for (auto& s : m.tx) {
        const StreamSpec& sp = *s->spec;
        nlohmann::json j = {{"id", sp.id}, {"spec", sp.text}, {"port", sp.port},
                            {"ip", sp.family == IpFamily::v4 ? 4 : 6}, {"flows", sp.flows},
                            {"size", sp.size_spec}, {"dmac", mac_to_string(s->dmac)}};
        if (sp.rate) j["rate"] = sp.rate->to_string();
        if (sp.esp_spi) {
            j["esp_spi"] = *sp.esp_spi;
            j["esp_sas"] = sp.esp_count;
            j["esp_esn"] = !s->sas.empty() && s->sas.front()->xform.esn;
            j["esp_udp_encap"] = !s->sas.empty() && s->sas.front()->udp_encap;
        }
        streams.push_back(j);
    }
    return {{"lcores", rte_lcore_count()},
            {"tsc_hz", m.tsc_hz},
            {"line_bps", line_bps_},
            {"rate", m.cfg.rate.to_string()},
            {"burst", m.burst},
            {"sa_config", m.cfg.sa_config},
            {"esp_seq_start", m.cfg.esp_seq_start},
            {"rx_count_only", m.cfg.rx_count_only},
            {"streams", streams}};
}

nlohmann::json latency_json(const LatencyHistogram& h, bool buckets)
{
    nlohmann::json j = {{"count", h.count()},   {"min", h.min()},
                        {"mean", h.mean()},     {"p50", h.percentile(0.5)},
                        {"p90", h.percentile(0.9)}, {"p99", h.percentile(0.99)},
                        {"p999", h.percentile(0.999)}, {"max", h.max()}};
    if (buckets) {
        nlohmann::json b = nlohmann::json::array();
        for (auto& x : h.nonzero()) b.push_back({x.lo, x.hi, x.count});
        j["buckets"] = b;   // [lower ns, upper ns, count]
    }
    return j;
}

nlohmann::json trial_json(const TrialResult& r, double line_bps, bool with_timeline, bool buckets)
{
    nlohmann::json streams = nlohmann::json::array();
    LatencyHistogram all;
    for (auto& s : r.streams) {
        all.merge(s.latency);
        streams.push_back({{"id", s.id},
                           {"tx_packets", s.tx_packets},
                           {"tx_bytes", s.tx_bytes},
                           {"tx_clear_bytes", s.tx_clear_bytes},
                           {"rx_packets", s.rx_packets},
                           {"rx_distinct", s.rx_distinct},
                           {"lost", s.lost},
                           {"duplicates", s.duplicates},
                           {"reordered", s.reordered},
                           {"too_old_to_classify", s.too_old},
                           {"latency_ns", latency_json(s.latency, buckets)}});
    }
    const double d = r.duration_s > 0 ? r.duration_s : 1;
    nlohmann::json j = {{"duration_s", r.duration_s},
                        {"tx_packets", r.tx_packets},
                        {"tx_bytes", r.tx_bytes},
                        {"tx_clear_bytes", r.tx_clear_bytes},
                        {"rx_packets", r.rx_stamped},
                        {"rx_distinct", r.rx_distinct},
                        {"lost", r.lost},
                        {"loss_ratio", r.tx_packets ? double(r.lost) / double(r.tx_packets) : 0.0},
                        {"tx_mpps", double(r.tx_packets) / d / 1e6},
                        {"tx_gbps_l2", double(r.tx_bytes) * 8 / d / 1e9},
                        {"tx_gbps_clear_l2", double(r.tx_clear_bytes) * 8 / d / 1e9},
                        {"line_bps", line_bps},
                        {"latency_ns", latency_json(all, buckets)},
                        {"streams", streams}};
    if (with_timeline) {
        nlohmann::json t = nlohmann::json::array();
        for (auto& s : r.timeline)
            t.push_back({{"t", s.t}, {"tx_packets", s.tx_packets}, {"tx_bytes", s.tx_bytes},
                         {"rx_packets", s.rx_packets}, {"rx_stamped", s.rx_stamped}});
        j["timeline"] = t;
    }
    return j;
}

} // namespace ravelin::pktgen

// What the data plane costs per packet, without packet I/O, next to what the
// AES-256-GCM in it costs on its own, measured in the same run.
//
// One in-process Dataplane (one worker, every SA owned by worker 0) on
// net_ring ports, driven by hand:
//
//   per burst of 32:  load frames into the mbufs   (not timed: "restore")
//                     Worker::process_rx()          (timed: the full path)
//                     flush_tx(), take the ring     (not timed: "io")
//                     IMB_AES256_GCM_ENC/DEC x 32   (timed: "raw", same
//                       payload lengths, own buffers)
//
// Every timed region is bracketed with lfence; rdtsc; lfence, so the numbers
// are TSC cycles; the full path and its raw-GCM reference alternate burst by
// burst, so the noise of a shared host hits both alike and
// cycles_above_raw (= what our code costs on top of the cipher) is the
// number to trust. The restore and io steps are timed too, and reported, so
// it is plain what is left out.
//
// Sizes are clear-text Ethernet frames counted with the 4-byte FCS, as in
// shared/baseline/ANCHORS.md: "64" is a 60-byte frame in the mbuf (14
// Ethernet + 20 IPv4 + 8 UDP + 18 payload), whose ESP payload (inner packet
// + trailer) is 48 bytes. IMIX is 7x64 : 4x570 : 1x1420 in a fixed
// shuffled order of 96 frames.
//
// Besides Google Benchmark's flags, `--callgrind=KIND:SIZE:BURSTS` runs a
// fixed workload for valgrind --tool=callgrind --collect-atstart=no, with
// collection on only around the timed region (KIND: out, out_flows, out_tunnels,
// in_w1024esn, in_w0, raw_enc, raw_dec; SIZE: 64, 512, 1420, imix).
//
// `--tunnels=N` adds N outbound tunnels to the gateway, as
// scripts/bench-tunnels.sh configures them: tunnel i protects
// 198.18.1.0/24 -> 198.19.0.0+i/32 with its own SA (SPI 0x10000+i) and
// policy. full_out_tunnels/SIZE sends one packet to each tunnel in turn, so
// every packet meets another policy and SA. Its reference is
// full_out_flows/SIZE: one tunnel, 1024 flows (source ports) in turn, so
// each packet is classified on its own there too, as in bench-tunnels.sh's
// one-tunnel case; both run in the same SPD.
//
// `--hugepages` gives the EAL 2 MiB hugepages (512 MiB, --in-memory), as
// ravelin-dataplane runs; without it the benchmark needs none and every
// table sits on 4 KiB pages. It matters with many tunnels: 10 000 SAs and
// their key schedules span some 25 MB, and on 4 KiB pages nearly every
// packet also misses the TLB.
#include <benchmark/benchmark.h>
#ifdef RAVELIN_HAVE_CALLGRIND
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_TOGGLE_COLLECT
#endif

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <x86intrin.h>

#include <fmt/format.h>

#include <rte_cycles.h>
#include <rte_ring.h>

#include "dp_fixture.hh"
#include "esp.hh"
#include "packet.hh"
#include "replay.hh"
#include "sa.hh"
#include "spd.hh"

namespace ravelin::bench {
namespace {

using namespace ravelin::dp;

constexpr unsigned burst = 32;
constexpr unsigned fcs_len = 4;
constexpr unsigned eth_len = 14;
constexpr unsigned l3l4_len = 20 + 8;          // IPv4 + UDP of the clear-text packet
constexpr unsigned esp_front = 20 + 8 + 8;     // outer IPv4 + ESP header + IV
constexpr unsigned seq_len = 96;               // frame-size sequence: 8 IMIX cycles, 3 bursts
constexpr unsigned ring_frames = 960;          // pre-sealed inbound frames: 30 bursts, 10 IMIX cycles
constexpr unsigned frame_stride = 2048;
constexpr SeqNum inbound_seq_base = 1'000'000; // so the window starts in steady state (RFC 4303 A2 case A)

constexpr uint32_t host_a = 0xc6120102;        // 198.18.1.2, behind the gateway
constexpr uint32_t host_b = 0xc6120202;        // 198.18.2.2, behind the peer (SA 0x2002)
constexpr uint32_t host_c = 0xc6120302;        // 198.18.3.2, behind the peer (SA 0x2003)
constexpr uint32_t gw_out = 0xc6120001;        // 198.18.0.1
constexpr uint32_t peer_ip = 0xc6120002;       // 198.18.0.2

constexpr uint32_t spi_out = 0x1001;
constexpr uint32_t spi_in_esn = 0x2002;        // window 1024, ESN
constexpr uint32_t spi_in_off = 0x2003;        // window off, no ESN

uint64_t tsc_hz = 0;
unsigned tunnels = 0;                          // --tunnels=N
constexpr uint32_t tunnel_spi_base = 0x10000;
constexpr uint32_t tunnel_dst_base = 0xc6130000;   // 198.19.0.0
constexpr unsigned flows = 1024;               // full_out_flows: source ports in turn

// lfence on both sides keeps the timed work inside the bracket (an mfence,
// as in rte_rdtsc_precise(), costs more here and orders nothing more that
// matters: the stores of the restore step retire before the lfence).
inline uint64_t tsc() noexcept
{
    _mm_lfence();
    const uint64_t t = rte_rdtsc();
    _mm_lfence();
    return t;
}

// ---------------------------------------------------------------------------
// Traffic: the frame-size sequence of one case.

enum class SizeCase { s64, s512, s1420, imix };

const char* size_name(SizeCase c)
{
    switch (c) {
    case SizeCase::s64: return "64";
    case SizeCase::s512: return "512";
    case SizeCase::s1420: return "1420";
    case SizeCase::imix: return "imix";
    }
    return "?";
}

// Clear-text frame sizes incl. FCS, seq_len of them.
std::vector<unsigned> wire_sizes(SizeCase c)
{
    std::vector<unsigned> v;
    switch (c) {
    case SizeCase::s64: v.assign(seq_len, 64); break;
    case SizeCase::s512: v.assign(seq_len, 512); break;
    case SizeCase::s1420: v.assign(seq_len, 1420); break;
    case SizeCase::imix:
        for (unsigned r = 0; r < seq_len / 12; ++r) {
            v.insert(v.end(), 7, 64);
            v.insert(v.end(), 4, 570);
            v.push_back(1420);
        }
        // Fisher-Yates with a fixed LCG: the same order on every run and libc.
        uint32_t x = 12345;
        for (unsigned i = seq_len - 1; i > 0; --i) {
            x = x * 1664525u + 1013904223u;
            std::swap(v[i], v[(x >> 8) % (i + 1)]);
        }
        break;
    }
    return v;
}

inline unsigned ip_len_of(unsigned wire) { return wire - fcs_len - eth_len; }
// ESP payload as GCM sees it: inner packet + padding to 4 + pad length + next header.
inline unsigned esp_payload_of(unsigned wire)
{
    unsigned ip = ip_len_of(wire);
    return ip + ((0u - (ip + 2)) & 3u) + 2;
}

double mean_wire(const std::vector<unsigned>& sizes)
{
    double s = 0;
    for (unsigned w : sizes) s += w;
    return s / double(sizes.size());
}

// ---------------------------------------------------------------------------
// The gateway: ravelin::test's ring ports, our own config with one worker.

std::string gateway_config(const std::string& in_dev, const std::string& out_dev)
{
    auto sa = [](const char* spi, const char* dir, bool esn, unsigned window) {
        return std::string("[[sa]]\nspi = ") + spi + "\ndirection = \"" + dir +
               "\"\nencryption = \"aes256gcm16\"\nkey = \"" + test::fixture_key +
               "\"\nlocal = \"198.18.0.1\"\nremote = \"198.18.0.2\"\nesn = " + (esn ? "true" : "false") +
               "\nreplay_window = " + std::to_string(window) + "\nworker = 0\n\n";
    };
    auto policy = [](const char* dir, const char* remote, const char* spi) {
        return std::string("[[policy]]\ndirection = \"") + dir + "\"\nlocal = \"198.18.1.0/24\"\nremote = \"" +
               remote + "\"\naction = \"protect\"\nsa = " + spi + "\n\n";
    };
    std::string more;
    for (unsigned i = 0; i < tunnels; ++i) {
        const std::string spi = std::to_string(tunnel_spi_base + i);
        const uint32_t d = tunnel_dst_base + i;
        const std::string dst = fmt::format("{}.{}.{}.{}/32", d >> 24, (d >> 16) & 255, (d >> 8) & 255, d & 255);
        more += sa(spi.c_str(), "out", true, 1024) + policy("out", dst.c_str(), spi.c_str());
    }
    return "[dataplane]\nlcores = \"0,1\"\nfile_prefix = \"rvl-bench\"\n\n"
           "[[port]]\nname = \"inside\"\nrole = \"protected\"\ndevice = \"" + in_dev +
           "\"\naddress = [\"198.18.1.1/24\"]\n\n"
           "[[port]]\nname = \"outside\"\nrole = \"unprotected\"\ndevice = \"" + out_dev +
           "\"\naddress = [\"198.18.0.1/24\"]\n\n" +
           sa("0x1001", "out", true, 1024) + sa("0x2002", "in", true, 1024) + sa("0x2003", "in", false, 0) +
           policy("out", "198.18.2.0/24", "0x1001") + policy("in", "198.18.2.0/24", "0x2002") +
           policy("in", "198.18.3.0/24", "0x2003") + more;
}

struct Gateway {
    test::RingPort inside{(test::eal(), "rvl_bin")};
    test::RingPort outside{"rvl_bout"};
    std::unique_ptr<Dataplane> dp;
    Worker* worker = nullptr;
    DpSa* sa_out = nullptr;
    DpSa* sa_in_esn = nullptr;
    DpSa* sa_in_off = nullptr;
    rte_ether_addr inside_mac{}, outside_mac{};
    rte_ether_addr host_mac{{0x02, 0, 0, 0, 0, 0x02}};
    rte_ether_addr peer_mac{{0x02, 0, 0, 0, 0, 0x03}};

    Gateway()
    {
        auto cfg = parse_config(gateway_config(inside.name, outside.name), "bench.toml");
        if (!cfg) die(cfg.error().to_string());
        std::string error;
        dp = Dataplane::create(cfg.value(), error);
        if (!dp) die("Dataplane::create: " + error);
        SharedState& s = dp->shared();
        rte_rcu_qsbr_thread_register(s.rcu, 0);
        rte_rcu_qsbr_thread_online(s.rcu, 0);
        s.neighbors->add(IpAddress::v4(host_a), inside.id, host_mac);
        s.neighbors->add(IpAddress::v4(peer_ip), outside.id, peer_mac);
        worker = &dp->worker(0);
        inside_mac = s.ports[inside.id].mac;
        outside_mac = s.ports[outside.id].mac;
        sa_out = sa(spi_out, SaDirection::outbound);
        sa_in_esn = sa(spi_in_esn, SaDirection::inbound);
        sa_in_off = sa(spi_in_off, SaDirection::inbound);
    }
    DpSa* sa(uint32_t spi, SaDirection d)
    {
        DpSa* p = dp->shared().sas->get(dp->shared().sas->find(Spi(spi), d));
        if (!p || p->owner.value != 0) die("SA " + std::to_string(spi) + " missing or not on worker 0");
        return p;
    }
    [[noreturn]] static void die(const std::string& why)
    {
        std::fprintf(stderr, "dataplane_bench: %s\n", why.c_str());
        std::abort();
    }
    uint64_t drops() const
    {
        uint64_t n = 0;
        for (const auto& c : worker->counters().drops) n += c.get();
        return n;
    }
};

Gateway& gateway()
{
    static Gateway g;
    return g;
}

// The far end of the tunnel: seals what the gateway's inbound SAs take.
struct Peer {
    IMB_MGR* mgr = crypto_manager_create();
    WorkerCounters counters;
    EspContext ctx{mgr, nullptr, &counters, 0};
    DpSa* esn = nullptr;   // -> gateway 0x2002
    DpSa* off = nullptr;   // -> gateway 0x2003
    DpSa* in = nullptr;    // <- gateway 0x1001 (for the self-check)

    Peer()
    {
        esn = make(spi_in_esn, SaDirection::outbound, true, 1024);
        off = make(spi_in_off, SaDirection::outbound, false, 0);
        in = make(spi_out, SaDirection::inbound, true, 1024);
    }
    ~Peer()
    {
        sa_free(esn);
        sa_free(off);
        sa_free(in);
        crypto_manager_free(mgr);
    }
    DpSa* make(uint32_t spi, SaDirection dir, bool use_esn, uint16_t window)
    {
        return test::fixture_peer_sa(mgr, spi, dir, use_esn, window);
    }
};

// ---------------------------------------------------------------------------
// Frames kept as bytes, loaded into the burst mbufs before each burst.

struct FrameStore {
    std::vector<uint8_t> bytes;
    std::vector<uint16_t> len;

    void add(const rte_mbuf* m)
    {
        size_t at = len.size() * frame_stride;
        bytes.resize(at + frame_stride);
        std::memcpy(bytes.data() + at, rte_pktmbuf_mtod(m, const uint8_t*), m->data_len);
        len.push_back(m->data_len);
    }
    const uint8_t* frame(size_t i) const { return bytes.data() + i * frame_stride; }
    size_t size() const { return len.size(); }
};

inline void load(rte_mbuf* m, const uint8_t* frame, uint16_t len) noexcept
{
    m->data_off = RTE_PKTMBUF_HEADROOM;
    m->data_len = len;
    m->pkt_len = len;
    m->ol_flags = 0;
    std::memcpy(rte_pktmbuf_mtod(m, uint8_t*), frame, len);
}

rte_mbuf* clear_frame(rte_mempool* pool, uint32_t src, unsigned wire, uint32_t tag, const rte_ether_addr& dst,
                      uint32_t to = 0)
{
    return test::udp_frame(pool, src, to ? to : host_a == src ? host_b : host_a, tag,
                           uint16_t(wire - fcs_len - eth_len - l3l4_len), dst);
}

// ---------------------------------------------------------------------------
// Raw GCM: the IPsec-MB direct API on 32 buffers with the payload lengths of
// a burst, at the offset the data plane's payload has in its mbufs, with the
// AAD the data plane builds (8 bytes, 12 with ESN). Only the 32 calls are in
// the timed region.

struct RawGcm {
    IMB_MGR* mgr = crypto_manager_create();
    alignas(64) gcm_key_data key;
    std::vector<rte_mbuf*> bufs;
    std::vector<unsigned> lens;   // per sequence position
    unsigned offset;
    unsigned aad_len;
    alignas(16) uint8_t nonce[burst][16];
    alignas(16) uint8_t aad[burst][16];

    RawGcm(rte_mempool* pool, const std::vector<unsigned>& sizes, bool inbound, bool esn)
        : offset(RTE_PKTMBUF_HEADROOM + eth_len + (inbound ? esp_front : 0)), aad_len(esn ? 12 : 8)
    {
        uint8_t k[32];
        for (unsigned i = 0; i < 32; ++i) k[i] = uint8_t(i);
        IMB_AES256_GCM_PRE(mgr, k, &key);
        for (unsigned w : sizes) lens.push_back(esp_payload_of(w));
        for (unsigned i = 0; i < burst; ++i) {
            rte_mbuf* m = rte_pktmbuf_alloc(pool);
            if (!m) Gateway::die("raw: no mbuf");
            std::memset(m->buf_addr, 0x5a, m->buf_len);
            bufs.push_back(m);
            for (unsigned j = 0; j < 16; ++j) nonce[i][j] = uint8_t(0xa0 + j), aad[i][j] = uint8_t(j * 7 + i);
        }
    }
    ~RawGcm()
    {
        for (rte_mbuf* m : bufs) rte_pktmbuf_free(m);
        crypto_manager_free(mgr);
    }
    // One burst; `first` is the sequence position of its first packet.
    void enc(unsigned first) noexcept
    {
        for (unsigned i = 0; i < burst; ++i) {
            uint8_t* p = static_cast<uint8_t*>(bufs[i]->buf_addr) + offset;
            const unsigned n = lens[(first + i) % lens.size()];
            gcm_context_data ctx;
            IMB_AES256_GCM_ENC(mgr, &key, &ctx, p, p, n, nonce[i], aad[i], aad_len, p + n, 16);
        }
    }
    void dec(unsigned first) noexcept
    {
        alignas(16) uint8_t tag[16];
        for (unsigned i = 0; i < burst; ++i) {
            uint8_t* p = static_cast<uint8_t*>(bufs[i]->buf_addr) + offset;
            const unsigned n = lens[(first + i) % lens.size()];
            gcm_context_data ctx;
            IMB_AES256_GCM_DEC(mgr, &key, &ctx, p, p, n, nonce[i], aad[i], aad_len, tag, 16);
            benchmark::DoNotOptimize(tag);
        }
    }
};

// ---------------------------------------------------------------------------
// One direction of the full path, step by step, so that the benchmarks and
// the callgrind workload run exactly the same code.

class PathRun {
public:
    // Outbound: clear frames into the protected port, one flow, or frame i
    // on flow i % flows of the one tunnel, or to tunnel i % tunnels (whole
    // bursts of frames, at least one per flow or tunnel).
    enum class Spread { none, flows, tunnels };
    PathRun(Gateway& g, SizeCase c, Spread spread = Spread::none)
        : g_(g), sizes_(wire_sizes(c)), rx_port_(g.inside.id), tx_(&g.outside)
    {
        rte_mempool* pool = g.dp->pool();
        const unsigned ways = spread == Spread::flows ? flows : spread == Spread::tunnels ? tunnels : 1;
        const unsigned n = (std::max(ways, seq_len) + burst - 1) / burst * burst;
        for (unsigned i = 0; i < n; ++i) {
            const uint32_t to = spread == Spread::tunnels ? tunnel_dst_base + i % tunnels : 0;
            rte_mbuf* m = clear_frame(pool, host_a, sizes_[i % seq_len], i, g.inside_mac, to);
            if (spread == Spread::flows)
                rte_pktmbuf_mtod_offset(m, rte_udp_hdr*, eth_len + 20)->src_port = rte_cpu_to_be_16(uint16_t(10000 + i % flows));
            frames_.add(m);
            rte_pktmbuf_free(m);
        }
        alloc_burst();
    }
    // Inbound: ESP frames sealed by the peer for gateway SA `spi`.
    PathRun(Gateway& g, SizeCase c, uint32_t spi)
        : g_(g), sizes_(wire_sizes(c)), rx_port_(g.outside.id), tx_(&g.inside)
    {
        Peer peer;
        DpSa* psa = spi == spi_in_esn ? peer.esn : peer.off;
        sa_ = spi == spi_in_esn ? g.sa_in_esn : g.sa_in_off;
        psa->state.seq = inbound_seq_base;
        rte_mempool* pool = g.dp->pool();
        for (unsigned i = 0; i < ring_frames; ++i) {
            rte_mbuf* m = clear_frame(pool, spi == spi_in_esn ? host_b : host_c, sizes_[i % seq_len], i,
                                      rte_ether_addr{});
            rte_pktmbuf_adj(m, eth_len);
            if (esp_encap(peer.ctx, *psa, m) != DropReason::none) Gateway::die("peer esp_encap failed");
            auto* eth = reinterpret_cast<rte_ether_hdr*>(rte_pktmbuf_prepend(m, eth_len));
            eth->dst_addr = g.outside_mac;
            eth->src_addr = g.peer_mac;
            eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
            frames_.add(m);
            rte_pktmbuf_free(m);
        }
        rewind();
        alloc_burst();
    }
    ~PathRun()
    {
        for (rte_mbuf* m : pkts_) rte_pktmbuf_free(m);
    }
    PathRun(const PathRun&) = delete;
    PathRun& operator=(const PathRun&) = delete;

    const std::vector<unsigned>& sizes() const { return sizes_; }
    const std::vector<rte_mbuf*>& burst_mbufs() const { return pkts_; }
    // Sequence position of the first packet of the burst last restored
    // (RawGcm follows the same frame sizes).
    unsigned position() const { return unsigned(first_ % seq_len); }

    // Not timed: put the next burst's frames into the mbufs. Inbound, when
    // the pre-sealed frames run out, start again with a fresh window.
    void restore() noexcept
    {
        if (next_ == frames_.size()) rewind();
        for (unsigned i = 0; i < burst; ++i) load(pkts_[i], frames_.frame(next_ + i), frames_.len[next_ + i]);
        first_ = next_;
        next_ += burst;
    }
    // Timed: the full path.
    void process() noexcept { g_.worker->process_rx(rx_port_, pkts_.data(), uint16_t(burst)); }
    // Not timed: hand the burst to the ring PMD and take it back. Returns
    // false if a packet did not come out (dropped).
    bool drain() noexcept
    {
        g_.worker->flush_tx();
        unsigned n = rte_ring_dequeue_burst(tx_->tx[0], reinterpret_cast<void**>(pkts_.data()), burst, nullptr);
        if (n == burst) return true;
        for (unsigned i = n; i < burst; ++i) pkts_[i] = rte_pktmbuf_alloc(g_.dp->pool());
        return false;
    }
    // Wire bytes (incl. FCS) of the burst last restored.
    uint64_t wire_bytes() const
    {
        uint64_t b = 0;
        for (unsigned i = 0; i < burst; ++i) b += sizes_[(first_ + i) % seq_len];
        return b;
    }

private:
    void alloc_burst()
    {
        for (unsigned i = 0; i < burst; ++i) {
            rte_mbuf* m = rte_pktmbuf_alloc(g_.dp->pool());
            if (!m) Gateway::die("no mbuf for the burst");
            pkts_.push_back(m);
        }
    }
    void rewind() noexcept
    {
        next_ = 0;
        if (sa_) sa_->replay.reset(sa_->replay.size(), sa_->replay.esn());
    }

    Gateway& g_;
    std::vector<unsigned> sizes_;
    uint16_t rx_port_;
    const test::RingPort* tx_;
    DpSa* sa_ = nullptr;   // inbound: the gateway SA whose window restarts with the frames
    FrameStore frames_;
    std::vector<rte_mbuf*> pkts_;
    size_t next_ = 0, first_ = 0;
};

// ---------------------------------------------------------------------------
// Benchmarks.

// Per-burst cycle samples of one timed region. The host is shared and
// time-sliced: a burst that spans a preemption costs millions of cycles, so
// the reported numbers are medians over bursts (the mean is reported too,
// as mean_cycles_per_pkt, to show how noisy the run was).
struct Samples {
    std::vector<uint32_t> v;
    uint64_t sum = 0;

    Samples() { v.reserve(1u << 20); }
    void add(uint64_t c)
    {
        v.push_back(uint32_t(std::min<uint64_t>(c, UINT32_MAX)));
        sum += c;
    }
    // Median per packet.
    double median() 
    {
        if (v.empty()) return 0;
        auto mid = v.begin() + v.size() / 2;
        std::nth_element(v.begin(), mid, v.end());
        return double(*mid) / burst;
    }
    double mean() const { return v.empty() ? 0 : double(sum) / double(v.size()) / burst; }
};

struct Totals {
    Samples full, raw, restore, io;
    uint64_t pkts = 0, bytes = 0;
};

void report(benchmark::State& st, Totals& t, double mean_bytes)
{
    const double full = t.full.median(), raw = t.raw.median();
    st.SetItemsProcessed(int64_t(t.pkts));
    st.SetBytesProcessed(int64_t(t.bytes));
    st.counters["cycles_per_pkt"] = full;
    st.counters["mpps"] = full > 0 ? double(tsc_hz) / full / 1e6 : 0;
    st.counters["raw_cycles_per_pkt"] = raw;
    st.counters["cycles_above_raw"] = full - raw;
    st.counters["ratio_to_raw"] = raw > 0 ? full / raw : 0;
    st.counters["cycles_per_byte"] = full / mean_bytes;
    st.counters["restore_cycles_per_pkt"] = t.restore.median();
    st.counters["io_cycles_per_pkt"] = t.io.median();
    st.counters["mean_cycles_per_pkt"] = t.full.mean();
    st.counters["mean_wire_bytes"] = mean_bytes;
}

// Full path (outbound, or inbound through one SA) with its raw reference
// interleaved burst by burst.
void bm_full(benchmark::State& st, SizeCase c, uint32_t spi, PathRun::Spread spread = PathRun::Spread::none)
{
    Gateway& g = gateway();
    const bool inbound = spi != spi_out;
    auto run = inbound ? std::make_unique<PathRun>(g, c, spi) : std::make_unique<PathRun>(g, c, spread);
    const bool esn = spi != spi_in_off;
    RawGcm raw(g.dp->pool(), run->sizes(), inbound, esn);
    const uint64_t drops_before = g.drops();
    Totals t;
    for (auto _ : st) {
        const uint64_t t0 = tsc();
        run->restore();
        const unsigned pos = run->position();
        const uint64_t t1 = tsc();
        run->process();
        const uint64_t t2 = tsc();
        const bool ok = run->drain();
        const uint64_t t3 = tsc();
        if (inbound) raw.dec(pos);
        else raw.enc(pos);
        const uint64_t t4 = tsc();
        if (!ok) {
            st.SkipWithError("packets dropped: see the worker's drop counters");
            break;
        }
        t.restore.add(t1 - t0), t.full.add(t2 - t1), t.io.add(t3 - t2), t.raw.add(t4 - t3);
        t.pkts += burst;
        t.bytes += run->wire_bytes();
        st.SetIterationTime(double(t2 - t1) / double(tsc_hz));
    }
    if (g.drops() != drops_before) st.SkipWithError("drops counted");
    report(st, t, mean_wire(run->sizes()));
}

// Raw GCM alone (the reference of section 2b of ANCHORS.md, here on the
// data plane's payload lengths and AAD).
void bm_raw(benchmark::State& st, SizeCase c, bool dec)
{
    Gateway& g = gateway();
    const std::vector<unsigned> sizes = wire_sizes(c);
    RawGcm raw(g.dp->pool(), sizes, dec, true);
    Totals t;
    unsigned pos = 0;
    for (auto _ : st) {
        const uint64_t t0 = tsc();
        if (dec) raw.dec(pos);
        else raw.enc(pos);
        const uint64_t t1 = tsc();
        t.raw.add(t1 - t0);
        t.full.add(t1 - t0);
        t.pkts += burst;
        for (unsigned i = 0; i < burst; ++i) t.bytes += sizes[(pos + i) % seq_len];
        pos = (pos + burst) % seq_len;
        st.SetIterationTime(double(t1 - t0) / double(tsc_hz));
    }
    report(st, t, mean_wire(sizes));
}

// The replay-window floor: the same inbound traffic through the window-1024
// + ESN SA and the window-off SA, alternating burst by burst.
void bm_window(benchmark::State& st, SizeCase c)
{
    Gateway& g = gateway();
    PathRun a(g, c, spi_in_esn), b(g, c, spi_in_off);
    const uint64_t drops_before = g.drops();
    Samples sa, sb;
    uint64_t pkts = 0;
    for (auto _ : st) {
        a.restore();
        const uint64_t t0 = tsc();
        a.process();
        const uint64_t t1 = tsc();
        bool ok = a.drain();
        b.restore();
        const uint64_t t2 = tsc();
        b.process();
        const uint64_t t3 = tsc();
        ok &= b.drain();
        if (!ok) {
            st.SkipWithError("packets dropped");
            break;
        }
        sa.add(t1 - t0), sb.add(t3 - t2), pkts += burst;
        st.SetIterationTime(double(t1 - t0 + t3 - t2) / double(tsc_hz));
    }
    if (g.drops() != drops_before) st.SkipWithError("drops counted");
    const double ca = sa.median(), cb = sb.median();
    st.SetItemsProcessed(int64_t(2 * pkts));
    st.counters["cycles_w1024_esn"] = ca;
    st.counters["cycles_w0"] = cb;
    st.counters["window_cost_pct"] = cb > 0 ? 100.0 * (ca - cb) / cb : 0;
}

// The cost of the bracket itself (two tsc()), per burst: included in every
// timed region, not subtracted (it cancels in cycles_above_raw).
void bm_tsc_bracket(benchmark::State& st)
{
    Samples b;
    for (auto _ : st) {
        const uint64_t t0 = tsc();
        const uint64_t t1 = tsc();
        b.add(t1 - t0);
        st.SetIterationTime(double(t1 - t0) / double(tsc_hz));
    }
    const double per_pkt = b.median();
    st.counters["cycles_per_bracket"] = per_pkt * burst;
    st.counters["cycles_per_pkt_at_32"] = per_pkt;
}

// The lookups of the path on their own, 32 per timed region with the keys
// the full path uses, to say where its cycles go on the real CPU (callgrind
// counts instructions; these count cycles). Per operation, medians.
enum class Part { neighbor, fib, spd_out, spd_in, spd_in_off, sa_inbound, sa_inbound_off, replay_w1024esn, replay_off,
                  ipv4_cksum };

void bm_part(benchmark::State& st, Part part)
{
    Gateway& g = gateway();
    SharedState& s = g.dp->shared();
    FlowKey keys[burst];
    const FlowKey* kp[burst];
    const SpdEntry* hits[burst];
    const uint32_t spi_be = rte_cpu_to_be_32(part == Part::sa_inbound_off ? spi_in_off : spi_in_esn);
    const uint32_t* spis[burst];
    DpSa* sas[burst];
    for (unsigned i = 0; i < burst; ++i) {
        std::memset(&keys[i], 0, sizeof keys[i]);
        keys[i].proto = proto_udp;
        const bool in = part == Part::spd_in || part == Part::spd_in_off;
        keys[i].src[0] = rte_cpu_to_be_32(part == Part::spd_in_off ? host_c : in ? host_b : host_a);
        keys[i].dst[0] = rte_cpu_to_be_32(in ? host_a : host_b);
        keys[i].sport = rte_cpu_to_be_16(1234);
        keys[i].dport = rte_cpu_to_be_16(5678);
        kp[i] = &keys[i];
        spis[i] = &spi_be;
    }
    static ReplayWindow window;
    window.reset(part == Part::replay_w1024esn ? 1024 : 0, part == Part::replay_w1024esn);
    SeqNum next = inbound_seq_base;
    rte_mbuf* m = clear_frame(g.dp->pool(), host_a, 64, 0, g.inside_mac);
    auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, eth_len);
    const IpAddress peer_addr = IpAddress::v4(peer_ip);
    Samples t;
    uint64_t sink = 0;
    for (auto _ : st) {
        const uint64_t t0 = tsc();
        switch (part) {
        case Part::neighbor:
            for (unsigned i = 0; i < burst; ++i) {
                rte_ether_addr mac;
                sink += s.neighbors->lookup(peer_addr, mac);
            }
            break;
        case Part::fib:
            for (unsigned i = 0; i < burst; ++i) sink += uintptr_t(s.fib->lookup(peer_addr));
            break;
        case Part::spd_out: s.spd_out.load()->lookup_v4(kp, burst, hits); break;
        case Part::spd_in:
        case Part::spd_in_off: s.spd_in.load()->lookup_v4(kp, burst, hits); break;
        case Part::sa_inbound:
        case Part::sa_inbound_off: s.sas->lookup_inbound(spis, burst, sas); break;
        case Part::replay_w1024esn:
        case Part::replay_off:
            for (unsigned i = 0; i < burst; ++i) {
                SeqNum full;
                sink += window.check(uint32_t(++next), full) && window.update(full);
            }
            break;
        case Part::ipv4_cksum:
            for (unsigned i = 0; i < burst; ++i) {
                ip->packet_id = uint16_t(i);
                ip->hdr_checksum = 0;
                ip->hdr_checksum = rte_ipv4_cksum(ip);
                sink += ip->hdr_checksum;
            }
            break;
        }
        const uint64_t t1 = tsc();
        benchmark::DoNotOptimize(sink);
        benchmark::DoNotOptimize(hits);
        benchmark::DoNotOptimize(sas);
        t.add(t1 - t0);
        st.SetIterationTime(double(t1 - t0) / double(tsc_hz));
    }
    rte_pktmbuf_free(m);
    st.SetItemsProcessed(int64_t(t.v.size()) * burst);
    st.counters["cycles_per_op"] = t.median();
}

void register_all()
{
    const SizeCase cases[] = {SizeCase::s64, SizeCase::s512, SizeCase::s1420, SizeCase::imix};
    // Besides Google Benchmark's mean/median/stddev over repetitions: the
    // best repetition, i.e. the one the other tenants of the host disturbed least.
    auto min_of = [](const std::vector<double>& v) { return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end()); };
    auto reg = [min_of](const std::string& name, auto fn) {
        benchmark::RegisterBenchmark(name.c_str(), fn)
            ->UseManualTime()
            ->Unit(benchmark::kNanosecond)
            ->ComputeStatistics("min", +min_of);
    };
    for (SizeCase c : cases) {
        const std::string s = size_name(c);
        reg("raw_gcm256_enc/" + s, [c](benchmark::State& st) { bm_raw(st, c, false); });
        reg("raw_gcm256_dec/" + s, [c](benchmark::State& st) { bm_raw(st, c, true); });
        reg("full_out/" + s, [c](benchmark::State& st) { bm_full(st, c, spi_out); });
        reg("full_out_flows/" + s, [c](benchmark::State& st) { bm_full(st, c, spi_out, PathRun::Spread::flows); });
        if (tunnels)
            reg("full_out_tunnels/" + s,
                [c](benchmark::State& st) { bm_full(st, c, spi_out, PathRun::Spread::tunnels); });
        reg("full_in_w1024esn/" + s, [c](benchmark::State& st) { bm_full(st, c, spi_in_esn); });
        reg("full_in_w0/" + s, [c](benchmark::State& st) { bm_full(st, c, spi_in_off); });
        reg("window_ab/" + s, [c](benchmark::State& st) { bm_window(st, c); });
    }
    reg("tsc_bracket", bm_tsc_bracket);
    const std::pair<const char*, Part> parts[] = {
        {"neighbor_lookup", Part::neighbor},  {"fib_lookup", Part::fib},
        {"spd_out_lookup_v4", Part::spd_out}, {"spd_in_lookup_v4", Part::spd_in},
        {"spd_in_lookup_v4_sa_off", Part::spd_in_off}, {"sa_lookup_inbound", Part::sa_inbound},
        {"sa_lookup_inbound_sa_off", Part::sa_inbound_off}, {"replay_w1024esn", Part::replay_w1024esn},
        {"replay_off", Part::replay_off},     {"ipv4_cksum", Part::ipv4_cksum},
    };
    for (const auto& [name, p] : parts)
        reg(std::string("part/") + name, [p = p](benchmark::State& st) { bm_part(st, p); });
}

// ---------------------------------------------------------------------------
// Fixed workload for callgrind: warm up, then collect only the timed region.

int callgrind_workload(const std::string& spec)
{
    const size_t c1 = spec.find(':'), c2 = spec.rfind(':');
    if (c1 == std::string::npos || c2 == c1) return std::fprintf(stderr, "--callgrind=KIND:SIZE:BURSTS\n"), 2;
    const std::string kind = spec.substr(0, c1), size = spec.substr(c1 + 1, c2 - c1 - 1);
    const unsigned bursts = unsigned(std::stoul(spec.substr(c2 + 1)));
    SizeCase c = size == "64" ? SizeCase::s64 : size == "512" ? SizeCase::s512
               : size == "1420" ? SizeCase::s1420 : SizeCase::imix;
    Gateway& g = gateway();
    // Past every flow and tunnel once: an SA's first packet takes the cold path.
    const unsigned warmup = 64 + (std::max(tunnels, flows) + burst - 1) / burst;
    std::unique_ptr<PathRun> run;
    std::unique_ptr<RawGcm> raw;
    if (kind == "out") run = std::make_unique<PathRun>(g, c);
    else if (kind == "out_flows") run = std::make_unique<PathRun>(g, c, PathRun::Spread::flows);
    else if (kind == "out_tunnels" && !tunnels) return std::fprintf(stderr, "out_tunnels needs --tunnels=N\n"), 2;
    else if (kind == "out_tunnels") run = std::make_unique<PathRun>(g, c, PathRun::Spread::tunnels);
    else if (kind == "in_w1024esn") run = std::make_unique<PathRun>(g, c, spi_in_esn);
    else if (kind == "in_w0") run = std::make_unique<PathRun>(g, c, spi_in_off);
    else if (kind == "raw_enc" || kind == "raw_dec")
        raw = std::make_unique<RawGcm>(g.dp->pool(), wire_sizes(c), kind == "raw_dec", true);
    else return std::fprintf(stderr, "unknown kind %s\n", kind.c_str()), 2;
    IMB_MGR* probe = crypto_manager_create();
    std::printf("ipsec-mb arch: %u (%s)\n", probe->used_arch,
                probe->used_arch == IMB_ARCH_AVX512 ? "avx512" : probe->used_arch == IMB_ARCH_AVX2 ? "avx2"
                                                                                                   : "other");
    crypto_manager_free(probe);
    for (unsigned i = 0; i < warmup + bursts; ++i) {
        const bool collect = i >= warmup;
        if (run) {
            run->restore();
            if (collect) CALLGRIND_TOGGLE_COLLECT;
            run->process();
            if (collect) CALLGRIND_TOGGLE_COLLECT;
            if (!run->drain()) return std::fprintf(stderr, "packets dropped\n"), 1;
        } else {
            const unsigned pos = (i * burst) % seq_len;
            if (collect) CALLGRIND_TOGGLE_COLLECT;
            if (kind == "raw_dec") raw->dec(pos);
            else raw->enc(pos);
            if (collect) CALLGRIND_TOGGLE_COLLECT;
        }
    }
    std::printf("callgrind workload %s: %u packets collected\n", spec.c_str(), bursts * burst);
    return 0;
}

// Before timing anything: what the outbound path sends must decrypt, at
// the peer, to the packet that went in (TTL one less), and the inbound path
// must deliver every sealed frame, so the benchmarks time the real work.
void self_check()
{
    Gateway& g = gateway();
    Peer peer;
    for (SizeCase c : {SizeCase::s64, SizeCase::s1420, SizeCase::imix}) {
        PathRun out(g, c);
        out.restore();
        std::vector<std::vector<uint8_t>> sent;
        for (rte_mbuf* m : out.burst_mbufs())
            sent.emplace_back(rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_mtod(m, uint8_t*) + m->data_len);
        out.process();
        if (!out.drain()) Gateway::die("self-check: outbound dropped packets");
        for (unsigned i = 0; i < burst; ++i) {
            rte_mbuf* m = out.burst_mbufs()[i];
            rte_pktmbuf_adj(m, eth_len);
            if (esp_decap(peer.ctx, *peer.in, m, 20) != DropReason::none)
                Gateway::die("self-check: the peer cannot decrypt what the gateway sent");
            std::vector<uint8_t>& want = sent[i];
            want[eth_len + 8]--;   // TTL
            const uint8_t* got = rte_pktmbuf_mtod(m, const uint8_t*);
            if (m->data_len != want.size() - eth_len ||
                std::memcmp(got + 12, want.data() + eth_len + 12, m->data_len - 12) != 0 || got[8] != want[eth_len + 8])
                Gateway::die("self-check: decrypted packet differs from the one sent");
        }
        for (uint32_t spi : {spi_in_esn, spi_in_off}) {
            PathRun in(g, c, spi);
            for (unsigned b = 0; b < 2 * ring_frames / burst; ++b) {   // twice round: the window restarts
                in.restore();
                in.process();
                if (!in.drain()) Gateway::die("self-check: inbound dropped packets");
            }
        }
    }
    if (tunnels) {
        // Each packet of a burst leaves on its own tunnel's SA.
        PathRun out(g, SizeCase::s64, PathRun::Spread::tunnels);
        out.restore();
        out.process();
        if (!out.drain()) Gateway::die("self-check: outbound over the tunnels dropped packets");
        for (unsigned i = 0; i < burst; ++i) {
            uint32_t spi_be;
            std::memcpy(&spi_be, rte_pktmbuf_mtod_offset(out.burst_mbufs()[i], const uint8_t*, eth_len + 20), 4);
            if (rte_be_to_cpu_32(spi_be) != tunnel_spi_base + i % tunnels)
                Gateway::die("self-check: a packet left on another tunnel's SA");
        }
    }
    if (g.drops() != 0) Gateway::die("self-check: drops counted");
}

} // namespace
} // namespace ravelin::bench

int main(int argc, char** argv)
{
    using namespace ravelin::bench;
    std::vector<char*> args;
    std::string callgrind;
    bool hugepages = false;
    for (int i = 0; i < argc; ++i) {
        if (std::strncmp(argv[i], "--callgrind=", 12) == 0) callgrind = argv[i] + 12;
        else if (std::strncmp(argv[i], "--tunnels=", 10) == 0) tunnels = unsigned(std::stoul(argv[i] + 10));
        else if (std::strcmp(argv[i], "--hugepages") == 0) hugepages = true;
        else args.push_back(argv[i]);
    }
    ravelin::test::eal(hugepages);
    tsc_hz = rte_get_tsc_hz();
    if (!callgrind.empty()) return callgrind_workload(callgrind);
    int n = int(args.size());
    benchmark::Initialize(&n, args.data());
    if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
    self_check();
    benchmark::AddCustomContext("tsc_hz", std::to_string(tsc_hz));
    benchmark::AddCustomContext("burst", std::to_string(burst));
    benchmark::AddCustomContext("hugepages", hugepages ? "2 MiB" : "none (4 KiB pages)");
    benchmark::AddCustomContext("sizes", "clear-text Ethernet frame bytes incl. 4-byte FCS");
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}

// Tests for dataplane/esp.hh and dataplane/sa.hh: esp_encap()/esp_decap()
// on real mbufs. Round trips over every algorithm × mode × address families
// × ESP-in-UDP × ESN; every way inbound must refuse a packet (tampering,
// replay, truncation, padding, next header, inner length); lifetimes and
// sequence exhaustion with their events; MTU; RFC 6040 ECN; full-path
// known answers from the published and generated ESP vectors; and the
// specialised AES-GCM bodies against the generic ones.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <rte_ip.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <rte_udp.h>

#include "eal_env.hh"
#include "esp.hh"
#include "sa.hh"
#include "test_algorithms.hh"
#include "vectors.hh"

namespace ravelin::dp {
namespace {

using test::Bytes;
using test::unhex;

// --- environment -----------------------------------------------------------

IMB_MGR* mgr()
{
    static IMB_MGR* m = [] {
        test::eal();
        IMB_MGR* p = crypto_manager_create();
        if (!p) std::abort();
        return p;
    }();
    return m;
}

struct SaDeleter {
    void operator()(DpSa* s) const { sa_free(s); }
};
using SaPtr = std::unique_ptr<DpSa, SaDeleter>;

struct MbufDeleter {
    void operator()(rte_mbuf* m) const { rte_pktmbuf_free(m); }
};
using MbufPtr = std::unique_ptr<rte_mbuf, MbufDeleter>;

struct RingDeleter {
    void operator()(rte_ring* r) const { rte_ring_free(r); }
};
using RingPtr = std::unique_ptr<rte_ring, RingDeleter>;

using test::Alg;
using test::all_algs;
const Alg& gcm128 = all_algs[0];

struct Opts {
    SaMode mode = SaMode::tunnel;
    IpFamily outer = IpFamily::v4;
    bool udp = false;
    bool esn = false;
    uint16_t mtu = 2000;
    uint16_t window = 64;
    SaLifetime life{};
    DfMode df = DfMode::copy;
    bool copy_dscp = true;
};

const IpAddress v4_a = IpAddress::v4(0xc6336401), v4_b = IpAddress::v4(0xc6336402);
IpAddress v6_addr(uint8_t last)
{
    IpAddress a;
    a.family = IpFamily::v6;
    a.bytes = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last};
    return a;
}

SaDescriptor descriptor(const Alg& a, const Opts& o, SaDirection dir)
{
    SaDescriptor d;
    d.spi = Spi(0x12345678);
    d.direction = dir;
    d.mode = o.mode;
    d.cipher = a.c;
    d.integ = a.i;
    d.cipher_key_len = uint8_t(a.key);
    d.integ_key_len = uint8_t(integ_key_len(a.i));
    for (unsigned n = 0; n < d.cipher_key.size(); ++n) d.cipher_key[n] = uint8_t(n * 29 + 7);
    for (unsigned n = 0; n < d.integ_key.size(); ++n) d.integ_key[n] = uint8_t(n * 31 + 1);
    const bool v4 = o.outer == IpFamily::v4;
    d.local = dir == SaDirection::outbound ? (v4 ? v4_a : v6_addr(1)) : (v4 ? v4_b : v6_addr(2));
    d.remote = dir == SaDirection::outbound ? (v4 ? v4_b : v6_addr(2)) : (v4 ? v4_a : v6_addr(1));
    d.udp_encap = o.udp;
    d.encap_local_port = dir == SaDirection::outbound ? 4500 : 4501;
    d.encap_remote_port = dir == SaDirection::outbound ? 4501 : 4500;
    d.esn = o.esn;
    d.replay_window = o.window;
    d.copy_dscp = o.copy_dscp;
    d.df = o.df;
    d.lifetime = o.life;
    return d;
}

SaPtr make_sa(const Alg& a, const Opts& o, SaDirection dir)
{
    const char* err = nullptr;
    SaPtr sa(sa_create(mgr(), descriptor(a, o, dir), o.mtu, WorkerId(0), &err));
    EXPECT_TRUE(sa) << (err ? err : "");
    return sa;
}

// A worker's context: counters and, when asked, an event ring.
struct Worker {
    WorkerCounters counters;
    RingPtr ring;
    EspContext ctx;
    explicit Worker(unsigned ring_size = 0)
    {
        ctx.mgr = mgr();   // first: it starts the EAL the ring needs
        if (ring_size) {
            static int n = 0;
            const std::string name = "rvl_ev_" + std::to_string(n++);
            ring.reset(rte_ring_create_elem(name.c_str(), sizeof(DataplaneEvent), ring_size, SOCKET_ID_ANY,
                                            RING_F_SC_DEQ));
            EXPECT_TRUE(ring);
        }
        ctx.events = ring.get();
        ctx.counters = &counters;
        ctx.now_tsc = 1000;
    }
    std::vector<DataplaneEvent> events()
    {
        std::vector<DataplaneEvent> out;
        DataplaneEvent ev;
        while (ring && rte_ring_sc_dequeue_elem(ring.get(), &ev, sizeof ev) == 0) out.push_back(ev);
        return out;
    }
};

// --- packets ------------------------------------------------------------------

void put16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8), p[1] = uint8_t(v); }
uint16_t get16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }

// rte_ipv4_cksum() returns the field as it lies in memory.
void set_ipv4_cksum(uint8_t* ip)
{
    ip[10] = ip[11] = 0;
    const uint16_t c = rte_ipv4_cksum(reinterpret_cast<rte_ipv4_hdr*>(ip));
    std::memcpy(ip + 10, &c, 2);
}

// IPv4 + UDP + `payload` octets, valid header checksum.
Bytes ipv4_packet(uint32_t payload, uint8_t tos = 0, bool df = false)
{
    Bytes b(28 + payload);
    b[0] = 0x45;
    b[1] = tos;
    put16(&b[2], uint16_t(b.size()));
    put16(&b[4], 0x1234);
    put16(&b[6], df ? 0x4000 : 0);
    b[8] = 63;
    b[9] = 17;
    const uint8_t addrs[8] = {10, 0, 0, 1, 10, 0, 1, 1};
    std::memcpy(&b[12], addrs, 8);
    set_ipv4_cksum(b.data());
    put16(&b[20], 1000);
    put16(&b[22], 2000);
    put16(&b[24], uint16_t(8 + payload));
    for (uint32_t n = 0; n < payload; ++n) b[28 + n] = uint8_t(n * 7 + 1);
    return b;
}

// IPv6 + (UDP or a hop-by-hop header when nh = 0) + payload.
Bytes ipv6_packet(uint32_t payload, uint8_t tc = 0, uint8_t nh = 17)
{
    Bytes b(48 + payload);
    b[0] = uint8_t(0x60 | tc >> 4);
    b[1] = uint8_t(tc << 4);
    put16(&b[4], uint16_t(8 + payload));
    b[6] = nh;
    b[7] = 63;
    for (int n = 0; n < 16; ++n) b[8 + n] = uint8_t(0x20 + n), b[24 + n] = uint8_t(0x40 + n);
    put16(&b[40], 1000);
    put16(&b[42], 2000);
    put16(&b[44], uint16_t(8 + payload));
    if (nh == 0) b[40] = 17, b[41] = 0;   // hop-by-hop header, 8 octets of padding
    for (uint32_t n = 0; n < payload; ++n) b[48 + n] = uint8_t(n * 5 + 3);
    return b;
}

Bytes inner_packet(IpFamily f, uint32_t payload) { return f == IpFamily::v4 ? ipv4_packet(payload) : ipv6_packet(payload); }

MbufPtr to_mbuf(const Bytes& b)
{
    MbufPtr m(rte_pktmbuf_alloc(test::test_pool()));
    EXPECT_TRUE(m);
    auto* p = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m.get(), uint16_t(b.size())));
    EXPECT_TRUE(p);
    std::memcpy(p, b.data(), b.size());
    return m;
}

Bytes bytes_of(const rte_mbuf* m)
{
    const auto* p = rte_pktmbuf_mtod(m, const uint8_t*);
    return Bytes(p, p + m->data_len);
}

// Where ESP starts in an outbound packet `o` produced by `sa`.
uint32_t esp_offset(const Bytes& o, bool udp)
{
    const uint32_t ip = (o[0] >> 4) == 4 ? (o[0] & 0x0fu) * 4u : 40u;
    return ip + (udp ? 8 : 0);
}

bool ipv4_checksum_ok(const uint8_t* ip) { return rte_raw_cksum(ip, (ip[0] & 0x0fu) * 4u) == 0xffff; }

// Checks on an encapsulated packet that do not need the keys.
void check_outer(const Bytes& o, const DpSa& sa, const Opts& opt, SeqNum seq)
{
    const bool v4 = (o[0] >> 4) == 4;
    ASSERT_EQ(v4, opt.mode == SaMode::tunnel ? opt.outer == IpFamily::v4 : v4);
    const uint32_t ip = v4 ? (o[0] & 0x0fu) * 4u : 40u;
    if (v4) {
        EXPECT_EQ(get16(&o[2]), o.size());
        EXPECT_TRUE(ipv4_checksum_ok(o.data()));
        EXPECT_EQ(o[9], opt.udp ? 17 : 50);
    } else {
        EXPECT_EQ(get16(&o[4]) + 40u, o.size());
        EXPECT_EQ(o[6], opt.udp ? 17 : 50);
    }
    if (opt.udp) {
        EXPECT_EQ(get16(&o[ip]), 4500);
        EXPECT_EQ(get16(&o[ip + 2]), 4501);
        EXPECT_EQ(get16(&o[ip + 4]), o.size() - ip);
        if (v4) EXPECT_EQ(get16(&o[ip + 6]), 0);
        else EXPECT_EQ(rte_ipv6_udptcp_cksum_verify(reinterpret_cast<const rte_ipv6_hdr*>(o.data()), &o[ip]), 0);
    }
    const uint32_t e = ip + (opt.udp ? 8 : 0);
    EXPECT_EQ(std::memcmp(&o[e], &sa.spi_be, 4), 0);
    EXPECT_EQ(uint32_t(get16(&o[e + 4])) << 16 | get16(&o[e + 6]), uint32_t(seq));
    EXPECT_LE(o.size(), sa.outer_mtu);
}

// --- round trips ------------------------------------------------------------------

void round_trip(const Alg& a, const Opts& o, IpFamily inner)
{
    SCOPED_TRACE(std::string(a.name) + (o.mode == SaMode::tunnel ? " tunnel" : " transport") + " inner v" +
                 std::to_string(int(inner)) + " outer v" + std::to_string(int(o.outer)) + (o.udp ? " udp" : "") +
                 (o.esn ? " esn" : ""));
    Worker w;
    SaPtr out = make_sa(a, o, SaDirection::outbound), in = make_sa(a, o, SaDirection::inbound);
    ASSERT_TRUE(out && in);
    SeqNum seq = 0;
    for (uint32_t payload : {0u, 1u, 17u, 36u, 200u, 1200u}) {
        const Bytes orig = inner_packet(inner, payload);
        MbufPtr m = to_mbuf(orig);
        ASSERT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::none);
        const Bytes enc = bytes_of(m.get());
        ASSERT_NO_FATAL_FAILURE(check_outer(enc, *out, o, ++seq));
        EXPECT_GE(rte_pktmbuf_headroom(m.get()), 14u);
        EXPECT_LE(enc.size() - orig.size(), sa_overhead(*out));
        EXPECT_EQ((enc.size() - esp_offset(enc, o.udp) - 8 - out->xform.iv_len - out->xform.icv_len) %
                      out->xform.block_len, 0u);
        ASSERT_EQ(esp_decap(w.ctx, *in, m.get(), esp_offset(enc, o.udp)), DropReason::none);
        EXPECT_EQ(bytes_of(m.get()), orig);
    }
    EXPECT_EQ(w.counters.stats.encrypted.get(), seq);
    EXPECT_EQ(w.counters.stats.decrypted.get(), seq);
    EXPECT_EQ(out->state.packets.get(), seq);
    EXPECT_EQ(in->state.packets.get(), seq);
    EXPECT_EQ(out->state.bytes.get(), in->state.bytes.get());
    // The context's clock; the SA's first packet moved it to a fresh reading.
    EXPECT_EQ(out->state.last_used_tsc.get(), w.ctx.now_tsc);
    EXPECT_GE(w.ctx.now_tsc, 1000u);
    EXPECT_LE(out->state.first_used_tsc.get(), out->state.last_used_tsc.get() | 1);
}

// The worker dates an iteration's packets with one TSC read at its start;
// an SA published after that read (the worker was preempted in between)
// must not appear used before it was installed: its first packet takes a
// fresh reading, and the rest of the iteration with it.
TEST(EspLifetime, FirstUseIsStampedWithAFreshClockReading)
{
    Worker w;
    SaPtr out = make_sa(gcm128, Opts{}, SaDirection::outbound);
    ASSERT_TRUE(out);
    const uint64_t installed = rte_rdtsc();
    w.ctx.now_tsc = installed - 1'000'000;   // the iteration began before the install
    MbufPtr m = to_mbuf(inner_packet(IpFamily::v4, 20));
    ASSERT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::none);
    EXPECT_GE(out->state.first_used_tsc.get(), installed);
    EXPECT_EQ(out->state.last_used_tsc.get(), w.ctx.now_tsc);
    EXPECT_GE(w.ctx.now_tsc, installed);
    const uint64_t first = out->state.first_used_tsc.get();
    MbufPtr m2 = to_mbuf(inner_packet(IpFamily::v4, 20));
    ASSERT_EQ(esp_encap(w.ctx, *out, m2.get()), DropReason::none);
    EXPECT_EQ(out->state.first_used_tsc.get(), first) << "stamped once";
    EXPECT_EQ(out->state.last_used_tsc.get(), w.ctx.now_tsc);
}

TEST(EspRoundTrip, EveryAlgorithmModeFamilyEncapAndEsn)
{
    for (const Alg& a : all_algs)
        for (SaMode mode : {SaMode::tunnel, SaMode::transport})
            for (IpFamily inner : {IpFamily::v4, IpFamily::v6})
                for (IpFamily outer : {IpFamily::v4, IpFamily::v6})
                    for (bool udp : {false, true})
                        for (bool esn : {false, true}) {
                            if (mode == SaMode::transport && inner != outer) continue;
                            Opts o;
                            o.mode = mode;
                            o.outer = outer;
                            o.udp = udp;
                            o.esn = esn;
                            round_trip(a, o, inner);
                        }
}

// --- inbound refusals -----------------------------------------------------------------

// One outbound packet, and an inbound SA to throw variations of it at.
struct Sent {
    Worker w;
    SaPtr out, in;
    Bytes enc;
    uint32_t off = 0;
    Sent(const Alg& a, const Opts& o = {}, uint32_t payload = 50)
    {
        out = make_sa(a, o, SaDirection::outbound);
        in = make_sa(a, o, SaDirection::inbound);
        MbufPtr m = to_mbuf(ipv4_packet(payload));
        EXPECT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::none);
        enc = bytes_of(m.get());
        off = esp_offset(enc, o.udp);
    }
    DropReason decap(const Bytes& b) { return esp_decap(w.ctx, *in, to_mbuf(b).get(), off); }
};

TEST(EspInbound, EveryTamperedOctetIsRefused)
{
    for (const Alg& a : all_algs) {
        SCOPED_TRACE(a.name);
        Sent s(a);
        for (size_t pos = s.off; pos < s.enc.size(); ++pos) {
            Bytes bad = s.enc;
            bad[pos] ^= 0x20;
            const DropReason r = s.decap(bad);
            // A changed sequence number may already fall to the replay check.
            const bool seq_field = pos >= s.off + 4 && pos < s.off + 8;
            if (seq_field && r == DropReason::replay) continue;
            EXPECT_EQ(r, DropReason::auth_failed) << "octet " << pos;
        }
        EXPECT_EQ(s.in->state.packets.get(), 0u);
        EXPECT_EQ(s.decap(s.enc), DropReason::none);
    }
}

TEST(EspInbound, ReplayedAndTooOldPacketsAreRefused)
{
    Worker w;
    Opts o;
    o.window = 32;
    SaPtr out = make_sa(gcm128, o, SaDirection::outbound), in = make_sa(gcm128, o, SaDirection::inbound);
    std::vector<Bytes> sent;
    for (int n = 0; n < 40; ++n) {
        MbufPtr m = to_mbuf(ipv4_packet(10));
        ASSERT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::none);
        sent.push_back(bytes_of(m.get()));
    }
    auto decap = [&](int n) { return esp_decap(w.ctx, *in, to_mbuf(sent[n]).get(), 20); };
    EXPECT_EQ(decap(39), DropReason::none);      // seq 40
    EXPECT_EQ(decap(39), DropReason::replay);
    EXPECT_EQ(decap(0), DropReason::replay);     // seq 1: left of the window
    EXPECT_EQ(decap(20), DropReason::none);      // seq 21: inside, not seen
    EXPECT_EQ(decap(20), DropReason::replay);
    EXPECT_EQ(in->state.packets.get(), 2u);
}

TEST(EspInbound, TruncatedPacketsAreRunts)
{
    for (const Alg& a : all_algs) {
        SCOPED_TRACE(a.name);
        Sent s(a);
        const uint32_t min = s.off + 8 + s.in->xform.iv_len + 2 + s.in->xform.icv_len;
        for (uint32_t len = 20; len < s.enc.size(); ++len) {
            Bytes cut(s.enc.begin(), s.enc.begin() + len);
            put16(&cut[2], uint16_t(len));
            const DropReason r = s.decap(cut);
            EXPECT_EQ(r, len < min ? DropReason::runt : DropReason::auth_failed) << "length " << len;
        }
        // Data shorter than the IP header says; then shorter than any IP header.
        Bytes cut(s.enc.begin(), s.enc.end() - 1);
        EXPECT_EQ(s.decap(cut), DropReason::runt);
        EXPECT_EQ(s.decap(Bytes(s.enc.begin(), s.enc.begin() + 19)), DropReason::runt);
        // Ethernet padding after the IP packet is ignored.
        Bytes padded = s.enc;
        padded.resize(padded.size() + 6, 0);
        EXPECT_EQ(s.decap(padded), DropReason::none);
    }
}

// Seals a hand-made ESP payload with a valid ICV: outer IPv4 | ESP | IV |
// `body` (inner packet, padding, pad length, next header as given).
Bytes craft(DpSa& sa, uint32_t seq, const Bytes& body)
{
    const EspTransform& x = sa.xform;
    const uint32_t hdr = 8 + x.iv_len;
    Bytes b(20 + hdr + body.size() + x.icv_len);
    b[0] = 0x45;
    put16(&b[2], uint16_t(b.size()));
    b[8] = 64;
    b[9] = 50;
    set_ipv4_cksum(b.data());
    std::memcpy(&b[20], &sa.spi_be, 4);
    const uint8_t s[4] = {uint8_t(seq >> 24), uint8_t(seq >> 16), uint8_t(seq >> 8), uint8_t(seq)};
    std::memcpy(&b[24], s, 4);
    std::memcpy(&b[20 + hdr], body.data(), body.size());
    x.seal(mgr(), x, sa.keys, &b[20], uint32_t(hdr + body.size()), 0);
    return b;
}

Bytes body(const Bytes& inner, Bytes pad, uint8_t nh)
{
    Bytes b = inner;
    b.insert(b.end(), pad.begin(), pad.end());
    b.push_back(uint8_t(pad.size()));
    b.push_back(nh);
    return b;
}

TEST(EspInbound, AuthenticPacketsWithBadTrailersAreRefused)
{
    for (const Alg& a : all_algs) {
        SCOPED_TRACE(a.name);
        Worker w;
        Opts o;
        SaPtr in = make_sa(a, o, SaDirection::inbound);
        const unsigned blk = in->xform.block_len;
        const Bytes inner = ipv4_packet(34);   // 62 octets: + 2 is a multiple of 4, 8 and 16
        uint32_t seq = 1;
        auto decap = [&](const Bytes& b) { return esp_decap(w.ctx, *in, to_mbuf(b).get(), 20); };

        EXPECT_EQ(decap(craft(*in, seq++, body(inner, {}, 4))), DropReason::none);
        Bytes pad16(blk);
        for (unsigned n = 0; n < pad16.size(); ++n) pad16[n] = uint8_t(n + 1);
        EXPECT_EQ(decap(craft(*in, seq++, body(inner, pad16, 4))), DropReason::none);
        Bytes wrong = pad16;
        wrong[2] = 9;
        EXPECT_EQ(decap(craft(*in, seq++, body(inner, wrong, 4))), DropReason::bad_padding);
        // Pad length longer than the whole payload.
        Bytes huge = body(inner, {}, 4);
        huge[huge.size() - 2] = 250;
        EXPECT_EQ(decap(craft(*in, seq++, huge)), DropReason::bad_padding);
        EXPECT_EQ(decap(craft(*in, seq++, body(inner, {}, 6))), DropReason::bad_next_header);
        Bytes lying = inner;
        put16(&lying[2], uint16_t(inner.size() + 4));   // inner IP length beyond the payload
        EXPECT_EQ(decap(craft(*in, seq++, body(lying, {}, 4))), DropReason::bad_ip_header);
        // TFC padding (RFC 4303 §2.7): extra octets after the inner packet go.
        Bytes tfc = inner;
        tfc.insert(tfc.end(), blk, 0xcc);
        MbufPtr m = to_mbuf(craft(*in, seq++, body(tfc, {}, 4)));
        EXPECT_EQ(esp_decap(w.ctx, *in, m.get(), 20), DropReason::none);
        EXPECT_EQ(bytes_of(m.get()), inner);
    }
}

TEST(EspInbound, TransportIpv6WithExtensionHeadersIsUnsupported)
{
    Worker w;
    Opts o;
    o.mode = SaMode::transport;
    o.outer = IpFamily::v6;
    SaPtr out = make_sa(gcm128, o, SaDirection::outbound);
    MbufPtr m = to_mbuf(ipv6_packet(20, 0, 0));
    EXPECT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::unsupported);
    EXPECT_EQ(out->state.seq, 0u);
}

// --- outbound limits ----------------------------------------------------------------

TEST(EspOutbound, MtuExceededLeavesThePacketUntouched)
{
    Worker w;
    Opts o;
    o.mtu = 200;
    SaPtr out = make_sa(gcm128, o, SaDirection::outbound);
    const unsigned fits = 200 - sa_overhead(*out);
    MbufPtr ok = to_mbuf(ipv4_packet(fits - 28 - 3));
    EXPECT_EQ(esp_encap(w.ctx, *out, ok.get()), DropReason::none);
    const Bytes big = ipv4_packet(200 - 28);
    MbufPtr m = to_mbuf(big);
    const uint16_t off = m->data_off;
    EXPECT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::mtu_exceeded);
    EXPECT_EQ(bytes_of(m.get()), big);
    EXPECT_EQ(m->data_off, off);
    EXPECT_EQ(m->pkt_len, big.size());
    EXPECT_EQ(out->state.seq, 1u);
}

TEST(EspOutbound, NoRoomAndChainedMbufsAreRefused)
{
    Worker w;
    SaPtr out = make_sa(gcm128, {}, SaDirection::outbound);
    MbufPtr m(rte_pktmbuf_alloc(test::test_pool()));
    m->data_off = 20;   // too little headroom for IPv4 + ESP + IV + Ethernet
    const Bytes p = ipv4_packet(40);
    std::memcpy(rte_pktmbuf_append(m.get(), uint16_t(p.size())), p.data(), p.size());
    EXPECT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::no_buffer_space);

    MbufPtr full(rte_pktmbuf_alloc(test::test_pool()));
    const uint16_t room = rte_pktmbuf_tailroom(full.get());
    const Bytes q = ipv4_packet(room - 28);
    std::memcpy(rte_pktmbuf_append(full.get(), uint16_t(q.size())), q.data(), q.size());
    Opts big;
    big.mtu = 9000;
    SaPtr out2 = make_sa(gcm128, big, SaDirection::outbound);
    EXPECT_EQ(esp_encap(w.ctx, *out2, full.get()), DropReason::no_buffer_space);

    MbufPtr head = to_mbuf(ipv4_packet(40));
    rte_mbuf* tail = rte_pktmbuf_alloc(test::test_pool());
    rte_pktmbuf_append(tail, 10);
    ASSERT_EQ(rte_pktmbuf_chain(head.get(), tail), 0);
    EXPECT_EQ(esp_encap(w.ctx, *out, head.get()), DropReason::multi_segment);
    EXPECT_EQ(out->state.seq, 0u);
}

TEST(EspOutbound, SequenceNumbersRunOutWithoutEsnAt2To32Minus1)
{
    Worker w(16);
    SaPtr out = make_sa(gcm128, {}, SaDirection::outbound);
    out->state.seq = UINT32_MAX - 1;
    MbufPtr m = to_mbuf(ipv4_packet(10));
    ASSERT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::none);
    const Bytes e = bytes_of(m.get());
    EXPECT_EQ(get16(&e[24]), 0xffff);
    EXPECT_EQ(get16(&e[26]), 0xffff);
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::seq_exhausted);
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::sa_expired);
    const auto ev = w.events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].type, EventType::seq_exhausted);
    EXPECT_EQ(ev[0].spi, Spi(0x12345678));
    EXPECT_EQ(ev[0].direction, uint8_t(SaDirection::outbound));
}

TEST(EspOutbound, EsnCrosses2To32AndRunsOutAt2To64Minus1)
{
    Worker w(16);
    Opts o;
    o.esn = true;
    SaPtr out = make_sa(gcm128, o, SaDirection::outbound);
    out->state.seq = UINT32_MAX;
    MbufPtr m = to_mbuf(ipv4_packet(10));
    ASSERT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::none);
    const Bytes e = bytes_of(m.get());
    EXPECT_EQ(get16(&e[24]) | get16(&e[26]), 0);            // low half wraps to 0 on the wire
    const uint8_t iv[8] = {0, 0, 0, 1, 0, 0, 0, 0};         // the IV carries the full 2^32
    EXPECT_EQ(std::memcmp(&e[28], iv, 8), 0);
    out->state.seq = UINT64_MAX - 1;
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::none);
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::seq_exhausted);
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::sa_expired);
    EXPECT_EQ(w.events().size(), 1u);
}

// Without room on the ring the SA keeps refusing with seq_exhausted (and
// retrying the event) until the control plane has been told.
TEST(EspOutbound, SeqExhaustedEventIsRetriedWhenTheRingWasFull)
{
    Worker w(2);   // room for one event
    SaPtr out = make_sa(gcm128, {}, SaDirection::outbound);
    DataplaneEvent filler;
    ASSERT_EQ(rte_ring_mp_enqueue_elem(w.ring.get(), &filler, sizeof filler), 0);
    out->state.seq = UINT32_MAX;
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::seq_exhausted);
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::seq_exhausted);
    EXPECT_EQ(w.counters.stats.events_lost.get(), 2u);
    EXPECT_EQ(w.events().size(), 1u);   // the filler
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::seq_exhausted);
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::sa_expired);
    const auto ev = w.events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].type, EventType::seq_exhausted);
}

// --- lifetimes ------------------------------------------------------------------------

TEST(EspLifetime, SoftRaisedOnceHardStopsTheSa)
{
    for (bool by_bytes : {false, true}) {
        SCOPED_TRACE(by_bytes ? "bytes" : "packets");
        Worker w(16);
        Opts o;
        const uint32_t size = 100;   // inner packet octets
        if (by_bytes) o.life = {.soft_bytes = 3 * size, .hard_bytes = 5 * size};
        else o.life = {.soft_packets = 3, .hard_packets = 5};
        SaPtr out = make_sa(gcm128, o, SaDirection::outbound), in = make_sa(gcm128, o, SaDirection::inbound);
        std::vector<Bytes> sent;
        for (int n = 1; n <= 5; ++n) {
            MbufPtr m = to_mbuf(ipv4_packet(size - 28));
            ASSERT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::none) << n;
            sent.push_back(bytes_of(m.get()));
            const auto ev = w.events();
            if (n == 3) {
                ASSERT_EQ(ev.size(), 1u);
                EXPECT_EQ(ev[0].type, EventType::soft_lifetime);
                EXPECT_EQ(ev[0].packets, 3u);
                EXPECT_EQ(ev[0].bytes, 3u * size);
            } else if (n == 5) {
                ASSERT_EQ(ev.size(), 1u);
                EXPECT_EQ(ev[0].type, EventType::hard_lifetime);
            } else {
                EXPECT_TRUE(ev.empty()) << n;
            }
        }
        EXPECT_TRUE(out->state.hard_reached);
        EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::sa_expired);
        EXPECT_TRUE(w.events().empty());

        // The inbound SA counts the same way.
        for (int n = 0; n < 5; ++n) ASSERT_EQ(esp_decap(w.ctx, *in, to_mbuf(sent[n]).get(), 20), DropReason::none);
        const auto ev = w.events();
        ASSERT_EQ(ev.size(), 2u);
        EXPECT_EQ(ev[0].type, EventType::soft_lifetime);
        EXPECT_EQ(ev[0].direction, uint8_t(SaDirection::inbound));
        EXPECT_EQ(ev[1].type, EventType::hard_lifetime);
        EXPECT_EQ(esp_decap(w.ctx, *in, to_mbuf(sent[0]).get(), 20), DropReason::sa_expired);
    }
}

TEST(EspLifetime, EventsLostToAFullRingAreRaisedAgain)
{
    Worker w(2);
    Opts o;
    o.life = {.soft_packets = 1, .hard_packets = 3};
    SaPtr out = make_sa(gcm128, o, SaDirection::outbound);
    DataplaneEvent filler;
    ASSERT_EQ(rte_ring_mp_enqueue_elem(w.ring.get(), &filler, sizeof filler), 0);
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::none);
    EXPECT_FALSE(out->state.soft_raised);
    EXPECT_EQ(w.counters.stats.events_lost.get(), 1u);
    w.events();
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::none);
    EXPECT_TRUE(out->state.soft_raised);
    auto ev = w.events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].type, EventType::soft_lifetime);

    // Hard: the SA stops at once even though the event is lost...
    ASSERT_EQ(rte_ring_mp_enqueue_elem(w.ring.get(), &filler, sizeof filler), 0);
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::none);
    EXPECT_TRUE(out->state.hard_reached);
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::sa_expired);
    w.events();
    // ...and the next refused packet raises it; later ones do not repeat it.
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::sa_expired);
    EXPECT_EQ(esp_encap(w.ctx, *out, to_mbuf(ipv4_packet(10)).get()), DropReason::sa_expired);
    ev = w.events();
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].type, EventType::hard_lifetime);
    EXPECT_EQ(w.counters.stats.events_raised.get(), 2u);
}

// --- headers: ECN, DSCP, DF, identification -------------------------------------------

TEST(Ecn, DecapsulationFollowsRfc6040Table)
{
    // expected[inner][outer]; -1 = drop. Codepoints: 0 Not-ECT, 1 ECT(1), 2 ECT(0), 3 CE.
    const int expected[4][4] = {
        {0, 0, 0, -1},   // Not-ECT
        {1, 1, 1, 3},    // ECT(1)
        {2, 1, 2, 3},    // ECT(0): outer ECT(1) -> ECT(1)
        {3, 3, 3, 3},    // CE
    };
    for (int i = 0; i < 4; ++i)
        for (int o = 0; o < 4; ++o) {
            uint8_t inner = uint8_t(0xb8 | i);
            const bool ok = ecn_decapsulate(uint8_t(0x40 | o), inner);
            EXPECT_EQ(ok, expected[i][o] >= 0) << i << " " << o;
            if (ok) {
                EXPECT_EQ(inner & 3, expected[i][o]) << i << " " << o;
                EXPECT_EQ(inner & 0xfc, 0xb8);   // DSCP untouched
            }
        }
}

TEST(Ecn, FullPathCopiesOnEntryAndAppliesTheTableOnExit)
{
    for (IpFamily f : {IpFamily::v4, IpFamily::v6}) {
        for (bool copy_dscp : {true, false}) {
            SCOPED_TRACE(std::to_string(int(f)) + (copy_dscp ? " copy_dscp" : ""));
            Worker w;
            Opts o;
            o.outer = f;
            o.copy_dscp = copy_dscp;
            SaPtr out = make_sa(gcm128, o, SaDirection::outbound), in = make_sa(gcm128, o, SaDirection::inbound);
            for (uint8_t inner_ecn : {0, 1, 2, 3}) {
                const uint8_t tos = uint8_t(0xb8 | inner_ecn);
                MbufPtr m = to_mbuf(ipv4_packet(30, tos));
                ASSERT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::none);
                uint8_t* p = rte_pktmbuf_mtod(m.get(), uint8_t*);
                const uint8_t outer_tos = f == IpFamily::v4 ? p[1] : uint8_t(p[0] << 4 | p[1] >> 4);
                EXPECT_EQ(outer_tos, copy_dscp ? tos : inner_ecn);
                // A router on the way marks congestion.
                if (f == IpFamily::v4) {
                    p[1] |= 3;
                    set_ipv4_cksum(p);
                } else {
                    p[1] |= 0x30;
                }
                const DropReason r = esp_decap(w.ctx, *in, m.get(), f == IpFamily::v4 ? 20 : 40);
                if (inner_ecn == 0) {
                    EXPECT_EQ(r, DropReason::ecn_not_ect);
                    continue;
                }
                ASSERT_EQ(r, DropReason::none);
                const Bytes d = bytes_of(m.get());
                EXPECT_EQ(d[1], 0xb8 | 3);
                EXPECT_TRUE(ipv4_checksum_ok(d.data()));
            }
        }
    }
}

TEST(OuterHeader, DfFollowsTheSaSettingAndIdIsTheSequenceNumber)
{
    struct Case {
        DfMode mode;
        bool inner_df, outer_df;
    } cases[] = {{DfMode::copy, true, true},  {DfMode::copy, false, false}, {DfMode::set, false, true},
                 {DfMode::set, true, true},   {DfMode::clear, true, false}, {DfMode::clear, false, false}};
    for (const Case& c : cases) {
        Worker w;
        Opts o;
        o.df = c.mode;
        SaPtr out = make_sa(gcm128, o, SaDirection::outbound);
        out->state.seq = 0x1234fffe;
        MbufPtr m = to_mbuf(ipv4_packet(30, 0, c.inner_df));
        ASSERT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::none);
        const Bytes e = bytes_of(m.get());
        EXPECT_EQ((e[6] & 0x40) != 0, c.outer_df) << int(c.mode) << c.inner_df;
        EXPECT_EQ(get16(&e[4]), 0xffff);
        EXPECT_EQ(e[8], 64);
    }
    // An IPv6 inner packet is never fragmented: DF is set when copying.
    Worker w;
    SaPtr out = make_sa(gcm128, {}, SaDirection::outbound);
    MbufPtr m = to_mbuf(ipv6_packet(30));
    ASSERT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::none);
    EXPECT_NE(rte_pktmbuf_mtod(m.get(), uint8_t*)[6] & 0x40, 0);
}

// --- known answers through the full path ----------------------------------------------

// Each vector's ESP packet behind an outer IPv4 header goes through
// esp_decap(); what comes out is the vector's payload (tunnel: the inner
// packet; transport: the outer header now carrying the next header).
// Vectors whose sequence number needs ESN inference beyond 2^32 are only
// checked at the transform level (crypto_test), since a fresh window cannot
// infer their high half.
void decap_known_answers(const std::string& file)
{
    const nlohmann::json v = test::load_vectors(file);
    size_t ran = 0;
    for (const nlohmann::json& c : v.at("cases")) {
        SCOPED_TRACE(c.at("name").get<std::string>());
        if (c.at("seq").get<uint64_t>() >> 32) continue;
        SaDescriptor d = test::descriptor_from_case(c, SaDirection::inbound);
        const unsigned nh = c.at("next_header").get<unsigned>();
        d.mode = nh == 4 || nh == 41 ? SaMode::tunnel : SaMode::transport;
        const char* err = nullptr;
        SaPtr in(sa_create(mgr(), d, 1500, WorkerId(0), &err));
        ASSERT_TRUE(in) << err;
        const Bytes esp = unhex(c.at("packet").get<std::string>());
        const Bytes plain = unhex(c.at("plaintext").get<std::string>());
        Bytes pkt(20);
        pkt[0] = 0x45;
        put16(&pkt[2], uint16_t(20 + esp.size()));
        pkt[8] = 64;
        pkt[9] = 50;
        set_ipv4_cksum(pkt.data());
        pkt.insert(pkt.end(), esp.begin(), esp.end());
        Worker w;
        MbufPtr m = to_mbuf(pkt);
        ASSERT_EQ(esp_decap(w.ctx, *in, m.get(), 20), DropReason::none);
        const Bytes got = bytes_of(m.get());
        const Bytes payload(plain.begin(), plain.end() - 2 - plain[plain.size() - 2]);
        if (d.mode == SaMode::tunnel) {
            EXPECT_EQ(got, Bytes(payload.begin(), payload.begin() + long(got.size())));
        } else {
            EXPECT_EQ(got.size(), 20 + payload.size());
            EXPECT_EQ(got[9], nh);
            EXPECT_EQ(Bytes(got.begin() + 20, got.end()), payload);
        }
        ++ran;
    }
    EXPECT_GT(ran, 0u);
}

TEST(KnownAnswer, McGrewGcmPacketsDecapsulate) { decap_known_answers("esp/mcgrew_gcm.json"); }
TEST(KnownAnswer, Rfc7634PacketDecapsulates) { decap_known_answers("esp/rfc7634.json"); }
TEST(KnownAnswer, GeneratedPacketsDecapsulate) { decap_known_answers("esp/generated.json"); }

// esp_encap() lays the packet out exactly as the independent implementation
// did (header, IV = sequence number, padding 1 2 3 ..., trailer, ICV).
TEST(KnownAnswer, EncapReproducesGeneratedGcmPacket)
{
    const nlohmann::json v = test::load_vectors("esp/generated.json");
    const nlohmann::json& c = v.at("cases").at(0);
    ASSERT_EQ(c.at("cipher"), "aes_gcm16");
    ASSERT_TRUE(c.at("seal_matches").get<bool>());
    SaDescriptor d = test::descriptor_from_case(c, SaDirection::outbound);
    const char* err = nullptr;
    SaPtr out(sa_create(mgr(), d, 1500, WorkerId(0), &err));
    ASSERT_TRUE(out) << err;
    out->state.seq = c.at("seq").get<uint64_t>() - 1;
    const Bytes plain = unhex(c.at("plaintext").get<std::string>());
    const Bytes inner(plain.begin(), plain.end() - 2 - plain[plain.size() - 2]);
    Worker w;
    MbufPtr m = to_mbuf(inner);
    ASSERT_EQ(esp_encap(w.ctx, *out, m.get()), DropReason::none);
    const Bytes e = bytes_of(m.get());
    EXPECT_EQ(Bytes(e.begin() + 20, e.end()), unhex(c.at("packet").get<std::string>()));
}


// --- specialised bodies (sa.hh, EspKind) -------------------------------------------------

// The state a body may change on the SA; equal for two SAs fed the same packets.
void expect_same_state(const DpSa& a, const DpSa& b)
{
    EXPECT_EQ(a.state.seq, b.state.seq);
    EXPECT_EQ(a.state.packets.get(), b.state.packets.get());
    EXPECT_EQ(a.state.bytes.get(), b.state.bytes.get());
    EXPECT_EQ(a.state.hard_reached.load(), b.state.hard_reached.load());
    EXPECT_EQ(a.state.soft_raised, b.state.soft_raised);
}

// Inner packets and malformed ones for the outbound bodies.
std::vector<Bytes> outbound_inputs()
{
    std::vector<Bytes> v;
    for (uint32_t payload : {0u, 1u, 2u, 3u, 17u, 36u, 200u, 1400u, 1600u}) {   // 1600: MTU
        v.push_back(ipv4_packet(payload, uint8_t(payload), payload % 2));
        v.push_back(ipv6_packet(payload, uint8_t(payload * 3)));
    }
    v.push_back(Bytes(19, 0x45));                  // runt
    v.push_back(Bytes(39, 0x60));                  // IPv6 shorter than its header
    v.push_back(Bytes(40, 0x55));                  // version 5
    return v;
}

// Bodies of authentic ESP packets (craft()) with good and bad trailers and
// inner headers, for the inbound bodies.
std::vector<Bytes> inbound_bodies()
{
    std::vector<Bytes> v;
    const Bytes in4 = ipv4_packet(34), in6 = ipv6_packet(30);
    v.push_back(body(in4, {}, 4));
    v.push_back(body(in6, {}, 41));
    v.push_back(body(in4, {1, 2, 3, 4}, 4));
    v.push_back(body(in4, {1, 2, 9, 4}, 4));       // bad padding
    Bytes huge = body(in4, {}, 4);
    huge[huge.size() - 2] = 250;                   // pad length beyond the payload
    v.push_back(huge);
    v.push_back(body(in4, {}, 6));                 // next header
    v.push_back(body(in4, {}, 41));                // IPv4 said to be IPv6
    v.push_back(body(in6, {}, 4));                 // and the other way round
    Bytes lying = in4;
    put16(&lying[2], uint16_t(in4.size() + 4));    // inner length beyond the payload
    v.push_back(body(lying, {}, 4));
    Bytes short_hl = in4;
    short_hl[0] = 0x44;                            // IHL below 5
    v.push_back(body(short_hl, {}, 4));
    Bytes long_hl = in4;
    long_hl[0] = 0x4f;                             // IHL beyond the total length
    put16(&long_hl[2], 40);
    v.push_back(body(long_hl, {}, 4));
    Bytes tfc = in4;
    tfc.insert(tfc.end(), 16, 0xcc);               // TFC padding
    v.push_back(body(tfc, {}, 4));
    Bytes frag = in4;
    put16(&frag[6], 0x2000 | 10);                  // non-first fragment: L4 hidden
    v.push_back(body(frag, {}, 4));
    Bytes ect = in4;
    ect[1] = 0x02;                                 // ECT(0) inside
    v.push_back(body(ect, {}, 4));
    v.push_back(body(Bytes(10, 0x45), {}, 4));     // inner shorter than a header
    v.push_back(body(Bytes(30, 0x60), {}, 41));
    return v;
}

// For every AES-GCM SA kind: the specialised body and the generic one give
// the same bytes, the same drop reason, the same inner IpInfo and the same
// SA state, packet by packet, on good and malformed input. Both SAs come
// from one descriptor, so their keys and sequence numbers agree.
TEST(EspKinds, SpecialisedAndGenericBodiesAgree)
{
    unsigned fast_encaps = 0, fast_decaps = 0;
    for (const Alg& a : all_algs)
        for (IpFamily outer : {IpFamily::v4, IpFamily::v6})
            for (bool udp : {false, true})
                for (bool esn : {false, true}) {
                    SCOPED_TRACE(std::string(a.name) + " outer v" + std::to_string(int(outer)) +
                                 (udp ? " udp" : "") + (esn ? " esn" : ""));
                    Opts o;
                    o.outer = outer;
                    o.udp = udp;
                    o.esn = esn;
                    o.mtu = 1500;
                    Worker w1, w2;
                    SaPtr out = make_sa(a, o, SaDirection::outbound), out_g = make_sa(a, o, SaDirection::outbound);
                    SaPtr in = make_sa(a, o, SaDirection::inbound), in_g = make_sa(a, o, SaDirection::inbound);
                    ASSERT_TRUE(out && out_g && in && in_g);
                    const bool gcm = a.c == EspCipher::aes_gcm16;
                    EXPECT_EQ(out->encap_kind != EspKind::generic, gcm && outer == IpFamily::v4 && !udp);
                    EXPECT_EQ(in->decap_kind != EspKind::generic, gcm);
                    fast_encaps += out->encap_kind != EspKind::generic;
                    fast_decaps += in->decap_kind != EspKind::generic;
                    // CBC's IVs are random: two SAs cannot give the same bytes.
                    if (a.c == EspCipher::aes_cbc || a.c == EspCipher::des3_cbc) continue;

                    std::vector<Bytes> sent;
                    for (const Bytes& p : outbound_inputs()) {
                        MbufPtr m1 = to_mbuf(p), m2 = to_mbuf(p);
                        const DropReason r1 = esp_encap(w1.ctx, *out, m1.get());
                        const DropReason r2 = esp_encap_generic(w2.ctx, *out_g, m2.get());
                        ASSERT_EQ(r1, r2) << "inner of " << p.size();
                        ASSERT_EQ(bytes_of(m1.get()), bytes_of(m2.get())) << "inner of " << p.size();
                        if (r1 == DropReason::none) sent.push_back(bytes_of(m1.get()));
                    }
                    expect_same_state(*out, *out_g);
                    EXPECT_EQ(w1.counters.stats.encrypted.get(), w2.counters.stats.encrypted.get());

                    // Their output, tampered and truncated, then out of order and replayed.
                    const uint32_t off = esp_offset(sent.at(0), udp);
                    std::vector<Bytes> inputs;
                    for (size_t n = 0; n < sent.size(); ++n) {
                        Bytes bad = sent[n];
                        bad[off + 8 + n % (bad.size() - off - 8)] ^= 1;
                        inputs.push_back(bad);
                        inputs.push_back(Bytes(sent[n].begin(), sent[n].begin() + off + 8 + n));
                        inputs.push_back(sent[n]);
                    }
                    inputs.push_back(sent.at(0));
                    inputs.push_back(sent.back());
                    inputs.push_back(Bytes(12, 0x45));
                    uint32_t seq = 1000;
                    if (gcm && !udp && outer == IpFamily::v4) {   // craft(): outer IPv4, ESP at 20
                        for (const Bytes& b : inbound_bodies()) inputs.push_back(craft(*in, seq++, b));
                        // RFC 6040: outer ECT(1) and CE over a Not-ECT and an ECT(0) inner.
                        for (uint8_t outer_tos : {0x01, 0x03})
                            for (uint8_t inner_tos : {0x00, 0x02}) {
                                Bytes c = craft(*in, seq++, body(ipv4_packet(34, inner_tos), {}, 4));
                                c[1] = outer_tos;
                                inputs.push_back(c);
                            }
                    }
                    for (const Bytes& p : inputs) {
                        MbufPtr m1 = to_mbuf(p), m2 = to_mbuf(p);
                        IpInfo i1, i2;
                        const DropReason r1 = esp_decap(w1.ctx, *in, m1.get(), off, i1);
                        const DropReason r2 = esp_decap_generic(w2.ctx, *in_g, m2.get(), off, i2);
                        ASSERT_EQ(r1, r2) << "packet of " << p.size();
                        ASSERT_EQ(bytes_of(m1.get()), bytes_of(m2.get())) << "packet of " << p.size();
                        if (r1 != DropReason::none) continue;
                        EXPECT_EQ(std::memcmp(&i1, &i2, sizeof i1), 0);
                        // The IpInfo decapsulation gives is validate_ip()'s.
                        IpInfo v;
                        ASSERT_EQ(validate_ip(m1.get(), v), DropReason::none);
                        EXPECT_EQ(std::memcmp(&i1, &v, sizeof v), 0);
                    }
                    expect_same_state(*in, *in_g);
                    EXPECT_EQ(w1.counters.stats.decrypted.get(), w2.counters.stats.decrypted.get());
                    EXPECT_GT(w1.counters.stats.decrypted.get(), 0u);
                }
    EXPECT_EQ(fast_encaps, 4u);    // gcm128/256 × ESN or not, outer IPv4 without UDP
    EXPECT_EQ(fast_decaps, 16u);   // gcm128/256 × outer family × UDP × ESN
}

// esp_encap_burst() counts each run of one SA's packets once and picks the
// body once per stretch of SAs of one kind; everything it returns, writes and
// raises must still be what esp_encap() gives packet by packet: results,
// bytes, sequence numbers, counters, and lifetime and exhaustion events
// at the very packet that crossed, wherever that falls in a stretch. The
// bursts mix four SAs in runs of every length, as many tunnels make them:
// two AES-GCM-128 ones (without UDP, one stretch of the specialised body
// that switches SA), AES-GCM-256 (another specialised kind next to them)
// and ChaCha20-Poly1305 (the generic body).
TEST(EspBurst, ABurstGivesWhatThePacketsGiveOneByOne)
{
    struct Case {
        const char* name;
        SaLifetime life;
        SeqNum seq;
    };
    const uint32_t inner = 128;   // octets of each well-formed inner packet below
    const Case cases[] = {
        {"no limits", {}, 0},
        {"packets", {.soft_packets = 4, .hard_packets = 23}, 0},
        {"bytes", {.soft_bytes = 5 * inner + 1, .hard_bytes = 19 * inner}, 0},
        {"first packet soft", {.soft_packets = 1, .hard_packets = 40}, 0},
        {"sequence runs out", {}, SeqNum(UINT32_MAX) - 11},
        {"sequence runs out inside a run", {}, SeqNum(UINT32_MAX) - 8},
    };
    // Bursts of these lengths, in turn: single packets, short ones, a whole burst.
    constexpr uint16_t burst = 64;   // the worker's max_burst
    const uint16_t burst_lengths[] = {1, 3, 2, 7, 1, burst, 5};
    // Which SA packet k of burst r goes to: all to one, alternating with
    // the generic kind, all four mixed, two of one kind in runs of 3, and
    // two specialised kinds alternating.
    auto which = [](unsigned r, unsigned k) -> unsigned {
        switch (r % 5) {
        case 0: return 0;
        case 1: return k % 2;
        case 2: return (k * 7 + r) % 4;
        case 3: return (k / 3) % 2 ? 2 : 0;
        default: return k % 2 ? 3 : 0;
        }
    };
    unsigned fast = 0, events_seen = 0, mixed = 0;
    Worker w1(64), w2(64);   // rings are scarce in the test's EAL: two for all cases
    for (bool udp : {false, true})
        for (const Case& c : cases) {
            SCOPED_TRACE(std::string(udp ? "udp " : "") + c.name);
            Opts o;
            o.udp = udp;
            o.life = c.life;
            o.mtu = 1500;
            const uint64_t encrypted_before = w1.counters.stats.encrypted.get();
            // `bursts` sealed by esp_encap_burst, `ones` one by one.
            constexpr unsigned n_sas = 4;
            const Alg* algs[n_sas] = {&all_algs[0], &all_algs[4], &all_algs[0], &all_algs[1]};
            SaPtr bursts[n_sas], ones[n_sas];
            for (unsigned j = 0; j < n_sas; ++j) {
                bursts[j] = make_sa(*algs[j], o, SaDirection::outbound);
                ones[j] = make_sa(*algs[j], o, SaDirection::outbound);
                ASSERT_TRUE(bursts[j] && ones[j]);
                bursts[j]->state.seq = ones[j]->state.seq = c.seq;
                for (DpSa* sa : {bursts[j].get(), ones[j].get()}) {   // events tell them apart by SPI
                    sa->spi = Spi(0x12345678 + j);
                    sa->spi_be = rte_cpu_to_be_32(0x12345678 + j);
                }
                fast += bursts[j]->encap_kind != EspKind::generic;
            }
            // Well-formed packets, with a malformed or oversized one now and then.
            std::vector<Bytes> inputs;
            for (unsigned n = 0; n < 120; ++n) {
                if (n % 13 == 6) inputs.push_back(Bytes(19, 0x45));                // runt
                else if (n % 17 == 9) inputs.push_back(ipv4_packet(1600 - 28));    // over the MTU
                else inputs.push_back(ipv4_packet(inner - 28, uint8_t(n), n % 2));
            }
            size_t at = 0;
            for (unsigned r = 0; at < inputs.size(); ++r) {
                const uint16_t len = uint16_t(std::min<size_t>(burst_lengths[r % std::size(burst_lengths)],
                                                               inputs.size() - at));
                std::vector<MbufPtr> m1, m2;
                rte_mbuf* ms[burst];
                DpSa* sas[burst];
                unsigned runs = 0;
                for (uint16_t k = 0; k < len; ++k) {
                    m1.push_back(to_mbuf(inputs[at + k]));
                    m2.push_back(to_mbuf(inputs[at + k]));
                    ms[k] = m1.back().get();
                    sas[k] = bursts[which(r, k)].get();
                    runs += k == 0 || sas[k] != sas[k - 1];
                }
                mixed += runs > 2;
                DropReason r1[burst];
                esp_encap_burst(w1.ctx, sas, ms, len, r1);
                for (uint16_t k = 0; k < len; ++k) {
                    const DropReason r2 = esp_encap(w2.ctx, *ones[which(r, k)], m2[k].get());
                    ASSERT_EQ(r1[k], r2) << "packet " << at + k;
                    ASSERT_EQ(bytes_of(m1[k].get()), bytes_of(m2[k].get())) << "packet " << at + k;
                }
                // After each burst, not only at the end.
                for (unsigned j = 0; j < n_sas; ++j) {
                    expect_same_state(*bursts[j], *ones[j]);
                    // A used SA's first use is stamped; its last use is never before it.
                    const DpSaState& st = bursts[j]->state;
                    EXPECT_EQ(st.first_used_tsc.get() != 0, ones[j]->state.first_used_tsc.get() != 0);
                    EXPECT_GE(st.last_used_tsc.get(), st.first_used_tsc.get());
                }
                const auto e1 = w1.events(), e2 = w2.events();
                ASSERT_EQ(e1.size(), e2.size()) << "burst " << r;
                for (size_t k = 0; k < e1.size(); ++k) {
                    EXPECT_EQ(e1[k].type, e2[k].type);
                    EXPECT_EQ(e1[k].spi, e2[k].spi);
                    EXPECT_EQ(e1[k].packets, e2[k].packets);
                    EXPECT_EQ(e1[k].bytes, e2[k].bytes);
                }
                events_seen += unsigned(e1.size());
                at += len;
            }
            EXPECT_EQ(w1.counters.stats.encrypted.get(), w2.counters.stats.encrypted.get());
            EXPECT_EQ(w1.counters.stats.events_raised.get(), w2.counters.stats.events_raised.get());
            if (c.life.hard_packets || c.life.hard_bytes || c.seq) {
                EXPECT_TRUE(bursts[0]->state.hard_reached.load());   // the SA most packets go to
            } else {
                uint64_t packets = 0;
                for (const SaPtr& sa : bursts) packets += sa->state.packets.get();
                EXPECT_EQ(packets, w1.counters.stats.encrypted.get() - encrypted_before);
            }
        }
    EXPECT_EQ(fast, 3u * 6u);   // AES-GCM without UDP takes a specialised body
    EXPECT_GE(mixed, 12u * 3u);   // bursts of three runs or more
    EXPECT_GE(events_seen, 4u * 8u);   // as many as the single-SA run test saw
}

} // namespace
} // namespace ravelin::dp

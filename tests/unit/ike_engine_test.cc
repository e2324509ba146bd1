// Two IKE engines talking over an in-memory wire: deterministic nonces, SPIs
// and DH keys, a hand-driven clock, and a recording SA sink on each side.
// Every test checks state after the exchanges it drives, and the SAs each
// side installed against the other's.

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "engine.hh"
#include "ike_fakes.hh"

namespace ravelin::ike {
namespace {

using namespace std::chrono_literals;

using fakes::Datagram;
using fakes::Wire;

// Records what the engine installs, and the order of events, so tests can
// check make-before-break.
class Sink final : public SaSink {
public:
    std::map<uint32_t, ChildSaRecord> in, out;
    std::vector<std::string> events;
    void install_inbound(const ChildSaRecord& r) override
    {
        in[r.inbound.spi.value] = r;
        events.push_back(fmt::format("+in {:08x}", r.inbound.spi.value));
    }
    void install_outbound(const ChildSaRecord& r) override
    {
        out[r.outbound.spi.value] = r;
        events.push_back(fmt::format("+out {:08x}", r.outbound.spi.value));
    }
    void remove_inbound(const ChildSaRecord& r) override
    {
        in.erase(r.inbound.spi.value);
        events.push_back(fmt::format("-in {:08x}", r.inbound.spi.value));
    }
    void remove_outbound(const ChildSaRecord& r) override
    {
        out.erase(r.outbound.spi.value);
        events.push_back(fmt::format("-out {:08x}", r.outbound.spi.value));
    }
    std::map<uint32_t, TrapRecord> traps;
    void install_trap(const TrapRecord& t) override { traps[t.reqid] = t; }
    void remove_trap(const TrapRecord& t) override { traps.erase(t.reqid); }
};

using TestRng = fakes::SeededRng;

IkeConfig config_from(const std::string& text) { return fakes::parse_config(text); }

struct Options {
    std::string ike_a = "aes256gcm16-prfsha256-x25519";
    std::string ike_b = "aes256gcm16-prfsha256-x25519";
    std::string esp_a = "aes256gcm16-x25519";
    std::string esp_b = "aes256gcm16-x25519";
    std::string psk_a = "a shared secret of some length";
    std::string psk_b = "a shared secret of some length";
    std::string ts_a_local = "198.19.1.0/24", ts_a_remote = "198.19.2.0/24";
    std::string ts_b_local = "198.19.2.0/24", ts_b_remote = "198.19.1.0/24";
    std::string remote_id_a = "gw-b";
    std::string start_a = "none";
    std::string extra_daemon;
    std::string extra_conn_a;
    std::string extra_conn_b;
};

std::string side_config(const std::string& me, const std::string& peer, const std::string& my_id,
                        const std::string& peer_id, const std::string& ike, const std::string& esp,
                        const std::string& psk, const std::string& lts, const std::string& rts,
                        const std::string& start, const std::string& daemon, const std::string& conn_extra)
{
    fakes::PskSide side{.me = me, .peer = peer, .my_id = my_id, .peer_id = peer_id, .ike = ike, .psk = psk};
    side.daemon = "  retransmit_timeout = 1s\n  retransmit_tries = 3\n" + daemon;
    side.conn_extra = "    rekey_time = 0\n" + conn_extra;
    side.children = {{.local_ts = lts, .remote_ts = rts, .esp = esp,
                      .extra = "        start_action = " + start + "\n        rekey_time = 0"}};
    return side.text();
}

struct Side {
    Wire wire;
    Sink sink;
    TestRng rng;
    // Every IKE SA's keys by (SPIi, SPIr), for forge_response().
    std::map<std::pair<uint64_t, uint64_t>, std::pair<IkeKeys, IkeSuite>> ike_keys;
    Engine engine;
    Side(IkeConfig c, uint64_t seed) : rng(seed), engine(std::move(c), wire, sink, rng, keeping_keys()) {}
    EngineHooks keeping_keys()
    {
        return {[this](uint64_t spi_i, uint64_t spi_r, const IkeKeys& k, const IkeSuite& s) {
            ike_keys[{spi_i, spi_r}] = {k, s};
        }};
    }
    // The SPI of the first inbound SA installed (the IKE_AUTH child's).
    uint32_t first_in_spi() const
    {
        for (const auto& e : sink.events)
            if (e.starts_with("+in ")) return uint32_t(std::stoul(e.substr(4), nullptr, 16));
        return 0;
    }
};

class Pair {
public:
    explicit Pair(const Options& o = {})
        : a(config_from(side_config("198.18.0.1", "198.18.0.2", "gw-a", o.remote_id_a, o.ike_a, o.esp_a, o.psk_a,
                                    o.ts_a_local, o.ts_a_remote, o.start_a, o.extra_daemon, o.extra_conn_a)),
            1),
          b(config_from(side_config("198.18.0.2", "198.18.0.1", "gw-b", "gw-a", o.ike_b, o.esp_b, o.psk_b,
                                    o.ts_b_local, o.ts_b_remote, "none", o.extra_daemon, o.extra_conn_b)),
            2)
    {
    }

    // Delivers queued datagrams both ways until the wire is quiet. `filter`
    // may drop (false) a datagram; returns how many were delivered.
    unsigned pump(std::function<bool(const Datagram&, bool from_a)> filter = {})
    {
        unsigned n = 0;
        for (unsigned round = 0; round < 200 && (!a.wire.out.empty() || !b.wire.out.empty()); ++round) {
            while (!a.wire.out.empty()) {
                Datagram d = std::move(a.wire.out.front());
                a.wire.out.pop_front();
                if (filter && !filter(d, true)) continue;
                b.engine.receive(now, d.to, d.from, d.data);
                ++n;
            }
            while (!b.wire.out.empty()) {
                Datagram d = std::move(b.wire.out.front());
                b.wire.out.pop_front();
                if (filter && !filter(d, false)) continue;
                a.engine.receive(now, d.to, d.from, d.data);
                ++n;
            }
        }
        return n;
    }

    void advance(Duration d)
    {
        TimePoint end = now + d;
        while (now < end) {
            now = std::min(end, now + 500ms);
            a.engine.tick(now);
            b.engine.tick(now);
            pump();
        }
    }

    void up()
    {
        std::string err;
        ASSERT_TRUE(a.engine.initiate(now, "gw", "net", err)) << err;
        pump();
    }

    TimePoint now = TimePoint{} + 1000s;
    Side a, b;
};

// Each side's inbound SA is the other's outbound SA, with the same keys.
void expect_matching_children(const Sink& x, const Sink& y, std::size_t count)
{
    ASSERT_EQ(x.in.size(), count);
    ASSERT_EQ(x.out.size(), count);
    ASSERT_EQ(y.in.size(), count);
    ASSERT_EQ(y.out.size(), count);
    for (const auto& [spi, r] : x.out) {
        auto it = y.in.find(spi);
        ASSERT_NE(it, y.in.end()) << fmt::format("{:08x}", spi);
        const SaDescriptor& o = r.outbound;
        const SaDescriptor& i = it->second.inbound;
        EXPECT_EQ(o.cipher, i.cipher);
        EXPECT_EQ(o.integ, i.integ);
        EXPECT_EQ(o.cipher_key_len, i.cipher_key_len);
        EXPECT_EQ(o.esn, i.esn);
        EXPECT_EQ(o.local, i.remote);
        EXPECT_EQ(o.remote, i.local);
    }
}

TEST(IkeEngine, PskTunnelWithChildInIkeAuth)
{
    Pair p;
    // Keys are wiped in the descriptors after install: capture them at install time.
    struct KeySink final : SaSink {
        std::map<uint32_t, std::pair<std::array<uint8_t, max_cipher_key_len>, uint8_t>> in, out;
        void install_inbound(const ChildSaRecord& r) override { in[r.inbound.spi.value] = {r.inbound.cipher_key, r.inbound.cipher_key_len}; }
        void install_outbound(const ChildSaRecord& r) override { out[r.outbound.spi.value] = {r.outbound.cipher_key, r.outbound.cipher_key_len}; }
        void remove_inbound(const ChildSaRecord&) override {}
        void remove_outbound(const ChildSaRecord&) override {}
    };
    Wire wa, wb;
    KeySink ka, kb;
    TestRng ra(11), rb(12);
    Options o;
    Engine a(config_from(side_config("198.18.0.1", "198.18.0.2", "gw-a", "gw-b", o.ike_a, o.esp_a, o.psk_a,
                                     o.ts_a_local, o.ts_a_remote, "none", "", "")),
             wa, ka, ra);
    Engine b(config_from(side_config("198.18.0.2", "198.18.0.1", "gw-b", "gw-a", o.ike_b, o.esp_b, o.psk_b,
                                     o.ts_b_local, o.ts_b_remote, "none", "", "")),
             wb, kb, rb);
    std::string err;
    TimePoint now{};
    ASSERT_TRUE(a.initiate(now, "gw", "", err)) << err;
    for (int i = 0; i < 10 && (!wa.out.empty() || !wb.out.empty()); ++i) {
        while (!wa.out.empty()) { auto d = wa.out.front(); wa.out.pop_front(); b.receive(now, d.to, d.from, d.data); }
        while (!wb.out.empty()) { auto d = wb.out.front(); wb.out.pop_front(); a.receive(now, d.to, d.from, d.data); }
    }
    ASSERT_EQ(ka.out.size(), 1u);
    ASSERT_EQ(kb.in.size(), 1u);
    EXPECT_EQ(ka.out.begin()->first, kb.in.begin()->first);
    EXPECT_EQ(ka.out.begin()->second, kb.in.begin()->second);   // same key and salt
    EXPECT_EQ(kb.out.begin()->second, ka.in.begin()->second);
    EXPECT_NE(ka.out.begin()->second, ka.in.begin()->second);   // directions differ
    EXPECT_EQ(ka.out.begin()->second.second, 32);
    auto sas = a.list_sas(now);
    ASSERT_EQ(sas.size(), 1u);
    EXPECT_EQ(sas[0].state, "ESTABLISHED");
    EXPECT_TRUE(sas[0].initiator);
    EXPECT_EQ(sas[0].remote_id, "gw-b");
    EXPECT_EQ(sas[0].suite.encr, encr::aes_gcm_16);
    EXPECT_EQ(sas[0].suite.dh, dh::curve25519);
    ASSERT_EQ(sas[0].children.size(), 1u);
    EXPECT_EQ(sas[0].children[0].state, "INSTALLED");
    auto bsas = b.list_sas(now);
    ASSERT_EQ(bsas.size(), 1u);
    EXPECT_EQ(bsas[0].spi_i, sas[0].spi_i);
    EXPECT_EQ(bsas[0].spi_r, sas[0].spi_r);
    EXPECT_EQ(bsas[0].children[0].spi_in, sas[0].children[0].spi_out);
}

TEST(IkeEngine, SelectorsAndAddressesOfTheInstalledChild)
{
    Pair p;
    p.up();
    expect_matching_children(p.a.sink, p.b.sink, 1);
    const auto& r = p.a.sink.out.begin()->second;
    ASSERT_EQ(r.local_ts.size(), 1u);
    EXPECT_EQ(r.local_ts[0].start, IpAddress::v4(0xc6130100));
    EXPECT_EQ(r.local_ts[0].end, IpAddress::v4(0xc61301ff));
    EXPECT_EQ(r.remote_ts[0].start, IpAddress::v4(0xc6130200));
    EXPECT_EQ(r.outbound.local, IpAddress::v4(0xc6120001));
    EXPECT_EQ(r.outbound.remote, IpAddress::v4(0xc6120002));
    EXPECT_EQ(r.connection, "gw");
    EXPECT_EQ(r.child, "net");
    EXPECT_FALSE(r.outbound.udp_encap);
    EXPECT_EQ(p.a.engine.stats().ike_established, 1u);
    EXPECT_EQ(p.b.engine.stats().child_installed, 1u);
}

// Inbound SAs A holds each time its IKE_AUTH request goes out.
std::vector<std::size_t> inbound_when_ike_auth_leaves(Pair& p)
{
    std::string err;
    EXPECT_TRUE(p.a.engine.initiate(p.now, "gw", "net", err)) << err;
    std::vector<std::size_t> seen;
    p.pump([&](const Datagram& d, bool from_a) {
        Header h;
        if (from_a && parse_header(d.data, h) && h.exchange == ExchangeType::ike_auth) seen.push_back(p.a.sink.in.size());
        return true;
    });
    return seen;
}

// A responder sends on the IKE_AUTH child once its answer is out: the
// initiator's inbound SA must be in before the request leaves, with the
// keys the responder's outbound SA has, and the answer only confirms it.
TEST(IkeEngine, IkeAuthChildsInboundSaIsInstalledBeforeTheRequest)
{
    Pair p;
    EXPECT_EQ(inbound_when_ike_auth_leaves(p), std::vector<std::size_t>{1});
    expect_matching_children(p.a.sink, p.b.sink, 1);
    uint32_t spi = p.a.first_in_spi();
    EXPECT_EQ(p.a.sink.events, (std::vector<std::string>{fmt::format("+in {:08x}", spi),
                                                         fmt::format("+out {:08x}", p.a.sink.out.begin()->first)}));
    const SaDescriptor& ours = p.a.sink.in.at(spi).inbound;
    const SaDescriptor& theirs = p.b.sink.out.at(spi).outbound;
    EXPECT_EQ(ours.cipher_key, theirs.cipher_key);
    EXPECT_EQ(ours.cipher_key_len, 32);
    EXPECT_EQ(p.a.sink.in.at(spi).remote_ts, p.b.sink.out.at(spi).local_ts);
    auto sas = p.a.engine.list_sas(p.now);
    ASSERT_EQ(sas.size(), 1u);
    ASSERT_EQ(sas[0].children.size(), 1u);
    EXPECT_EQ(sas[0].children[0].spi_in, spi);
    EXPECT_EQ(p.a.engine.stats().child_installed, 1u);
}

// With two suites offered the keys depend on the peer's choice: the SA
// waits for the answer.
TEST(IkeEngine, NoEarlyInboundSaWhenThePeerChoosesTheSuite)
{
    Options o;
    o.esp_a = "aes128gcm16, aes256gcm16";
    Pair p(o);
    EXPECT_EQ(inbound_when_ike_auth_leaves(p), std::vector<std::size_t>{0});
    expect_matching_children(p.a.sink, p.b.sink, 1);
    EXPECT_EQ(p.a.sink.events.size(), 2u);
}

TEST(IkeEngine, EarlyInboundSaGoesWhenIkeAuthIsNeverAnswered)
{
    Pair p;
    std::string err;
    ASSERT_TRUE(p.a.engine.initiate(p.now, "gw", "net", err));
    p.pump([](const Datagram& d, bool from_a) {
        Header h;
        return !(from_a && parse_header(d.data, h) && h.exchange == ExchangeType::ike_auth);
    });
    EXPECT_EQ(p.a.sink.in.size(), 1u);
    for (int i = 0; i < 60; ++i) {   // 30 s of retransmissions that all get lost
        p.now += 500ms;
        p.a.engine.tick(p.now);
        p.a.wire.out.clear();
    }
    EXPECT_TRUE(p.a.engine.list_sas(p.now).empty());
    EXPECT_TRUE(p.a.sink.in.empty());
    EXPECT_EQ(p.a.sink.events.back(), fmt::format("-in {:08x}", p.a.first_in_spi()));
}

TEST(IkeEngine, WrongPskFailsAuthenticationOnBothSides)
{
    Options o;
    o.psk_b = "another secret entirely";
    Pair p(o);
    p.up();
    EXPECT_TRUE(p.a.engine.list_sas(p.now).empty());
    EXPECT_TRUE(p.b.engine.list_sas(p.now).empty());
    EXPECT_TRUE(p.a.sink.in.empty());
    EXPECT_TRUE(p.b.sink.in.empty());
    auto da = p.a.engine.diagnose();
    auto db = p.b.engine.diagnose();
    ASSERT_EQ(da.size(), 1u);
    EXPECT_EQ(da[0].failed_phase, Phase::ike_auth);
    EXPECT_EQ(da[0].failure, "AUTHENTICATION_FAILED");
    EXPECT_EQ(db[0].failed_phase, Phase::ike_auth);
    EXPECT_EQ(db[0].failure, "AUTHENTICATION_FAILED");
    EXPECT_FALSE(db[0].hint.empty());
    EXPECT_EQ(p.b.engine.stats().auth_failures, 1u);
}

TEST(IkeEngine, WrongRemoteIdentityIsRefused)
{
    Options o;
    o.remote_id_a = "somebody-else";
    Pair p(o);
    p.up();
    EXPECT_TRUE(p.a.sink.in.empty());
    auto da = p.a.engine.diagnose();
    EXPECT_NE(da[0].failed_phase, Phase::none);
}

TEST(IkeEngine, NoCommonIkeProposal)
{
    Options o;
    o.ike_a = "aes128-sha256-modp2048";
    Pair p(o);
    p.up();
    EXPECT_TRUE(p.a.engine.list_sas(p.now).empty());
    auto da = p.a.engine.diagnose();
    EXPECT_EQ(da[0].failed_phase, Phase::ike_sa_init);
    EXPECT_EQ(da[0].failure, "NO_PROPOSAL_CHOSEN");
    auto db = p.b.engine.diagnose();
    EXPECT_EQ(db[0].failed_phase, Phase::ike_sa_init);
    EXPECT_EQ(db[0].peer_proposals, "AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048");
    EXPECT_EQ(da[0].our_proposals, "IKE AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048; "
                                   "ESP(net) AES_GCM_16_256/CURVE_25519/NO_EXT_SEQ");
}

TEST(IkeEngine, NoCommonEspProposalLeavesTheIkeSaUp)
{
    Options o;
    o.esp_a = "aes128-sha256";
    Pair p(o);
    p.up();
    auto sas = p.a.engine.list_sas(p.now);
    ASSERT_EQ(sas.size(), 1u);
    EXPECT_EQ(sas[0].state, "ESTABLISHED");
    EXPECT_TRUE(sas[0].children.empty());
    EXPECT_TRUE(p.b.sink.in.empty());
    EXPECT_TRUE(p.a.sink.in.empty());   // the SA installed before the request is gone
    EXPECT_EQ(p.a.sink.events, (std::vector<std::string>{fmt::format("+in {:08x}", p.a.first_in_spi()),
                                                         fmt::format("-in {:08x}", p.a.first_in_spi())}));
    auto da = p.a.engine.diagnose();
    EXPECT_EQ(da[0].failed_phase, Phase::child);
    EXPECT_EQ(da[0].failure, "NO_PROPOSAL_CHOSEN");
    EXPECT_EQ(p.b.engine.diagnose()[0].failed_phase, Phase::child);
}

TEST(IkeEngine, DisjointSelectorsAreTsUnacceptable)
{
    Options o;
    o.ts_b_remote = "198.19.9.0/24";
    Pair p(o);
    p.up();
    ASSERT_EQ(p.a.engine.list_sas(p.now).size(), 1u);
    EXPECT_TRUE(p.a.sink.in.empty());
    auto da = p.a.engine.diagnose();
    EXPECT_EQ(da[0].failed_phase, Phase::child);
    EXPECT_EQ(da[0].failure, "TS_UNACCEPTABLE");
    auto db = p.b.engine.diagnose();
    EXPECT_EQ(db[0].failure, "TS_UNACCEPTABLE");
    EXPECT_NE(db[0].peer_ts.find("198.19.1.0/24"), std::string::npos) << db[0].peer_ts;
}

TEST(IkeEngine, SelectorsAreNarrowed)
{
    Options o;
    o.ts_a_local = "198.19.0.0/16";   // A asks for more than B allows
    Pair p(o);
    p.up();
    expect_matching_children(p.a.sink, p.b.sink, 1);
    const auto& r = p.a.sink.out.begin()->second;
    ASSERT_EQ(r.local_ts.size(), 1u);
    EXPECT_EQ(r.local_ts[0].start, IpAddress::v4(0xc6130100));
    EXPECT_EQ(r.local_ts[0].end, IpAddress::v4(0xc61301ff));
    // The inbound SA installed before the request had the selectors asked
    // for; it is replaced by one with those agreed (RFC 4301 §5.2 checks
    // inbound traffic against them).
    uint32_t spi = p.a.first_in_spi();
    EXPECT_EQ(p.a.sink.events, (std::vector<std::string>{fmt::format("+in {:08x}", spi), fmt::format("-in {:08x}", spi),
                                                         fmt::format("+in {:08x}", spi),
                                                         fmt::format("+out {:08x}", p.a.sink.out.begin()->first)}));
    const auto& in = p.a.sink.in.at(spi);
    ASSERT_EQ(in.local_ts.size(), 1u);
    EXPECT_EQ(in.local_ts[0].start, IpAddress::v4(0xc6130100));
    EXPECT_EQ(in.local_ts[0].end, IpAddress::v4(0xc61301ff));
}

TEST(IkeEngine, InvalidKeRetriesInTheResponderGroup)
{
    Options o;
    o.ike_a = "aes256gcm16-prfsha256-ecp256-x25519";
    o.ike_b = "aes256gcm16-prfsha256-x25519";
    Pair p(o);
    p.up();
    auto sas = p.a.engine.list_sas(p.now);
    ASSERT_EQ(sas.size(), 1u);
    EXPECT_EQ(sas[0].suite.dh, dh::curve25519);
    expect_matching_children(p.a.sink, p.b.sink, 1);
}

TEST(IkeEngine, ClassicSuiteWithModp)
{
    Options o;
    o.ike_a = o.ike_b = "aes128-sha256-modp2048";
    o.esp_a = o.esp_b = "aes128-sha256-modp2048";
    Pair p(o);
    p.up();
    expect_matching_children(p.a.sink, p.b.sink, 1);
    const auto& r = p.a.sink.out.begin()->second;
    EXPECT_EQ(r.outbound.cipher, EspCipher::aes_cbc);
    EXPECT_EQ(r.outbound.integ, EspInteg::hmac_sha256_128);
    EXPECT_EQ(r.outbound.cipher_key_len, 16);
    EXPECT_EQ(r.outbound.integ_key_len, 32);
}

TEST(IkeEngine, ChaChaWithEcp384)
{
    Options o;
    o.ike_a = o.ike_b = "chacha20poly1305-prfsha256-ecp384";
    o.esp_a = o.esp_b = "chacha20poly1305-ecp384";
    Pair p(o);
    p.up();
    expect_matching_children(p.a.sink, p.b.sink, 1);
    EXPECT_EQ(p.a.sink.out.begin()->second.outbound.cipher, EspCipher::chacha20_poly1305);
}

TEST(IkeEngine, LostIkeAuthRequestIsRetransmitted)
{
    Pair p;
    std::string err;
    ASSERT_TRUE(p.a.engine.initiate(p.now, "gw", "net", err));
    int auth_seen = 0;
    p.pump([&](const Datagram& d, bool from_a) {
        Header h;
        if (from_a && parse_header(d.data, h) && h.exchange == ExchangeType::ike_auth) return ++auth_seen > 1;
        return true;
    });
    EXPECT_EQ(p.a.sink.in.size(), 1u);   // installed early, waiting for the answer
    EXPECT_TRUE(p.a.sink.out.empty());
    p.advance(2s);
    EXPECT_GE(p.a.engine.stats().retransmits, 1u);
    expect_matching_children(p.a.sink, p.b.sink, 1);
}

TEST(IkeEngine, LostIkeAuthResponseIsAnsweredFromTheCache)
{
    Pair p;
    std::string err;
    ASSERT_TRUE(p.a.engine.initiate(p.now, "gw", "net", err));
    int auth_seen = 0;
    p.pump([&](const Datagram& d, bool from_a) {
        Header h;
        if (!from_a && parse_header(d.data, h) && h.exchange == ExchangeType::ike_auth) return ++auth_seen > 1;
        return true;
    });
    EXPECT_EQ(p.a.sink.in.size(), 1u);   // installed early, waiting for the answer
    EXPECT_TRUE(p.a.sink.out.empty());
    EXPECT_EQ(p.b.sink.in.size(), 1u);
    p.advance(2s);
    expect_matching_children(p.a.sink, p.b.sink, 1);
    EXPECT_EQ(p.b.engine.stats().child_installed, 1u);   // not a second time
}

TEST(IkeEngine, DuplicatedAndReorderedMessages)
{
    Pair p;
    std::string err;
    ASSERT_TRUE(p.a.engine.initiate(p.now, "gw", "net", err));
    // Deliver every datagram twice.
    for (int round = 0; round < 10; ++round) {
        auto da = std::move(p.a.wire.out);
        auto db = std::move(p.b.wire.out);
        p.a.wire.out.clear();
        p.b.wire.out.clear();
        for (int rep = 0; rep < 2; ++rep)
            for (auto& d : da) p.b.engine.receive(p.now, d.to, d.from, d.data);
        for (int rep = 0; rep < 2; ++rep)
            for (auto it = db.rbegin(); it != db.rend(); ++it) p.a.engine.receive(p.now, it->to, it->from, it->data);
    }
    expect_matching_children(p.a.sink, p.b.sink, 1);
    EXPECT_EQ(p.b.engine.stats().child_installed, 1u);
    EXPECT_EQ(p.a.engine.list_sas(p.now).size(), 1u);
    EXPECT_EQ(p.b.engine.list_sas(p.now).size(), 1u);
}

// Make-before-break: at no point is there no outbound SA, and a new inbound
// SA is always installed before the peer's matching outbound one.
void check_make_before_break(const std::vector<std::string>& events)
{
    int outs = 0;
    bool started = false;
    for (const auto& e : events) {
        if (e.starts_with("+out")) { ++outs; started = true; }
        if (e.starts_with("-out")) --outs;
        if (started) {
            EXPECT_GT(outs, 0) << "no outbound SA after " << e;
        }
    }
}

void rekey_child_from(Pair& p, bool from_a)
{
    std::string err;
    Engine& e = from_a ? p.a.engine : p.b.engine;
    ASSERT_TRUE(e.rekey_child(p.now, "gw", "net", err)) << err;
    p.pump();
}

TEST(IkeEngine, ChildRekeyWithPfsFromEitherSide)
{
    Pair p;
    p.up();
    auto old_spi = p.a.sink.in.begin()->first;
    rekey_child_from(p, true);
    expect_matching_children(p.a.sink, p.b.sink, 1);
    EXPECT_NE(p.a.sink.in.begin()->first, old_spi);
    rekey_child_from(p, false);
    expect_matching_children(p.a.sink, p.b.sink, 1);
    EXPECT_EQ(p.a.engine.stats().child_rekeys, 2u);
    check_make_before_break(p.a.sink.events);
    check_make_before_break(p.b.sink.events);
    auto sas = p.a.engine.list_sas(p.now);
    ASSERT_EQ(sas[0].children.size(), 1u);
    EXPECT_EQ(sas[0].children[0].suite.dh, dh::curve25519);
}

TEST(IkeEngine, ResponderInstallsOutboundOnlyAfterTheOldSaIsDeleted)
{
    Pair p;
    p.up();
    p.b.sink.events.clear();
    std::string err;
    ASSERT_TRUE(p.a.engine.rekey_child(p.now, "gw", "net", err)) << err;
    // Hold back A's INFORMATIONAL (the delete of the old SA).
    std::vector<Datagram> held;
    p.pump([&](const Datagram& d, bool from_a) {
        Header h;
        if (from_a && parse_header(d.data, h) && h.exchange == ExchangeType::informational) {
            held.push_back(d);
            return false;
        }
        return true;
    });
    ASSERT_EQ(held.size(), 1u);
    // B answered the rekey: new inbound SA only; the old outbound one still in use.
    ASSERT_EQ(p.b.sink.events.size(), 1u) << fmt::format("{}", fmt::join(p.b.sink.events, ", "));
    EXPECT_TRUE(p.b.sink.events[0].starts_with("+in"));
    EXPECT_EQ(p.b.sink.out.size(), 1u);
    for (auto& d : held) p.b.engine.receive(p.now, d.to, d.from, d.data);
    p.pump();
    // On A's delete: +out new, then -out old, -in old.
    const auto& ev = p.b.sink.events;
    ASSERT_EQ(ev.size(), 4u) << fmt::format("{}", fmt::join(ev, ", "));
    EXPECT_TRUE(ev[1].starts_with("+out"));
    EXPECT_TRUE(ev[2].starts_with("-out"));
    EXPECT_TRUE(ev[3].starts_with("-in"));
    expect_matching_children(p.a.sink, p.b.sink, 1);
}

TEST(IkeEngine, ChildRekeyCollisionLeavesOneSa)
{
    Pair p;
    p.up();
    std::string err;
    ASSERT_TRUE(p.a.engine.rekey_child(p.now, "gw", "net", err));
    ASSERT_TRUE(p.b.engine.rekey_child(p.now, "gw", "net", err));
    p.pump();
    p.advance(3s);
    expect_matching_children(p.a.sink, p.b.sink, 1);
    auto sas = p.a.engine.list_sas(p.now);
    ASSERT_EQ(sas[0].children.size(), 1u);
    EXPECT_EQ(sas[0].children[0].state, "INSTALLED");
    check_make_before_break(p.a.sink.events);
    check_make_before_break(p.b.sink.events);
}

// --- Child SA rekey collisions in every order (RFC 7296 §2.8.1, §2.25) --------------

Datagram take(Wire& w)
{
    EXPECT_FALSE(w.out.empty());
    if (w.out.empty()) return {};
    Datagram d = std::move(w.out.front());
    w.out.pop_front();
    return d;
}

void deliver(Pair& p, Side& to, const Datagram& d) { to.engine.receive(p.now, d.to, d.from, d.data); }

// Both sides rekey the one Child SA at once and answer each other's
// request: each now holds the other's new SA, and the two answers wait on
// the wires (A's answer to B on a.wire, B's answer to A on b.wire).
void cross_rekeys(Pair& p)
{
    std::string err;
    ASSERT_TRUE(p.a.engine.rekey_child(p.now, "gw", "net", err)) << err;
    ASSERT_TRUE(p.b.engine.rekey_child(p.now, "gw", "net", err)) << err;
    Datagram from_a = take(p.a.wire), from_b = take(p.b.wire);
    deliver(p, p.b, from_a);
    deliver(p, p.a, from_b);
    ASSERT_EQ(p.a.wire.out.size(), 1u);
    ASSERT_EQ(p.b.wire.out.size(), 1u);
}

// Whether A's exchange wins the collision of cross_rekeys(). The nonces
// decide, and the seeded Rngs draw the same ones in every Pair that runs
// the same steps; the winner is the one that removes the old SA's
// outbound half when it settles.
bool a_wins_collision()
{
    Pair p;
    p.up();
    uint32_t old_out = p.a.sink.out.begin()->first;
    cross_rekeys(p);
    deliver(p, p.a, take(p.b.wire));
    return !p.a.sink.out.count(old_out);
}

// Each side ends with one Child SA, INSTALLED, the two halves of one pair
// in the data planes, carrying the configured selectors.
void expect_one_live_pair(Pair& p)
{
    expect_matching_children(p.a.sink, p.b.sink, 1);
    for (Side* s : {&p.a, &p.b}) {
        auto sas = s->engine.list_sas(p.now);
        ASSERT_EQ(sas.size(), 1u);
        ASSERT_EQ(sas[0].children.size(), 1u);
        const auto& c = sas[0].children[0];
        EXPECT_EQ(c.state, "INSTALLED");
        EXPECT_TRUE(s->sink.in.count(c.spi_in));
        EXPECT_TRUE(s->sink.out.count(c.spi_out));
    }
    auto net = [](uint32_t v4) { return std::pair{IpAddress::v4(v4), IpAddress::v4(v4 | 0xff)}; };
    auto span = [](const TrafficSelector& ts) { return std::pair{ts.start, ts.end}; };
    const ChildSaRecord& a = p.a.sink.out.begin()->second;
    const ChildSaRecord& b = p.b.sink.out.begin()->second;
    ASSERT_EQ(a.local_ts.size(), 1u);
    ASSERT_EQ(a.remote_ts.size(), 1u);
    ASSERT_EQ(b.local_ts.size(), 1u);
    ASSERT_EQ(b.remote_ts.size(), 1u);
    EXPECT_EQ(span(a.local_ts[0]), net(0xc6130100));    // 198.19.1.0/24
    EXPECT_EQ(span(a.remote_ts[0]), net(0xc6130200));   // 198.19.2.0/24
    EXPECT_EQ(span(b.local_ts[0]), net(0xc6130200));
    EXPECT_EQ(span(b.remote_ts[0]), net(0xc6130100));
}

// The INSTALLED child `s` lists (there must be one).
ChildSaInfo installed_child(Side& s, TimePoint now)
{
    for (const auto& sa : s.engine.list_sas(now))
        for (const auto& c : sa.children)
            if (c.state == "INSTALLED") return c;
    ADD_FAILURE() << "no INSTALLED child";
    return {};
}

// The responder of a rekey marks the old SA REKEYED when it answers (it
// then waits for the peer's delete and must not rekey it itself). The new
// SA joins the IKE SA's list of children, which may move the old one in
// memory: the mark must land on the old SA where it is now.
TEST(IkeEngine, AnsweringARekeyMarksTheOldSaRekeyed)
{
    Pair p;
    p.up();
    const uint32_t old_in = installed_child(p.a, p.now).spi_in;
    std::string err;
    ASSERT_TRUE(p.b.engine.rekey_child(p.now, "gw", "net", err)) << err;
    deliver(p, p.a, take(p.b.wire));   // A answers; B's delete of the old SA is not sent yet
    std::map<uint32_t, std::string> state;
    for (const auto& sa : p.a.engine.list_sas(p.now))
        for (const auto& c : sa.children) state[c.spi_in] = c.state;
    ASSERT_EQ(state.size(), 2u);
    EXPECT_EQ(state[old_in], "REKEYED");
}

// A response from `from` to `request` (sent by the other side) carrying
// `inner`, sealed with `from`'s keys: what a peer in a state two engines
// cannot be driven into answers (one that lost a Child SA without telling).
Datagram forge_response(const Side& from, const Datagram& request, const std::vector<Payload>& inner)
{
    Header h;
    EXPECT_TRUE(parse_header(request.data, h));
    const auto& [keys, suite] = from.ike_keys.at({h.spi_i, h.spi_r});
    bool initiator = !h.from_initiator();   // `from` answers the other side's request
    auto sk = SkCipher::create(suite.encr, suite.encr_key_bits, suite.integ, initiator ? keys.sk_ei : keys.sk_er,
                               initiator ? keys.sk_ai : keys.sk_ar);
    Bytes plain;
    uint8_t first = encode_payloads(inner, plain);
    std::size_t sk_len = generic_header_len + sk->sealed_len(plain.size());
    h.flags = uint8_t(header_flags::response | (initiator ? header_flags::initiator : 0));
    h.next_payload = uint8_t(PayloadType::sk);
    h.length = uint32_t(header_len + sk_len);
    Bytes msg;
    encode_header(h, msg);
    msg.insert(msg.end(), {first, 0, uint8_t(sk_len >> 8), uint8_t(sk_len)});
    Bytes sealed = sk->seal(msg, plain);
    msg.insert(msg.end(), sealed.begin(), sealed.end());
    return {request.to, request.from, std::move(msg)};
}

// `peer` deletes its only Child SA, and `us` never sees the DELETE: the
// answer the peer gets is forged. The peer no longer has the SA; we do.
void peer_loses_child(Pair& p, Side& peer, Side& us)
{
    ASSERT_EQ(peer.sink.in.size(), 1u);
    peer.engine.sa_expired(p.now, peer.sink.in.begin()->first, true);
    Datagram del = take(peer.wire);
    deliver(p, peer, forge_response(us, del, {}));
    ASSERT_TRUE(peer.sink.in.empty());
}

// Two engines after cross_rekeys(), named by which one's exchange wins
// the collision (w) and which one's loses (l).
struct Collision {
    bool a_wins = a_wins_collision();
    Pair p;
    Side& w = a_wins ? p.a : p.b;
    Side& l = a_wins ? p.b : p.a;
    Collision()
    {
        p.up();
        cross_rekeys(p);
    }
    // Settled: one live pair of SAs, and no packet ever without an SA.
    void expect_settled()
    {
        expect_one_live_pair(p);
        check_make_before_break(p.a.sink.events);
        check_make_before_break(p.b.sink.events);
    }
};

// What ravelin-iked met against strongSwan under load: the winner's answer
// to the loser's rekey is lost (strongSwan dropped it), the winner settles
// the collision and deletes the old SA, and is asked to rekey again before
// the loser's retransmission brings it the answer. The loser's SA is
// redundant, and the loser does not even have it yet: the winner must
// rekey its own SA.
TEST(IkeEngine, ChildRekeyCollisionWinnerRekeysItsOwnSaWhileItsAnswerIsLost)
{
    Collision c;
    Pair& p = c.p;
    Side &w = c.w, &l = c.l;
    w.wire.out.clear();                    // the winner's answer is lost
    deliver(p, w, take(l.wire));           // the loser's answer: the winner settles
    p.pump();                              // its delete of the old SA
    ASSERT_EQ(w.sink.out.size(), 1u);
    uint32_t collision_out = w.sink.out.begin()->first;
    std::string err;
    ASSERT_TRUE(w.engine.rekey_child(p.now, "gw", "net", err)) << err;
    p.pump();
    p.advance(5s);                         // the loser retransmits and settles too
    c.expect_settled();
    EXPECT_NE(w.sink.out.begin()->first, collision_out) << "the winner's SA was never rekeyed";
}

// strongSwan's "rekey/delete collision": the winner's delete of the old SA
// reaches the loser before the winner's answer to the loser's rekey. The
// peer deleted the old SA, so it keeps its own: the loser's late SA is
// redundant and the loser deletes it.
TEST(IkeEngine, ChildRekeyCollisionLoserGetsTheDeleteOfTheOldSaBeforeItsAnswer)
{
    Collision c;
    Pair& p = c.p;
    Side &w = c.w, &l = c.l;
    Datagram late = take(w.wire);          // the winner's answer, delayed
    deliver(p, w, take(l.wire));
    p.pump();                              // the old SA's delete, answered
    deliver(p, l, late);
    p.pump();
    p.advance(3s);
    c.expect_settled();
}

// No collision: the peer deletes the old SA for a reason of its own (its
// hard lifetime) after answering our rekey of it, and the DELETE overtakes
// the answer. The peer made no SA of its own for the child, so ours is
// not redundant: it carries the child on both sides.
TEST(IkeEngine, PeersOwnDeleteOfTheOldSaBeforeItsRekeyAnswerKeepsOurNewSa)
{
    Pair p;
    p.up();
    const uint32_t old_in_b = p.b.sink.in.begin()->first;
    std::string err;
    ASSERT_TRUE(p.a.engine.rekey_child(p.now, "gw", "net", err)) << err;
    deliver(p, p.b, take(p.a.wire));
    Datagram answer = take(p.b.wire);      // delayed
    p.b.engine.sa_expired(p.now, old_in_b, true);
    p.pump();                              // B's delete of the old SA, answered
    deliver(p, p.a, answer);
    p.pump();
    p.advance(3s);
    expect_one_live_pair(p);
    EXPECT_FALSE(p.b.sink.in.count(old_in_b));
    EXPECT_EQ(p.a.engine.stats().child_installed, 2u);   // nothing created afresh
    check_make_before_break(p.b.sink.events);
}

// The loser's answer to the winner is lost: the loser takes the winner's SA
// and is asked to rekey it before the winner, retransmitting, has it. The
// winner answers CHILD_SA_NOT_FOUND, which here means "not yet": the loser
// keeps the SA and rekeys it a little later.
TEST(IkeEngine, ChildRekeyCollisionLoserRekeysThePeersSaWhileItsAnswerIsLost)
{
    Collision c;
    Pair& p = c.p;
    Side &w = c.w, &l = c.l;
    l.wire.out.clear();                    // the loser's answer is lost
    deliver(p, l, take(w.wire));           // the winner's answer: the loser settles
    p.pump();                              // its delete of its redundant SA
    uint32_t collision_out = installed_child(l, p.now).spi_out;
    std::string err;
    ASSERT_TRUE(l.engine.rekey_child(p.now, "gw", "net", err)) << err;
    p.pump();                              // CHILD_SA_NOT_FOUND
    p.advance(6s);
    c.expect_settled();
    EXPECT_NE(l.sink.out.begin()->first, collision_out) << "the adopted SA was never rekeyed";
}

// RFC 7296 §2.25: a peer without the Child SA we rekey answers
// CHILD_SA_NOT_FOUND; we drop ours without a DELETE and, with no other SA
// left for the child, create a new one from scratch.
TEST(IkeEngine, RekeyAnsweredChildSaNotFoundCreatesTheChildAgain)
{
    Pair p;
    p.up();
    uint32_t old_in = p.a.sink.in.begin()->first;
    peer_loses_child(p, p.b, p.a);
    std::string err;
    ASSERT_TRUE(p.a.engine.rekey_child(p.now, "gw", "net", err)) << err;
    p.pump();
    expect_one_live_pair(p);
    EXPECT_FALSE(p.a.sink.in.count(old_in));
    EXPECT_EQ(p.b.engine.stats().child_rekeys, 0u);   // created, not rekeyed
}

// The same answer while the peer's own rekey of the SA, which it finished
// without seeing ours, left its new SA with us: that one takes over.
TEST(IkeEngine, RekeyAnsweredChildSaNotFoundAdoptsThePeersNewSa)
{
    Pair p;
    p.up();
    std::string err;
    ASSERT_TRUE(p.a.engine.rekey_child(p.now, "gw", "net", err)) << err;
    Datagram a_rekey = take(p.a.wire);     // held back
    ASSERT_TRUE(p.b.engine.rekey_child(p.now, "gw", "net", err)) << err;
    deliver(p, p.a, take(p.b.wire));       // A answers: it holds B's new SA
    deliver(p, p.b, take(p.a.wire));       // B is done and deletes the old SA...
    Datagram del = take(p.b.wire);
    deliver(p, p.b, forge_response(p.a, del, {}));   // ...which A never hears of
    uint32_t peers_in = p.b.sink.in.begin()->first;
    deliver(p, p.b, a_rekey);              // CHILD_SA_NOT_FOUND
    p.pump();
    expect_one_live_pair(p);
    EXPECT_EQ(p.b.sink.in.begin()->first, peers_in);
    EXPECT_EQ(p.a.engine.stats().child_installed, 2u);   // nothing created afresh
}

TEST(IkeEngine, IkeRekeyKeepsChildrenFromEitherSide)
{
    Pair p;
    p.up();
    auto before = p.a.engine.list_sas(p.now)[0];
    auto child_spi = p.a.sink.in.begin()->first;
    std::string err;
    ASSERT_TRUE(p.a.engine.rekey_ike(p.now, "gw", err)) << err;
    p.pump();
    auto after = p.a.engine.list_sas(p.now);
    ASSERT_EQ(after.size(), 1u);
    EXPECT_NE(after[0].spi_i, before.spi_i);
    ASSERT_EQ(after[0].children.size(), 1u);
    EXPECT_EQ(after[0].children[0].spi_in, child_spi);
    ASSERT_EQ(p.b.engine.list_sas(p.now).size(), 1u);
    EXPECT_EQ(p.b.engine.list_sas(p.now)[0].spi_r, after[0].spi_r);
    ASSERT_TRUE(p.b.engine.rekey_ike(p.now, "gw", err)) << err;
    p.pump();
    ASSERT_EQ(p.a.engine.list_sas(p.now).size(), 1u);
    EXPECT_FALSE(p.a.engine.list_sas(p.now)[0].initiator);
    // The rekeyed IKE SA still works: rekey the child through it.
    rekey_child_from(p, true);
    expect_matching_children(p.a.sink, p.b.sink, 1);
    EXPECT_EQ(p.a.engine.stats().ike_rekeys, 2u);
}

// Our delete of a Child SA is still unanswered when the peer rekeys the
// IKE SA: the child moves to the new IKE SA, the answer comes on the old
// one, and the child still goes.
TEST(IkeEngine, ChildDeleteAnsweredAfterThePeerRekeyedTheIkeSa)
{
    Pair p;
    p.up();
    p.a.engine.sa_expired(p.now, p.a.sink.in.begin()->first, true);
    Datagram del = take(p.a.wire);         // held back
    std::string err;
    ASSERT_TRUE(p.b.engine.rekey_ike(p.now, "gw", err)) << err;
    deliver(p, p.a, take(p.b.wire));       // A answers: its children move to the new IKE SA
    deliver(p, p.b, del);
    p.pump();
    EXPECT_TRUE(p.a.sink.in.empty());
    EXPECT_TRUE(p.a.sink.out.empty());
    EXPECT_TRUE(p.b.sink.in.empty());
    auto a = p.a.engine.list_sas(p.now);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_TRUE(a[0].children.empty());
    EXPECT_EQ(p.a.engine.stats().ike_rekeys, 1u);
}

// Our delete of a Child SA is unanswered on an IKE SA the peer rekeys and
// then deletes (the answer was lost, or the request itself): the delete
// is asked again on the new IKE SA, and the child goes on both sides.
TEST(IkeEngine, ChildDeleteLostWithTheReplacedIkeSaIsAskedAgain)
{
    for (bool request_lost : {false, true}) {
        SCOPED_TRACE(request_lost ? "request lost" : "answer lost");
        Pair p;
        p.up();
        p.a.engine.sa_expired(p.now, p.a.sink.in.begin()->first, true);
        Datagram del = take(p.a.wire);
        std::string err;
        ASSERT_TRUE(p.b.engine.rekey_ike(p.now, "gw", err)) << err;
        deliver(p, p.a, take(p.b.wire));   // A answers: its children move to the new IKE SA
        if (!request_lost) {
            deliver(p, p.b, del);          // B deletes the child; its answer is lost
            take(p.b.wire);
        }
        deliver(p, p.b, take(p.a.wire));   // B's rekey completes: it deletes the old IKE SA
        p.pump();
        p.advance(2s);
        EXPECT_TRUE(p.a.sink.in.empty());
        EXPECT_TRUE(p.a.sink.out.empty());
        EXPECT_TRUE(p.b.sink.in.empty());
        EXPECT_TRUE(p.b.sink.out.empty());
        for (Side* s : {&p.a, &p.b}) {
            auto sas = s->engine.list_sas(p.now);
            ASSERT_EQ(sas.size(), 1u);
            EXPECT_TRUE(sas[0].children.empty());
        }
    }
}

// A starts a Child SA exchange (a rekey, or a second SA for the child)
// and B an IKE SA rekey at the same time; A gets B's request first.
void child_exchange_crossing_ike_rekey(Pair& p, bool create)
{
    std::string err;
    if (create) {
        ASSERT_TRUE(p.a.engine.initiate(p.now, "gw", "net", err)) << err;
    } else {
        ASSERT_TRUE(p.a.engine.rekey_child(p.now, "gw", "net", err)) << err;
    }
    ASSERT_TRUE(p.b.engine.rekey_ike(p.now, "gw", err)) << err;
    Datagram child = take(p.a.wire);
    deliver(p, p.a, take(p.b.wire));
    deliver(p, p.b, child);
    p.pump();
}

// Whatever A answers B's IKE SA rekey, both exchanges end up done: A's new
// Child SA replaces the old one in the IKE SA that holds the children.
TEST(IkeEngine, ChildRekeyCrossingThePeersIkeRekeyLeavesOneLivePair)
{
    Pair p;
    p.up();
    const uint64_t spi_i = p.a.engine.list_sas(p.now)[0].spi_i;
    const uint32_t old_in = p.a.sink.in.begin()->first;
    child_exchange_crossing_ike_rekey(p, false);
    p.advance(11s);
    expect_one_live_pair(p);
    EXPECT_FALSE(p.a.sink.in.count(old_in));
    EXPECT_NE(p.a.engine.list_sas(p.now)[0].spi_i, spi_i);
    EXPECT_EQ(p.a.engine.stats().child_rekeys, 1u);
    EXPECT_EQ(p.b.engine.stats().ike_rekeys, 1u);
    check_make_before_break(p.a.sink.events);
    check_make_before_break(p.b.sink.events);
}

// RFC 7296 §2.25: with a CREATE_CHILD_SA of ours unanswered, the peer's
// IKE SA rekey gets TEMPORARY_FAILURE (strongSwan does the same), and the
// peer rekeys again 10 s later.
TEST(IkeEngine, PeersIkeRekeyWhileOurChildExchangeIsOutGetsTemporaryFailure)
{
    for (bool create : {false, true}) {
        SCOPED_TRACE(create ? "create" : "rekey");
        Pair p;
        p.up();
        const uint64_t spi_i = p.b.engine.list_sas(p.now)[0].spi_i;
        child_exchange_crossing_ike_rekey(p, create);
        EXPECT_EQ(p.a.engine.stats().ike_rekeys, 0u);
        EXPECT_EQ(p.b.engine.stats().ike_rekeys, 0u);
        expect_matching_children(p.a.sink, p.b.sink, create ? 2 : 1);
        p.advance(9s);
        EXPECT_EQ(p.b.engine.list_sas(p.now)[0].spi_i, spi_i);
        p.advance(2s);
        EXPECT_EQ(p.a.engine.stats().ike_rekeys, 1u);
        EXPECT_EQ(p.b.engine.stats().ike_rekeys, 1u);
        auto a = p.a.engine.list_sas(p.now);
        auto b = p.b.engine.list_sas(p.now);
        ASSERT_EQ(a.size(), 1u);
        ASSERT_EQ(b.size(), 1u);
        EXPECT_NE(b[0].spi_i, spi_i);
        EXPECT_EQ(a[0].spi_i, b[0].spi_i);
        EXPECT_EQ(a[0].children.size(), create ? 2u : 1u);
        expect_matching_children(p.a.sink, p.b.sink, create ? 2 : 1);
    }
}

TEST(IkeEngine, IkeRekeyCollisionLeavesOneIkeSa)
{
    Pair p;
    p.up();
    std::string err;
    ASSERT_TRUE(p.a.engine.rekey_ike(p.now, "gw", err));
    ASSERT_TRUE(p.b.engine.rekey_ike(p.now, "gw", err));
    p.pump();
    p.advance(3s);
    auto a = p.a.engine.list_sas(p.now);
    auto b = p.b.engine.list_sas(p.now);
    ASSERT_EQ(a.size(), 1u);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_EQ(a[0].spi_i, b[0].spi_i);
    EXPECT_EQ(a[0].children.size(), 1u);
    EXPECT_EQ(b[0].children.size(), 1u);
    expect_matching_children(p.a.sink, p.b.sink, 1);
    rekey_child_from(p, false);
    expect_matching_children(p.a.sink, p.b.sink, 1);
}

TEST(IkeEngine, TerminateDeletesEverywhere)
{
    Pair p;
    p.up();
    std::string err;
    ASSERT_TRUE(p.b.engine.terminate(p.now, "gw", err)) << err;
    p.pump();
    EXPECT_TRUE(p.a.engine.list_sas(p.now).empty());
    EXPECT_TRUE(p.b.engine.list_sas(p.now).empty());
    EXPECT_TRUE(p.a.sink.in.empty());
    EXPECT_TRUE(p.a.sink.out.empty());
    EXPECT_TRUE(p.b.sink.in.empty());
}

TEST(IkeEngine, DeadPeerDetectionRemovesSas)
{
    Options o;
    o.extra_conn_a = "dpd_delay = 5s";
    Pair p(o);
    p.up();
    ASSERT_EQ(p.a.sink.in.size(), 1u);
    // B goes silent.
    for (int i = 0; i < 60; ++i) {
        p.now += 1s;
        p.a.engine.tick(p.now);
        p.a.wire.out.clear();
    }
    EXPECT_TRUE(p.a.engine.list_sas(p.now).empty());
    EXPECT_TRUE(p.a.sink.in.empty());
    EXPECT_TRUE(p.a.sink.out.empty());
    EXPECT_EQ(p.a.engine.diagnose()[0].phase1, "down");
}

TEST(IkeEngine, CookieUnderLoad)
{
    Options o;
    o.extra_daemon = "cookie_threshold = 0";
    Pair p(o);
    p.up();
    EXPECT_GE(p.b.engine.stats().cookies_sent, 1u);
    expect_matching_children(p.a.sink, p.b.sink, 1);
}

TEST(IkeEngine, FragmentedIkeAuth)
{
    Options o;
    o.extra_daemon = "fragment_size = 576";
    // 40 selectors make IKE_AUTH bigger than 576 bytes.
    o.ts_a_local.clear();
    for (int i = 1; i <= 40; ++i) o.ts_a_local += fmt::format("{}198.19.1.{}", i > 1 ? ", " : "", i);
    Pair p(o);
    unsigned skf = 0;
    std::string err;
    ASSERT_TRUE(p.a.engine.initiate(p.now, "gw", "net", err));
    p.pump([&](const Datagram& d, bool) {
        Header h;
        if (parse_header(d.data, h) && h.next_payload == uint8_t(PayloadType::skf)) ++skf;
        EXPECT_LE(d.data.size(), 576u);
        return true;
    });
    EXPECT_GE(skf, 2u);
    expect_matching_children(p.a.sink, p.b.sink, 1);
    EXPECT_EQ(p.b.sink.in.begin()->second.remote_ts.size(), 40u);
}

TEST(IkeEngine, ForcedEncapsulationFloatsToNatT)
{
    Options o;
    o.extra_conn_a = "encap = yes";
    Pair p(o);
    p.up();
    expect_matching_children(p.a.sink, p.b.sink, 1);
    const auto& ra = p.a.sink.out.begin()->second.outbound;
    const auto& rb = p.b.sink.out.begin()->second.outbound;
    EXPECT_TRUE(ra.udp_encap);
    EXPECT_TRUE(rb.udp_encap);
    EXPECT_EQ(ra.encap_remote_port, 4500);
    EXPECT_EQ(rb.encap_remote_port, 4500);
    auto sa = p.b.engine.list_sas(p.now);
    EXPECT_TRUE(sa[0].nat_remote);
}

TEST(IkeEngine, StartActionStartInitiatesOnFirstTick)
{
    Options o;
    o.start_a = "start";
    Pair p(o);
    p.a.engine.tick(p.now);
    p.pump();
    expect_matching_children(p.a.sink, p.b.sink, 1);
}

TEST(IkeEngine, HostileInputIsCountedNotFatal)
{
    Pair p;
    p.up();
    Endpoint a{IpAddress::v4(0xc6120001), 500}, b{IpAddress::v4(0xc6120002), 500};
    auto before = p.b.engine.stats().rx_invalid;
    Bytes junk(40, 0xab);
    p.b.engine.receive(p.now, b, a, junk);                            // bad header
    Bytes unknown_spi(28, 0);
    unknown_spi[0] = 1;
    unknown_spi[17] = 0x20;
    unknown_spi[18] = 37;
    unknown_spi[27] = 28;
    p.b.engine.receive(p.now, b, a, unknown_spi);                     // unknown SPI
    p.b.engine.receive(p.now, b, a, Bytes(10, 0));                    // truncated
    EXPECT_EQ(p.b.engine.stats().rx_invalid, before + 3);
    EXPECT_EQ(p.b.engine.list_sas(p.now).size(), 1u);
}

} // namespace
} // namespace ravelin::ike

namespace ravelin::ike {
namespace {

TEST(IkeEngineOps, TrapPolicyAcquireInitiatesOnce)
{
    Options o;
    o.start_a = "trap";
    Pair p(o);
    p.a.engine.tick(p.now);
    p.pump();
    EXPECT_TRUE(p.a.sink.in.empty());              // trap: nothing until traffic
    ASSERT_EQ(p.a.sink.traps.count(1), 1u);        // but the trap policies are installed
    const TrapRecord& trap = p.a.sink.traps.at(1);
    EXPECT_EQ(trap.connection, "gw");
    EXPECT_EQ(trap.child, "net");
    ASSERT_EQ(trap.local_ts.size(), 1u);
    ASSERT_EQ(trap.remote_ts.size(), 1u);
    EXPECT_EQ(to_string(trap.local_ts[0].start), "198.19.1.0");
    EXPECT_EQ(to_string(trap.remote_ts[0].end), "198.19.2.255");
    p.a.engine.acquire(p.now, 1);                  // the reqid of gw/net
    p.a.engine.acquire(p.now, 1);                  // a second packet meanwhile
    p.pump();
    expect_matching_children(p.a.sink, p.b.sink, 1);
    p.a.engine.acquire(p.now, 1);                  // already up: no second SA
    p.pump();
    expect_matching_children(p.a.sink, p.b.sink, 1);
    p.a.engine.acquire(p.now, 99);                 // unknown reqid: ignored
    p.pump();
    EXPECT_EQ(p.a.engine.list_sas(p.now).size(), 1u);
}

TEST(IkeEngineOps, ReloadRemovesTrapsOfRemovedConnections)
{
    Options o;
    o.start_a = "trap";
    Pair p(o);
    p.a.engine.tick(p.now);
    ASSERT_EQ(p.a.sink.traps.size(), 1u);
    p.a.engine.reload(p.now, config_from("connections {}\n"));
    EXPECT_TRUE(p.a.sink.traps.empty());
}

// A restarted daemon adopts what the data plane still carries: the child
// keeps its reqid, the adopted SPIs are never handed out again, and the
// new IKE_AUTH has no INITIAL_CONTACT, so the peer keeps the old SAs (and
// the traffic on them) until the new ones replace them.
TEST(IkeEngineOps, AdoptionKeepsTheReqidAndSkipsInitialContact)
{
    Options o;
    for (bool adopt : {false, true}) {
        Pair p(o);
        p.up();
        ASSERT_EQ(p.b.engine.list_sas(p.now).size(), 1u);
        uint32_t old_spi = p.a.sink.in.begin()->first;
        // The "restarted" initiator: same config, fresh state.
        Side a2(config_from(side_config("198.18.0.1", "198.18.0.2", "gw-a", o.remote_id_a, o.ike_a, o.esp_a,
                                        o.psk_a, o.ts_a_local, o.ts_a_remote, o.start_a, "", "")),
                3);
        const uint32_t spis[] = {old_spi};
        if (adopt) a2.engine.adopt("gw", "net", 42, spis);
        std::string err;
        ASSERT_TRUE(a2.engine.initiate(p.now, "gw", "net", err)) << err;
        for (int round = 0; round < 20 && (!a2.wire.out.empty() || !p.b.wire.out.empty()); ++round) {
            while (!a2.wire.out.empty()) {
                auto d = a2.wire.out.front();
                a2.wire.out.pop_front();
                p.b.engine.receive(p.now, d.to, d.from, d.data);
            }
            while (!p.b.wire.out.empty()) {
                auto d = p.b.wire.out.front();
                p.b.wire.out.pop_front();
                a2.engine.receive(p.now, d.to, d.from, d.data);
            }
        }
        ASSERT_EQ(a2.sink.in.size(), 1u) << "adopt=" << adopt;
        EXPECT_NE(a2.sink.in.begin()->first, old_spi);
        EXPECT_EQ(a2.sink.in.begin()->second.reqid, adopt ? 42u : 1u);
        // With INITIAL_CONTACT the peer drops the old IKE SA (and its
        // children) at once; without it both stay until the old one dies.
        EXPECT_EQ(p.b.engine.list_sas(p.now).size(), adopt ? 2u : 1u) << "adopt=" << adopt;
    }
}

TEST(IkeEngineOps, ReloadLeavesUnchangedConnectionsAlone)
{
    Pair p;
    p.up();
    auto spi = p.a.sink.in.begin()->first;
    Options o;
    auto same = config_from(side_config("198.18.0.1", "198.18.0.2", "gw-a", o.remote_id_a, o.ike_a, o.esp_a,
                                        o.psk_a, o.ts_a_local, o.ts_a_remote, o.start_a, "", ""));
    EXPECT_TRUE(p.a.engine.reload(p.now, same).empty());
    p.pump();
    ASSERT_EQ(p.a.sink.in.size(), 1u);
    EXPECT_EQ(p.a.sink.in.begin()->first, spi);
    auto changed = config_from(side_config("198.18.0.1", "198.18.0.2", "gw-a", o.remote_id_a, o.ike_a,
                                           "aes128gcm16", o.psk_a, o.ts_a_local, o.ts_a_remote, o.start_a, "", ""));
    auto touched = p.a.engine.reload(p.now, changed);
    ASSERT_EQ(touched, std::vector<std::string>{"gw"});
    p.pump();
    EXPECT_TRUE(p.a.sink.in.empty());
    EXPECT_TRUE(p.b.engine.list_sas(p.now).empty());
}

TEST(IkeEngineOps, SoftLifetimeFromTheDataPlaneRekeysHardDeletes)
{
    Pair p;
    p.up();
    auto spi = p.a.sink.in.begin()->first;
    p.a.engine.sa_expired(p.now, spi, false);
    p.pump();
    expect_matching_children(p.a.sink, p.b.sink, 1);
    EXPECT_NE(p.a.sink.in.begin()->first, spi);
    p.a.engine.sa_expired(p.now, p.a.sink.in.begin()->first, true);
    p.pump();
    EXPECT_TRUE(p.a.sink.in.empty());
    EXPECT_TRUE(p.b.sink.in.empty());
    EXPECT_EQ(p.a.engine.list_sas(p.now).size(), 1u);   // the IKE SA stays
}

TEST(IkeEngineOps, ChildRekeysByTimeWithJitter)
{
    Options o;
    o.extra_conn_a = "";
    Pair p(o);
    // rekey_time = 0 in the fixture; use the real defaults through a fresh pair.
    auto cfg = side_config("198.18.0.1", "198.18.0.2", "gw-a", "gw-b", o.ike_a, o.esp_a, o.psk_a, o.ts_a_local,
                           o.ts_a_remote, "none", "", "");
    const std::string child_rekey = "start_action = none\n        rekey_time = 0";
    auto pos = cfg.find(child_rekey);
    ASSERT_NE(pos, std::string::npos);
    cfg.replace(pos, child_rekey.size(), "start_action = none\n        rekey_time = 60s");
    Wire wa;
    Sink sa;
    TestRng ra(5);
    Engine a(config_from(cfg), wa, sa, ra);
    std::string err;
    ASSERT_TRUE(a.initiate(p.now, "gw", "net", err)) << err;
    auto pump = [&] {
        for (int i = 0; i < 20 && (!wa.out.empty() || !p.b.wire.out.empty()); ++i) {
            while (!wa.out.empty()) { auto d = wa.out.front(); wa.out.pop_front(); p.b.engine.receive(p.now, d.to, d.from, d.data); }
            while (!p.b.wire.out.empty()) { auto d = p.b.wire.out.front(); p.b.wire.out.pop_front(); a.receive(p.now, d.to, d.from, d.data); }
        }
    };
    pump();
    ASSERT_EQ(sa.in.size(), 1u);
    auto first = sa.in.begin()->first;
    auto info = a.list_sas(p.now)[0].children[0];
    EXPECT_LE(info.rekey_in_s, 60);
    EXPECT_GE(info.rekey_in_s, 54);                  // rand_time = 10 % by default
    for (int s = 0; s < 61; ++s) {
        p.now += 1s;
        a.tick(p.now);
        p.b.engine.tick(p.now);
        pump();
    }
    ASSERT_EQ(sa.in.size(), 1u);
    EXPECT_NE(sa.in.begin()->first, first);
}

} // namespace
} // namespace ravelin::ike

namespace ravelin::ike {
namespace {

// A hand-made INFORMATIONAL request from A to B, protected with A's keys
// as captured through the key hook.
class Forger {
public:
    Forger()
    {
        Options o;
        EngineHooks hooks;
        hooks.ike_keys = [this](uint64_t i, uint64_t r, const IkeKeys& k, const IkeSuite& s) {
            spi_i = i;
            spi_r = r;
            keys = k;
            suite = s;
        };
        a = std::make_unique<Engine>(config_from(side_config("198.18.0.1", "198.18.0.2", "gw-a", "gw-b", o.ike_a,
                                                             o.esp_a, o.psk_a, o.ts_a_local, o.ts_a_remote, "none",
                                                             "", "")),
                                     wa, sa, ra, hooks);
        b = std::make_unique<Engine>(config_from(side_config("198.18.0.2", "198.18.0.1", "gw-b", "gw-a", o.ike_b,
                                                             o.esp_b, o.psk_b, o.ts_b_local, o.ts_b_remote, "none",
                                                             "", "")),
                                     wb, sb, rb);
        std::string err;
        EXPECT_TRUE(a->initiate(now, "gw", "net", err)) << err;
        pump();
    }
    void pump()
    {
        for (int i = 0; i < 20 && (!wa.out.empty() || !wb.out.empty()); ++i) {
            while (!wa.out.empty()) { auto d = wa.out.front(); wa.out.pop_front(); b->receive(now, d.to, d.from, d.data); }
            while (!wb.out.empty()) { auto d = wb.out.front(); wb.out.pop_front(); a->receive(now, d.to, d.from, d.data); }
        }
    }
    // SK-protected request from A with message ID `mid`.
    Bytes request(uint32_t mid, const std::vector<Payload>& inner)
    {
        auto c = SkCipher::create(suite.encr, suite.encr_key_bits, suite.integ, keys.sk_ei, keys.sk_ai);
        Bytes plain;
        uint8_t first = encode_payloads(inner, plain);
        Header h;
        h.spi_i = spi_i;
        h.spi_r = spi_r;
        h.exchange = ExchangeType::informational;
        h.flags = header_flags::initiator;
        h.message_id = mid;
        h.next_payload = uint8_t(PayloadType::sk);
        std::size_t body = c->sealed_len(plain.size());
        h.length = uint32_t(header_len + generic_header_len + body);
        Bytes msg;
        encode_header(h, msg);
        msg.insert(msg.end(), {first, 0, uint8_t((4 + body) >> 8), uint8_t(4 + body)});
        Bytes sealed = c->seal(msg, plain);
        msg.insert(msg.end(), sealed.begin(), sealed.end());
        return msg;
    }
    // B's answer to the last request, decrypted with B's outbound keys.
    std::optional<std::vector<Payload>> answer()
    {
        if (wb.out.empty()) return std::nullopt;
        Bytes d = wb.out.back().data;
        wb.out.clear();
        Message m;
        if (!parse_message(d, m) || m.payloads.size() != 1) return std::nullopt;
        const auto* sk = std::get_if<EncryptedPayload>(&m.payloads[0].body);
        if (!sk) return std::nullopt;
        auto c = SkCipher::create(suite.encr, suite.encr_key_bits, suite.integ, keys.sk_er, keys.sk_ar);
        auto plain = c->open(ByteView(d).first(d.size() - sk->body.size()), sk->body);
        if (!plain) return std::nullopt;
        std::vector<Payload> out;
        if (!parse_payloads(sk->first_inner, *plain, out)) return std::nullopt;
        return out;
    }
    Endpoint ea{IpAddress::v4(0xc6120001), 500}, eb{IpAddress::v4(0xc6120002), 500};
    TimePoint now = TimePoint{} + 100s;
    Wire wa, wb;
    Sink sa, sb;
    TestRng ra{21}, rb{22};
    std::unique_ptr<Engine> a, b;
    uint64_t spi_i = 0, spi_r = 0;
    IkeKeys keys;
    IkeSuite suite;
};

TEST(IkeEngineHostile, UnknownCriticalPayloadInsideSkIsRefusedByName)
{
    Forger f;
    ASSERT_EQ(f.sb.in.size(), 1u);
    Payload crit{PayloadType(200), true, UnknownPayload{200, {1, 2, 3}}};
    f.b->receive(f.now, f.eb, f.ea, f.request(2, {crit}));
    auto ans = f.answer();
    ASSERT_TRUE(ans);
    const auto* n = find_notify(*ans, notify::unsupported_critical_payload);
    ASSERT_NE(n, nullptr);
    EXPECT_EQ(n->data, Bytes{200});
    EXPECT_EQ(f.b->list_sas(f.now).size(), 1u);        // an INFORMATIONAL error does not kill the SA
}

TEST(IkeEngineHostile, BadMessageIdsAreIgnored)
{
    Forger f;
    auto before = f.b->stats().rx_invalid;
    f.b->receive(f.now, f.eb, f.ea, f.request(7, {}));  // expected 2
    EXPECT_TRUE(f.wb.out.empty());
    EXPECT_EQ(f.b->stats().rx_invalid, before + 1);
    // The right ID still works afterwards: an empty INFORMATIONAL (liveness).
    f.b->receive(f.now, f.eb, f.ea, f.request(2, {}));
    auto ans = f.answer();
    ASSERT_TRUE(ans);
    EXPECT_TRUE(ans->empty());
    // A replay of that request gets the cached answer, once per copy.
    f.b->receive(f.now, f.eb, f.ea, f.request(2, {}));
    EXPECT_EQ(f.wb.out.size(), 1u);
}

TEST(IkeEngineHostile, TamperedAndTruncatedMessagesAreDropped)
{
    Forger f;
    auto before = f.b->stats().rx_invalid;
    Bytes m = f.request(2, {});
    m[m.size() - 3] ^= 1;                              // ICV
    f.b->receive(f.now, f.eb, f.ea, m);
    Bytes t = f.request(2, {});
    t.resize(t.size() - 5);                            // shorter than its length field
    f.b->receive(f.now, f.eb, f.ea, t);
    Bytes big = f.request(2, {Payload{PayloadType::vendor, false, VendorPayload{Bytes(70000 - 100, 0x55)}}});
    f.b->receive(f.now, f.eb, f.ea, big);              // over 64 KiB: a lying length
    EXPECT_TRUE(f.wb.out.empty());
    EXPECT_EQ(f.b->stats().rx_invalid, before + 3);
    EXPECT_EQ(f.b->list_sas(f.now).size(), 1u);
}

} // namespace
} // namespace ravelin::ike

namespace ravelin::ike {
namespace {

TEST(IkeEngineOps, ReauthenticationIsMakeBeforeBreak)
{
    Options o;
    o.extra_conn_a = "reauth_time = 60s";
    Pair p(o);
    p.up();
    auto first = p.a.engine.list_sas(p.now);
    ASSERT_EQ(first.size(), 1u);
    p.a.sink.events.clear();
    p.b.sink.events.clear();
    // In steps of 100 ms: when the new outbound SA came, and when the old went.
    TimePoint switched{}, removed{};
    for (int i = 0; i < 630; ++i) {
        p.advance(100ms);
        const auto& ev = p.a.sink.events;
        if (switched == TimePoint{} && ev.size() >= 2) switched = p.now;
        if (removed == TimePoint{} && ev.size() >= 3) removed = p.now;
    }
    ASSERT_NE(removed, TimePoint{});
    // The old SAs outlive the new ones' install by the grace period, so that
    // packets sent on them before the switch still arrive.
    EXPECT_GE(removed - switched, 1s);   // reauth_grace
    EXPECT_LE(removed - switched, 2s);
    auto a = p.a.engine.list_sas(p.now);
    auto b = p.b.engine.list_sas(p.now);
    ASSERT_EQ(a.size(), 1u);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_NE(a[0].spi_i, first[0].spi_i);
    EXPECT_EQ(a[0].spi_i, b[0].spi_i);
    expect_matching_children(p.a.sink, p.b.sink, 1);
    // The new Child SA came before the old one went, on both sides: both
    // halves installed, then the old ones removed.
    for (const auto* ev : {&p.a.sink.events, &p.b.sink.events}) {
        ASSERT_EQ(ev->size(), 4u) << fmt::format("{}", fmt::join(*ev, ", "));
        EXPECT_TRUE((*ev)[0].starts_with("+in"));
        EXPECT_TRUE((*ev)[1].starts_with("+out"));
        EXPECT_TRUE((*ev)[2].starts_with("-out"));
        EXPECT_TRUE((*ev)[3].starts_with("-in"));
    }
}

} // namespace
} // namespace ravelin::ike

namespace ravelin::ike {
namespace {

TEST(IkeEngineOps, PfsDemandedButNotConfiguredIsNoProposalChosen)
{
    Options o;
    o.esp_a = "aes256gcm16-x25519";   // A rekeys with a KE
    o.esp_b = "aes256gcm16";          // B has no PFS configured
    Pair p(o);
    p.up();                           // IKE_AUTH has no KE: fine
    expect_matching_children(p.a.sink, p.b.sink, 1);
    auto spi = p.a.sink.in.begin()->first;
    std::string err;
    ASSERT_TRUE(p.a.engine.rekey_child(p.now, "gw", "net", err)) << err;
    p.pump();
    // Refused by name; the old Child SA stays in use on both sides.
    expect_matching_children(p.a.sink, p.b.sink, 1);
    EXPECT_EQ(p.a.sink.in.begin()->first, spi);
    EXPECT_EQ(p.a.engine.diagnose()[0].failure, "NO_PROPOSAL_CHOSEN");
    EXPECT_EQ(p.b.engine.diagnose()[0].failed_phase, Phase::child);
}

} // namespace
} // namespace ravelin::ike

// --- counters for metrics (EngineStats::messages, failures) --------------------

namespace ravelin::ike {
namespace {

TEST(IkeEngineStats, MessagesAreCountedPerExchangeAndDirection)
{
    Pair p;
    p.up();
    const auto& a = p.a.engine.stats();
    const auto& b = p.b.engine.stats();
    for (std::size_t x : {0u, 1u}) {   // one IKE_SA_INIT and one IKE_AUTH each way
        EXPECT_EQ(a.messages[x].out_sent, 1u) << exchange_names[x];
        EXPECT_EQ(a.messages[x].in_processed, 1u) << exchange_names[x];
        EXPECT_EQ(b.messages[x].out_sent, 1u) << exchange_names[x];
        EXPECT_EQ(b.messages[x].in_processed, 1u) << exchange_names[x];
    }
    uint64_t sent = 0, received = 0;
    for (const auto& m : a.messages) {
        sent += m.out_sent + m.out_retransmit;
        received += m.in_processed + m.in_invalid;
    }
    EXPECT_EQ(sent, a.tx_messages);
    EXPECT_EQ(received, a.rx_messages);
    EXPECT_EQ(exchange_index(37), 3u);
    EXPECT_EQ(exchange_index(0), 4u);
    EXPECT_EQ(exchange_index(38), 4u);
}

TEST(IkeEngineStats, RetransmissionsAndInvalidMessagesHaveTheirOwnCounts)
{
    Pair p;
    std::string err;
    ASSERT_TRUE(p.a.engine.initiate(p.now, "gw", "net", err));
    int auth_seen = 0;
    p.pump([&](const Datagram& d, bool from_a) {
        Header h;
        if (!from_a && parse_header(d.data, h) && h.exchange == ExchangeType::ike_auth) return ++auth_seen > 1;
        return true;
    });
    p.advance(2s);
    expect_matching_children(p.a.sink, p.b.sink, 1);
    EXPECT_EQ(p.a.engine.stats().messages[1].out_retransmit, 1u);   // IKE_AUTH request again
    EXPECT_EQ(p.b.engine.stats().messages[1].out_retransmit, 1u);   // cached response again
    EXPECT_EQ(p.b.engine.stats().messages[1].out_sent, 1u);

    const Bytes junk(40, 0x25);   // 0x25 = 37 at the exchange type's offset
    p.b.engine.receive(p.now, Endpoint{IpAddress::v4(0xc6120002), 500}, Endpoint{IpAddress::v4(0xc6120001), 500}, junk);
    EXPECT_EQ(p.b.engine.stats().messages[3].in_invalid, 1u);
}

TEST(IkeEngineStats, FailuresAreCountedByPhaseAndBoundedReason)
{
    Options o;
    o.psk_b = "another secret entirely";
    Pair p(o);
    p.up();
    auto count = [](const EngineStats& s, Phase ph, const std::string& r) {
        auto it = s.failures.find({ph, r});
        return it == s.failures.end() ? uint64_t(0) : it->second;
    };
    EXPECT_EQ(count(p.a.engine.stats(), Phase::ike_auth, "AUTHENTICATION_FAILED"), 1u);
    EXPECT_EQ(count(p.b.engine.stats(), Phase::ike_auth, "AUTHENTICATION_FAILED"), 1u);
    EXPECT_EQ(p.b.engine.stats().negotiation_failures, 1u);

    Options q;
    q.ts_b_remote = "198.19.9.0/24";
    Pair t(q);
    t.up();
    EXPECT_EQ(count(t.a.engine.stats(), Phase::child, "TS_UNACCEPTABLE"), 1u);
    EXPECT_EQ(count(t.b.engine.stats(), Phase::child, "TS_UNACCEPTABLE"), 1u);

    EXPECT_EQ(failure_reason(Phase::ike_auth, "AUTHENTICATION_FAILED: bad signature"), "AUTHENTICATION_FAILED");
    EXPECT_EQ(failure_reason(Phase::ike_auth, "identity 'x' is not the configured 'y'"), "AUTHENTICATION_FAILED");
    EXPECT_EQ(failure_reason(Phase::ike_sa_init, "timeout"), "timeout");
    EXPECT_EQ(failure_reason(Phase::child, "peer widened TSi"), "other");
    EXPECT_EQ(failure_reason(Phase::child, "NO_PROPOSAL_CHOSEN"), "NO_PROPOSAL_CHOSEN");
    EXPECT_EQ(phase_name(Phase::child), "child");
}

} // namespace
} // namespace ravelin::ike

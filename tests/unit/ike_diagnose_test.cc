// Engine::diagnose() (controlplane/ike/engine_diagnose.cc): two engines over
// an in-memory wire, each failure provoked with one side's configuration
// off, and both sides' diagnoses checked: phase, exchange, notify, who
// refused, our role, the peer's proposals or selectors, and the hint.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "engine.hh"
#include "ike_fakes.hh"

namespace ravelin::ike {
namespace {

using namespace std::chrono_literals;

class NullSink final : public SaSink {
public:
    unsigned in = 0, out = 0;
    void install_inbound(const ChildSaRecord&) override { ++in; }
    void install_outbound(const ChildSaRecord&) override { ++out; }
    void remove_inbound(const ChildSaRecord&) override { --in; }
    void remove_outbound(const ChildSaRecord&) override { --out; }
};

struct SideConfig {
    std::string me, peer;
    std::string my_id, peer_id;
    std::string ike = "aes256gcm16-prfsha256-x25519";
    std::string esp = "aes256gcm16-x25519";
    std::string psk = "a shared secret of some length";
    std::string lts, rts;
    std::string secret_ids;      // default: my_id and peer_id

    std::string text() const
    {
        fakes::PskSide side{.me = me, .peer = peer, .my_id = my_id, .peer_id = peer_id, .ike = ike, .psk = psk,
                            .secret_ids = secret_ids};
        side.daemon = "  retransmit_timeout = 1s\n  retransmit_tries = 2";
        side.conn_extra = "    rekey_time = 0\n    keyingtries = 1";
        side.children = {{.local_ts = lts, .remote_ts = rts, .esp = esp, .extra = "        rekey_time = 0"}};
        return side.text();
    }
};

SideConfig config_a()
{
    return {"198.18.0.1", "198.18.0.2", "gw-a", "gw-b", "aes256gcm16-prfsha256-x25519", "aes256gcm16-x25519",
            "a shared secret of some length", "198.19.1.0/24", "198.19.2.0/24", ""};
}

SideConfig config_b()
{
    return {"198.18.0.2", "198.18.0.1", "gw-b", "gw-a", "aes256gcm16-prfsha256-x25519", "aes256gcm16-x25519",
            "a shared secret of some length", "198.19.2.0/24", "198.19.1.0/24", ""};
}

IkeConfig parse(const SideConfig& c) { return fakes::parse_config(c.text()); }

struct Side {
    fakes::Wire wire;
    NullSink sink;
    fakes::SeededRng rng;
    Engine engine;
    Side(const SideConfig& c, uint64_t seed) : rng(seed), engine(parse(c), wire, sink, rng) {}
    Diagnosis diag() const
    {
        auto all = engine.diagnose();
        EXPECT_EQ(all.size(), 1u);
        return all.empty() ? Diagnosis{} : all[0];
    }
};

struct Pair {
    Side a, b;
    TimePoint now = TimePoint{} + 1000s;
    Pair(const SideConfig& ca, const SideConfig& cb) : a(ca, 1), b(cb, 2) {}

    void pump() { fakes::pump(a.wire, a.engine, b.wire, b.engine, now, 50); }
    // `from` initiates connection gw with child net.
    void up(Side& from)
    {
        std::string err;
        ASSERT_TRUE(from.engine.initiate(now, "gw", "net", err)) << err;
        pump();
    }
};

// Diagnoses of one failure, seen from the side that initiated and the one
// that responded.
struct Seen {
    Diagnosis initiator, responder;
};

Seen provoke(SideConfig ca, SideConfig cb, bool a_initiates)
{
    Pair p(ca, cb);
    p.up(a_initiates ? p.a : p.b);
    Side& i = a_initiates ? p.a : p.b;
    Side& r = a_initiates ? p.b : p.a;
    return {i.diag(), r.diag()};
}

class BothRoles : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Diagnose, BothRoles, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "OddSideInitiates" : "OddSideResponds"; });

bool has(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

// The side with the odd configuration is A; GetParam(): A initiates.
TEST_P(BothRoles, IkeProposalMismatchIsPhase1NoProposalChosen)
{
    auto ca = config_a();
    ca.ike = "aes128-sha256-modp2048";
    auto s = provoke(ca, config_b(), GetParam());
    for (const auto* d : {&s.initiator, &s.responder}) {
        EXPECT_EQ(d->phase1, "down");
        EXPECT_EQ(d->phase_number, 1);
        EXPECT_EQ(d->exchange, "IKE_SA_INIT");
        EXPECT_EQ(d->notify, "NO_PROPOSAL_CHOSEN");
    }
    EXPECT_TRUE(s.initiator.by_peer);
    EXPECT_TRUE(s.initiator.as_initiator);
    EXPECT_FALSE(s.responder.by_peer);
    EXPECT_FALSE(s.responder.as_initiator);
    // The responder saw the offer and names both sides in keywords.
    std::string offered = GetParam() ? "aes128-sha256-modp2048" : "aes256gcm16-prfsha256-x25519";
    std::string accepted = GetParam() ? "aes256gcm16-prfsha256-x25519" : "aes128-sha256-modp2048";
    EXPECT_EQ(s.responder.peer_ike_keywords, offered);
    EXPECT_FALSE(s.responder.peer_ike_answered);
    EXPECT_EQ(s.responder.hint, "peer proposed " + offered + "; we accept " + accepted +
                                    ": align the IKE proposals (`proposals`)");
    EXPECT_TRUE(has(s.initiator.hint, "accepts none of our IKE proposals (" + offered + ")")) << s.initiator.hint;
}

TEST_P(BothRoles, WrongPskIsPhase1AuthenticationFailed)
{
    auto ca = config_a();
    ca.psk = "another secret entirely";
    auto s = provoke(ca, config_b(), GetParam());
    for (const auto* d : {&s.initiator, &s.responder}) {
        EXPECT_EQ(d->phase1, "down");
        EXPECT_EQ(d->phase_number, 1);
        EXPECT_EQ(d->exchange, "IKE_AUTH");
        EXPECT_EQ(d->notify, "AUTHENTICATION_FAILED");
        EXPECT_EQ(d->failed_phase, Phase::ike_auth);
    }
    // The responder checks first and refuses; the initiator hears it.
    EXPECT_TRUE(s.initiator.by_peer);
    EXPECT_FALSE(s.responder.by_peer);
    EXPECT_EQ(s.responder.reason, "pre-shared key mismatch");
    EXPECT_TRUE(has(s.responder.hint, "secrets differ")) << s.responder.hint;
    EXPECT_TRUE(has(s.initiator.hint, "the peer refused our authentication")) << s.initiator.hint;
    EXPECT_TRUE(has(s.initiator.hint, "pre-shared key")) << s.initiator.hint;
}

TEST_P(BothRoles, WrongIdentityIsPhase1AuthenticationFailedNamingTheIds)
{
    // A expects the peer to be "somebody-else" (the PSK is found by A's own id).
    auto ca = config_a();
    ca.peer_id = "somebody-else";
    ca.secret_ids = "id-a = gw-a";
    auto s = provoke(ca, config_b(), GetParam());
    const Diagnosis& a = GetParam() ? s.initiator : s.responder;
    const Diagnosis& b = GetParam() ? s.responder : s.initiator;
    EXPECT_EQ(a.phase_number, 1);
    EXPECT_EQ(a.exchange, "IKE_AUTH");
    EXPECT_EQ(a.notify, "AUTHENTICATION_FAILED");
    EXPECT_FALSE(a.by_peer);
    EXPECT_EQ(a.reason, "identity 'gw-b' is not the configured 'somebody-else'");
    EXPECT_TRUE(has(a.hint, "remote.id")) << a.hint;
    EXPECT_EQ(a.phase1, "down");
    // B hears it: in the IKE_AUTH response (A responded), or in the
    // INFORMATIONAL the initiator sends after refusing the response.
    EXPECT_EQ(b.phase_number, 1);
    EXPECT_EQ(b.notify, "AUTHENTICATION_FAILED");
    EXPECT_TRUE(b.by_peer);
    EXPECT_EQ(b.phase1, "down");
    EXPECT_TRUE(has(b.hint, "the peer refused our authentication")) << b.hint;
}

TEST_P(BothRoles, EspProposalMismatchIsPhase2WithTheIkeSaUp)
{
    auto ca = config_a();
    ca.esp = "aes128-sha256";
    Pair p(ca, config_b());
    p.up(GetParam() ? p.a : p.b);
    Side& i = GetParam() ? p.a : p.b;
    Side& r = GetParam() ? p.b : p.a;
    for (Side* side : {&i, &r}) {
        auto d = side->diag();
        EXPECT_EQ(d.phase1, "established");
        EXPECT_EQ(d.phase2, "net: not installed");
        EXPECT_EQ(d.phase_number, 2);
        EXPECT_EQ(d.exchange, "IKE_AUTH");
        EXPECT_EQ(d.notify, "NO_PROPOSAL_CHOSEN");
        EXPECT_EQ(d.child, "net");
        EXPECT_EQ(side->sink.in, 0u);
    }
    auto di = i.diag(), dr = r.diag();
    EXPECT_TRUE(di.by_peer);
    EXPECT_FALSE(dr.by_peer);
    // IKE_AUTH's Child SA has no KE: the offer comes without the DH group.
    std::string offered = GetParam() ? "aes128-sha256" : "aes256gcm16";
    std::string accepted = GetParam() ? "aes256gcm16-x25519" : "aes128-sha256";
    EXPECT_EQ(dr.peer_esp_keywords, offered);
    EXPECT_EQ(dr.hint, "peer proposed " + offered + "; we accept " + accepted +
                           " for 'net': align the ESP proposals (`esp_proposals`)");
    // The initiator names its configured proposals.
    std::string configured = GetParam() ? ca.esp : config_b().esp;
    EXPECT_TRUE(has(di.hint, "accepts none of our ESP proposals for 'net' (" + configured + ")")) << di.hint;
}

TEST_P(BothRoles, DisjointSelectorsArePhase2TsUnacceptable)
{
    auto ca = config_a();
    ca.rts = "198.19.9.0/24";
    Pair p(ca, config_b());
    p.up(GetParam() ? p.a : p.b);
    auto di = (GetParam() ? p.a : p.b).diag();
    auto dr = (GetParam() ? p.b : p.a).diag();
    for (const auto* d : {&di, &dr}) {
        EXPECT_EQ(d->phase1, "established");
        EXPECT_EQ(d->phase_number, 2);
        EXPECT_EQ(d->notify, "TS_UNACCEPTABLE");
        EXPECT_EQ(d->child, "net");
    }
    EXPECT_TRUE(di.by_peer);
    EXPECT_FALSE(dr.by_peer);
    // A proposes TSi 198.19.1.0/24, TSr 198.19.9.0/24; B the mirror of its own.
    std::string peer_ts = GetParam() ? "198.19.1.0/24 === 198.19.9.0/24" : "198.19.2.0/24 === 198.19.1.0/24";
    EXPECT_EQ(dr.peer_ts, peer_ts);
    EXPECT_TRUE(has(dr.hint, "peer proposed " + peer_ts + "; we have net: ")) << dr.hint;
    EXPECT_TRUE(has(dr.hint, "mirror")) << dr.hint;
    EXPECT_TRUE(has(di.hint, "accepts none of our selectors for 'net'")) << di.hint;
}

TEST(Diagnose, NoAnswerIsAPhase1TimeoutWithAReachabilityHint)
{
    Pair p(config_a(), config_b());
    std::string err;
    ASSERT_TRUE(p.a.engine.initiate(p.now, "gw", "net", err)) << err;
    for (int i = 0; i < 40; ++i) {   // the peer never answers
        p.a.wire.out.clear();
        p.now += 1s;
        p.a.engine.tick(p.now);
    }
    auto d = p.a.diag();
    EXPECT_EQ(d.phase_number, 1);
    EXPECT_EQ(d.exchange, "IKE_SA_INIT");
    EXPECT_EQ(d.notify, "");
    EXPECT_EQ(d.reason, "timeout");
    EXPECT_TRUE(has(d.hint, "UDP 500/4500")) << d.hint;
    EXPECT_GT(d.failed_at, TimePoint{} + 1000s);
}

TEST(Diagnose, SuccessClearsTheFailureAndHealthyHasNoFailure)
{
    auto ca = config_a();
    ca.esp = "aes128-sha256";
    Pair p(ca, config_b());
    p.up(p.a);
    EXPECT_EQ(p.a.diag().phase_number, 2);
    // Fixed by a reload: the next attempt succeeds and the failure goes.
    p.a.engine.reload(p.now, parse(config_a()));
    p.pump();
    p.up(p.a);
    EXPECT_EQ(p.a.diag().phase2, "net: INSTALLED");
    EXPECT_EQ(p.a.diag().phase_number, 0);
    EXPECT_EQ(p.a.diag().failure, "");
    // Nothing failed on a fresh pair; a connection without SA gets a hint.
    Pair q(config_a(), config_b());
    auto d0 = q.a.diag();
    EXPECT_EQ(d0.phase1, "down");
    EXPECT_EQ(d0.phase_number, 0);
    EXPECT_TRUE(has(d0.hint, "ravelinctl initiate --ike gw")) << d0.hint;
    q.up(q.a);
    auto d = q.a.diag();
    EXPECT_EQ(d.phase1, "established");
    EXPECT_EQ(d.phase2, "net: INSTALLED");
    EXPECT_EQ(d.phase_number, 0);
    EXPECT_EQ(d.failure, "");
    EXPECT_EQ(d.hint, "");
    ASSERT_EQ(d.children.size(), 1u);
    EXPECT_EQ(d.children[0].state, "INSTALLED");
    EXPECT_EQ(d.children[0].esp_proposals, "aes256gcm16-x25519");
    EXPECT_EQ(d.children[0].local_ts, "198.19.1.0/24");
    EXPECT_EQ(d.our_ike_keywords, "aes256gcm16-prfsha256-x25519");
}

} // namespace
} // namespace ravelin::ike

// ravelin-iked's control commands (controlplane/iked/commands.hh) on real
// engines: two engines joined by an in-memory wire, commands sent to one of
// them as the control socket would, and the JSON replies checked after each
// exchange.
#include <gtest/gtest.h>


#include <fmt/format.h>

#include "commands.hh"
#include "ike_fakes.hh"
#include "logging.hh"

namespace ravelin::iked {
namespace {

using nlohmann::json;

using ike::fakes::Datagram;
using ike::fakes::Wire;
using ike::fakes::SeededRng;

class CountingSink final : public ike::SaSink {
public:
    int installed = 0, removed = 0;
    void install_inbound(const ike::ChildSaRecord&) override { ++installed; }
    void install_outbound(const ike::ChildSaRecord&) override { ++installed; }
    void remove_inbound(const ike::ChildSaRecord&) override { ++removed; }
    void remove_outbound(const ike::ChildSaRecord&) override { ++removed; }
};

std::string side(const char* me, const char* peer, const char* my_id, const char* peer_id, const char* lts,
                 const char* rts)
{
    return ike::fakes::PskSide{.me = me, .peer = peer, .my_id = my_id, .peer_id = peer_id,
                               .psk = "a test secret, long enough",
                               .children = {{.local_ts = lts, .remote_ts = rts, .esp = "aes256gcm16"}}}
        .text();
}

ike::IkeConfig parse(const std::string& text) { return ike::fakes::parse_config(text); }

struct Side {
    Wire wire;
    CountingSink sink;
    SeededRng rng;
    ike::Engine engine;
    Side(ike::IkeConfig c, uint64_t seed) : rng(seed), engine(std::move(c), wire, sink, rng) {}
};

class IkedCommands : public ::testing::Test {
protected:
    IkedCommands()
        : a(parse(side("198.18.0.1", "198.18.0.2", "gw-a", "gw-b", "198.19.1.0/24", "198.19.2.0/24")), 1),
          b(parse(side("198.18.0.2", "198.18.0.1", "gw-b", "gw-a", "198.19.2.0/24", "198.19.1.0/24")), 2)
    {
        std::string error;
        EXPECT_TRUE(logging.start({}, {}, error)) << error;
        CommandHooks hooks;
        hooks.reload = [this](std::vector<std::string>& touched, std::string& error) {
            ++reloads;
            if (reload_error.empty()) {
                touched = {"gw"};
                return true;
            }
            error = reload_error;
            return false;
        };
        hooks.stats = [](json& out) { out["extra"] = 42; };
        commands = std::make_unique<Commands>(a.engine, logging, hooks);
    }

    json run(const json& request) { return commands->handle(request); }

    // Delivers what the engines send until the wire is quiet.
    void pump() { ike::fakes::pump(a.wire, a.engine, b.wire, b.engine, ike::Clock::now(), 100); }

    Side a, b;
    Logging logging;
    std::unique_ptr<Commands> commands;
    int reloads = 0;
    std::string reload_error;
};

TEST_F(IkedCommands, ListConnsDescribesTheConfig)
{
    auto r = run({{"command", "list-conns"}});
    ASSERT_EQ(r["connections"].size(), 1u) << r.dump();
    const auto& c = r["connections"][0];
    EXPECT_EQ(c["name"], "gw");
    EXPECT_EQ(c["local_addrs"], json::array({"198.18.0.1"}));
    EXPECT_EQ(c["remote_addrs"], json::array({"198.18.0.2"}));
    EXPECT_EQ(c["proposals"], json::array({"AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519"}));
    EXPECT_EQ(c["local"]["auth"], "psk");
    EXPECT_EQ(c["local"]["id"], "gw-a");
    EXPECT_EQ(c["remote"]["id"], "gw-b");
    ASSERT_EQ(c["children"].size(), 1u);
    const auto& ch = c["children"][0];
    EXPECT_EQ(ch["name"], "net");
    EXPECT_EQ(ch["mode"], "tunnel");
    EXPECT_EQ(ch["local_ts"], json::array({"198.19.1.0/24"}));
    EXPECT_EQ(ch["remote_ts"], json::array({"198.19.2.0/24"}));
    EXPECT_EQ(ch["start_action"], "none");
    EXPECT_EQ(ch["rekey_time_s"], 3600);
    // No keys or secrets anywhere in the reply.
    EXPECT_EQ(r.dump().find("a test secret"), std::string::npos);
}

TEST_F(IkedCommands, InitiateRekeyTerminateThroughTheEngine)
{
    EXPECT_EQ(run({{"command", "list-sas"}}), (json{{"sas", json::array()}}));

    EXPECT_EQ(run({{"command", "initiate"}, {"connection", "gw"}}), (json{{"ok", true}}));
    pump();
    auto r = run({{"command", "list-sas"}});
    ASSERT_EQ(r["sas"].size(), 1u) << r.dump();
    const auto& sa = r["sas"][0];
    EXPECT_EQ(sa["name"], "gw");
    EXPECT_EQ(sa["state"], "ESTABLISHED");
    EXPECT_EQ(sa["initiator"], true);
    EXPECT_EQ(sa["spi_i"].get<std::string>().size(), 16u);
    EXPECT_EQ(sa["spi_r"].get<std::string>().size(), 16u);
    EXPECT_EQ(sa["local"]["addr"], "198.18.0.1");
    EXPECT_EQ(sa["remote"]["addr"], "198.18.0.2");
    EXPECT_EQ(sa["suite"]["text"], "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519");
    EXPECT_EQ(sa["suite"]["encr"], "AES_GCM_16");
    EXPECT_EQ(sa["suite"]["integ"], nullptr);
    ASSERT_EQ(sa["children"].size(), 1u);
    const auto& child = sa["children"][0];
    EXPECT_EQ(child["name"], "net");
    EXPECT_EQ(child["state"], "INSTALLED");
    EXPECT_EQ(child["suite"]["text"], "AES_GCM_16-256");
    EXPECT_EQ(child["local_ts"], json::array({"198.19.1.0/24"}));
    EXPECT_EQ(child["remote_ts"], json::array({"198.19.2.0/24"}));
    const std::string spi_in = child["spi_in"];
    EXPECT_EQ(spi_in.size(), 8u);
    EXPECT_EQ(a.sink.installed, 2);

    // Child rekey: a new inbound SPI.
    EXPECT_EQ(run({{"command", "rekey"}, {"connection", "gw"}, {"child", "net"}}), (json{{"ok", true}}));
    pump();
    r = run({{"command", "list-sas"}});
    ASSERT_EQ(r["sas"].size(), 1u) << r.dump();
    bool fresh = false;
    for (const auto& c : r["sas"][0]["children"])
        if (c["state"] == "INSTALLED" && c["spi_in"] != spi_in) fresh = true;
    EXPECT_TRUE(fresh) << r.dump();

    // IKE rekey: new SPIs for the IKE SA.
    const std::string spi_i = r["sas"][0]["spi_i"];
    EXPECT_EQ(run({{"command", "rekey"}, {"connection", "gw"}}), (json{{"ok", true}}));
    pump();
    r = run({{"command", "list-sas"}});
    bool rekeyed = false;
    for (const auto& s : r["sas"])
        if (s["state"] == "ESTABLISHED" && s["spi_i"] != spi_i) rekeyed = true;
    EXPECT_TRUE(rekeyed) << r.dump();

    EXPECT_EQ(run({{"command", "terminate"}, {"connection", "gw"}}), (json{{"ok", true}}));
    pump();
    EXPECT_EQ(run({{"command", "list-sas"}}), (json{{"sas", json::array()}}));
    EXPECT_EQ(a.sink.removed, a.sink.installed) << "every installed SA removed";

    auto stats = run({{"command", "stats"}});
    EXPECT_GE(stats["engine"]["ike_established"].get<uint64_t>(), 1u);
    EXPECT_EQ(stats["extra"], 42);
    EXPECT_TRUE(stats["log"]["levels"].contains("ike"));
}

TEST_F(IkedCommands, ErrorsAreReplies)
{
    auto err = [this](const json& request) {
        auto r = run(request);
        EXPECT_TRUE(r.contains("error")) << request.dump() << " -> " << r.dump();
        return r.value("error", std::string());
    };
    EXPECT_NE(err({{"command", "initiate"}, {"connection", "nope"}}).find("nope"), std::string::npos);
    EXPECT_NE(err({{"command", "initiate"}}).find("connection"), std::string::npos);
    err({{"command", "terminate"}, {"connection", "nope"}});
    err({{"command", "rekey"}, {"connection", "gw"}});   // nothing established to rekey
    EXPECT_NE(err({{"command", "diagnose"}, {"connection", "nope"}}).find("nope"), std::string::npos);
    EXPECT_NE(err({{"command", "frobnicate"}}).find("known:"), std::string::npos);
    EXPECT_NE(err({{"command", "log-level"}, {"subsystem", "ike"}}).find("level"), std::string::npos);
    EXPECT_NE(err({{"command", "log-level"}, {"subsystem", "xyz"}, {"level", "debug"}}).find("xyz"),
              std::string::npos);
    EXPECT_NE(err({{"command", "log-level"}, {"subsystem", "ike"}, {"level", "loud"}}).find("loud"),
              std::string::npos);
    // A field of the wrong type throws; the control server turns that into
    // a "bad request" reply (iked_control_test).
    EXPECT_ANY_THROW(run({{"command", "initiate"}, {"connection", 7}}));
}

TEST_F(IkedCommands, ReloadLogLevelDiagnose)
{
    EXPECT_EQ(run({{"command", "reload"}}), (json{{"ok", true}, {"touched", {"gw"}}}));
    reload_error = "test.conf:3: unknown key 'connections.gw.bogus'";
    EXPECT_EQ(run({{"command", "reload"}})["error"], reload_error);
    EXPECT_EQ(reloads, 2);

    auto r = run({{"command", "log-level"}, {"subsystem", "net"}, {"level", "debug"}});
    EXPECT_EQ(r["ok"], true);
    EXPECT_EQ(r["levels"]["net"], "debug");
    EXPECT_EQ(spdlog::get("net")->level(), spdlog::level::debug);
    run({{"command", "log-level"}, {"subsystem", "all"}, {"level", "warning"}});
    EXPECT_EQ(spdlog::get("ike")->level(), spdlog::level::warn);
    EXPECT_EQ(spdlog::get("ctl")->level(), spdlog::level::warn);

    r = run({{"command", "diagnose"}});
    ASSERT_EQ(r["diagnoses"].size(), 1u) << r.dump();
    EXPECT_EQ(r["diagnoses"][0]["connection"], "gw");
    EXPECT_EQ(run({{"command", "diagnose"}, {"connection", "gw"}})["diagnoses"].size(), 1u);
}

// diagnose's JSON: the failure in detail, both sides' proposals as
// keywords, children, and the data-plane drops hook (null without it).
TEST(IkedDiagnoseJson, FailureProposalsChildrenAndDrops)
{
    ike::Diagnosis d;
    d.connection = "gw";
    d.phase1 = "down";
    d.phase2 = "net: not installed";
    d.failed_phase = ike::Phase::ike_sa_init;
    d.failure = d.notify = "NO_PROPOSAL_CHOSEN";
    d.phase_number = 1;
    d.exchange = "IKE_SA_INIT";
    d.reason = "none of the peer's IKE proposals is acceptable";
    d.failed_at = ike::TimePoint{} + std::chrono::seconds(100);
    d.our_ike_keywords = "aes256gcm16-prfsha256-x25519";
    d.peer_ike_keywords = "aes128-sha1-modp1024";
    d.children.push_back({"net", "not installed", "aes256gcm16-x25519", "198.19.1.0/24", "198.19.2.0/24"});
    d.hint = "peer proposed aes128-sha1-modp1024; we accept aes256gcm16-prfsha256-x25519: align the IKE proposals";

    auto j = diagnoses_json({d}, ike::TimePoint{} + std::chrono::seconds(107))["diagnoses"][0];
    EXPECT_EQ(j["failed"], (json{{"phase", 1}, {"exchange", "IKE_SA_INIT"}, {"notify", "NO_PROPOSAL_CHOSEN"},
                                 {"reason", d.reason}, {"detected_by", "local"}, {"role", "responder"},
                                 {"child", nullptr}, {"seconds_ago", 7}}));
    EXPECT_EQ(j["failed_phase"], "IKE_SA_INIT");
    EXPECT_EQ(j["proposals"]["ours"], (json{{"ike", "aes256gcm16-prfsha256-x25519"},
                                            {"esp", {{"net", "aes256gcm16-x25519"}}}}));
    EXPECT_EQ(j["proposals"]["peer"], (json{{"ike", "aes128-sha1-modp1024"}, {"ike_seen", "offered"},
                                            {"esp", nullptr}, {"esp_seen", nullptr}}));
    EXPECT_EQ(j["children"][0]["state"], "not installed");
    EXPECT_EQ(j["hint"], d.hint);
    EXPECT_TRUE(j["dataplane_drops"].is_null());

    std::string asked;
    TunnelDropsFn drops = [&](const std::string& conn) {
        asked = conn;
        return json{{"policy_mismatch", 3}, {"replay", 1}};
    };
    j = diagnoses_json({d}, {}, drops)["diagnoses"][0];
    EXPECT_EQ(asked, "gw");
    EXPECT_EQ(j["dataplane_drops"], (json{{"policy_mismatch", 3}, {"replay", 1}}));
    EXPECT_TRUE(j["failed"]["seconds_ago"].is_null());   // no clock given

    d.phase_number = 0;   // nothing failed
    EXPECT_TRUE(diagnoses_json({d})["diagnoses"][0]["failed"].is_null());
}

TEST(IkedDiagnoseJson, TunnelDropsFromDataPlaneStats)
{
    const json stats = {{"tunnels", json::array({
        {{"connection", "gw"}, {"child", "net"}, {"direction", "in"}, {"drops", {{"replay", 2}, {"auth_failed", 1}}}},
        {{"connection", "gw"}, {"child", "voice"}, {"direction", "in"}, {"drops", {{"replay", 3}}}},
        {{"connection", "gw"}, {"child", "net"}, {"direction", "out"}, {"drops", {{"mtu_exceeded", 5}}}},
        {{"connection", "other"}, {"child", "net"}, {"direction", "in"}, {"drops", {{"replay", 100}}}},
        {{"connection", "gw"}, {"child", "bad"}, {"direction", "in"}, {"drops", {{"replay", "many"}}}},
    })}};
    EXPECT_EQ(tunnel_drops_from_stats(stats, "gw"), (json{{"replay", 5}, {"auth_failed", 1}, {"mtu_exceeded", 5}}));
    EXPECT_EQ(tunnel_drops_from_stats(stats, "idle"), json::object()) << "a tunnel without drops: none, not unknown";
    EXPECT_TRUE(tunnel_drops_from_stats(json{{"drops", json::object()}}, "gw").is_null()) << "no per-tunnel data";
    EXPECT_TRUE(tunnel_drops_from_stats(json::array(), "gw").is_null());
}

} // namespace
} // namespace ravelin::iked

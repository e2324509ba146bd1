// ravelin-iked's metrics (controlplane/iked/metrics.hh): snapshots of real
// engines rendered as Prometheus families, the data plane's stats JSON
// (good, partial and broken), and the endpoint itself over HTTP on
// 127.0.0.1 with a kernel-chosen port, with a daemon loop on its own thread
// and a fake data-plane control socket.
#include "metrics.hh"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include "ike_fakes.hh"
#include "logging.hh"
#include "ravelin/paths.hh"

namespace ravelin::iked {
namespace {

using nlohmann::json;
using ike::fakes::SeededRng;
using ike::fakes::Wire;

class NullSink final : public ike::SaSink {
public:
    void install_inbound(const ike::ChildSaRecord&) override {}
    void install_outbound(const ike::ChildSaRecord&) override {}
    void remove_inbound(const ike::ChildSaRecord&) override {}
    void remove_outbound(const ike::ChildSaRecord&) override {}
};

std::string side(const char* me, const char* peer, const char* my_id, const char* peer_id, const char* secret,
                 bool initiator)
{
    const char* lan_a[] = {"198.19.1.0/24", "198.19.3.0/24"};   // net, voice on the initiator's side
    const char* lan_b[] = {"198.19.2.0/24", "198.19.4.0/24"};
    auto mine = initiator ? lan_a : lan_b, theirs = initiator ? lan_b : lan_a;
    return ike::fakes::PskSide{.me = me, .peer = peer, .my_id = my_id, .peer_id = peer_id, .psk = secret,
                               .children = {{.name = "net", .local_ts = mine[0], .remote_ts = theirs[0],
                                             .esp = "aes256gcm16"},
                                            {.name = "voice", .local_ts = mine[1], .remote_ts = theirs[1],
                                             .esp = "aes256gcm16"}}}
        .text();
}

ike::IkeConfig parse(const std::string& text) { return ike::fakes::parse_config(text); }

struct Side {
    Wire wire;
    NullSink sink;
    SeededRng rng;
    ike::Engine engine;
    Side(ike::IkeConfig c, uint64_t seed) : rng(seed), engine(std::move(c), wire, sink, rng) {}
};

struct Pair {
    Side a, b;
    explicit Pair(const char* secret_b = "a test secret, long enough")
        : a(parse(side("198.18.0.1", "198.18.0.2", "gw-a", "gw-b", "a test secret, long enough", true)), 1),
          b(parse(side("198.18.0.2", "198.18.0.1", "gw-b", "gw-a", secret_b, false)), 2) {}
    void pump() { ike::fakes::pump(a.wire, a.engine, b.wire, b.engine, ike::Clock::now(), 100); }
};

std::string text_of(const std::vector<prometheus::MetricFamily>& f)
{
    return prometheus::TextSerializer().Serialize(f);
}

// The value of one sample line "name{labels} value", or -1 if absent.
double sample(const std::string& text, const std::string& series)
{
    auto pos = text.find("\n" + series + " ");
    if (pos == std::string::npos) return -1;
    return std::stod(text.substr(pos + series.size() + 2));
}

TEST(IkedMetrics, IkeFamiliesFromRealEngines)
{
    Pair p;
    std::string err;
    ASSERT_TRUE(p.a.engine.initiate(ike::Clock::now(), "gw", "net", err)) << err;
    p.pump();
    ASSERT_TRUE(p.a.engine.rekey_child(ike::Clock::now(), "gw", "net", err)) << err;
    p.pump();
    ASSERT_TRUE(p.a.engine.rekey_ike(ike::Clock::now(), "gw", err)) << err;
    p.pump();

    IkeSnapshot s = snapshot_of(p.a.engine, ike::Clock::now());
    s.reloads = 3;
    const std::string t = text_of(render_ike(s));
    const auto info = t.find("\nravelin_build_info{version=\"");
    ASSERT_NE(info, std::string::npos) << t;
    EXPECT_EQ(t.substr(t.find('}', info), 4), "} 1\n");
    EXPECT_EQ(t.find("ravelin_build_info{version=\"unknown\"}"), std::string::npos);
    EXPECT_EQ(sample(t, R"(ravelin_ike_sas{state="ESTABLISHED"})"), 1);
    EXPECT_EQ(sample(t, R"(ravelin_ike_sas{state="CONNECTING"})"), 0);
    EXPECT_EQ(sample(t, R"(ravelin_child_sas{state="INSTALLED"})"), 1);
    EXPECT_EQ(sample(t, R"(ravelin_tunnel_up{connection="gw",child="net"})"), 1);
    EXPECT_EQ(sample(t, R"(ravelin_tunnel_up{connection="gw",child="voice"})"), 0);
    EXPECT_EQ(sample(t, "ravelin_ike_sa_rekeys_total"), 1);
    EXPECT_EQ(sample(t, "ravelin_child_sa_rekeys_total"), 1);
    EXPECT_EQ(sample(t, "ravelin_ike_sa_established_total"), 1);
    EXPECT_EQ(sample(t, "ravelin_child_sa_installed_total"), 2);
    EXPECT_EQ(sample(t, "ravelin_ike_sas_half_open"), 0);
    EXPECT_EQ(sample(t, R"(ravelin_ike_messages_total{exchange="IKE_SA_INIT",direction="out",result="sent"})"), 1);
    EXPECT_EQ(sample(t, R"(ravelin_ike_messages_total{exchange="IKE_AUTH",direction="in",result="processed"})"), 1);
    // Two rekeys and the old SAs' deletes: four CREATE_CHILD_SA / INFORMATIONAL requests out, their answers in.
    EXPECT_EQ(sample(t, R"(ravelin_ike_messages_total{exchange="CREATE_CHILD_SA",direction="out",result="sent"})"), 2);
    EXPECT_EQ(sample(t, R"(ravelin_ike_messages_total{exchange="CREATE_CHILD_SA",direction="in",result="processed"})"), 2);
    EXPECT_EQ(sample(t, R"(ravelin_iked_reloads_total{result="ok"})"), 3);
    EXPECT_EQ(sample(t, R"(ravelin_ike_negotiation_failures_total{phase="ike_auth",reason="AUTHENTICATION_FAILED"})"), 0);
    EXPECT_NE(t.find("# TYPE ravelin_ike_messages_total counter"), std::string::npos);
    EXPECT_NE(t.find("# TYPE ravelin_ike_sas gauge"), std::string::npos);
    ASSERT_EQ(s.reqids.size(), 1u);
    EXPECT_EQ(s.reqids.begin()->second, (TunnelKey{"gw", "net"}));
}

TEST(IkedMetrics, AuthenticationFailureByPhaseAndReason)
{
    Pair p("not the same secret at all");
    std::string err;
    ASSERT_TRUE(p.a.engine.initiate(ike::Clock::now(), "gw", "net", err)) << err;
    p.pump();
    for (auto* side : {&p.a, &p.b}) {
        const std::string t = text_of(render_ike(snapshot_of(side->engine, ike::Clock::now())));
        EXPECT_EQ(sample(t, R"(ravelin_ike_negotiation_failures_total{phase="ike_auth",reason="AUTHENTICATION_FAILED"})"), 1) << t;
        EXPECT_EQ(sample(t, "ravelin_ike_auth_failures_total"), 1);
        EXPECT_EQ(sample(t, R"(ravelin_ike_sas{state="ESTABLISHED"})"), 0);
    }
}

json dataplane_stats(uint64_t in_packets, uint64_t spi_in, bool busy)
{
    json worker_stats = {{"rx_packets", 100}, {"tx_packets", 90}};
    json stats = {{"rx_packets", 100}, {"tx_packets", 90}, {"encrypted", 40}, {"decrypted", 50}};
    if (busy) {   // a data plane that counts these (the older one did not)
        worker_stats["busy_cycles"] = 250;
        worker_stats["poll_cycles"] = 1000;
        worker_stats["spd_cache_misses"] = 17;
        stats.update({{"handoff_out", 6}, {"handoff_in", 4}, {"events_raised", 9}, {"events_lost", 2},
                      {"acquires_raised", 5}, {"acquires_lost", 1}});
    }
    return json{
        {"drops", {{"no_sa", 3}, {"replay", 0}}},
        {"stats", stats},
        {"workers", json::array({{{"worker", 0}, {"stats", worker_stats}}})},
        {"ports", json::array({{{"name", "outside"}, {"port", 0}, {"ipackets", 7}, {"opackets", 8},
                                {"imissed", 1}, {"ierrors", 2}, {"oerrors", 0}, {"rx_nombuf", 0}}})},
        {"sas", json::array({{{"spi", spi_in}, {"direction", "in"}, {"reqid", 1}, {"packets", in_packets},
                              {"bytes", in_packets * 100}},
                             {{"spi", 0x2222}, {"direction", "out"}, {"reqid", 1}, {"packets", 5}, {"bytes", 500}},
                             {{"spi", 0x3333}, {"direction", "out"}, {"reqid", 99}, {"packets", 5}, {"bytes", 500}}})},
    };
}

TEST(IkedMetrics, DataPlaneFamiliesAndTunnelsAcrossARekey)
{
    const std::map<uint32_t, TunnelKey> reqids{{1, {"gw", "net"}}};
    TunnelCounters tunnels;
    std::string t = text_of(render_dataplane(dataplane_stats(10, 0x1111, true), reqids, tunnels));
    EXPECT_EQ(sample(t, "ravelin_dataplane_up"), 1) << t;
    EXPECT_EQ(sample(t, R"(ravelin_dataplane_drops_total{reason="no_sa"})"), 3);
    EXPECT_EQ(sample(t, R"(ravelin_dataplane_packets_total{action="decrypted"})"), 50);
    EXPECT_EQ(sample(t, R"(ravelin_worker_busy_cycles_total{worker="0"})"), 250);
    EXPECT_EQ(sample(t, R"(ravelin_worker_poll_cycles_total{worker="0"})"), 1000);
    EXPECT_EQ(sample(t, R"(ravelin_worker_spd_cache_misses_total{worker="0"})"), 17);
    EXPECT_EQ(sample(t, R"(ravelin_dataplane_packets_total{action="handoff_out"})"), 6);
    EXPECT_EQ(sample(t, R"(ravelin_dataplane_packets_total{action="handoff_in"})"), 4);
    EXPECT_EQ(sample(t, R"(ravelin_dataplane_sa_events_total{result="raised"})"), 9);
    EXPECT_EQ(sample(t, R"(ravelin_dataplane_sa_events_total{result="lost"})"), 2);
    EXPECT_EQ(sample(t, R"(ravelin_dataplane_acquires_total{result="raised"})"), 5);
    EXPECT_EQ(sample(t, R"(ravelin_dataplane_acquires_total{result="lost"})"), 1);
    EXPECT_EQ(sample(t, R"(ravelin_port_rx_missed_total{port="outside"})"), 1);
    EXPECT_EQ(sample(t, R"(ravelin_port_rx_errors_total{port="outside"})"), 2);
    EXPECT_EQ(sample(t, R"(ravelin_tunnel_packets_total{connection="gw",child="net",direction="in"})"), 10);
    EXPECT_EQ(sample(t, R"(ravelin_tunnel_bytes_total{connection="gw",child="net",direction="out"})"), 500);
    EXPECT_EQ(t.find("reqid"), std::string::npos);   // reqid 99 is nobody's: no series, no label
    EXPECT_EQ(t.find("spi"), std::string::npos);

    // Rekey: a new inbound SA starts at 2 packets, the old one is gone.
    t = text_of(render_dataplane(dataplane_stats(2, 0x4444, false), reqids, tunnels));
    EXPECT_EQ(sample(t, R"(ravelin_tunnel_packets_total{connection="gw",child="net",direction="in"})"), 12) << t;
    EXPECT_EQ(t.find("ravelin_worker_busy_cycles_total"), std::string::npos);   // absent, not zero
    EXPECT_EQ(t.find("ravelin_worker_spd_cache_misses_total"), std::string::npos);
    EXPECT_EQ(t.find("ravelin_dataplane_sa_events_total"), std::string::npos);
    EXPECT_EQ(t.find("ravelin_dataplane_acquires_total"), std::string::npos);

    // No data plane: up 0, its families gone, the tunnel series kept.
    t = text_of(render_dataplane(std::nullopt, reqids, tunnels));
    EXPECT_EQ(sample(t, "ravelin_dataplane_up"), 0) << t;
    EXPECT_EQ(t.find("ravelin_dataplane_drops_total"), std::string::npos);
    EXPECT_EQ(t.find("ravelin_tunnel_packets_total"), std::string::npos);
    t = text_of(render_dataplane(dataplane_stats(1, 0x5555, false), reqids, tunnels));
    EXPECT_EQ(sample(t, R"(ravelin_tunnel_packets_total{connection="gw",child="net",direction="in"})"), 13) << t;
}

TEST(IkedMetrics, TunnelDropsAndRingOccupancy)
{
    TunnelCounters tunnels;
    const json stats = {
        {"tunnels", json::array({
            {{"connection", "gw"}, {"child", "net"}, {"direction", "in"}, {"packets", 7}, {"bytes", 700},
             {"drops", {{"replay", 4}, {"policy_mismatch", 1}}}},
            {{"connection", "gw"}, {"child", "net"}, {"direction", "out"}, {"packets", 9}, {"bytes", 900},
             {"drops", json::object()}},
        })},
        {"rings", json::array({{{"ring", "punt_ike"}, {"entries", 3}, {"capacity", 1023}},
                               {{"ring", "ho_0_1"}, {"entries", 0}, {"capacity", 1023}},
                               {{"ring", ""}, {"entries", 1}, {"capacity", 1}}})},
    };
    std::string t = text_of(render_dataplane(stats, {}, tunnels));
    EXPECT_EQ(sample(t, R"(ravelin_tunnel_drops_total{connection="gw",child="net",direction="in",reason="replay"})"), 4)
        << t;
    EXPECT_EQ(
        sample(t, R"(ravelin_tunnel_drops_total{connection="gw",child="net",direction="in",reason="policy_mismatch"})"),
        1);
    EXPECT_EQ(t.find(R"(direction="out",reason)"), std::string::npos) << "no series for reasons never counted";
    EXPECT_EQ(sample(t, R"(ravelin_tunnel_packets_total{connection="gw",child="net",direction="out"})"), 9);
    EXPECT_EQ(sample(t, R"(ravelin_dataplane_ring_entries{ring="punt_ike"})"), 3);
    EXPECT_EQ(sample(t, R"(ravelin_dataplane_ring_entries{ring="ho_0_1"})"), 0);
    EXPECT_EQ(sample(t, R"(ravelin_dataplane_ring_capacity{ring="punt_ike"})"), 1023);
    EXPECT_EQ(t.find(R"(ring="")"), std::string::npos) << "a ring without a name is skipped";

    // No drops anywhere: no empty family either.
    json quiet = stats;
    quiet["tunnels"][0]["drops"] = json::object();
    t = text_of(render_dataplane(quiet, {}, tunnels));
    EXPECT_EQ(t.find("ravelin_tunnel_drops_total"), std::string::npos) << t;
}

TEST(IkedMetrics, MalformedDataPlaneJsonIsSkippedNotFatal)
{
    TunnelCounters tunnels;
    const std::map<uint32_t, TunnelKey> reqids{{1, {"gw", "net"}}};
    for (const json& bad : {json::array(), json{{"drops", 5}}, json{{"workers", {{"worker", "x"}}}},
                            json{{"sas", json::array({{{"spi", -1}, {"reqid", 1}}, 7, nullptr})}},
                            json{{"ports", json::array({{{"name", 3}, {"ipackets", "many"}}})}},
                            json{{"stats", {{"rx_packets", -5}}}}}) {
        std::string t = text_of(render_dataplane(bad, reqids, tunnels));
        EXPECT_EQ(sample(t, "ravelin_dataplane_up"), bad.is_object() ? 1 : 0) << bad.dump();
        EXPECT_EQ(t.find("rx_packets\"} -"), std::string::npos) << t;
    }
    EXPECT_EQ(tunnels.live_sas(), 0u);
}

// --- the endpoint over HTTP ----------------------------------------------------------

std::string http_get(uint16_t port, const std::string& path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(fd);
        return "";
    }
    std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    (void)!write(fd, req.data(), req.size());
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, std::size_t(n));
    close(fd);
    return out;
}

// A stand-in for the data plane's control socket: answers `stats` with `answer`.
class FakeDataplane {
public:
    FakeDataplane(const std::string& prefix, std::string answer) : path_(dataplane_socket_path(prefix)), answer_(std::move(answer))
    {
        mkdir("/run/ravelin", 0750);
        fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
        unlink(path_.c_str());
        ok_ = bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 && listen(fd_, 4) == 0;
        thread_ = std::thread([this] {
            while (!stop_) {
                pollfd p{fd_, POLLIN, 0};
                if (poll(&p, 1, 50) <= 0) continue;
                int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
                if (c < 0) continue;
                char buf[64];
                ssize_t n = read(c, buf, sizeof buf);
                if (n > 0 && std::string(buf, std::size_t(n)) == "stats\n") {
                    ++requests;
                    (void)!write(c, answer_.data(), answer_.size());
                }
                close(c);
            }
        });
    }
    ~FakeDataplane()
    {
        stop_ = true;
        thread_.join();
        close(fd_);
        unlink(path_.c_str());
    }
    bool ok() const { return ok_; }
    std::atomic<int> requests{0};

private:
    std::string path_, answer_;
    int fd_ = -1;
    bool ok_ = false;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// The daemon loop's part: publish a snapshot whenever a scrape asks.
class Loop {
public:
    Loop(Metrics& m, ike::Engine& engine) : m_(m), engine_(engine)
    {
        thread_ = std::thread([this] {
            while (!stop_) {
                pollfd p{m_.refresh_fd(), POLLIN, 0};
                if (poll(&p, 1, 20) > 0 && m_.refresh_requested() && !paused_) {
                    auto s = snapshot_of(engine_, ike::Clock::now());
                    s.reloads = ++publishes;
                    m_.publish(std::move(s));
                }
            }
        });
    }
    ~Loop()
    {
        stop_ = true;
        thread_.join();
    }
    std::atomic<bool> paused_{false};
    std::atomic<int> publishes{0};

private:
    Metrics& m_;
    ike::Engine& engine_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

TEST(IkedMetricsEndpoint, ServesFreshSnapshotsAndTheDataPlane)
{
    Pair p;
    std::string err;
    ASSERT_TRUE(p.a.engine.initiate(ike::Clock::now(), "gw", "net", err)) << err;
    p.pump();
    const std::string prefix = "metrics-test-" + std::to_string(getpid());
    json dp = dataplane_stats(10, 0x1111, true);
    dp["sas"][0]["reqid"] = p.a.engine.list_sas(ike::Clock::now())[0].children[0].reqid;
    FakeDataplane fake(prefix, dp.dump() + "\n");
    ASSERT_TRUE(fake.ok());

    ike::MetricsConfig cfg;
    cfg.enabled = true;
    cfg.listen = "127.0.0.1";
    cfg.port = 0;
    cfg.dataplane = prefix;
    auto m = Metrics::start(cfg, err);
    ASSERT_TRUE(m) << err;
    ASSERT_NE(m->port(), 0);
    m->observe_sa_command_latency(0.0004);
    m->observe_sa_install_latency(0.002);
    {
        Loop loop(*m, p.a.engine);
        std::string r = http_get(m->port(), "/metrics");
        ASSERT_NE(r.find("200 OK"), std::string::npos) << r;
        auto body = r.substr(r.find("\r\n\r\n") + 3);
        EXPECT_EQ(sample(body, R"(ravelin_ike_sas{state="ESTABLISHED"})"), 1) << body;
        EXPECT_EQ(sample(body, R"(ravelin_iked_reloads_total{result="ok"})"), 1);   // published for this scrape
        EXPECT_EQ(sample(body, "ravelin_dataplane_up"), 1);
        EXPECT_EQ(sample(body, R"(ravelin_tunnel_packets_total{connection="gw",child="net",direction="in"})"), 10);
        EXPECT_EQ(sample(body, "ravelin_sa_command_latency_seconds_count"), 1);
        EXPECT_EQ(sample(body, R"(ravelin_sa_command_latency_seconds_bucket{le="0.0005"})"), 1);
        EXPECT_EQ(sample(body, R"(ravelin_sa_install_latency_seconds_bucket{le="0.001"})"), 0);
        EXPECT_EQ(fake.requests.load(), 1);

        r = http_get(m->port(), "/metrics");
        EXPECT_EQ(sample(r.substr(r.find("\r\n\r\n") + 3), R"(ravelin_iked_reloads_total{result="ok"})"), 2);

        // A stuck loop: the scrape still answers, with the last snapshot, after the bounded wait.
        loop.paused_ = true;
        auto t0 = std::chrono::steady_clock::now();
        r = http_get(m->port(), "/metrics");
        auto waited = std::chrono::steady_clock::now() - t0;
        EXPECT_EQ(sample(r.substr(r.find("\r\n\r\n") + 3), R"(ravelin_iked_reloads_total{result="ok"})"), 2);
        EXPECT_GE(waited, Metrics::refresh_wait - std::chrono::milliseconds(50));
        EXPECT_LT(waited, std::chrono::seconds(3));
    }

    // The port is taken: a second endpoint there fails with a reason.
    cfg.port = m->port();
    auto second = Metrics::start(cfg, err);
    EXPECT_FALSE(second);
    EXPECT_NE(err.find("cannot listen on 127.0.0.1:" + std::to_string(cfg.port)), std::string::npos) << err;
}

TEST(IkedMetricsEndpoint, NoDataPlaneAnswering)
{
    Pair p;
    ike::MetricsConfig cfg;
    cfg.port = 0;
    cfg.dataplane = "metrics-test-nobody-" + std::to_string(getpid());
    std::string err;
    auto m = Metrics::start(cfg, err);
    ASSERT_TRUE(m) << err;
    Loop loop(*m, p.a.engine);
    std::string r = http_get(m->port(), "/metrics");
    EXPECT_EQ(sample(r.substr(r.find("\r\n\r\n") + 3), "ravelin_dataplane_up"), 0) << r;
    EXPECT_EQ(r.find("ravelin_dataplane_drops_total"), std::string::npos);
    EXPECT_NE(r.find("\nravelin_tunnel_up{connection=\"gw\",child=\"net\"} 0"), std::string::npos) << r;
}

} // namespace
} // namespace ravelin::iked

// The programs: `ravelin-iked` (--check, start-up failures, a standalone
// run with its control socket, reload and signals) and `ravelinctl`'s IKE
// commands (human output in swanctl's shape, exit codes) against a fake
// control handler.
//
// Standalone daemons listen on 127.0.0.1 with ports the kernel just had
// free; no packet leaves the host. Paths of the binaries come from the
// environment (RAVELIN_IKED, RAVELINCTL; set by meson).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "commands.hh"
#include "control.hh"

namespace ravelin::iked {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::string binary(const char* var)
{
    const char* p = std::getenv(var);
    return p ? p : "";
}

// --- processes ----------------------------------------------------------------

struct Child {
    pid_t pid = -1;
    int out = -1, err = -1;
    std::string out_text, err_text;
};

Child spawn(const std::vector<std::string>& args)
{
    int o[2], e[2];
    Child c;
    if (pipe2(o, O_CLOEXEC) != 0 || pipe2(e, O_CLOEXEC) != 0) return c;
    c.pid = fork();
    if (c.pid == 0) {
        dup2(o[1], 1);
        dup2(e[1], 2);
        std::vector<char*> argv;
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    close(o[1]);
    close(e[1]);
    c.out = o[0];
    c.err = e[0];
    return c;
}

// Reads what is available on the child's pipes for up to `wait`; true
// when both reached EOF.
bool drain(Child& c, std::chrono::milliseconds wait)
{
    auto end = std::chrono::steady_clock::now() + wait;
    for (;;) {
        std::vector<pollfd> fds;
        if (c.out >= 0) fds.push_back({c.out, POLLIN, 0});
        if (c.err >= 0) fds.push_back({c.err, POLLIN, 0});
        if (fds.empty()) return true;
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        if (poll(fds.data(), fds.size(), int(left.count())) <= 0) return false;
        for (const auto& p : fds) {
            if (!p.revents) continue;
            char buf[4096];
            ssize_t n = read(p.fd, buf, sizeof buf);
            bool is_out = p.fd == c.out;
            if (n <= 0) {
                close(p.fd);
                (is_out ? c.out : c.err) = -1;
            } else {
                (is_out ? c.out_text : c.err_text).append(buf, size_t(n));
            }
        }
    }
}

// Exit code, or -1 if it had to be killed after `timeout`.
int finish(Child& c, std::chrono::milliseconds timeout = 10s)
{
    bool done = drain(c, timeout);
    auto end = std::chrono::steady_clock::now() + (done ? 5s : 0s);
    int status = 0;
    for (;;) {
        pid_t r = waitpid(c.pid, &status, WNOHANG);
        if (r == c.pid) break;
        if (std::chrono::steady_clock::now() >= end) {
            kill(c.pid, SIGKILL);
            waitpid(c.pid, &status, 0);
            if (c.out >= 0) close(c.out);
            if (c.err >= 0) close(c.err);
            return -1;
        }
        std::this_thread::sleep_for(10ms);
    }
    if (c.out >= 0) close(c.out);
    if (c.err >= 0) close(c.err);
    c.out = c.err = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct Result {
    int code;
    std::string out, err;
};

Result run(const std::vector<std::string>& args)
{
    Child c = spawn(args);
    int code = finish(c);
    return {code, c.out_text, c.err_text};
}

// Waits until the child printed `line` on stdout.
bool wait_for(Child& c, const std::string& line, std::chrono::milliseconds timeout)
{
    auto end = std::chrono::steady_clock::now() + timeout;
    while (c.out_text.find(line) == std::string::npos) {
        if (std::chrono::steady_clock::now() >= end || c.out < 0) return false;
        drain(c, 100ms);
    }
    return true;
}

uint16_t free_udp_port()
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t l = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
    close(fd);
    return ntohs(a.sin_port);
}

class Dir {
public:
    Dir() : path_("/tmp/rvl-iked-cli-" + std::to_string(getpid())) { mkdir(path_.c_str(), 0700); }
    ~Dir() { std::system(("rm -rf " + path_).c_str()); }
    std::string file(const std::string& name, const std::string& content) const
    {
        std::string p = path_ + "/" + name;
        std::ofstream(p) << content;
        return p;
    }
    std::string path(const std::string& name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

std::string connection(const std::string& name)
{
    return "  " + name + R"( {
    local_addrs = 198.18.0.1
    remote_addrs = 198.18.0.2
    proposals = aes256gcm16-prfsha256-x25519
    local {
      auth = psk
      id = gw-a
    }
    remote {
      auth = psk
      id = gw-b
    }
    children {
      net {
        local_ts = 198.19.1.0/24
        remote_ts = 198.19.2.0/24
        esp_proposals = aes256gcm16
      }
    }
  }
)";
}

std::string config(const std::string& socket, uint16_t port, uint16_t natt, const std::string& conns,
                   const std::string& extra = "")
{
    return "iked {\n  listen = 127.0.0.1\n  port = " + std::to_string(port) + "\n  port_nat_t = " +
           std::to_string(natt) + "\n  control_socket = " + socket + "\n" + extra + "}\nconnections {\n" + conns +
           "}\nsecrets {\n  ike-gw {\n    id-a = gw-a\n    id-b = gw-b\n    secret = \"test secret\"\n  }\n}\n";
}

class IkedCli : public ::testing::Test {
protected:
    void SetUp() override
    {
        iked = binary("RAVELIN_IKED");
        ctl = binary("RAVELINCTL");
        ASSERT_FALSE(iked.empty()) << "RAVELIN_IKED is not set (run through meson test)";
        ASSERT_FALSE(ctl.empty()) << "RAVELINCTL is not set (run through meson test)";
    }
    std::string iked, ctl;
    Dir dir;
};

// --- ravelin-iked ------------------------------------------------------------------

TEST_F(IkedCli, CheckAcceptsGoodAndRejectsBadConfigs)
{
    std::string good = dir.file("good.conf", config(dir.path("s.sock"), 15500, 15501, connection("gw")));
    auto r = run({iked, "-c", good, "--check"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("ok, 1 connection(s)"), std::string::npos) << r.out;

    std::string bad = dir.file("bad.conf", "connections {\n  gw {\n    bogus = 1\n  }\n}\n");
    r = run({iked, "-c", bad, "--check"});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find(bad + ":3: unknown key 'connections.gw.bogus'"), std::string::npos) << r.err;

    r = run({iked, "-c", dir.path("missing.conf"), "--check"});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("missing.conf"), std::string::npos) << r.err;

    // Daemon settings the parser takes as text but the daemon cannot use.
    std::string host = dir.file("host.conf", "iked {\n  listen = gw.example.net\n}\n");
    r = run({iked, "-c", host, "--check"});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find(host + ":2:"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("gw.example.net"), std::string::npos) << r.err;
    std::string same = dir.file("same.conf", "iked {\n  port = 4500\n  port_nat_t = 4500\n}\n");
    r = run({iked, "-c", same, "--check"});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("port_nat_t"), std::string::npos) << r.err;

    // Usage errors.
    EXPECT_EQ(run({iked, "--check"}).code, 2);
    EXPECT_EQ(run({iked, "-c", good, "--bogus"}).code, 2);
    EXPECT_EQ(run({iked, "--help"}).code, 0);
}

TEST_F(IkedCli, AttachedModeWithoutADataPlaneFailsAndSaysWhere)
{
    std::string good = dir.file("good.conf", config(dir.path("s.sock"), 15500, 15501, connection("gw")));
    auto r = run({iked, "-c", good, "--foreground", "--dataplane", "rvl-no-such-dp", "--attach-timeout", "0"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("/run/ravelin/rvl-no-such-dp.channel"), std::string::npos) << r.err;
    // The SA sink is standalone's: attached, SAs go to the data plane.
    r = run({iked, "-c", good, "--foreground", "--sa-sink", dir.path("x.jsonl")});
    EXPECT_EQ(r.code, 2);
    EXPECT_NE(r.err.find("--standalone"), std::string::npos) << r.err;
}

TEST_F(IkedCli, StandaloneRunReloadAndSignals)
{
    const std::string sock = dir.path("run/iked.sock");
    const std::string sink = dir.path("sas.jsonl");
    const uint16_t port = free_udp_port(), natt = free_udp_port();
    ASSERT_NE(port, natt);
    std::string conf = dir.file("iked.conf", config(sock, port, natt, connection("gw")));

    Child d = spawn({iked, "-c", conf, "--standalone", "--foreground", "--sa-sink", sink});
    ASSERT_TRUE(wait_for(d, "ravelin-iked: ready\n", 10s)) << d.out_text << d.err_text;
    struct stat st;
    ASSERT_EQ(stat(sink.c_str(), &st), 0) << "SA sink file created at start";
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    auto r = run({ctl, "--iked-socket", sock, "list-conns"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("gw: IKEv2"), std::string::npos) << r.out;
    r = run({ctl, "--iked-socket", sock, "list-sas"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "");
    r = run({ctl, "--iked-socket", sock, "initiate", "--ike", "nope"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("nope"), std::string::npos) << r.err;

    // A broken config: reload says where, the daemon keeps running.
    dir.file("iked.conf", config(sock, port, natt, connection("gw") + "  x {\n    bogus = 1\n  }\n"));
    r = run({ctl, "--iked-socket", sock, "reload"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find(conf + ":"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("bogus"), std::string::npos) << r.err;
    kill(d.pid, SIGHUP);
    auto failures = [&d] {
        std::size_t n = 0;
        for (auto p = d.err_text.find("reload failed"); p != std::string::npos; p = d.err_text.find("reload failed", p + 1))
            ++n;
        return n;
    };
    for (int i = 0; i < 50 && failures() < 2; ++i) drain(d, 100ms);
    ASSERT_EQ(failures(), 2u) << d.err_text;
    // A new connection: reload names it.
    dir.file("iked.conf", config(sock, port, natt, connection("gw") + connection("gw2")));
    r = run({ctl, "--iked-socket", sock, "reload"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("gw2"), std::string::npos) << r.out;
    r = run({ctl, "--iked-socket", sock, "list-conns", "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(json::parse(r.out)["connections"].size(), 2u) << r.out;

    r = run({ctl, "--iked-socket", sock, "ike-stats", "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    auto stats = json::parse(r.out);
    EXPECT_EQ(stats["reloads"]["failed"], 2) << "the socket's reload and SIGHUP's";
    EXPECT_EQ(stats["reloads"]["ok"], 1);
    EXPECT_EQ(stats["pid"], d.pid);
    EXPECT_EQ(stats["sa_sink"]["kind"], "json");

    // A second daemon on the same control socket is refused.
    Child second = spawn({iked, "-c", conf, "--standalone", "--foreground"});
    EXPECT_EQ(finish(second), 1);
    EXPECT_TRUE(second.err_text.find("already running") != std::string::npos ||
                second.err_text.find("bind") != std::string::npos)
        << second.err_text;

    kill(d.pid, SIGTERM);
    EXPECT_EQ(finish(d), 0) << d.err_text;
    EXPECT_NE(d.err_text.find("exiting"), std::string::npos) << d.err_text;
    EXPECT_NE(lstat(sock.c_str(), &st), 0) << "socket removed at exit";
    EXPECT_EQ(d.err_text.find("test secret"), std::string::npos) << "no secret in the log";
    r = run({ctl, "--iked-socket", sock, "list-sas"});
    EXPECT_EQ(r.code, 3);
}

TEST_F(IkedCli, DetachesWhenNotInForeground)
{
    const std::string sock = dir.path("bg.sock");
    std::string conf = dir.file("bg.conf", config(sock, free_udp_port(), free_udp_port(), connection("gw")));
    auto r = run({iked, "-c", conf, "--standalone"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "ravelin-iked: ready\n");
    auto stats = run({ctl, "--iked-socket", sock, "ike-stats", "--json"});
    ASSERT_EQ(stats.code, 0) << stats.err;
    pid_t pid = json::parse(stats.out)["pid"].get<pid_t>();
    ASSERT_GT(pid, 1);
    ASSERT_EQ(kill(pid, SIGTERM), 0);
    // Not our child any more: wait for its socket to go.
    struct stat st;
    for (int i = 0; i < 100 && lstat(sock.c_str(), &st) == 0; ++i) std::this_thread::sleep_for(50ms);
    EXPECT_NE(lstat(sock.c_str(), &st), 0);

    // Start-up failure in the background is still reported by the parent.
    std::string bad = dir.file("bad-bg.conf", "iked {\n  listen = 198.18.0.77\n  control_socket = " + sock + "\n}\n");
    r = run({iked, "-c", bad, "--standalone"});
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.err.find("198.18.0.77"), std::string::npos) << r.err;
}

// --- ravelinctl against a fake daemon ---------------------------------------------

class CannedHandler final : public ControlHandler {
public:
    json handle(const json& request) override
    {
        last = request;
        const auto cmd = request.at("command").get<std::string>();
        auto it = replies.find(cmd);
        return it != replies.end() ? it->second : json{{"error", "no canned reply for " + cmd}};
    }
    std::map<std::string, json> replies;
    json last;
};

class FakeIked {
public:
    FakeIked(ControlHandler& h, const std::string& path) : server_(h)
    {
        std::string error;
        EXPECT_TRUE(server_.open(path, error)) << error;
        thread_ = std::thread([this] {
            auto end = std::chrono::steady_clock::now() + 60s;
            std::vector<pollfd> fds;
            while (!stop_ && std::chrono::steady_clock::now() < end) {
                server_.expire(std::chrono::steady_clock::now());
                fds.clear();
                server_.poll_fds(fds);
                if (poll(fds.data(), fds.size(), 20) <= 0) continue;
                for (const auto& p : fds)
                    if (p.revents) server_.ready(p, std::chrono::steady_clock::now());
            }
            server_.close();
        });
    }
    ~FakeIked()
    {
        stop_ = true;
        thread_.join();
    }

private:
    ControlServer server_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

IpAddress ip(const char* text)
{
    IpAddress a;
    a.family = IpFamily::v4;
    EXPECT_EQ(inet_pton(AF_INET, text, a.bytes.data()), 1);
    return a;
}

// The strongSwan capture's first IKE SA, as ravelin-iked would report it.
std::vector<ike::IkeSaInfo> capture_sas()
{
    ike::IkeSaInfo sa;
    sa.name = "ipgw";
    sa.unique_id = 1;
    sa.state = "ESTABLISHED";
    sa.initiator = true;
    sa.spi_i = 0x2cb480d740a756caull;
    sa.spi_r = 0x00d1892298dee0bfull;
    sa.local = {ip("198.18.0.1"), 4500};
    sa.remote = {ip("198.18.0.2"), 4500};
    sa.local_id = "198.18.0.1";
    sa.remote_id = "198.18.0.2";
    sa.suite.encr = 20;
    sa.suite.encr_key_bits = 256;
    sa.suite.prf = 5;
    sa.suite.dh = 31;
    sa.established_s = 1;
    sa.rekey_in_s = 14398;
    ike::ChildSaInfo c;
    c.name = "net";
    c.unique_id = 1;
    c.reqid = 1;
    c.state = "INSTALLED";
    c.udp_encap = true;
    c.spi_in = 0xf88201b3;
    c.spi_out = 0xc6ebc868;
    c.suite.encr = 20;
    c.suite.encr_key_bits = 256;
    ike::TrafficSelector l, r;
    l.start = ip("198.19.1.0");
    l.end = ip("198.19.1.255");
    r.start = ip("198.19.2.0");
    r.end = ip("198.19.2.255");
    c.local_ts = {l};
    c.remote_ts = {r};
    c.installed_s = 1;
    c.rekey_in_s = 3598;
    c.life_in_s = 3959;
    sa.children.push_back(c);
    return {sa};
}

TEST_F(IkedCli, RavelinctlListSasInSwanctlShape)
{
    CannedHandler h;
    h.replies["list-sas"] = sas_json(capture_sas());
    std::string sock = dir.path("fake.sock");
    FakeIked fake(h, sock);

    auto r = run({ctl, "--iked-socket", sock, "list-sas"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out,
              "ipgw: #1, ESTABLISHED, IKEv2, 2cb480d740a756ca_i* 00d1892298dee0bf_r\n"
              "  local  '198.18.0.1' @ 198.18.0.1[4500]\n"
              "  remote '198.18.0.2' @ 198.18.0.2[4500]\n"
              "  AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519\n"
              "  established 1s ago, rekeying in 14398s\n"
              "  net: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256\n"
              "    installed 1s ago, rekeying in 3598s, expires in 3959s\n"
              "    in  f88201b3\n"
              "    out c6ebc868\n"
              "    local  198.19.1.0/24\n"
              "    remote 198.19.2.0/24\n");
    EXPECT_EQ(h.last, (json{{"command", "list-sas"}}));

    r = run({ctl, "--iked-socket", sock, "list-sas", "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(json::parse(r.out), h.replies["list-sas"]);
}

TEST_F(IkedCli, RavelinctlRequestsAndExitCodes)
{
    CannedHandler h;
    h.replies["initiate"] = {{"ok", true}};
    h.replies["rekey"] = {{"ok", true}};
    h.replies["terminate"] = {{"error", "no IKE SA for 'gw'"}};
    h.replies["log-level"] = {{"ok", true}};
    h.replies["reload"] = {{"ok", true}, {"touched", {"gw", "gw2"}}};
    h.replies["diagnose"] = {{"diagnoses",
                              {{{"connection", "gw"},
                                {"phase1", "down"},
                                {"phase2", "net: not installed"},
                                {"failed_phase", "IKE_AUTH"},
                                {"failure", "AUTHENTICATION_FAILED"},
                                {"our_proposals", ""},
                                {"peer_proposals", ""},
                                {"our_ts", ""},
                                {"peer_ts", ""},
                                {"hint", "check the PSK and identities on both sides"}}}}};
    std::string sock = dir.path("fake.sock");
    FakeIked fake(h, sock);
    auto ctl_run = [&](std::vector<std::string> args) {
        args.insert(args.begin(), {ctl, "--iked-socket", sock});
        return run(args);
    };

    auto r = ctl_run({"initiate", "--ike", "gw", "--child", "net"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(h.last, (json{{"command", "initiate"}, {"connection", "gw"}, {"child", "net"}}));
    r = ctl_run({"rekey", "--ike", "gw"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(h.last, (json{{"command", "rekey"}, {"connection", "gw"}}));
    r = ctl_run({"terminate", "--ike", "gw"});
    EXPECT_EQ(r.code, 1);
    EXPECT_EQ(r.err, "ravelinctl: no IKE SA for 'gw'\n");
    r = ctl_run({"log-level", "ike", "debug"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(h.last, (json{{"command", "log-level"}, {"subsystem", "ike"}, {"level", "debug"}}));
    r = ctl_run({"reload"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "reloaded: 2 connection(s) changed: gw, gw2\n");
    r = ctl_run({"diagnose", "gw"});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(h.last, (json{{"command", "diagnose"}, {"connection", "gw"}}));
    EXPECT_NE(r.out.find("IKE_AUTH: AUTHENTICATION_FAILED"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("check the PSK"), std::string::npos) << r.out;
    // The detailed reply: phase, exchange, notify, who refused, role, age,
    // proposals as keywords, the drops hook.
    h.replies["diagnose"]["diagnoses"][0]["failed"] = {
        {"phase", 1}, {"exchange", "IKE_AUTH"}, {"notify", "AUTHENTICATION_FAILED"},
        {"reason", "pre-shared key mismatch"}, {"detected_by", "local"}, {"role", "responder"},
        {"child", nullptr}, {"seconds_ago", 4}};
    h.replies["diagnose"]["diagnoses"][0]["proposals"] = {
        {"ours", {{"ike", "aes256gcm16-prfsha256-x25519"}, {"esp", {{"net", "aes256gcm16-x25519"}}}}},
        {"peer", {{"ike", "aes128-sha256-modp2048"}, {"ike_seen", "offered"}, {"esp", nullptr}, {"esp_seen", nullptr}}}};
    h.replies["diagnose"]["diagnoses"][0]["dataplane_drops"] = nullptr;
    r = ctl_run({"diagnose", "gw"});
    EXPECT_EQ(r.code, 0) << r.err;
    for (const char* want : {"failed:              phase 1, IKE_AUTH: AUTHENTICATION_FAILED (refused by us; the peer "
                             "initiated), 4 s ago\n",
                             "reason:              pre-shared key mismatch\n",
                             "our proposals:       IKE aes256gcm16-prfsha256-x25519; ESP net: aes256gcm16-x25519\n",
                             "peer proposals:      IKE aes128-sha256-modp2048 (offered)\n",
                             "data-plane drops:    unknown (no data plane"})
        EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.out;
    // No canned reply: the daemon's error, exit 1.
    r = ctl_run({"list-conns"});
    EXPECT_EQ(r.code, 1);

    // Usage errors: 2, nothing sent.
    h.last = nullptr;
    EXPECT_EQ(ctl_run({"initiate"}).code, 2);
    EXPECT_EQ(ctl_run({"log-level", "ike"}).code, 2);
    EXPECT_EQ(ctl_run({"frobnicate"}).code, 2);
    EXPECT_EQ(run({ctl}).code, 2);
    EXPECT_EQ(h.last, nullptr);
    EXPECT_EQ(run({ctl, "--help"}).code, 0);

    // Nobody listening: 3.
    r = run({ctl, "--iked-socket", dir.path("nobody.sock"), "list-sas"});
    EXPECT_EQ(r.code, 3);
    EXPECT_NE(r.err.find("is ravelin-iked running?"), std::string::npos) << r.err;
    r = run({ctl, "--socket", dir.path("nobody.sock"), "stats"});
    EXPECT_EQ(r.code, 3);
}

} // namespace
} // namespace ravelin::iked

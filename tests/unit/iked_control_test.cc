// ravelin-iked's control socket (controlplane/iked/control.hh) with a fake
// handler: request parsing, replies, and that slow, silent, greedy or
// oversized clients cannot block the loop; socket file handling at open.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "control.hh"

namespace ravelin::iked {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::string temp_path(const std::string& tag)
{
    return "/tmp/rvl-iked-ctl-" + std::to_string(getpid()) + "/" + tag + ".sock";
}

// Answers {"echo": request}; "fail" gets an error, "typed" reads a field
// as a string (throws when it is not one).
class FakeHandler final : public ControlHandler {
public:
    json handle(const json& request) override
    {
        std::lock_guard lock(mutex);
        seen.push_back(request);
        const auto cmd = request.at("command").get<std::string>();
        if (cmd == "fail") return {{"error", "nope"}};
        if (cmd == "typed") return {{"value", request.at("connection").get<std::string>()}};
        return {{"echo", request}};
    }
    std::mutex mutex;
    std::vector<json> seen;
};

// Runs the server's poll loop on a thread, as the daemon does on its own.
class Served {
public:
    Served(ControlHandler& handler, ControlOptions options, const std::string& path)
        : server_(handler, options)
    {
        std::string error;
        opened_ = server_.open(path, error);
        error_ = error;
        if (opened_) thread_ = std::thread([this] { loop(); });
    }
    ~Served()
    {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }
    bool opened() const { return opened_; }
    const std::string& error() const { return error_; }
    // Safe after stop(): the loop thread has ended.
    ControlStats stop()
    {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
        return server_.stats();
    }

private:
    void loop()
    {
        auto end = std::chrono::steady_clock::now() + 60s;   // bounded whatever happens
        std::vector<pollfd> fds;
        while (!stop_ && std::chrono::steady_clock::now() < end) {
            auto now = std::chrono::steady_clock::now();
            server_.expire(now);
            fds.clear();
            server_.poll_fds(fds);
            if (poll(fds.data(), fds.size(), 20) <= 0) continue;
            now = std::chrono::steady_clock::now();
            for (const auto& p : fds)
                if (p.revents) server_.ready(p, now);
        }
        server_.close();
    }

    ControlServer server_;
    bool opened_ = false;
    std::string error_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

int connect_to(const std::string& path)
{
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

std::string read_all(int fd)
{
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, size_t(n));
    return out;
}

std::string ask(const std::string& path, const std::string& text)
{
    int fd = connect_to(path);
    if (fd < 0) return "(cannot connect)";
    send(fd, text.data(), text.size(), MSG_NOSIGNAL);
    std::string reply = read_all(fd);
    close(fd);
    return reply;
}

json ask_json(const std::string& path, const std::string& text)
{
    return json::parse(ask(path, text), nullptr, false);
}

class IkedControl : public ::testing::Test {
protected:
    void TearDown() override
    {
        std::string dir = temp_path("x").substr(0, temp_path("x").rfind('/'));
        std::system(("rm -rf " + dir).c_str());
    }
    FakeHandler handler;
};

TEST_F(IkedControl, RequestsAndReplies)
{
    std::string path = temp_path("basic");
    Served s(handler, {}, path);
    ASSERT_TRUE(s.opened()) << s.error();

    auto r = ask_json(path, R"({"command":"initiate","connection":"gw","child":"net"})" "\n");
    EXPECT_EQ(r["echo"]["connection"], "gw");
    EXPECT_EQ(r["echo"]["child"], "net");

    // A bare word, as the data plane's socket takes them.
    r = ask_json(path, "list-sas\n");
    EXPECT_EQ(r["echo"], (json{{"command", "list-sas"}}));

    // Without a newline: the request ends when the client shuts down its side.
    int fd = connect_to(path);
    ASSERT_GE(fd, 0);
    std::string req = R"({"command":"stats"})";
    send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    r = json::parse(read_all(fd), nullptr, false);
    close(fd);
    EXPECT_EQ(r["echo"]["command"], "stats");

    // The handler's own errors pass through.
    EXPECT_EQ(ask_json(path, "fail\n")["error"], "nope");
    // One reply line, newline-terminated.
    std::string raw = ask(path, "list-conns\n");
    ASSERT_FALSE(raw.empty());
    EXPECT_EQ(raw.back(), '\n');
    EXPECT_EQ(raw.find('\n'), raw.size() - 1);

    auto stats = s.stop();
    EXPECT_EQ(stats.requests, 5u);
    EXPECT_EQ(stats.bad_requests, 0u);
}

TEST_F(IkedControl, BadRequestsGetErrorsNotTheHandler)
{
    std::string path = temp_path("bad");
    Served s(handler, {}, path);
    ASSERT_TRUE(s.opened()) << s.error();

    EXPECT_TRUE(ask_json(path, "{not json\n").contains("error"));
    EXPECT_TRUE(ask_json(path, "[1,2]\n").contains("error"));
    EXPECT_NE(ask_json(path, R"({"connection":"gw"})" "\n")["error"].get<std::string>().find("command"),
              std::string::npos);
    EXPECT_TRUE(ask_json(path, R"({"command":5})" "\n").contains("error"));
    EXPECT_TRUE(ask_json(path, "list sas; rm -rf /\n").contains("error"));
    EXPECT_TRUE(ask_json(path, "\n").contains("error"));
    {
        std::lock_guard lock(handler.mutex);
        EXPECT_TRUE(handler.seen.empty());
    }
    // A field of the wrong type makes the handler throw: an error reply,
    // and the server goes on.
    auto r = ask_json(path, R"({"command":"typed","connection":5})" "\n");
    EXPECT_NE(r["error"].get<std::string>().find("bad request"), std::string::npos) << r.dump();
    EXPECT_EQ(ask_json(path, R"({"command":"typed","connection":"gw"})" "\n")["value"], "gw");

    auto stats = s.stop();
    EXPECT_EQ(stats.bad_requests, 6u);
}

TEST_F(IkedControl, OversizedRequestIsRefused)
{
    std::string path = temp_path("big");
    ControlOptions o;
    o.max_request = 1024;
    Served s(handler, o, path);
    ASSERT_TRUE(s.opened()) << s.error();
    std::string big = R"({"command":"x","pad":")" + std::string(4000, 'a') + "\"}\n";
    auto r = ask_json(path, big);
    ASSERT_TRUE(r.contains("error")) << r.dump();
    EXPECT_NE(r["error"].get<std::string>().find("longer than 1024"), std::string::npos);
    std::lock_guard lock(handler.mutex);
    EXPECT_TRUE(handler.seen.empty());
}

TEST_F(IkedControl, SilentClientDoesNotBlockOthersAndIsDropped)
{
    std::string path = temp_path("silent");
    ControlOptions o;
    o.client_timeout = 300ms;
    Served s(handler, o, path);
    ASSERT_TRUE(s.opened()) << s.error();

    int silent = connect_to(path);
    ASSERT_GE(silent, 0);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(ask_json(path, "stats\n")["echo"]["command"], "stats");
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 250ms) << "answered while the silent client waits";

    // The server closes the silent one after its timeout: EOF, no reply.
    EXPECT_EQ(read_all(silent), "");
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
    close(silent);

    // A client that sends half a request and stalls is dropped too.
    int half = connect_to(path);
    ASSERT_GE(half, 0);
    send(half, "{\"comm", 6, MSG_NOSIGNAL);
    EXPECT_EQ(read_all(half), "");
    close(half);

    auto stats = s.stop();
    EXPECT_EQ(stats.timeouts, 2u);
    EXPECT_EQ(stats.requests, 1u);
}

TEST_F(IkedControl, ClientsOverTheLimitAreTurnedAway)
{
    std::string path = temp_path("busy");
    ControlOptions o;
    o.max_clients = 2;
    o.client_timeout = 2s;
    Served s(handler, o, path);
    ASSERT_TRUE(s.opened()) << s.error();
    int a = connect_to(path), b = connect_to(path);
    ASSERT_GE(a, 0);
    ASSERT_GE(b, 0);
    std::this_thread::sleep_for(100ms);   // let the server accept both
    auto r = ask_json(path, "stats\n");
    EXPECT_NE(r["error"].get<std::string>().find("busy"), std::string::npos) << r.dump();
    close(a);
    close(b);
    // Once they are gone there is room again (closed clients are noticed
    // on their next poll).
    json again;
    for (int i = 0; i < 50; ++i) {
        again = ask_json(path, "stats\n");
        if (again.contains("echo")) break;
        std::this_thread::sleep_for(20ms);
    }
    EXPECT_TRUE(again.contains("echo")) << again.dump();
    EXPECT_GE(s.stop().rejected, 1u);
}

TEST_F(IkedControl, OpenCreatesDirectoryAndReplacesOnlyStaleSockets)
{
    std::string path = temp_path("sub/dir/iked");
    {
        Served s(handler, {}, path);
        ASSERT_TRUE(s.opened()) << s.error();
        struct stat st;
        std::string dir = path.substr(0, path.rfind('/'));
        ASSERT_EQ(stat(dir.c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0750u);
        ASSERT_EQ(stat(path.c_str(), &st), 0);
        EXPECT_TRUE(S_ISSOCK(st.st_mode));
        EXPECT_EQ(st.st_mode & 0777, 0660u);

        // A second server on the same path: refused, the first keeps it.
        ControlServer second(handler);
        std::string error;
        EXPECT_FALSE(second.open(path, error));
        EXPECT_NE(error.find("already running"), std::string::npos) << error;
        EXPECT_EQ(ask_json(path, "stats\n")["echo"]["command"], "stats");
    }
    // Closed cleanly: the socket file is gone.
    struct stat st;
    EXPECT_NE(lstat(path.c_str(), &st), 0);

    // A stale socket file (its owner died without unlinking) is replaced.
    {
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
        close(fd);
        ASSERT_EQ(lstat(path.c_str(), &st), 0);
    }
    {
        Served s(handler, {}, path);
        ASSERT_TRUE(s.opened()) << s.error();
        EXPECT_EQ(ask_json(path, "stats\n")["echo"]["command"], "stats");
    }

    // Anything that is not a socket is left alone.
    { std::ofstream(path) << "precious\n"; }
    ControlServer third(handler);
    std::string error;
    EXPECT_FALSE(third.open(path, error));
    EXPECT_NE(error.find("not a socket"), std::string::npos) << error;
    std::ifstream in(path);
    std::string content;
    std::getline(in, content);
    EXPECT_EQ(content, "precious");
}

TEST(IkedControlParse, RequestForms)
{
    std::string error;
    auto r = parse_request("  list-sas \r\n", error);
    ASSERT_TRUE(r);
    EXPECT_EQ((*r)["command"], "list-sas");
    r = parse_request(R"({"command":"rekey","connection":"gw"})", error);
    ASSERT_TRUE(r);
    EXPECT_EQ((*r)["connection"], "gw");
    EXPECT_FALSE(parse_request("LIST", error));
    EXPECT_FALSE(parse_request(R"({"command":null})", error));
    EXPECT_FALSE(parse_request(R"("list-sas")", error));
}

} // namespace
} // namespace ravelin::iked

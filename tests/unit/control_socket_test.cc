// The data plane's control socket (dataplane/control_socket.hh): what it
// answers, and that a misbehaving client cannot wedge it.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "control_socket.hh"
#include "dp_fixture.hh"

namespace ravelin::dp {
namespace {

std::string socket_path(const char* tag)
{
    return "/tmp/rvl-cs-" + std::to_string(::getpid()) + "-" + tag + ".sock";
}

int connect_to(const std::string& path)
{
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// One request, the whole answer (the server closes after answering).
std::string ask(const std::string& path, const std::string& command)
{
    int fd = connect_to(path);
    if (fd < 0) return "";
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string line = command + "\n";
    send(fd, line.data(), line.size(), MSG_NOSIGNAL);
    std::string reply;
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) reply.append(buf, size_t(n));
    close(fd);
    return reply;
}

TEST(ControlSocket, StatsAnswerCarriesCountersAndSas)
{
    test::DataplaneFixture f("cs_stats");
    const rte_ether_addr gw_in_mac = f.dp->shared().ports[f.inside.id].mac;
    f.inside.inject(0, test::udp_frame(f.dp->pool(), 0xc6120102, 0xc6120902, 1, 32, gw_in_mac));   // no policy
    f.poll_all(1);
    std::string path = socket_path("stats");
    ControlServer server(*f.dp, path);
    std::string error;
    ASSERT_TRUE(server.start(error)) << error;

    auto doc = nlohmann::json::parse(ask(path, "stats"), nullptr, false);
    ASSERT_FALSE(doc.is_discarded());
    EXPECT_EQ(doc["stats"]["rx_packets"].get<uint64_t>(), 1u);
    EXPECT_EQ(doc["drops"]["no_policy"].get<uint64_t>(), 1u);
    EXPECT_EQ(doc["drops"].size(), drop_reason_count - 1) << "every reason but none is reported";
    EXPECT_EQ(doc["workers"].size(), f.dp->shared().workers);
    ASSERT_EQ(doc["sas"].size(), 2u);
    std::set<std::pair<uint32_t, std::string>> sas;
    for (const auto& sa : doc["sas"]) sas.insert({sa["spi"].get<uint32_t>(), sa["direction"].get<std::string>()});
    EXPECT_TRUE(sas.count({0x1001, "out"}));
    EXPECT_TRUE(sas.count({0x2002, "in"}));
    EXPECT_EQ(doc["ports"].size(), 2u);
    EXPECT_TRUE(doc.contains("neighbors"));
    EXPECT_TRUE(doc.contains("events"));
}

TEST(ControlSocket, UnknownCommandIsAnError)
{
    test::DataplaneFixture f("cs_unknown");
    std::string path = socket_path("unknown");
    ControlServer server(*f.dp, path);
    std::string error;
    ASSERT_TRUE(server.start(error)) << error;
    auto doc = nlohmann::json::parse(ask(path, "reboot"), nullptr, false);
    ASSERT_FALSE(doc.is_discarded());
    ASSERT_TRUE(doc.contains("error"));
    EXPECT_NE(doc["error"].get<std::string>().find("reboot"), std::string::npos);
}

// A socket file left by a killed instance is replaced; a client that
// connects and says nothing delays the next one by at most the receive
// timeout, and does not keep stop() from returning.
TEST(ControlSocket, StaleFileAndSilentClient)
{
    test::DataplaneFixture f("cs_silent");
    std::string path = socket_path("silent");
    std::ofstream(path) << "stale";
    auto server = std::make_unique<ControlServer>(*f.dp, path);
    std::string error;
    ASSERT_TRUE(server->start(error)) << error;

    int silent = connect_to(path);
    ASSERT_GE(silent, 0);
    auto t0 = std::chrono::steady_clock::now();
    std::string reply = ask(path, "stats");
    auto waited = std::chrono::steady_clock::now() - t0;
    EXPECT_FALSE(reply.empty()) << "the server never answered after a silent client";
    EXPECT_LT(waited, std::chrono::seconds(5));

    int silent2 = connect_to(path);
    ASSERT_GE(silent2, 0);
    t0 = std::chrono::steady_clock::now();
    server.reset();   // stop() with a client connected and mid-request
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
    EXPECT_NE(access(path.c_str(), F_OK), 0) << "the socket file is removed on stop";
    close(silent);
    close(silent2);
}

} // namespace
} // namespace ravelin::dp

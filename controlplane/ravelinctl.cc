// ravelinctl: operate a Ravelin gateway.
//
//   ravelinctl [--file-prefix P | --socket PATH] stats [--json]
//
// Talks to ravelin-dataplane's control socket (one command, one JSON reply).
// The IKE commands (list-sas, initiate, ...) arrive with the control plane.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ravelin/paths.hh"

namespace {

using nlohmann::json;

bool request(const std::string& path, const std::string& command, std::string& reply, std::string& error)
{
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) {
        error = "socket path too long";
        return false;
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        error = "cannot connect to " + path + ": " + std::strerror(errno) + " (is ravelin-dataplane running?)";
        if (fd >= 0) close(fd);
        return false;
    }
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string line = command + "\n";
    send(fd, line.data(), line.size(), MSG_NOSIGNAL);
    char buf[65536];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) reply.append(buf, size_t(n));
    close(fd);
    if (reply.empty()) {
        error = "no answer from " + path;
        return false;
    }
    return true;
}

void print_counters(const char* title, const json& obj, bool skip_zero)
{
    std::printf("%s:\n", title);
    bool any = false;
    for (auto& [k, v] : obj.items()) {
        if (skip_zero && v.get<uint64_t>() == 0) continue;
        std::printf("  %-22s %14llu\n", k.c_str(), static_cast<unsigned long long>(v.get<uint64_t>()));
        any = true;
    }
    if (!any) std::printf("  (none)\n");
}

void print_human(const json& s)
{
    print_counters("packets", s.at("stats"), false);
    print_counters("drops (non-zero)", s.at("drops"), true);
    std::printf("SAs:\n");
    for (const auto& sa : s.at("sas")) {
        std::printf("  %-3s %08x  %-9s worker %u  %10llu packets %14llu bytes%s\n",
                    sa.at("direction").get<std::string>().c_str(), sa.at("spi").get<unsigned>(),
                    sa.at("mode").get<std::string>().c_str(), sa.at("worker").get<unsigned>(),
                    static_cast<unsigned long long>(sa.at("packets").get<uint64_t>()),
                    static_cast<unsigned long long>(sa.at("bytes").get<uint64_t>()),
                    sa.at("expired").get<bool>() ? "  EXPIRED" : "");
    }
    std::printf("neighbors:\n");
    for (const auto& n : s.at("neighbors"))
        std::printf("  %-40s %s\n", n.at("ip").get<std::string>().c_str(),
                    n.at("resolved").get<bool>() ? n.at("mac").get<std::string>().c_str() : "(incomplete)");
    if (!s.at("events").empty()) {
        std::printf("recent events:\n");
        for (const auto& e : s.at("events"))
            std::printf("  %s %08x %s\n", e.at("direction").get<std::string>().c_str(),
                        e.at("spi").get<unsigned>(), e.at("type").get<std::string>().c_str());
    }
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"Operate a Ravelin IPsec gateway"};
    std::string prefix = "ravelin", socket_path;
    app.add_option("--file-prefix", prefix, "DPDK file prefix of the data plane instance");
    app.add_option("--socket", socket_path, "control socket path (overrides --file-prefix)");
    app.require_subcommand(1);
    bool as_json = false;
    auto* stats = app.add_subcommand("stats", "data-plane packet, drop and SA counters");
    stats->add_flag("--json", as_json, "print the raw JSON");
    CLI11_PARSE(app, argc, argv);

    if (socket_path.empty()) socket_path = ravelin::dataplane_socket_path(prefix);
    std::string reply, error;
    if (!request(socket_path, "stats", reply, error)) {
        std::fprintf(stderr, "ravelinctl: %s\n", error.c_str());
        return 1;
    }
    json doc = json::parse(reply, nullptr, false);
    if (doc.is_discarded() || doc.contains("error")) {
        std::fprintf(stderr, "ravelinctl: bad answer: %s\n", reply.c_str());
        return 1;
    }
    if (as_json) std::cout << doc.dump(2) << "\n";
    else print_human(doc);
    return 0;
}

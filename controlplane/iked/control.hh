// ravelin-iked's control socket: a unix stream socket (iked.control_socket,
// default /run/ravelin/iked.sock) on which a client sends one JSON request
// and gets one JSON reply, then the connection closes. The shape follows the
// data plane's control socket; a bare command word ("list-sas") is taken as
// {"command":"list-sas"}.
//
//   -> {"command":"initiate","connection":"gw","child":"net"}\n
//   <- {"ok":true}\n                     or {"error":"..."}\n
//
// It runs inside the daemon's single poll loop, never blocking it: sockets
// are non-blocking, a request is at most 64 KiB, a client has two seconds
// to send its request and take its reply, and at most 16 are served at once.
// What each command does is up to the ControlHandler (the daemon's is in
// commands.hh; the tests use a fake one).
#pragma once

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ravelin::iked {

class ControlHandler {
public:
    virtual ~ControlHandler() = default;
    // `request` is an object with a string "command". The reply is sent as
    // it is; a reply with "error" tells the client the command failed.
    virtual nlohmann::json handle(const nlohmann::json& request) = 0;
};

struct ControlOptions {
    std::chrono::milliseconds client_timeout{2000};
    std::size_t max_request = 64 * 1024;
    std::size_t max_clients = 16;
};

struct ControlStats {
    uint64_t requests = 0;          // answered by the handler
    uint64_t bad_requests = 0;      // not JSON, no command, too long
    uint64_t timeouts = 0;          // closed for being too slow
    uint64_t rejected = 0;          // over max_clients
};

class ControlServer {
public:
    using Clock = std::chrono::steady_clock;

    ControlServer(ControlHandler& handler, ControlOptions options = {})
        : handler_(handler), options_(options) {}
    ~ControlServer() { close(); }
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Creates the socket's directory (0750) if needed, replaces a stale
    // socket file, refuses when another server answers on `path` or when
    // `path` is not a socket, and listens (socket mode 0660).
    bool open(const std::string& path, std::string& error);
    void close();

    // For the poll loop: the listening socket and the clients' sockets.
    void poll_fds(std::vector<pollfd>& out) const;
    // Handles an fd from poll_fds() that has events; false if not ours.
    bool ready(const pollfd& p, Clock::time_point now);
    // Closes clients past their deadline.
    void expire(Clock::time_point now);
    // The earliest client deadline, if any client is connected.
    std::optional<Clock::time_point> next_deadline() const;

    const ControlStats& stats() const { return stats_; }
    std::size_t clients() const { return clients_.size(); }
    const std::string& path() const { return path_; }

private:
    struct Client {
        int fd = -1;
        std::string in;
        std::string out;
        std::size_t sent = 0;
        bool replying = false;
        Clock::time_point deadline;
    };

    void accept_clients(Clock::time_point now);
    // false when the client is finished (closed).
    bool on_readable(Client& c);
    bool on_writable(Client& c);
    void answer(Client& c);
    void drop(std::size_t index);

    ControlHandler& handler_;
    ControlOptions options_;
    std::string path_;
    int listen_fd_ = -1;
    std::vector<Client> clients_;
    ControlStats stats_;
};

// The request a line of text stands for: a JSON object with a string
// "command", or a bare command word. nullopt with `error` otherwise.
std::optional<nlohmann::json> parse_request(std::string_view text, std::string& error);

} // namespace ravelin::iked

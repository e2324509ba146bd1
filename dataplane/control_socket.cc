// Control socket: one request line ("stats"), one JSON answer, close.
#include "control_socket.hh"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <nlohmann/json.hpp>

#include "dataplane.hh"

namespace ravelin::dp {

bool ControlServer::start(std::string& error)
{
    mkdir("/run/ravelin", 0750);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path_.size() >= sizeof(addr.sun_path)) {
        error = "control socket path too long: " + path_;
        return false;
    }
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(path_.c_str());   // a stale socket from a killed instance
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd_, 8) != 0) {
        error = "cannot listen on " + path_ + ": " + std::strerror(errno);
        return false;
    }
    chmod(path_.c_str(), 0660);
    thread_ = std::thread([this] { serve(); });
    return true;
}

void ControlServer::stop()
{
    stopping_.store(true);
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) {
        close(fd_);
        unlink(path_.c_str());
        fd_ = -1;
    }
}

void ControlServer::serve()
{
    while (!stopping_.load()) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 200) <= 0) continue;
        int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        timeval tv{2, 0};   // a client that sends nothing, or reads nothing, must not hang us
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        char buf[256];
        ssize_t n = recv(c, buf, sizeof buf - 1, 0);
        std::string cmd = n > 0 ? std::string(buf, size_t(n)) : "";
        while (!cmd.empty() && (cmd.back() == '\n' || cmd.back() == '\r')) cmd.pop_back();
        std::string reply = answer(cmd) + "\n";
        for (size_t off = 0; off < reply.size();) {
            ssize_t w = send(c, reply.data() + off, reply.size() - off, MSG_NOSIGNAL);
            if (w <= 0) break;
            off += size_t(w);
        }
        close(c);
    }
}

std::string ControlServer::answer(const std::string& command)
{
    if (command == "stats") return dp_.stats_json().dump();
    return nlohmann::json{{"error", "unknown command '" + command + "' (known: stats)"}}.dump();
}

} // namespace ravelin::dp

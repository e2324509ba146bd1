#include "control.hh"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "logging.hh"

namespace ravelin::iked {

namespace {

bool make_sockaddr(const std::string& path, sockaddr_un& addr, std::string& error)
{
    addr = sockaddr_un{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
        error = "control socket path '" + path + "' is empty or too long";
        return false;
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return true;
}

// mkdir -p for the socket's directory; new directories get 0750.
bool make_parent_dirs(const std::string& path, std::string& error)
{
    auto slash = path.rfind('/');
    if (slash == std::string::npos || slash == 0) return true;
    std::string dir = path.substr(0, slash);
    for (std::size_t pos = 1; pos <= dir.size(); ++pos) {
        if (pos != dir.size() && dir[pos] != '/') continue;
        std::string part = dir.substr(0, pos);
        if (mkdir(part.c_str(), 0750) != 0 && errno != EEXIST) {
            error = "cannot create " + part + ": " + std::strerror(errno);
            return false;
        }
    }
    return true;
}

std::string trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return std::string(s);
}

} // namespace

std::optional<nlohmann::json> parse_request(std::string_view text, std::string& error)
{
    std::string t = trim(text);
    if (t.empty()) {
        error = "empty request";
        return std::nullopt;
    }
    if (t.front() != '{') {
        // A bare command word, as the data plane's socket takes them.
        bool word = std::all_of(t.begin(), t.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        });
        if (!word) {
            error = "request is neither a JSON object nor a command word";
            return std::nullopt;
        }
        return nlohmann::json{{"command", t}};
    }
    auto j = nlohmann::json::parse(t, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        error = "request is not a valid JSON object";
        return std::nullopt;
    }
    auto it = j.find("command");
    if (it == j.end() || !it->is_string()) {
        error = "request has no \"command\" string";
        return std::nullopt;
    }
    return j;
}

bool ControlServer::open(const std::string& path, std::string& error)
{
    close();
    sockaddr_un addr;
    if (!make_sockaddr(path, addr, error) || !make_parent_dirs(path, error)) return false;

    struct stat st;
    if (lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            error = path + " exists and is not a socket; not replacing it";
            return false;
        }
        // A socket file: in use if someone accepts on it, else left over
        // from an instance that was killed.
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
        if (probe >= 0) ::close(probe);
        if (live) {
            error = "another process is serving " + path + " (is ravelin-iked already running?)";
            return false;
        }
        unlink(path.c_str());
    }

    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(listen_fd_, 16) != 0) {
        error = "cannot listen on " + path + ": " + std::strerror(errno);
        if (listen_fd_ >= 0) ::close(listen_fd_);
        listen_fd_ = -1;
        return false;
    }
    chmod(path.c_str(), 0660);
    path_ = path;
    logger("ctl")->info("control socket {}", path_);
    return true;
}

void ControlServer::close()
{
    while (!clients_.empty()) drop(clients_.size() - 1);
    if (listen_fd_ >= 0) {
        ::close(listen_fd_);
        listen_fd_ = -1;
        unlink(path_.c_str());
    }
}

void ControlServer::poll_fds(std::vector<pollfd>& out) const
{
    if (listen_fd_ >= 0) out.push_back({listen_fd_, POLLIN, 0});
    for (const auto& c : clients_) out.push_back({c.fd, short(c.replying ? POLLOUT : POLLIN), 0});
}

bool ControlServer::ready(const pollfd& p, Clock::time_point now)
{
    if (p.fd < 0) return false;
    if (p.fd == listen_fd_) {
        accept_clients(now);
        return true;
    }
    auto it = std::find_if(clients_.begin(), clients_.end(), [&](const Client& c) { return c.fd == p.fd; });
    if (it == clients_.end()) return false;
    bool keep = it->replying ? on_writable(*it) : on_readable(*it);
    // A client that asked and then hung up before reading is dealt with by
    // the failing send (EPIPE); POLLERR/POLLHUP alone while reading means
    // it is gone.
    if (keep && !it->replying && (p.revents & (POLLERR | POLLNVAL))) keep = false;
    if (!keep) drop(std::size_t(it - clients_.begin()));
    return true;
}

void ControlServer::accept_clients(Clock::time_point now)
{
    // Bounded: at most one backlog's worth per wake-up.
    for (int n = 0; n < 16; ++n) {
        int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (clients_.size() >= options_.max_clients) {
            ++stats_.rejected;
            static const char busy[] = "{\"error\":\"busy: too many control clients\"}\n";
            (void)!send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            ::close(fd);
            continue;
        }
        Client c;
        c.fd = fd;
        c.deadline = now + options_.client_timeout;
        clients_.push_back(std::move(c));
    }
}

bool ControlServer::on_readable(Client& c)
{
    char buf[4096];
    for (;;) {
        ssize_t n = recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
            if (errno == EINTR) continue;
            return false;
        }
        if (n == 0) {
            // The client closed its side: what it sent is the request.
            if (c.in.empty()) return false;
            answer(c);
            return on_writable(c);
        }
        c.in.append(buf, std::size_t(n));
        auto nl = c.in.find('\n');
        std::size_t len = nl == std::string::npos ? c.in.size() : nl;
        if (len > options_.max_request) {
            ++stats_.bad_requests;
            c.out = nlohmann::json{{"error", "request longer than " + std::to_string(options_.max_request) +
                                                 " bytes"}}.dump() + "\n";
            c.replying = true;
            return on_writable(c);
        }
        if (nl != std::string::npos) {
            c.in.resize(nl);
            answer(c);
            return on_writable(c);
        }
    }
}

void ControlServer::answer(Client& c)
{
    std::string error;
    nlohmann::json reply;
    auto request = parse_request(c.in, error);
    if (!request) {
        ++stats_.bad_requests;
        reply = {{"error", error}};
    } else {
        ++stats_.requests;
        auto log = logger("ctl");
        log->debug("request {}", (*request)["command"].get<std::string>());
        try {
            reply = handler_.handle(*request);
        } catch (const std::exception& e) {
            // nlohmann throws on a field of the wrong type; that is the
            // client's mistake, not a reason to stop the daemon.
            reply = {{"error", std::string("bad request: ") + e.what()}};
        }
    }
    c.out = reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    c.in.clear();
    c.replying = true;
}

bool ControlServer::on_writable(Client& c)
{
    while (c.sent < c.out.size()) {
        ssize_t w = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
            if (errno == EINTR) continue;
            return false;
        }
        c.sent += std::size_t(w);
    }
    return false;   // all sent: done with this client
}

void ControlServer::drop(std::size_t index)
{
    ::close(clients_[index].fd);
    clients_.erase(clients_.begin() + std::ptrdiff_t(index));
}

void ControlServer::expire(Clock::time_point now)
{
    for (std::size_t i = clients_.size(); i-- > 0;)
        if (clients_[i].deadline <= now) {
            ++stats_.timeouts;
            logger("ctl")->debug("control client timed out");
            drop(i);
        }
}

std::optional<ControlServer::Clock::time_point> ControlServer::next_deadline() const
{
    std::optional<Clock::time_point> best;
    for (const auto& c : clients_)
        if (!best || c.deadline < *best) best = c.deadline;
    return best;
}

} // namespace ravelin::iked

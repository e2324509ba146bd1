#include "daemon.hh"

#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>

#include "commands.hh"
#include "control.hh"
#include "engine.hh"
#include "json_sink.hh"
#include "keylog.hh"
#include "logging.hh"
#include "udp_transport.hh"

namespace ravelin::iked {

bool validate_daemon_config(const ike::DaemonConfig& d, std::string& error)
{
    for (const auto& a : d.listen) {
        IpAddress addr;
        if (!parse_address(a, addr)) {
            error = "iked.listen: '" + a + "' is not a numeric IPv4 or IPv6 address";
            return false;
        }
    }
    if (d.port == d.port_nat_t) {
        error = "iked.port and iked.port_nat_t must differ";
        return false;
    }
    spdlog::level::level_enum l;
    if (!parse_level(d.log.default_level, l)) {
        error = "iked.log: unknown level '" + d.log.default_level + "'";
        return false;
    }
    // Subsystem names are the parser's business (it knows strongSwan's).
    for (const auto& [sub, level] : d.log.subsystems) {
        if (!parse_level(level, l)) {
            error = "iked.log: unknown level '" + level + "' for " + sub;
            return false;
        }
    }
    if (d.control_socket.empty()) {
        error = "iked.control_socket is empty";
        return false;
    }
    return true;
}

void block_daemon_signals()
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, nullptr);
    std::signal(SIGPIPE, SIG_IGN);
}

namespace {

// Settings that only take effect at start: a reload that changes them is
// applied to the connections but says so.
bool restart_needed(const ike::DaemonConfig& a, const ike::DaemonConfig& b)
{
    return a.listen != b.listen || a.port != b.port || a.port_nat_t != b.port_nat_t ||
           a.control_socket != b.control_socket || a.keylog != b.keylog || a.sa_sink != b.sa_sink;
}

class Standalone {
public:
    Standalone(const DaemonOptions& options, ike::IkeConfig config)
        : options_(options), daemon_(config.daemon), config_(std::move(config)) {}

    int run(const std::function<void()>& on_ready);

private:
    bool start(std::string& error);
    bool reload(std::vector<std::string>& touched, std::string& error);
    void add_stats(nlohmann::json& out) const;
    void on_signal(bool& stop);

    DaemonOptions options_;
    ike::DaemonConfig daemon_;          // as started (listen, sockets, files)
    ike::IkeConfig config_;             // handed to the engine at start
    Logging logging_;
    UdpTransport transport_;
    std::unique_ptr<LoggingSaSink> sink_;
    JsonSaSink* json_sink_ = nullptr;   // sink_ when it is one
    std::unique_ptr<KeyLog> keylog_;
    ike::SystemRng rng_;
    std::unique_ptr<ike::Engine> engine_;
    std::unique_ptr<Commands> commands_;
    std::unique_ptr<ControlServer> control_;
    int signal_fd_ = -1;
    uint64_t reloads_ = 0, reload_failures_ = 0;
    ike::TimePoint started_;
};

bool Standalone::start(std::string& error)
{
    LogOptions log_options;
    log_options.syslog = options_.syslog;
    if (!logging_.start(daemon_.log, log_options, error)) return false;
    auto log = logger("cfg");
    log->info("ravelin-iked starting (standalone), {} connection(s) from {}", config_.connections.size(),
              options_.config_path);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    signal_fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd_ < 0) {
        error = std::string("signalfd: ") + std::strerror(errno);
        return false;
    }

    if (!transport_.open(daemon_.listen, daemon_.port, daemon_.port_nat_t, error)) return false;

    std::string sink_path = options_.sa_sink.empty() ? daemon_.sa_sink : options_.sa_sink;
    if (sink_path.empty()) {
        sink_ = std::make_unique<LoggingSaSink>();
    } else {
        auto json = JsonSaSink::open(sink_path, error);
        if (!json) return false;
        json_sink_ = json.get();
        sink_ = std::move(json);
        log->warn("writing Child SAs with their keys to {} (SA sink): for testing and debugging only", sink_path);
    }

    ike::EngineHooks hooks;
    if (!daemon_.keylog.empty()) {
        keylog_ = KeyLog::open(daemon_.keylog, error);
        if (!keylog_) return false;
        hooks.ike_keys = [this](uint64_t spi_i, uint64_t spi_r, const ike::IkeKeys& keys,
                                const ike::IkeSuite& suite) { keylog_->write(spi_i, spi_r, keys, suite); };
    }
    engine_ = std::make_unique<ike::Engine>(config_, transport_, *sink_, rng_, std::move(hooks));

    CommandHooks command_hooks;
    command_hooks.reload = [this](std::vector<std::string>& touched, std::string& e) { return reload(touched, e); };
    command_hooks.stats = [this](nlohmann::json& out) { add_stats(out); };
    commands_ = std::make_unique<Commands>(*engine_, logging_, std::move(command_hooks));
    control_ = std::make_unique<ControlServer>(*commands_);
    if (!control_->open(daemon_.control_socket, error)) return false;
    started_ = ike::Clock::now();
    return true;
}

bool Standalone::reload(std::vector<std::string>& touched, std::string& error)
{
    auto log = logger("cfg");
    auto config = ike::load_ike_config(options_.config_path, error);
    if (config && !validate_daemon_config(config->daemon, error)) {
        error = options_.config_path + ": " + error;
        config.reset();
    }
    if (!config) {
        ++reload_failures_;
        log->error("reload failed, keeping the running configuration: {}", error);
        return false;
    }
    std::string level_error;
    if (!logging_.apply(config->daemon.log, level_error)) log->warn("reload: {}", level_error);
    if (restart_needed(daemon_, config->daemon))
        log->warn("reload: listen addresses, ports, control socket, keylog and sa_sink changes take effect "
                  "at the next start");
    touched = engine_->reload(ike::Clock::now(), std::move(*config));
    ++reloads_;
    std::string names;
    for (const auto& n : touched) names += (names.empty() ? "" : ", ") + n;
    log->info("reloaded {}: {} connection(s) touched{}{}", options_.config_path, touched.size(),
              touched.empty() ? "" : ": ", names);
    return true;
}

void Standalone::add_stats(nlohmann::json& out) const
{
    const auto& t = transport_.stats();
    out["transport"] = {
        {"rx_ike", t.rx_ike},           {"rx_keepalive", t.rx_keepalive},
        {"rx_esp_dropped", t.rx_esp_dropped}, {"rx_malformed", t.rx_malformed},
        {"rx_errors", t.rx_errors},     {"tx_ike", t.tx_ike},
        {"tx_keepalive", t.tx_keepalive}, {"tx_errors", t.tx_errors},
    };
    const auto& c = control_->stats();
    out["control"] = {{"requests", c.requests}, {"bad_requests", c.bad_requests},
                      {"timeouts", c.timeouts}, {"rejected", c.rejected}};
    out["sa_sink"] = {{"kind", json_sink_ ? "json" : "log"},
                      {"installed", sink_->installed()},
                      {"removed", sink_->removed()},
                      {"write_errors", json_sink_ ? json_sink_->write_errors() : 0}};
    if (keylog_) out["keylog"] = {{"written", keylog_->written()}, {"skipped", keylog_->skipped()}};
    out["reloads"] = {{"ok", reloads_}, {"failed", reload_failures_}};
    out["mode"] = "standalone";
    out["pid"] = getpid();
    out["uptime_s"] = std::chrono::duration_cast<std::chrono::seconds>(ike::Clock::now() - started_).count();
}

void Standalone::on_signal(bool& stop)
{
    signalfd_siginfo si;
    while (read(signal_fd_, &si, sizeof si) == ssize_t(sizeof si)) {
        if (si.ssi_signo == SIGHUP) {
            logger("cfg")->info("SIGHUP: reloading {}", options_.config_path);
            std::vector<std::string> touched;
            std::string error;
            reload(touched, error);
        } else {
            logger("cfg")->info("{}: exiting", strsignal(int(si.ssi_signo)));
            stop = true;
        }
    }
}

int Standalone::run(const std::function<void()>& on_ready)
{
    std::string error;
    if (!start(error)) {
        logger("cfg")->critical("cannot start: {}", error);
        std::fprintf(stderr, "ravelin-iked: %s\n", error.c_str());
        return 1;
    }
    on_ready();

    std::vector<pollfd> fds;
    bool stop = false;
    while (!stop) {
        auto now = ike::Clock::now();
        control_->expire(now);
        auto wake = engine_->tick(now);
        if (auto d = control_->next_deadline()) wake = std::min(wake, *d);
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count() + 1;
        int timeout = int(std::clamp<int64_t>(wait, 0, 60'000));

        fds.clear();
        fds.push_back({signal_fd_, POLLIN, 0});
        const std::size_t transport_begin = fds.size();
        transport_.poll_fds(fds);
        const std::size_t control_begin = fds.size();
        control_->poll_fds(fds);

        int n = poll(fds.data(), fds.size(), timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            logger("net")->critical("poll: {}", std::strerror(errno));
            return 1;
        }
        if (n == 0) continue;
        now = ike::Clock::now();
        if (fds[0].revents) on_signal(stop);
        for (std::size_t i = transport_begin; i < control_begin; ++i)
            if (fds[i].revents)
                transport_.receive(fds[i].fd, [&](const ike::Endpoint& local, const ike::Endpoint& remote,
                                                   ike::ByteView message) {
                    engine_->receive(now, local, remote, message);
                });
        for (std::size_t i = control_begin; i < fds.size(); ++i)
            if (fds[i].revents) control_->ready(fds[i], now);
    }
    control_->close();
    return 0;
}

} // namespace

int run_standalone(const DaemonOptions& options, ike::IkeConfig config, const std::function<void()>& on_ready)
{
    Standalone daemon(options, std::move(config));
    return daemon.run(on_ready);
}

} // namespace ravelin::iked

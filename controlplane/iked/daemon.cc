#include "daemon.hh"

#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "commands.hh"
#include "control.hh"
#include "dp_channel.hh"
#include "dp_sink.hh"
#include "engine.hh"
#include "json_sink.hh"
#include "keylog.hh"
#include "logging.hh"
#include "metrics.hh"
#include "ravelin/paths.hh"
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
           a.control_socket != b.control_socket || a.keylog != b.keylog || a.sa_sink != b.sa_sink ||
           a.metrics != b.metrics;
}

// Latencies of SA commands (sent -> visible to the workers), last N.
class LatencyWindow {
public:
    void add(uint64_t ns)
    {
        if (samples_.size() < capacity) samples_.push_back(ns);
        else samples_[next_++ % capacity] = ns;
        ++count_;
    }
    nlohmann::json json() const
    {
        if (samples_.empty()) return {{"count", 0}};
        std::vector<uint64_t> v = samples_;
        std::sort(v.begin(), v.end());
        auto at = [&](double q) { return double(v[std::min(v.size() - 1, std::size_t(q * double(v.size())))]) / 1e3; };
        return {{"count", count_}, {"p50_us", at(0.50)}, {"p99_us", at(0.99)}, {"max_us", double(v.back()) / 1e3}};
    }

private:
    static constexpr std::size_t capacity = 4096;
    std::vector<uint64_t> samples_;
    std::size_t next_ = 0;
    uint64_t count_ = 0;
};

class Daemon {
public:
    Daemon(const DaemonOptions& options, ike::IkeConfig config)
        : options_(options), daemon_(config.daemon), config_(std::move(config)) {}

    int run(const std::function<void()>& on_ready);

private:
    bool attached_mode() const { return !options_.dataplane.empty(); }
    bool start(std::string& error);
    bool start_dataplane(std::string& error);
    bool attach(std::chrono::milliseconds wait, std::string& error);
    bool wait_for(uint32_t seq, std::chrono::milliseconds limit);
    void adopt_running_sas();
    void serve_channel(ike::TimePoint now);
    void on_reply(const channel::Reply& r, ike::TimePoint now);
    void check_dataplane(ike::TimePoint now);
    void refresh_counters(nlohmann::json& sas);
    void request_listing();
    void listing_complete();
    bool reload(std::vector<std::string>& touched, std::string& error);
    void add_stats(nlohmann::json& out) const;
    void on_signal(bool& stop);
    const TransportStats& transport_stats() const { return dp_transport_ ? dp_transport_->stats() : udp_.stats(); }
    void publish_metrics();

    DaemonOptions options_;
    ike::DaemonConfig daemon_;          // as started (listen, sockets, files)
    ike::IkeConfig config_;             // handed to the engine at start
    Logging logging_;
    // Standalone
    UdpTransport udp_;
    std::unique_ptr<LoggingSaSink> sink_;
    JsonSaSink* json_sink_ = nullptr;   // sink_ when it is one
    // Attached
    DataplaneChannel channel_;
    std::unique_ptr<DataplaneTransport> dp_transport_;
    std::unique_ptr<DataplaneSaSink> dp_sink_;
    std::vector<channel::SaInfo> listing_;          // sa_info replies of the last sa_list
    uint32_t listing_seq_ = 0;
    bool listing_done_ = false;
    uint32_t waiting_seq_ = 0;
    bool waiting_done_ = false;
    LatencyWindow command_latency_;
    LatencyWindow install_latency_;     // outbound install -> first packet on it
    ike::TimePoint next_first_use_probe_{};
    bool listing_outstanding_ = false;
    ike::TimePoint listing_sent_{};
    ike::TimePoint next_liveness_check_{};
    ike::TimePoint next_attach_try_{};
    uint64_t dataplane_losses_ = 0, reattaches_ = 0;
    std::string dataplane_state_ = "detached";

    std::unique_ptr<KeyLog> keylog_;
    ike::SystemRng rng_;
    std::unique_ptr<ike::Engine> engine_;
    std::unique_ptr<Commands> commands_;
    std::unique_ptr<ControlServer> control_;
    std::unique_ptr<Metrics> metrics_;   // null when iked.metrics is off
    int signal_fd_ = -1;
    uint64_t reloads_ = 0, reload_failures_ = 0;
    ike::TimePoint started_;
};

constexpr uint64_t heartbeat_max_age_ns = 1'000'000'000;   // a data plane silent this long is gone

bool Daemon::start(std::string& error)
{
    LogOptions log_options;
    log_options.syslog = options_.syslog;
    if (!logging_.start(daemon_.log, log_options, error)) return false;
    auto log = logger("cfg");
    log->info("ravelin-iked starting ({}), {} connection(s) from {}",
              attached_mode() ? "attached to data plane '" + options_.dataplane + "'" : std::string("standalone"),
              config_.connections.size(), options_.config_path);

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

    ike::Transport* transport = nullptr;
    ike::SaSink* sink = nullptr;
    if (attached_mode()) {
        if (!start_dataplane(error)) return false;
        transport = dp_transport_.get();
        sink = dp_sink_.get();
    } else {
        if (!udp_.open(daemon_.listen, daemon_.port, daemon_.port_nat_t, error)) return false;
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
        transport = &udp_;
        sink = sink_.get();
    }

    ike::EngineHooks hooks;
    if (!daemon_.keylog.empty()) {
        keylog_ = KeyLog::open(daemon_.keylog, error);
        if (!keylog_) return false;
        hooks.ike_keys = [this](uint64_t spi_i, uint64_t spi_r, const ike::IkeKeys& keys,
                                const ike::IkeSuite& suite) { keylog_->write(spi_i, spi_r, keys, suite); };
    }
    engine_ = std::make_unique<ike::Engine>(config_, *transport, *sink, rng_, std::move(hooks));
    if (attached_mode()) adopt_running_sas();

    CommandHooks command_hooks;
    command_hooks.reload = [this](std::vector<std::string>& touched, std::string& e) { return reload(touched, e); };
    command_hooks.stats = [this](nlohmann::json& out) { add_stats(out); };
    if (attached_mode()) {
        command_hooks.sa_counters = [this](nlohmann::json& sas) { refresh_counters(sas); };
        // diagnose asks the data plane's control socket (the same stats the
        // metrics read): an operator command, so a short blocking wait.
        command_hooks.dataplane_stats = [socket = dataplane_socket_path(options_.dataplane)] {
            return query_dataplane(socket, std::chrono::milliseconds(300));
        };
    }
    commands_ = std::make_unique<Commands>(*engine_, logging_, std::move(command_hooks));
    control_ = std::make_unique<ControlServer>(*commands_);
    if (!control_->open(daemon_.control_socket, error)) return false;
    if (daemon_.metrics.enabled) {
        ike::MetricsConfig m = daemon_.metrics;
        if (m.dataplane.empty()) m.dataplane = options_.dataplane;   // attached: the one we serve
        metrics_ = Metrics::start(m, error);
        if (!metrics_) return false;
        log->info("metrics on {}:{}{}", m.listen, metrics_->port(), m.dataplane.empty() ? "" : ", data plane " + m.dataplane);
    }
    started_ = ike::Clock::now();
    return true;
}

// --- attached mode ------------------------------------------------------------------------

bool Daemon::attach(std::chrono::milliseconds wait, std::string& error)
{
    const std::string path = channel::channel_path(options_.dataplane);
    auto deadline = ike::Clock::now() + wait;
    for (;;) {
        if (channel_.attach(path, DataplaneChannel::monotonic_ns(), heartbeat_max_age_ns, error)) break;
        if (ike::Clock::now() >= deadline) return false;
        usleep(200'000);
    }
    channel::Command hello;
    hello.type = channel::CommandType::hello;
    uint32_t seq = channel_.send(hello);
    if (!wait_for(seq, std::chrono::seconds(2))) {
        error = path + ": the data plane did not answer (hello)";
        channel_.detach();
        return false;
    }
    dataplane_state_ = "attached";
    logger("net")->info("attached to data plane '{}' (pid {}, instance {:016x})", options_.dataplane,
                        channel_.dataplane_pid(), channel_.instance());
    return true;
}

// Serves the channel until the result of `seq` (or, for an sa_list, its
// list_end) arrived. Other replies are handled as usual meanwhile.
bool Daemon::wait_for(uint32_t seq, std::chrono::milliseconds limit)
{
    waiting_seq_ = seq;
    waiting_done_ = false;
    auto deadline = ike::Clock::now() + limit;
    while (!waiting_done_ && channel_.attached() && ike::Clock::now() < deadline) {
        channel_.flush();
        if (channel_.poll_replies([&](const channel::Reply& r) { on_reply(r, ike::Clock::now()); }) == 0)
            usleep(100);
    }
    waiting_seq_ = 0;
    return waiting_done_;
}

bool Daemon::start_dataplane(std::string& error)
{
    if (!attach(std::chrono::seconds(options_.attach_timeout_s), error)) return false;
    dp_transport_ = std::make_unique<DataplaneTransport>(channel_, daemon_.port_nat_t);
    dp_sink_ = std::make_unique<DataplaneSaSink>(channel_);
    return true;
}

// What a previous ravelin-iked installed is still in the data plane: keep
// it forwarding, and get new SAs for the same children (dp_sink.hh).
void Daemon::adopt_running_sas()
{
    request_listing();
    if (!wait_for(listing_seq_, std::chrono::seconds(2))) {
        logger("chd")->warn("the data plane did not list its SAs; nothing adopted");
        return;
    }
    const auto now = ike::Clock::now();
    struct Child {
        uint32_t reqid = 0;
        std::vector<uint32_t> inbound;
    };
    std::map<std::pair<std::string, std::string>, Child> children;
    for (const auto& info : listing_) {
        if (info.connection.view().empty()) continue;   // the data plane's own manual SAs
        std::string conn(info.connection.view()), child(info.child.view());
        // Keep it no longer than its configured life (the data plane only
        // enforces byte and packet limits).
        auto life = std::chrono::seconds(3600);
        if (const auto* c = config_.find(conn))
            for (const auto& cc : c->children)
                if (cc.name == child && cc.life_time_s) life = std::chrono::seconds(cc.life_time_s);
        dp_sink_->adopt(info, now + life);
        Child& ch = children[{conn, child}];
        ch.reqid = info.reqid;
        if (info.direction == SaDirection::inbound) ch.inbound.push_back(info.spi.value);
    }
    for (const auto& [name, ch] : children) {
        engine_->adopt(name.first, name.second, ch.reqid, ch.inbound);
        const auto* conn = config_.find(name.first);
        bool started_by_engine = false;
        if (conn)
            for (const auto& cc : conn->children)
                started_by_engine |= cc.name == name.second && cc.start_action == ike::StartAction::start;
        std::string err;
        if (!conn) {
            logger("chd")->warn("{}/{}: adopted SAs of a connection no longer configured; they expire",
                                name.first, name.second);
        } else if (!started_by_engine && !engine_->initiate(now, name.first, name.second, err)) {
            logger("chd")->info("{}/{}: adopted; cannot initiate ({}), waiting for the peer", name.first,
                                name.second, err);
        }
    }
    if (!children.empty())
        logger("chd")->info("adopted the SAs of {} child(ren) from the running data plane", children.size());
}

void Daemon::on_reply(const channel::Reply& r, ike::TimePoint now)
{
    switch (r.type) {
    case channel::ReplyType::result:
        if (uint64_t sent = channel_.sent_ns(r.seq); sent && r.result.applied_ns >= sent) {
            command_latency_.add(r.result.applied_ns - sent);
            if (metrics_) metrics_->observe_sa_command_latency(double(r.result.applied_ns - sent) / 1e9);
        }
        if (dp_sink_) dp_sink_->on_result(r.seq, r.result);
        if (r.seq == waiting_seq_ && waiting_seq_ != listing_seq_) waiting_done_ = true;
        break;
    case channel::ReplyType::event:
        logger("chd")->info("data plane: SA {:08x} {}: {} after {} packets, {} bytes", r.event.spi.value,
                            r.event.direction ? "out" : "in", event_name(r.event.type), r.event.packets,
                            r.event.bytes);
        // Not before the engine exists: attach() at start reads the ring
        // while waiting for hello, and a previous ravelin-iked may have left
        // events and acquires there (its SAs are adopted later, its traps
        // raise again).
        if (engine_) engine_->sa_expired(now, r.event.spi.value, r.event.type != EventType::soft_lifetime);
        break;
    case channel::ReplyType::acquire:
        if (engine_) engine_->acquire(now, r.acquire.reqid);
        break;
    case channel::ReplyType::sa_info:
        if (r.seq == listing_seq_ && listing_.size() < (1u << 20)) listing_.push_back(r.sa_info);
        break;
    case channel::ReplyType::list_end:
        if (r.seq == listing_seq_) {
            listing_done_ = true;
            listing_outstanding_ = false;
            listing_complete();
            if (r.seq == waiting_seq_) waiting_done_ = true;
        }
        break;
    }
}

void Daemon::request_listing()
{
    channel::Command list;
    list.type = channel::CommandType::sa_list;
    listing_.clear();
    listing_done_ = false;
    listing_outstanding_ = true;
    listing_sent_ = ike::Clock::now();
    listing_seq_ = channel_.send(list);
}

// A full listing arrived: first uses of new outbound SAs become install
// latency samples.
void Daemon::listing_complete()
{
    if (!dp_sink_) return;
    for (const auto& i : listing_)
        if (i.direction == SaDirection::outbound && i.first_use_ns)
            if (auto ns = dp_sink_->first_used(i.spi.value, i.first_use_ns)) {
                install_latency_.add(*ns);
                if (metrics_) metrics_->observe_sa_install_latency(double(*ns) / 1e9);
            }
}

void Daemon::serve_channel(ike::TimePoint now)
{
    if (!channel_.attached()) return;
    // New outbound SAs wait for their first packet: look a few times a second.
    // (A listing the data plane never finished, because it went away, is given up.)
    if (listing_outstanding_ && now - listing_sent_ > std::chrono::seconds(2)) listing_outstanding_ = false;
    if (dp_sink_->awaiting_first_use() && !listing_outstanding_ && now >= next_first_use_probe_) {
        next_first_use_probe_ = now + std::chrono::milliseconds(250);
        request_listing();
    }
    channel_.poll_frames([&](const channel::Frame& f) {
        dp_transport_->receive(f, [&](const ike::Endpoint& local, const ike::Endpoint& remote, ike::ByteView m) {
            engine_->receive(now, local, remote, m);
        });
    });
    channel_.poll_replies([&](const channel::Reply& r) { on_reply(r, now); });
    dp_sink_->tick(now);
    channel_.flush();
}

void Daemon::check_dataplane(ike::TimePoint now)
{
    if (now < next_liveness_check_) return;
    next_liveness_check_ = now + std::chrono::milliseconds(100);
    auto log = logger("net");
    if (channel_.attached()) {
        std::string why;
        if (channel_.alive(DataplaneChannel::monotonic_ns(), heartbeat_max_age_ns, why)) return;
        log->error("data plane '{}' lost: {}; re-attaching", options_.dataplane, why);
        ++dataplane_losses_;
        channel_.detach();
        dataplane_state_ = "lost";
    }
    if (now < next_attach_try_) return;
    next_attach_try_ = now + std::chrono::milliseconds(500);
    std::string error;
    if (!attach(std::chrono::milliseconds(0), error)) {
        log->debug("re-attach: {}", error);
        return;
    }
    ++reattaches_;
    // A new instance holds only its configured SAs: give it our policies and
    // inbound SAs, and new outbound SAs by rekeying (their sequence numbers
    // must not start over under the peer's replay window).
    auto children = dp_sink_->installed_children();
    dp_sink_->reinstall();
    for (const auto& [conn, child] : children) {
        std::string err;
        if (!engine_->rekey_child(now, conn, child, err))
            log->warn("{}/{}: cannot rekey after the data plane restart: {}", conn, child, err);
    }
    log->info("data plane '{}' is back: {} child(ren) reinstalled and rekeyed", options_.dataplane, children.size());
}

void Daemon::refresh_counters(nlohmann::json& out)
{
    if (!channel_.attached()) return;
    request_listing();
    if (!wait_for(listing_seq_, std::chrono::milliseconds(500))) return;
    const uint64_t now_ns = DataplaneChannel::monotonic_ns();
    std::map<std::pair<uint32_t, uint8_t>, const channel::SaInfo*> by_spi;
    for (const auto& i : listing_) by_spi[{i.spi.value, uint8_t(i.direction)}] = &i;
    for (auto& sa : out["sas"])
        for (auto& c : sa["children"])
            for (auto [key, dir] : {std::pair{"spi_in", SaDirection::inbound}, {"spi_out", SaDirection::outbound}}) {
                uint32_t spi = uint32_t(std::stoul(c.value(key, std::string("0")), nullptr, 16));
                auto it = by_spi.find({spi, uint8_t(dir)});
                if (it == by_spi.end()) continue;
                const channel::SaInfo& i = *it->second;
                c[dir == SaDirection::inbound ? "in" : "out"] = {
                    {"packets", i.packets},
                    {"bytes", i.bytes},
                    {"idle_s", i.last_use_ns ? double(now_ns - std::min(now_ns, i.last_use_ns)) / 1e9 : -1.0},
                    {"expired", i.hard_reached}};
            }
}

// --- both modes ---------------------------------------------------------------------------

bool Daemon::reload(std::vector<std::string>& touched, std::string& error)
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
        log->warn("reload: listen addresses, ports, control socket, keylog, sa_sink and metrics changes take "
                  "effect at the next start");
    touched = engine_->reload(ike::Clock::now(), std::move(*config));
    ++reloads_;
    std::string names;
    for (const auto& n : touched) names += (names.empty() ? "" : ", ") + n;
    log->info("reloaded {}: {} connection(s) touched{}{}", options_.config_path, touched.size(),
              touched.empty() ? "" : ": ", names);
    return true;
}

void Daemon::add_stats(nlohmann::json& out) const
{
    const auto& t = transport_stats();
    out["transport"] = {
        {"rx_ike", t.rx_ike},           {"rx_keepalive", t.rx_keepalive},
        {"rx_esp_dropped", t.rx_esp_dropped}, {"rx_malformed", t.rx_malformed},
        {"rx_errors", t.rx_errors},     {"tx_ike", t.tx_ike},
        {"tx_keepalive", t.tx_keepalive}, {"tx_errors", t.tx_errors},
    };
    const auto& c = control_->stats();
    out["control"] = {{"requests", c.requests}, {"bad_requests", c.bad_requests},
                      {"timeouts", c.timeouts}, {"rejected", c.rejected}};
    if (dp_sink_) {
        const auto& s = dp_sink_->stats();
        const auto& ch = channel_.stats();
        out["sa_sink"] = {{"kind", "dataplane"},
                          {"installed", s.installed},
                          {"removed", s.removed},
                          {"policy_sets", s.policy_sets},
                          {"too_many_policies", s.too_many_policies},
                          {"adopted", s.adopted},
                          {"adopted_removed", s.adopted_removed},
                          {"command_failures", s.command_failures}};
        out["dataplane"] = {{"prefix", options_.dataplane},
                            {"state", dataplane_state_},
                            {"pid", channel_.dataplane_pid()},
                            {"instance", fmt::format("{:016x}", channel_.instance())},
                            {"losses", dataplane_losses_},
                            {"reattaches", reattaches_},
                            {"commands_sent", ch.commands_sent},
                            {"commands_queued", ch.commands_queued},
                            {"commands_dropped", ch.commands_dropped},
                            {"commands_waiting", channel_.queued()},
                            {"replies", ch.replies},
                            {"frames_in", ch.frames_in},
                            {"frames_out", ch.frames_out},
                            {"frames_out_dropped", ch.frames_out_dropped},
                            {"bad_messages", ch.bad_messages},
                            {"command_latency", command_latency_.json()},
                            {"install_latency", install_latency_.json()}};
    } else {
        out["sa_sink"] = {{"kind", json_sink_ ? "json" : "log"},
                          {"installed", sink_->installed()},
                          {"removed", sink_->removed()},
                          {"write_errors", json_sink_ ? json_sink_->write_errors() : 0}};
    }
    if (keylog_) out["keylog"] = {{"written", keylog_->written()}, {"skipped", keylog_->skipped()}};
    out["reloads"] = {{"ok", reloads_}, {"failed", reload_failures_}};
    out["mode"] = attached_mode() ? "attached" : "standalone";
    out["pid"] = getpid();
    out["uptime_s"] = std::chrono::duration_cast<std::chrono::seconds>(ike::Clock::now() - started_).count();
}

// A scrape asked for fresh values (metrics.hh): the engine is read here, on
// the loop's thread, and handed over as a copy.
void Daemon::publish_metrics()
{
    if (!metrics_->refresh_requested()) return;
    IkeSnapshot s = snapshot_of(*engine_, ike::Clock::now());
    s.reloads = reloads_;
    s.reload_failures = reload_failures_;
    metrics_->publish(std::move(s));
}

void Daemon::on_signal(bool& stop)
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

int Daemon::run(const std::function<void()>& on_ready)
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
    // Attached: the rings have no file descriptor; look at them every millisecond.
    constexpr int64_t channel_poll_ms = 1;
    while (!stop) {
        auto now = ike::Clock::now();
        if (attached_mode()) {
            check_dataplane(now);
            serve_channel(now);
        }
        control_->expire(now);
        auto wake = engine_->tick(now);
        if (attached_mode()) channel_.flush();
        if (auto d = control_->next_deadline()) wake = std::min(wake, *d);
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count() + 1;
        int timeout = int(std::clamp<int64_t>(wait, 0, attached_mode() ? channel_poll_ms : 60'000));

        fds.clear();
        fds.push_back({signal_fd_, POLLIN, 0});
        const std::size_t transport_begin = fds.size();
        udp_.poll_fds(fds);
        const std::size_t control_begin = fds.size();
        control_->poll_fds(fds);
        const std::size_t metrics_index = fds.size();
        if (metrics_) fds.push_back({metrics_->refresh_fd(), POLLIN, 0});

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
                udp_.receive(fds[i].fd, [&](const ike::Endpoint& local, const ike::Endpoint& remote,
                                            ike::ByteView message) { engine_->receive(now, local, remote, message); });
        for (std::size_t i = control_begin; i < metrics_index; ++i)
            if (fds[i].revents) control_->ready(fds[i], now);
        if (attached_mode()) channel_.flush();
        if (metrics_ && fds[metrics_index].revents) publish_metrics();
    }
    metrics_.reset();   // stop serving before the engine goes
    control_->close();
    return 0;
}

} // namespace

int run_daemon(const DaemonOptions& options, ike::IkeConfig config, const std::function<void()>& on_ready)
{
    Daemon daemon(options, std::move(config));
    return daemon.run(on_ready);
}

} // namespace ravelin::iked

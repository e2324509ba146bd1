#include "metrics.hh"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <initializer_list>

#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "ravelin/paths.hh"

#ifndef RAVELIN_VERSION
#define RAVELIN_VERSION "unknown"
#endif

namespace ravelin::iked {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

namespace {

// Appends a family and returns it: use it before the next family() call
// (the vector may move its elements), or build a local one with make().
MetricFamily& family(std::vector<MetricFamily>& out, std::string name, std::string help, MetricType type)
{
    out.push_back(MetricFamily{std::move(name), std::move(help), type, {}});
    return out.back();
}

MetricFamily make(std::string name, std::string help, MetricType type)
{
    return MetricFamily{std::move(name), std::move(help), type, {}};
}

void add(MetricFamily& f, Labels labels, double value)
{
    ClientMetric m;
    m.label = std::move(labels);
    if (f.type == MetricType::Counter) m.counter.value = value;
    else m.gauge.value = value;
    f.metric.push_back(std::move(m));
}

const char* direction_name(TrafficDirection d) { return d == TrafficDirection::in ? "in" : "out"; }

} // namespace

// --- the daemon loop's side ---------------------------------------------------------

IkeSnapshot snapshot_of(const ike::Engine& engine, ike::TimePoint now)
{
    IkeSnapshot s;
    for (const auto& c : engine.config().connections)
        for (const auto& ch : c.children) s.tunnels[{c.name, ch.name}] = false;
    for (const auto& sa : engine.list_sas(now)) {
        ++s.ike_sas[sa.state];
        for (const auto& c : sa.children) {
            ++s.child_sas[c.state];
            TunnelKey key{sa.name, c.name};
            s.reqids[c.reqid] = key;
            // Only configured children get a tunnel_up series (a child of a
            // connection a reload removed is not a tunnel any more).
            if (c.state == "INSTALLED" || c.state == "REKEYING")
                if (auto it = s.tunnels.find(key); it != s.tunnels.end()) it->second = true;
        }
    }
    s.stats = engine.stats();
    return s;
}

// --- rendering -------------------------------------------------------------------------

std::vector<MetricFamily> render_ike(const IkeSnapshot& s)
{
    std::vector<MetricFamily> out;
    add(family(out, "ravelin_build_info", "Ravelin's version; always 1", MetricType::Gauge),
        {{"version", RAVELIN_VERSION}}, 1);

    auto& ike = family(out, "ravelin_ike_sas", "IKE SAs by state (CONNECTING includes half-open ones)",
                       MetricType::Gauge);
    std::map<std::string, uint64_t> ike_states{{"CONNECTING", 0}, {"ESTABLISHED", 0}, {"REKEYED", 0}, {"DELETING", 0}};
    for (const auto& [state, n] : s.ike_sas) ike_states[state] = n;
    for (const auto& [state, n] : ike_states) add(ike, {{"state", state}}, double(n));

    add(family(out, "ravelin_ike_sas_half_open",
               "responder IKE SAs between IKE_SA_INIT and IKE_AUTH (cookie_threshold, half_open_limit)",
               MetricType::Gauge),
        {}, double(s.stats.half_open));

    auto& child = family(out, "ravelin_child_sas", "Child SAs (pairs of ESP SAs) by state", MetricType::Gauge);
    std::map<std::string, uint64_t> child_states{{"INSTALLED", 0}, {"REKEYING", 0}, {"REKEYED", 0}, {"DELETING", 0}};
    for (const auto& [state, n] : s.child_sas) child_states[state] = n;
    for (const auto& [state, n] : child_states) add(child, {{"state", state}}, double(n));

    auto& up = family(out, "ravelin_tunnel_up",
                      "1 if the configured child has an installed Child SA, else 0", MetricType::Gauge);
    for (const auto& [key, is_up] : s.tunnels)
        add(up, {{"connection", key.connection}, {"child", key.child}}, is_up ? 1 : 0);

    auto& msgs = family(out, "ravelin_ike_messages_total",
                        "IKE datagrams by exchange, direction and result (in: processed, invalid; "
                        "out: sent, retransmit)",
                        MetricType::Counter);
    for (std::size_t x = 0; x < s.stats.messages.size(); ++x) {
        const auto& m = s.stats.messages[x];
        const std::string ex(ike::exchange_names[x]);
        add(msgs, {{"exchange", ex}, {"direction", "in"}, {"result", "processed"}}, double(m.in_processed));
        add(msgs, {{"exchange", ex}, {"direction", "in"}, {"result", "invalid"}}, double(m.in_invalid));
        add(msgs, {{"exchange", ex}, {"direction", "out"}, {"result", "sent"}}, double(m.out_sent));
        add(msgs, {{"exchange", ex}, {"direction", "out"}, {"result", "retransmit"}}, double(m.out_retransmit));
    }

    add(family(out, "ravelin_ike_sa_established_total",
               "IKE SAs established by IKE_AUTH (rekeys not included)", MetricType::Counter),
        {}, double(s.stats.ike_established));
    add(family(out, "ravelin_ike_sa_rekeys_total", "IKE SA rekeys completed", MetricType::Counter),
        {}, double(s.stats.ike_rekeys));
    add(family(out, "ravelin_child_sa_installed_total", "Child SAs installed (rekeys included)",
               MetricType::Counter),
        {}, double(s.stats.child_installed));
    add(family(out, "ravelin_child_sa_rekeys_total", "Child SA rekeys completed", MetricType::Counter),
        {}, double(s.stats.child_rekeys));
    add(family(out, "ravelin_ike_auth_failures_total",
               "peer authentications that failed, either side's verdict (also in negotiation failures, "
               "phase ike_auth)",
               MetricType::Counter),
        {}, double(s.stats.auth_failures));

    auto& fails = family(out, "ravelin_ike_negotiation_failures_total",
                         "failed negotiations by phase (ike_sa_init, ike_auth, child) and reason (notify name, "
                         "timeout, other)",
                         MetricType::Counter);
    // The usual ones exist from the start, so rate() works on their first increase.
    std::map<std::pair<ike::Phase, std::string>, uint64_t> failures{
        {{ike::Phase::ike_sa_init, "NO_PROPOSAL_CHOSEN"}, 0}, {{ike::Phase::ike_sa_init, "timeout"}, 0},
        {{ike::Phase::ike_auth, "AUTHENTICATION_FAILED"}, 0}, {{ike::Phase::child, "NO_PROPOSAL_CHOSEN"}, 0},
        {{ike::Phase::child, "TS_UNACCEPTABLE"}, 0}};
    for (const auto& [k, n] : s.stats.failures) failures[k] = n;
    for (const auto& [k, n] : failures)
        add(fails, {{"phase", std::string(ike::phase_name(k.first))}, {"reason", k.second}}, double(n));

    add(family(out, "ravelin_ike_cookies_sent_total", "IKE_SA_INIT requests answered with a COOKIE",
               MetricType::Counter),
        {}, double(s.stats.cookies_sent));
    auto& reloads = family(out, "ravelin_iked_reloads_total", "configuration reloads by result",
                           MetricType::Counter);
    add(reloads, {{"result", "ok"}}, double(s.reloads));
    add(reloads, {{"result", "failed"}}, double(s.reload_failures));
    return out;
}

namespace {

// A non-negative integer, or nullopt.
std::optional<uint64_t> u64(const nlohmann::json& v)
{
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_number_integer() && v.get<int64_t>() >= 0) return uint64_t(v.get<int64_t>());
    return std::nullopt;
}

// A counter field of a JSON object, or nullopt if missing or not one.
std::optional<uint64_t> u64(const nlohmann::json& o, const char* key)
{
    if (!o.is_object()) return std::nullopt;
    auto it = o.find(key);
    return it == o.end() ? std::nullopt : u64(*it);
}

std::string text(const nlohmann::json& o, const char* key)
{
    if (!o.is_object()) return {};
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

} // namespace

std::vector<MetricFamily> render_dataplane(const std::optional<nlohmann::json>& stats,
                                           const std::map<uint32_t, TunnelKey>& reqids, TunnelCounters& tunnels)
{
    std::vector<MetricFamily> out;
    const bool up = stats && stats->is_object();
    add(family(out, "ravelin_dataplane_up", "1 if the data plane answered this scrape", MetricType::Gauge), {},
        up ? 1 : 0);
    if (!up) return out;
    const nlohmann::json& j = *stats;

    if (auto d = j.find("drops"); d != j.end() && d->is_object()) {
        auto& f = family(out, "ravelin_dataplane_drops_total", "packets dropped, by reason (all workers)",
                         MetricType::Counter);
        for (const auto& [reason, v] : d->items())
            if (auto n = u64(v)) add(f, {{"reason", reason}}, double(*n));
    }
    if (auto st = j.find("stats"); st != j.end() && st->is_object()) {
        auto& f = family(out, "ravelin_dataplane_packets_total",
                         "packets by what the workers did with them (all workers)", MetricType::Counter);
        for (const char* action : {"rx_packets", "tx_packets", "encrypted", "decrypted", "bypassed", "punted_ike",
                                   "punted_control", "icmp_errors_sent", "handoff_out", "handoff_in"})
            if (auto v = u64(*st, action)) add(f, {{"action", action}}, double(*v));
        // Messages the workers owe the control plane. "lost" counts attempts
        // that found the ring full; the worker tries again (a lifetime
        // event on the SA's next packet), so a lost attempt delays a rekey
        // or a tunnel started on demand.
        struct Notice { const char* name; const char* help; const char* raised; const char* lost; };
        const Notice notices[] = {
            {"ravelin_dataplane_sa_events_total",
             "SA lifetime and sequence-number events for the control plane: raised, or attempts that found the ring "
             "full (retried)",
             "events_raised", "events_lost"},
            {"ravelin_dataplane_acquires_total",
             "requests to negotiate a tunnel for traffic with no SA: raised, or attempts that found the ring full "
             "(retried)", "acquires_raised",
             "acquires_lost"},
        };
        for (const auto& n : notices) {
            auto raised = u64(*st, n.raised), lost = u64(*st, n.lost);
            if (!raised || !lost) continue;   // a data plane that does not count them
            auto& g = family(out, n.name, n.help, MetricType::Counter);
            add(g, {{"result", "raised"}}, double(*raised));
            add(g, {{"result", "lost"}}, double(*lost));
        }
    }

    if (auto w = j.find("workers"); w != j.end() && w->is_array()) {
        auto rx = make("ravelin_worker_rx_packets_total", "packets a worker received", MetricType::Counter);
        auto tx = make("ravelin_worker_tx_packets_total", "packets a worker sent", MetricType::Counter);
        auto busy = make("ravelin_worker_busy_cycles_total",
                         "TSC cycles of poll-loop passes that moved packets; busy ratio = rate(busy) / rate(poll)",
                         MetricType::Counter);
        auto poll = make("ravelin_worker_poll_cycles_total", "TSC cycles of the worker's poll loop",
                         MetricType::Counter);
        auto misses = make("ravelin_worker_spd_cache_misses_total",
                           "packets whose 5-tuple the worker's flow cache did not know (classified by rte_acl)",
                           MetricType::Counter);
        for (const auto& worker : *w) {
            auto id = u64(worker, "worker");
            if (!id || !worker.contains("stats")) continue;
            const auto& ws = worker["stats"];
            Labels l{{"worker", std::to_string(*id)}};
            if (auto v = u64(ws, "rx_packets")) add(rx, l, double(*v));
            if (auto v = u64(ws, "tx_packets")) add(tx, l, double(*v));
            auto b = u64(ws, "busy_cycles"), p = u64(ws, "poll_cycles");
            if (b && p) {   // a data plane that counts them
                add(busy, l, double(*b));
                add(poll, l, double(*p));
            }
            if (auto v = u64(ws, "spd_cache_misses")) add(misses, l, double(*v));
        }
        out.push_back(std::move(rx));
        out.push_back(std::move(tx));
        if (!busy.metric.empty()) {   // no empty families for a data plane without them
            out.push_back(std::move(busy));
            out.push_back(std::move(poll));
        }
        if (!misses.metric.empty()) out.push_back(std::move(misses));
    }

    if (auto ports = j.find("ports"); ports != j.end() && ports->is_array()) {
        struct Field { const char* key; const char* name; const char* help; };
        const Field fields[] = {
            {"ipackets", "ravelin_port_rx_packets_total", "packets the port received"},
            {"opackets", "ravelin_port_tx_packets_total", "packets the port sent"},
            {"imissed", "ravelin_port_rx_missed_total", "packets the NIC dropped: RX queues full"},
            {"ierrors", "ravelin_port_rx_errors_total", "erroneous packets received"},
            {"oerrors", "ravelin_port_tx_errors_total", "packets the port failed to send"},
            {"rx_nombuf", "ravelin_port_rx_nombuf_total", "RX mbuf allocation failures"},
        };
        for (const auto& fd : fields) {
            auto& f = family(out, fd.name, fd.help, MetricType::Counter);
            for (const auto& p : *ports) {
                std::string name = text(p, "name");
                if (name.empty()) continue;
                if (auto v = u64(p, fd.key)) add(f, {{"port", name}}, double(*v));
            }
        }
    }

    if (auto rings = j.find("rings"); rings != j.end() && rings->is_array()) {
        auto entries = make("ravelin_dataplane_ring_entries", "packets or messages waiting in a data-plane ring",
                            MetricType::Gauge);
        auto capacity = make("ravelin_dataplane_ring_capacity", "how many entries a data-plane ring holds",
                             MetricType::Gauge);
        for (const auto& r : *rings) {
            std::string name = text(r, "ring");
            auto n = u64(r, "entries"), cap = u64(r, "capacity");
            if (name.empty() || !n || !cap) continue;
            add(entries, {{"ring", name}}, double(*n));
            add(capacity, {{"ring", name}}, double(*cap));
        }
        out.push_back(std::move(entries));
        out.push_back(std::move(capacity));
    }

    // Per tunnel. The data plane's "tunnels" already include the final
    // counts of its SAs that are gone (exact across rekeys); TunnelCounters
    // then only has to bridge a data-plane restart, where they start over.
    // Without them: the SAs' counts summed per connection/child and
    // direction, with the last seen counts of SAs that went away kept.
    if (auto tl = j.find("tunnels"); tl != j.end() && tl->is_array()) {
        std::vector<SaCounts> live;
        auto drops = make("ravelin_tunnel_drops_total",
                          "packets of a tunnel's SAs dropped after the SA was found (replay, auth_failed, "
                          "policy_mismatch, mtu_exceeded, ...), by reason; restarts with the data plane",
                          MetricType::Counter);
        for (const auto& t : *tl) {
            auto packets = u64(t, "packets"), bytes = u64(t, "bytes");
            std::string conn = text(t, "connection"), child = text(t, "child"), dir = text(t, "direction");
            if (!packets || !bytes || conn.empty() || (dir != "in" && dir != "out")) continue;
            if (auto d = t.find("drops"); d != t.end() && d->is_object())
                for (const auto& [reason, v] : d->items())
                    if (auto n = u64(v))
                        add(drops, {{"connection", conn}, {"child", child}, {"direction", dir}, {"reason", reason}},
                            double(*n));
            const auto d = dir == "in" ? TrafficDirection::in : TrafficDirection::out;
            TunnelKey key{conn, child};
            uint64_t id = std::hash<std::string>{}(conn + '\0' + child) << 1 | (d == TrafficDirection::out ? 1u : 0u);
            live.push_back({id, key, d, *packets, *bytes});
        }
        tunnels.update(live);
        if (!drops.metric.empty()) out.push_back(std::move(drops));
    } else if (auto sas = j.find("sas"); sas != j.end() && sas->is_array()) {
        std::vector<SaCounts> live;
        for (const auto& sa : *sas) {
            auto spi = u64(sa, "spi"), reqid = u64(sa, "reqid"), packets = u64(sa, "packets"), bytes = u64(sa, "bytes");
            std::string dir = text(sa, "direction");
            if (!spi || !reqid || !packets || !bytes || (dir != "in" && dir != "out")) continue;
            auto name = reqids.find(uint32_t(*reqid));
            if (name == reqids.end()) continue;   // not one of ours (yet)
            const auto d = dir == "in" ? TrafficDirection::in : TrafficDirection::out;
            live.push_back({*spi << 1 | (d == TrafficDirection::out ? 1u : 0u), name->second, d, *packets, *bytes});
        }
        tunnels.update(live);
    }
    auto totals = tunnels.totals();
    auto packets = make("ravelin_tunnel_packets_total",
                        "ESP packets per tunnel (connection/child) and direction, across rekeys",
                        MetricType::Counter);
    auto bytes = make("ravelin_tunnel_bytes_total", "bytes per tunnel (connection/child) and direction, across rekeys",
                      MetricType::Counter);
    for (const auto& [series, t] : totals) {
        Labels l{{"connection", series.first.connection}, {"child", series.first.child},
                 {"direction", direction_name(series.second)}};
        add(packets, l, double(t.packets));
        add(bytes, l, double(t.bytes));
    }
    out.push_back(std::move(packets));
    out.push_back(std::move(bytes));
    return out;
}

std::optional<nlohmann::json> query_dataplane(const std::string& socket_path, std::chrono::milliseconds timeout)
{
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (socket_path.size() >= sizeof addr.sun_path) return std::nullopt;
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return std::nullopt;
    struct Close { int fd; ~Close() { close(fd); } } closer{fd};
    timeval tv{timeout.count() / 1000, (timeout.count() % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return std::nullopt;
    static constexpr char request[] = "stats\n";
    if (send(fd, request, sizeof request - 1, MSG_NOSIGNAL) != ssize_t(sizeof request - 1)) return std::nullopt;
    // Bounded: a data plane with a huge SA table answers in a few MB.
    constexpr std::size_t max_answer = 64u << 20;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string answer;
    char buf[65536];
    for (;;) {
        if (std::chrono::steady_clock::now() > deadline || answer.size() > max_answer) return std::nullopt;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            return std::nullopt;
        }
        answer.append(buf, std::size_t(n));
    }
    auto j = nlohmann::json::parse(answer, nullptr, false);
    if (j.is_discarded() || !j.is_object() || j.contains("error")) return std::nullopt;
    return j;
}

// --- the collector ------------------------------------------------------------------------

class Metrics::Collector final : public prometheus::Collectable {
public:
    Collector(int refresh_fd, std::string dataplane_socket)
        : refresh_fd_(refresh_fd), dataplane_socket_(std::move(dataplane_socket)) {}

    void publish(IkeSnapshot s)
    {
        {
            std::lock_guard lock(mutex_);
            snapshot_ = std::move(s);
            ++generation_;
        }
        published_.notify_all();
    }

    std::vector<MetricFamily> Collect() const override
    {
        IkeSnapshot s;
        {
            std::unique_lock lock(mutex_);
            const uint64_t want = generation_ + 1;
            const uint64_t one = 1;
            (void)!write(refresh_fd_, &one, sizeof one);
            published_.wait_for(lock, refresh_wait, [&] { return generation_ >= want; });
            s = snapshot_;
        }
        auto out = render_ike(s);
        if (dataplane_socket_.empty()) return out;
        // One scrape at a time reads the data plane and moves the tunnel counters.
        std::lock_guard lock(dataplane_mutex_);
        for (const auto& [reqid, key] : s.reqids) reqids_[reqid] = key;
        auto dp = render_dataplane(query_dataplane(dataplane_socket_, refresh_wait), reqids_, tunnels_);
        std::move(dp.begin(), dp.end(), std::back_inserter(out));
        return out;
    }

private:
    int refresh_fd_;
    std::string dataplane_socket_;
    mutable std::mutex mutex_;
    mutable std::condition_variable published_;
    IkeSnapshot snapshot_;
    uint64_t generation_ = 0;
    mutable std::mutex dataplane_mutex_;
    // reqid -> tunnel, kept after the engine forgets an SA: the data plane
    // may still list it. Reqids are per configured child: bounded.
    mutable std::map<uint32_t, TunnelKey> reqids_;
    mutable TunnelCounters tunnels_;
};

std::unique_ptr<Metrics> Metrics::start(const ike::MetricsConfig& config, std::string& error)
{
    std::unique_ptr<Metrics> m(new Metrics());
    m->refresh_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (m->refresh_fd_ < 0) {
        error = std::string("metrics: eventfd: ") + std::strerror(errno);
        return nullptr;
    }
    m->histograms_ = std::make_shared<prometheus::Registry>();
    // 10 us .. 2.5 s: a command crosses a ring and waits for the main lcore's
    // next pass and an RCU grace period.
    const prometheus::Histogram::BucketBoundaries buckets{1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3,
                                                          2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25,
                                                          0.5, 1, 2.5};
    m->sa_command_latency_ = &prometheus::BuildHistogram()
                                  .Name("ravelin_sa_command_latency_seconds")
                                  .Help("SA commands from enqueue on the channel to the data plane's result")
                                  .Register(*m->histograms_)
                                  .Add({}, buckets);
    m->sa_install_latency_ = &prometheus::BuildHistogram()
                                  .Name("ravelin_sa_install_latency_seconds")
                                  .Help("outbound SAs from ravelin-iked's install to the first packet sent on them")
                                  .Register(*m->histograms_)
                                  .Add({}, buckets);
    std::string dataplane_socket = config.dataplane.empty() ? "" : dataplane_socket_path(config.dataplane);
    m->collector_ = std::make_shared<Collector>(m->refresh_fd_, std::move(dataplane_socket));

    const bool v6 = config.listen.find(':') != std::string::npos;
    const std::string bind = (v6 ? "[" + config.listen + "]" : config.listen) + ":" + std::to_string(config.port);
    try {
        m->exposer_ = std::make_unique<prometheus::Exposer>(bind, 2);
    } catch (const std::exception& e) {
        error = "metrics: cannot listen on " + bind + ": " + e.what();
        return nullptr;
    }
    auto ports = m->exposer_->GetListeningPorts();
    m->port_ = ports.empty() ? config.port : uint16_t(ports.front());
    m->exposer_->RegisterCollectable(m->collector_);
    m->exposer_->RegisterCollectable(m->histograms_);
    return m;
}

Metrics::~Metrics()
{
    exposer_.reset();   // no scrape runs past this point
    if (refresh_fd_ >= 0) close(refresh_fd_);
}

bool Metrics::refresh_requested()
{
    uint64_t n = 0;
    return read(refresh_fd_, &n, sizeof n) == ssize_t(sizeof n) && n > 0;
}

void Metrics::publish(IkeSnapshot snapshot) { collector_->publish(std::move(snapshot)); }

void Metrics::observe_sa_command_latency(double seconds) { sa_command_latency_->Observe(seconds); }
void Metrics::observe_sa_install_latency(double seconds) { sa_install_latency_->Observe(seconds); }

} // namespace ravelin::iked

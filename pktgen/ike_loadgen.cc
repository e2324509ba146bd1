// ravelin-ike-loadgen: IKE SA + first Child SA setups per second against an
// IKEv2 responder (ravelin-iked, strongSwan, ...), over kernel UDP sockets.
//
// Each setup is a distinct initiator identity ("client-N.bench", PSK,
// aes256gcm16-prfsha256-x25519 / ESP aes256gcm16) from one of a few sockets
// (several source addresses x several source ports). A window of setups is
// kept outstanding; each request is retransmitted after --timeout-ms up to
// --tries times. The responder's AUTH is verified. After IKE_AUTH the IKE SA
// is deleted (INFORMATIONAL, so a long run does not grow the responder) or,
// with --keep, left established (memory per SA: see --responder-pid).
//
// The measuring interval is either --warmup then --duration seconds, or
// --count setups from the start. With --responder-pid the responder's CPU
// time and VmRSS are sampled at the interval's edges. JSON on stdout.
//
// One thread, poll() over the sockets; per setup the work is one X25519
// shared secret, the key derivation, one AES-GCM seal and open and four
// HMACs (ike_loadgen_setup.hh).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "ike_loadgen_setup.hh"

namespace {

using namespace ravelin::ike;
using namespace ravelin::ike::loadgen;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Options {
    std::string dst;
    uint16_t port = 500;
    std::vector<std::string> src;
    unsigned sockets_per_src = 2;
    unsigned window = 256;
    uint64_t count = 0;
    double duration_s = 0;
    double warmup_s = 0;
    double drain_s = 10;
    unsigned timeout_ms = 2000;
    unsigned tries = 3;
    bool keep = false;
    bool no_natd = false;
    bool tsi_per_client = false;
    std::string tsr = "0.0.0.0/0";
    std::string psk = "ravelin-bench-psk";
    std::string id_prefix = "client-";
    std::string id_suffix = ".bench";
    uint32_t first_id = 0;
    int responder_pid = 0;
    std::string label;
    std::string json_path;
};

struct Sock {
    int fd = -1;
    Endpoint local;
};

// Responder sample from /proc: CPU time (all threads) and resident memory.
struct ProcSample {
    bool ok = false;
    double cpu_s = 0;
    long rss_kb = 0;
};

ProcSample sample_proc(int pid)
{
    ProcSample out;
    if (pid <= 0) return out;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return out;
    auto close = line.rfind(')');
    if (close == std::string::npos) return out;
    std::istringstream rest(line.substr(close + 2));
    std::string field;
    unsigned long utime = 0, stime = 0;
    // fields after "pid (comm)": state is field 3; utime 14, stime 15
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stoul(field);
        if (i == 15) stime = std::stoul(field);
    }
    out.cpu_s = double(utime + stime) / double(sysconf(_SC_CLK_TCK));
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    while (std::getline(status, line))
        if (line.rfind("VmRSS:", 0) == 0) out.rss_kb = std::stol(line.substr(6));
    out.ok = true;
    return out;
}

double self_cpu_s()
{
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::optional<std::array<uint8_t, 4>> parse_v4(const std::string& s)
{
    std::array<uint8_t, 4> a{};
    if (inet_pton(AF_INET, s.c_str(), a.data()) != 1) return std::nullopt;
    return a;
}

std::optional<TrafficSelector> parse_prefix(const std::string& s)
{
    auto slash = s.find('/');
    auto addr = parse_v4(s.substr(0, slash));
    int len = slash == std::string::npos ? 32 : std::atoi(s.c_str() + slash + 1);
    if (!addr || len < 0 || len > 32) return std::nullopt;
    uint32_t a = uint32_t((*addr)[0]) << 24 | uint32_t((*addr)[1]) << 16 | uint32_t((*addr)[2]) << 8 |
                 (*addr)[3];
    uint32_t mask = len == 0 ? 0 : ~uint32_t(0) << (32 - len);
    TrafficSelector ts;
    ts.start = ravelin::IpAddress::v4(a & mask);
    ts.end = ravelin::IpAddress::v4((a & mask) | ~mask);
    return ts;
}

// Setup latencies (IKE_SA_INIT sent -> IKE_AUTH verified) in 100 us bins up to 60 s.
class LatencyHistogram {
public:
    void add(Clock::duration d)
    {
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
        std::size_t bin = std::min<std::size_t>(std::size_t(std::max<int64_t>(us, 0)) / 100, bins_.size() - 1);
        ++bins_[bin];
        ++n_;
        max_us_ = std::max<int64_t>(max_us_, us);
    }
    double percentile_ms(double q) const
    {
        if (n_ == 0) return 0;
        uint64_t want = uint64_t(q * double(n_ - 1)) + 1, seen = 0;
        for (std::size_t i = 0; i < bins_.size(); ++i)
            if ((seen += bins_[i]) >= want) return double(i + 1) / 10.0;
        return double(max_us_) / 1000.0;
    }
    double max_ms() const { return double(max_us_) / 1000.0; }

private:
    std::vector<uint32_t> bins_ = std::vector<uint32_t>(600000);
    uint64_t n_ = 0;
    int64_t max_us_ = 0;
};

class Loadgen {
public:
    Loadgen(const Options& o, Initiator& init, std::vector<Sock> socks, sockaddr_in dst)
        : o_(o), init_(init), socks_(std::move(socks)), dst_(dst), slots_(o.window),
          sock_of_(o.window), started_at_(o.window), deadline_(o.window)
    {
        for (unsigned i = o.window; i-- > 0;) free_.push_back(uint16_t(i));
        uint32_t salt = 0;
        random_bytes(std::span<uint8_t>(reinterpret_cast<uint8_t*>(&salt), sizeof salt));
        spi_salt_ = uint64_t(salt & 0x7fff) << 48;
    }

    json run();

private:
    void start_one(Clock::time_point now);
    void send(uint16_t slot);
    void receive(std::size_t sock_index, Clock::time_point now);
    void handle(ByteView dgram, Clock::time_point now);
    void check_timeouts(Clock::time_point now);
    void finish(uint16_t slot) { slots_[slot].reset(); free_.push_back(slot); }
    bool measuring(Clock::time_point t) const { return t >= m_start_ && (!m_end_ || t < *m_end_); }
    void fail(uint16_t slot, Failure f, Clock::time_point now);
    void on_established(uint16_t slot, Clock::time_point now);

    const Options& o_;
    Initiator& init_;
    std::vector<Sock> socks_;
    sockaddr_in dst_;
    std::vector<Setup> slots_;
    std::vector<uint16_t> sock_of_;
    std::vector<Clock::time_point> started_at_, deadline_;
    std::vector<uint16_t> free_;
    uint64_t spi_salt_ = 0;

    Clock::time_point t0_, m_start_;
    std::optional<Clock::time_point> m_end_;
    uint64_t started_ = 0, completed_ = 0, completed_in_interval_ = 0, failed_ = 0;
    uint64_t retransmits_ = 0, deleted_ = 0, delete_timeouts_ = 0, stray_ = 0, send_errors_ = 0;
    std::array<uint64_t, std::size_t(Failure::count_)> failures_{};
    std::map<uint16_t, uint64_t> notifies_;
    Clock::time_point last_completion_;
    LatencyHistogram latency_;
};

void Loadgen::start_one(Clock::time_point now)
{
    uint16_t slot = free_.back();
    free_.pop_back();
    uint16_t si = uint16_t(started_ % socks_.size());
    uint64_t spi = 0x8000000000000000ull | spi_salt_ | (uint64_t(uint32_t(started_)) << 16) | slot;
    init_.start(slots_[slot], uint32_t(o_.first_id + started_), spi, socks_[si].local);
    sock_of_[slot] = si;
    started_at_[slot] = now;
    deadline_[slot] = now + std::chrono::milliseconds(o_.timeout_ms);
    ++started_;
    send(slot);
}

void Loadgen::send(uint16_t slot)
{
    const Setup& s = slots_[slot];
    sockaddr_in to = dst_;
    to.sin_port = htons(init_.port_for(s));
    ssize_t n = sendto(socks_[sock_of_[slot]].fd, s.request.data(), s.request.size(), 0,
                       reinterpret_cast<const sockaddr*>(&to), sizeof to);
    if (n != ssize_t(s.request.size())) ++send_errors_;   // the retransmission tries again
}

void Loadgen::fail(uint16_t slot, Failure f, Clock::time_point now)
{
    Setup& s = slots_[slot];
    ++failures_[std::size_t(f)];
    ++failed_;
    if (s.last_notify) ++notifies_[s.last_notify];
    // The IKE SA exists on the responder without a Child SA: take it down too.
    if (f == Failure::no_child && !o_.keep) {
        init_.start_delete(s);
        deadline_[slot] = now + std::chrono::milliseconds(o_.timeout_ms);
        send(slot);
        return;
    }
    finish(slot);
}

void Loadgen::on_established(uint16_t slot, Clock::time_point now)
{
    ++completed_;
    last_completion_ = now;
    if (measuring(now)) {
        ++completed_in_interval_;
        latency_.add(now - started_at_[slot]);
    }
    if (o_.keep) {
        finish(slot);
        return;
    }
    init_.start_delete(slots_[slot]);
    deadline_[slot] = now + std::chrono::milliseconds(o_.timeout_ms);
    send(slot);
}

void Loadgen::handle(ByteView d, Clock::time_point now)
{
    // From the NAT-T port: strip the non-ESP marker (our SPIi never starts with 4 zero bytes).
    if (d.size() >= 4 && d[0] == 0 && d[1] == 0 && d[2] == 0 && d[3] == 0) d = d.subspan(4);
    if (d.size() < header_len) { ++stray_; return; }
    uint64_t spi = 0;
    for (int i = 0; i < 8; ++i) spi = spi << 8 | d[i];
    uint16_t slot = uint16_t(spi & 0xffff);
    if (slot >= slots_.size() || slots_[slot].phase == Phase::idle || slots_[slot].spi_i != spi) {
        ++stray_;
        return;
    }
    Setup& s = slots_[slot];
    Step step = init_.on_response(s, d);
    switch (step.kind) {
    case Step::Kind::ignore: ++stray_; break;
    case Step::Kind::send:
        s.tries = 0;
        deadline_[slot] = now + std::chrono::milliseconds(o_.timeout_ms);
        send(slot);
        break;
    case Step::Kind::established: on_established(slot, now); break;
    case Step::Kind::deleted: ++deleted_; finish(slot); break;
    case Step::Kind::failed: fail(slot, step.failure, now); break;
    }
}

void Loadgen::receive(std::size_t si, Clock::time_point now)
{
    constexpr unsigned batch = 32;
    static std::array<std::array<uint8_t, 4096>, batch> bufs;
    std::array<mmsghdr, batch> msgs{};
    std::array<iovec, batch> iov{};
    for (int round = 0; round < 64; ++round) {
        for (unsigned i = 0; i < batch; ++i) {
            iov[i] = {bufs[i].data(), bufs[i].size()};
            msgs[i].msg_hdr = {};
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(socks_[si].fd, msgs.data(), batch, MSG_DONTWAIT, nullptr);
        if (n <= 0) return;
        for (int i = 0; i < n; ++i) {
            if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) { ++stray_; continue; }
            handle(ByteView(bufs[i].data(), msgs[i].msg_len), now);
        }
        if (unsigned(n) < batch) return;
    }
}

void Loadgen::check_timeouts(Clock::time_point now)
{
    for (uint16_t slot = 0; slot < slots_.size(); ++slot) {
        Setup& s = slots_[slot];
        if (s.phase == Phase::idle || now < deadline_[slot]) continue;
        if (s.tries + 1u < o_.tries) {
            ++s.tries;
            ++retransmits_;
            deadline_[slot] = now + std::chrono::milliseconds(o_.timeout_ms);
            send(slot);
        } else if (s.phase == Phase::del) {
            ++delete_timeouts_;
            finish(slot);
        } else {
            fail(slot, s.phase == Phase::init ? Failure::timeout_init : Failure::timeout_auth, now);
        }
    }
}

json Loadgen::run()
{
    t0_ = Clock::now();
    bool by_count = o_.count > 0;
    m_start_ = t0_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                          by_count ? 0.0 : o_.warmup_s));
    Clock::time_point stop_at =
        m_start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.duration_s));
    std::optional<Clock::time_point> drain_until;
    ProcSample r0, r1;
    double c0 = 0, c1 = 0;
    bool sampled_start = false;
    if (by_count) { r0 = sample_proc(o_.responder_pid); c0 = self_cpu_s(); sampled_start = true; }

    std::vector<pollfd> pfds(socks_.size());
    for (std::size_t i = 0; i < socks_.size(); ++i) pfds[i] = {socks_[i].fd, POLLIN, 0};
    Clock::time_point next_scan = t0_;

    for (;;) {
        Clock::time_point now = Clock::now();
        if (!sampled_start && now >= m_start_) {
            r0 = sample_proc(o_.responder_pid);
            c0 = self_cpu_s();
            sampled_start = true;
        }
        bool starting = !drain_until && !g_stop;
        if (starting && (by_count ? started_ >= o_.count : now >= stop_at)) {
            starting = false;
            if (!by_count) {
                m_end_ = stop_at;
                r1 = sample_proc(o_.responder_pid);
                c1 = self_cpu_s();
            }
            drain_until = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.drain_s));
        }
        if (g_stop && !drain_until) drain_until = now;
        while (starting && !free_.empty() && (!by_count || started_ < o_.count)) start_one(now);
        if (drain_until && (free_.size() == slots_.size() || now >= *drain_until)) break;

        int wait_ms = 5;
        if (poll(pfds.data(), pfds.size(), wait_ms) < 0 && errno != EINTR) break;
        now = Clock::now();
        for (std::size_t i = 0; i < pfds.size(); ++i)
            if (pfds[i].revents & POLLIN) receive(i, now);
        if (now >= next_scan) {
            check_timeouts(now);
            next_scan = now + std::chrono::milliseconds(5);
        }
    }
    Clock::time_point end = Clock::now();
    uint64_t unfinished = slots_.size() - free_.size();
    if (by_count) {
        m_end_ = completed_ ? last_completion_ : end;
        r1 = sample_proc(o_.responder_pid);
        c1 = self_cpu_s();
    }
    double interval = std::chrono::duration<double>(*m_end_ - m_start_).count();

    json j;
    j["label"] = o_.label;
    j["responder"] = o_.dst;
    j["window"] = o_.window;
    j["sockets"] = socks_.size();
    j["mode"] = o_.keep ? "keep" : "delete";
    j["measure"] = by_count ? "count" : "duration";
    j["started"] = started_;
    j["completed"] = completed_;
    j["completed_in_interval"] = completed_in_interval_;
    j["failed"] = failed_;
    j["unfinished"] = unfinished;
    j["interval_s"] = interval;
    j["setups_per_s"] = interval > 0 ? double(completed_in_interval_) / interval : 0.0;
    j["retransmits"] = retransmits_;
    j["cookies"] = init_.cookies_seen();
    j["deleted"] = deleted_;
    j["delete_timeouts"] = delete_timeouts_;
    j["stray_datagrams"] = stray_;
    j["send_errors"] = send_errors_;
    json f = json::object();
    for (std::size_t i = 0; i < failures_.size(); ++i)
        if (failures_[i]) f[std::string(to_string(Failure(i)))] = failures_[i];
    j["failures"] = f;
    json n = json::object();
    for (auto [type, cnt] : notifies_) n[std::to_string(type)] = cnt;
    j["failure_notifies"] = n;
    j["latency_ms"] = {{"p50", latency_.percentile_ms(0.5)}, {"p90", latency_.percentile_ms(0.9)},
                       {"p99", latency_.percentile_ms(0.99)}, {"max", latency_.max_ms()}};
    j["loadgen_cpu_s"] = c1 - c0;
    j["loadgen_cpu_util"] = interval > 0 ? (c1 - c0) / interval : 0.0;
    if (o_.responder_pid > 0) {
        json r;
        r["pid"] = o_.responder_pid;
        r["sampled"] = r0.ok && r1.ok;
        r["cpu_s"] = r1.cpu_s - r0.cpu_s;
        r["cpu_util"] = interval > 0 ? (r1.cpu_s - r0.cpu_s) / interval : 0.0;
        r["rss_kb_start"] = r0.rss_kb;
        r["rss_kb_end"] = r1.rss_kb;
        j["responder_proc"] = r;
    }
    return j;
}

} // namespace

int main(int argc, char** argv)
{
    Options o;
    CLI::App app{"ravelin-ike-loadgen: IKEv2 SA setups per second against a responder"};
    app.add_option("--dst", o.dst, "responder IPv4 address")->required();
    app.add_option("--port", o.port, "responder IKE port (NAT-T is 4500)");
    app.add_option("--src", o.src, "local IPv4 address to send from (repeat for several)")->required();
    app.add_option("--sockets-per-src", o.sockets_per_src, "UDP sockets (source ports) per address")
        ->check(CLI::Range(1u, 64u));
    app.add_option("--window", o.window, "setups outstanding at once")->check(CLI::Range(1u, 16384u));
    auto* count = app.add_option("--count", o.count, "measure over this many setups from the start");
    auto* duration = app.add_option("--duration", o.duration_s, "measure this many seconds (after --warmup)")
                         ->check(CLI::Range(0.1, 3600.0));
    count->excludes(duration);
    app.add_option("--warmup", o.warmup_s, "seconds before the measuring interval (with --duration)")
        ->check(CLI::Range(0.0, 600.0));
    app.add_option("--drain", o.drain_s, "seconds to wait for outstanding setups/deletes at the end")
        ->check(CLI::Range(0.0, 120.0));
    app.add_option("--timeout-ms", o.timeout_ms, "retransmission timeout")->check(CLI::Range(10u, 60000u));
    app.add_option("--tries", o.tries, "transmissions of a request before giving up")->check(CLI::Range(1u, 10u));
    app.add_flag("--keep", o.keep, "leave the IKE SAs established (default: INFORMATIONAL delete)");
    app.add_flag("--no-natd", o.no_natd, "send no NAT_DETECTION notifies (never float to 4500)");
    app.add_flag("--tsi-per-client", o.tsi_per_client, "TSi = 198.19.x.y/32 from the identity number");
    app.add_option("--tsr", o.tsr, "TSr as an IPv4 prefix");
    app.add_option("--psk", o.psk, "pre-shared key (text)");
    app.add_option("--id-prefix", o.id_prefix, "identity = prefix + number + suffix (FQDN)");
    app.add_option("--id-suffix", o.id_suffix);
    app.add_option("--first-id", o.first_id, "number of the first identity");
    app.add_option("--responder-pid", o.responder_pid, "sample this process's CPU time and VmRSS");
    app.add_option("--label", o.label, "copied into the JSON output");
    app.add_option("--json", o.json_path, "write the JSON report here (default stdout)");
    CLI11_PARSE(app, argc, argv);
    if (o.count == 0 && o.duration_s <= 0) {
        std::fprintf(stderr, "ravelin-ike-loadgen: give --count N or --duration S\n");
        return 2;
    }
    auto dst = parse_v4(o.dst);
    auto tsr = parse_prefix(o.tsr);
    if (!dst || !tsr) {
        std::fprintf(stderr, "ravelin-ike-loadgen: bad --dst or --tsr\n");
        return 2;
    }

    std::vector<Sock> socks;
    for (const auto& a : o.src) {
        auto addr = parse_v4(a);
        if (!addr) {
            std::fprintf(stderr, "ravelin-ike-loadgen: bad --src %s\n", a.c_str());
            return 2;
        }
        for (unsigned k = 0; k < o.sockets_per_src; ++k) {
            Sock s;
            s.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            sockaddr_in sa{};
            sa.sin_family = AF_INET;
            std::memcpy(&sa.sin_addr, addr->data(), 4);
            int buf = 4 << 20;
            setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
            setsockopt(s.fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
            socklen_t len = sizeof sa;
            if (s.fd < 0 || bind(s.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
                getsockname(s.fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
                std::fprintf(stderr, "ravelin-ike-loadgen: socket on %s: %s\n", a.c_str(), std::strerror(errno));
                return 1;
            }
            s.local.addr = *addr;
            s.local.port = ntohs(sa.sin_port);
            socks.push_back(s);
        }
    }
    InitiatorConfig ic;
    ic.psk = o.psk;
    ic.id_prefix = o.id_prefix;
    ic.id_suffix = o.id_suffix;
    ic.nat_detection = !o.no_natd;
    ic.tsi_per_client = o.tsi_per_client;
    ic.tsr = *tsr;
    Endpoint responder;
    responder.addr = *dst;
    responder.port = o.port;
    Initiator init(ic, responder);

    sockaddr_in to{};
    to.sin_family = AF_INET;
    std::memcpy(&to.sin_addr, dst->data(), 4);
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);

    Loadgen lg(o, init, socks, to);
    json report = lg.run();
    for (auto& s : socks) close(s.fd);

    std::string text = report.dump(2) + "\n";
    if (o.json_path.empty()) {
        std::fputs(text.c_str(), stdout);
    } else {
        std::ofstream(o.json_path) << text;
    }
    std::fprintf(stderr, "ravelin-ike-loadgen: %s %llu completed, %llu failed, %.1f setups/s\n",
                 o.label.c_str(), (unsigned long long)report["completed"].get<uint64_t>(),
                 (unsigned long long)report["failed"].get<uint64_t>(), report["setups_per_s"].get<double>());
    return report["completed"].get<uint64_t>() > 0 ? 0 : 1;
}

// ravelin-pktgen: DPDK traffic generator for clear and ESP traffic.
//
//   ravelin-pktgen [EAL arguments] -- [options]     (--help for the options)
//
// Ports are whatever EAL probes (--vdev net_memif0,..., -a PCI), numbered
// 0.. in probe order. Results go to --json as one document; a terminal
// gets a one-line live display on stderr.
//
// Exit codes: 0 done, 1 start-up failure (EAL, ports, pool, SAs), 2 bad
// options.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <rte_eal.h>
#include <rte_errno.h>

#include "engine.hh"
#include "rfc2544.hh"

namespace {

using namespace ravelin::pktgen;

ravelin::pktgen::Engine* g_engine = nullptr;

extern "C" void on_signal(int)
{
    if (g_engine) g_engine->request_stop();
}

struct Cli {
    std::vector<std::string> streams;
    std::string rate = "max";
    double duration = 10;
    uint64_t count = 0;
    std::string sa_config;
    std::string esp_seq_start = "1";
    unsigned esp_replay = 0;
    std::vector<std::string> dst_mac, arp;
    std::string line_rate;
    unsigned burst = 32, mbufs = 32767;
    double interval = 1.0, drain = 0.5, link_wait = 10;
    bool no_progress = false;
    std::string json;
    bool histogram = false;
    bool rx_count_only = false;
    bool esp_seq_restart = false;
    double warmup = 0;
    std::string warmup_rate;
    bool wait_stdin = false;
    bool rfc2544 = false;
    std::vector<std::string> sizes;
    double trial = 5, loss_ratio = -1, resolution = 0.005;
    unsigned max_trials = 20;
};

int usage_error(const std::string& msg)
{
    std::fprintf(stderr, "ravelin-pktgen: %s\n", msg.c_str());
    return 2;
}

bool split_port(const std::string& s, uint16_t& port, std::string& value)
{
    const auto eq = s.find('=');
    if (eq == std::string::npos) return false;
    try {
        const unsigned long p = std::stoul(s.substr(0, eq));
        if (p > 1023) return false;
        port = uint16_t(p);
    } catch (...) {
        return false;
    }
    value = s.substr(eq + 1);
    return true;
}

double rate_in_pps(const RateSpec& r, double mean_frame, double line)
{
    return r.packets_per_second(mean_frame, line);
}

// `latency[i]` is the latency summary of trial i.
nlohmann::json search_json(const ThroughputSearch& s, RateUnit unit, double mean_frame, double line,
                           const std::vector<nlohmann::json>& latency)
{
    const RateSpec best{unit, s.result()};
    nlohmann::json trials = nlohmann::json::array();
    nlohmann::json at_result;
    for (std::size_t i = 0; i < s.trials().size(); ++i) {
        const auto& t = s.trials()[i];
        const nlohmann::json lat = i < latency.size() ? latency[i] : nlohmann::json();
        trials.push_back({{"rate", t.rate}, {"offered", t.offered}, {"tx", t.tx}, {"rx", t.rx},
                          {"loss_ratio", t.loss_ratio}, {"pass", t.pass}, {"why", t.why}, {"latency_ns", lat}});
        if (t.pass && t.rate == s.result()) at_result = lat;
    }
    const double pps = rate_in_pps(best, mean_frame, line);
    return {{"rate", best.value},
            {"rate_text", best.to_string()},
            {"pps", pps},
            {"mpps", pps / 1e6},
            {"gbps_l2", pps * mean_frame * 8 / 1e9},
            {"loss_ratio_limit", s.params().loss_ratio},
            {"latency_ns", at_result},   // of the trial at the result rate (none if nothing passed)
            {"trials", trials}};
}

} // namespace

int main(int argc, char** argv)
{
    const int eal_used = rte_eal_init(argc, argv);
    if (eal_used < 0) {
        std::fprintf(stderr, "ravelin-pktgen: EAL init failed: %s (hugepages free? grep HugePages_Free /proc/meminfo)\n",
                     rte_strerror(rte_errno));
        return 1;
    }
    argc -= eal_used;
    argv += eal_used;
    argv[0] = const_cast<char*>("ravelin-pktgen");

    Cli o;
    CLI::App app{"Ravelin packet generator: clear and ESP streams, loss/latency, RFC 2544 throughput.\n"
                 "Usage: ravelin-pktgen [EAL args] -- [options]"};
    app.set_config("--config", "", "options from a TOML file (keys are the long option names)");
    app.add_option("-s,--stream", o.streams, "stream: 'port=0 src=.. dst=.. [size= rate= flows= esp=SPI ...]' (repeat)")
        ->required();
    app.add_option("-r,--rate", o.rate, "total rate of the streams without rate=: Mpps/kpps/pps, Gbps/Mbps/bps (L2), % (of line, L1), max");
    app.add_option("-d,--duration", o.duration, "seconds of TX per run or trial");
    app.add_option("-n,--count", o.count, "packets per stream (0: until --duration)");
    app.add_option("--sa-config", o.sa_config, "gateway TOML whose [[sa]] keys the ESP streams and opens received ESP");
    app.add_option("--esp-replay", o.esp_replay, "ESP streams send N frames sealed once per trial, again and again, instead of sealing each packet (for receivers with anti-replay off; stale stamps: no latency or loss checks)");
    app.add_option("--esp-seq-start", o.esp_seq_start, "first ESP sequence number of each sealing SA (e.g. 0xfffffff0 to cross into ESN's high half)");
    app.add_flag("--esp-seq-restart", o.esp_seq_restart, "every trial (warm-up, run, RFC 2544 trial) starts at --esp-seq-start again");
    app.add_option("--warmup", o.warmup, "seconds of warm-up traffic before the run (ARP, caches); reported apart");
    app.add_option("--warmup-rate", o.warmup_rate, "rate of the warm-up (default: --rate)");
    app.add_flag("--wait-stdin", o.wait_stdin, "before the run and before exiting, print 'ravelin-pktgen: waiting' and wait for a line or EOF on stdin (lets a harness read the device's counters in between, and stop a memif peer first)");
    app.add_option("--dst-mac", o.dst_mac, "PORT=MAC: destination MAC for streams on PORT without dmac= (repeat)");
    app.add_option("--arp", o.arp, "PORT=PREFIX: answer ARP requests for these IPv4 addresses on PORT (repeat)");
    app.add_option("--line-rate", o.line_rate, "line rate for % rates when the port reports none, e.g. 10Gbps");
    app.add_option("--burst", o.burst, "packets per TX/RX burst");
    app.add_option("--mbufs", o.mbufs, "mbuf pool size");
    app.add_option("--interval", o.interval, "seconds between timeline samples / progress updates");
    app.add_option("--drain", o.drain, "seconds of RX after TX stops");
    app.add_option("--link-wait", o.link_wait, "seconds to wait for every port's link to come up (0: do not wait)");
    app.add_flag("--no-progress", o.no_progress, "no live line on a terminal");
    app.add_option("--json", o.json, "write results as JSON to this file ('-': stdout)");
    app.add_flag("--histogram", o.histogram, "include latency histogram buckets in the JSON");
    app.add_flag("--rx-count-only", o.rx_count_only, "RX only counts, answers ARP and frees (a cheap sink: no stamps, no ESP, no latency)");
    app.add_flag("--rfc2544", o.rfc2544, "RFC 2544 throughput search per --size (NDR, and PDR with --loss-ratio)");
    app.add_option("--size", o.sizes, "frame size spec for --rfc2544 (repeat): 64, imix, 64:7,570:4,1420:1");
    app.add_option("--trial", o.trial, "seconds per RFC 2544 trial");
    app.add_option("--loss-ratio", o.loss_ratio, "also search the partial-drop rate at this loss ratio (e.g. 0.001)");
    app.add_option("--resolution", o.resolution, "RFC 2544 search stops below this fraction of --rate");
    app.add_option("--max-trials", o.max_trials, "RFC 2544 trials per search at most");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        rte_eal_cleanup();
        return rc == 0 ? 0 : 2;
    }

    EngineConfig cfg;
    std::string why;
    for (std::size_t i = 0; i < o.streams.size(); ++i) {
        auto s = parse_stream(o.streams[i], unsigned(i), &why);
        if (!s) return usage_error(why);
        cfg.streams.push_back(*s);
    }
    auto rate = RateSpec::parse(o.rate, &why);
    if (!rate) return usage_error("--rate: " + why);
    cfg.rate = *rate;
    for (auto& d : o.dst_mac) {
        uint16_t port;
        std::string v;
        auto mac = split_port(d, port, v) ? parse_mac(v) : std::nullopt;
        if (!mac) return usage_error("--dst-mac '" + d + "': PORT=xx:xx:xx:xx:xx:xx");
        if (cfg.dst_mac.size() <= port) cfg.dst_mac.resize(port + 1);
        cfg.dst_mac[port] = *mac;
    }
    for (auto& a : o.arp) {
        uint16_t port;
        std::string v;
        auto prefix = split_port(a, port, v) ? ravelin::dp::parse_prefix(v, &why) : std::nullopt;
        if (!prefix || prefix->addr.family != ravelin::IpFamily::v4)
            return usage_error("--arp '" + a + "': PORT=IPv4-PREFIX, e.g. 1=198.18.0.0/24");
        cfg.arp.push_back({port, *prefix});
    }
    if (!o.line_rate.empty()) {
        auto l = RateSpec::parse(o.line_rate, &why);
        if (!l || l->unit != RateUnit::l2_bps) return usage_error("--line-rate: bit/s, e.g. 10Gbps");
        cfg.line_bps = l->value;
    }
    try {
        cfg.esp_seq_start = std::stoull(o.esp_seq_start, nullptr, 0);
    } catch (...) {
        return usage_error("--esp-seq-start: a number");
    }
    cfg.sa_config = o.sa_config;
    cfg.burst = o.burst;
    cfg.mbufs = o.mbufs;
    cfg.interval_s = o.interval;
    cfg.drain_s = o.drain;
    cfg.link_wait_s = o.link_wait;
    cfg.progress = !o.no_progress;
    cfg.rx_count_only = o.rx_count_only;
    cfg.esp_replay = o.esp_replay;
    cfg.esp_seq_restart = o.esp_seq_restart;
    if (o.rfc2544 && o.sizes.empty()) o.sizes.push_back("64");
    for (auto& s : o.sizes)
        if (!SizeSchedule::parse(s, &why)) return usage_error("--size: " + why);

    std::string error;
    auto engine = Engine::create(cfg, error);
    if (!engine) {
        std::fprintf(stderr, "ravelin-pktgen: %s\n", error.c_str());
        rte_eal_cleanup();
        return 1;
    }
    if ((cfg.rate.unit == RateUnit::line_percent || o.rfc2544) && engine->line_bps() <= 0 &&
        (cfg.rate.unit == RateUnit::line_percent || cfg.rate.unit == RateUnit::max)) {
        std::fprintf(stderr, "ravelin-pktgen: the port reports no link speed: give --line-rate for %% rates\n");
        return 2;
    }
    g_engine = engine.get();
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);

    std::optional<RateSpec> warm_rate;
    if (!o.warmup_rate.empty()) {
        warm_rate = RateSpec::parse(o.warmup_rate, &why);
        if (!warm_rate) return usage_error("--warmup-rate: " + why);
    }
    auto wait_step = [&](const char* what) {
        if (!o.wait_stdin) return;
        std::printf("ravelin-pktgen: waiting (%s)\n", what);
        std::fflush(stdout);
        std::string line;
        std::getline(std::cin, line);
    };

    nlohmann::json out = {{"tool", "ravelin-pktgen"}, {"setup", engine->setup_json()}};
    int rc = 0;
    if (o.warmup > 0) {
        TrialSpec w;
        w.duration_s = o.warmup;
        w.rate_override = warm_rate;
        TrialResult r = engine->run_trial(w);
        out["warmup"] = trial_json(r, engine->line_bps(), false, false);
        out["warmup"]["ports"] = engine->ports_json();
    }
    wait_step("run");
    if (!o.rfc2544) {
        TrialSpec t;
        t.duration_s = o.duration;
        t.count = o.count;
        TrialResult r = engine->run_trial(t);
        out["run"] = trial_json(r, engine->line_bps(), true, o.histogram);
    } else {
        // Search in the unit of --rate; "max" means 100 % of the line.
        const RateSpec top = cfg.rate.unit == RateUnit::max ? RateSpec{RateUnit::line_percent, 100} : cfg.rate;
        nlohmann::json results = nlohmann::json::array();
        for (auto& size : o.sizes) {
            const double mean = engine->mean_frame(size);
            nlohmann::json entry = {{"size", size}, {"mean_frame", mean}};
            double ndr = 0;
            for (int pass = 0; pass < (o.loss_ratio > 0 ? 2 : 1) && !engine->stopped(); ++pass) {
                SearchParams p;
                p.max_rate = top.value;
                p.min_rate = pass == 1 ? ndr : 0;
                p.loss_ratio = pass == 0 ? 0 : o.loss_ratio;
                p.resolution = o.resolution;
                p.max_trials = o.max_trials;
                ThroughputSearch search(p);
                std::vector<nlohmann::json> latency;
                while (!search.done() && !engine->stopped()) {
                    TrialSpec t;
                    t.duration_s = o.trial;
                    t.size_override = size;
                    t.rate_override = RateSpec{top.unit, search.next_rate()};
                    TrialResult r = engine->run_trial(t);
                    // What was offered, in the search's unit.
                    double offered = 0;
                    const double d = r.duration_s > 0 ? r.duration_s : 1;
                    switch (top.unit) {
                    case RateUnit::pps: offered = double(r.tx_packets) / d; break;
                    case RateUnit::l2_bps: offered = double(r.tx_clear_bytes) * 8 / d; break;
                    case RateUnit::line_percent:
                        offered = (double(r.tx_clear_bytes) + 20.0 * double(r.tx_packets)) * 8 / d /
                                  engine->line_bps() * 100;
                        break;
                    case RateUnit::max: break;
                    }
                    LatencyHistogram lat;
                    for (auto& st : r.streams) lat.merge(st.latency);
                    latency.push_back(latency_json(lat, false));
                    const auto& tr = search.report(r.tx_packets, r.rx_distinct, offered);
                    std::fprintf(stderr, "rfc2544 %s %s: %s -> tx %llu rx %llu loss %.6f offered %.4g %s\n",
                                 size.c_str(), pass == 0 ? "NDR" : "PDR",
                                 RateSpec{top.unit, tr.rate}.to_string().c_str(), (unsigned long long)tr.tx,
                                 (unsigned long long)tr.rx, tr.loss_ratio, tr.offered,
                                 tr.pass ? "pass" : ("FAIL (" + tr.why + ")").c_str());
                }
                entry[pass == 0 ? "ndr" : "pdr"] = search_json(search, top.unit, mean, engine->line_bps(), latency);
                if (pass == 0) ndr = search.result();
            }
            results.push_back(entry);
        }
        out["rfc2544"] = results;
    }
    out["ports"] = engine->ports_json();
    out["interrupted"] = engine->stopped();

    const std::string text = out.dump(2);
    if (o.json == "-") {
        std::cout << text << "\n";
    } else if (!o.json.empty()) {
        std::ofstream f(o.json);
        f << text << "\n";
        if (!f) {
            std::fprintf(stderr, "ravelin-pktgen: cannot write %s\n", o.json.c_str());
            rc = 1;
        }
    } else {
        // No file: a short summary.
        if (out.contains("run")) {
            auto& r = out["run"];
            std::printf("tx %llu packets (%.3f Mpps)  rx %llu  lost %llu  latency p50 %llu ns p99 %llu ns\n",
                        (unsigned long long)r["tx_packets"].get<uint64_t>(), r["tx_mpps"].get<double>(),
                        (unsigned long long)r["rx_packets"].get<uint64_t>(),
                        (unsigned long long)r["lost"].get<uint64_t>(),
                        (unsigned long long)r["latency_ns"]["p50"].get<uint64_t>(),
                        (unsigned long long)r["latency_ns"]["p99"].get<uint64_t>());
        } else {
            for (auto& e : out["rfc2544"])
                std::printf("%s: NDR %.3f Mpps%s\n", e["size"].get<std::string>().c_str(),
                            e["ndr"]["mpps"].get<double>(),
                            e.contains("pdr") ? (" PDR " + std::to_string(e["pdr"]["mpps"].get<double>()) + " Mpps").c_str() : "");
        }
    }
    wait_step("exit");
    g_engine = nullptr;
    engine.reset();
    rte_eal_cleanup();
    return rc;
}

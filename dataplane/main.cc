// ravelin-dataplane: the DPDK primary process.
//
//   ravelin-dataplane --config /etc/ravelin/dataplane.toml
//
// Exit codes: 0 clean stop (SIGINT/SIGTERM), 1 start-up failure, 2 bad config.
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <rte_eal.h>
#include <rte_errno.h>
#include <spdlog/spdlog.h>

#include "config.hh"
#include "control_socket.hh"
#include "dataplane.hh"
#include "ravelin/paths.hh"

namespace {

// The one process-wide pointer: signal handlers cannot take arguments.
ravelin::dp::Dataplane* g_running = nullptr;

extern "C" void on_signal(int)
{
    if (g_running) g_running->request_stop();
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"Ravelin IPsec data plane"};
    std::string config_path;
    bool check_only = false;
    std::string log_level = "info";
    app.add_option("-c,--config", config_path, "configuration file (TOML)")->required();
    app.add_flag("--check", check_only, "validate the configuration and exit");
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
    CLI11_PARSE(app, argc, argv);
    spdlog::set_level(spdlog::level::from_str(log_level));

    auto parsed = ravelin::dp::load_config(config_path);
    if (!parsed) {
        std::fprintf(stderr, "%s\n", parsed.error().to_string().c_str());
        return 2;
    }
    ravelin::dp::DataplaneConfig& config = parsed.value();
    if (check_only) {
        std::printf("%s: configuration OK (%zu ports, %zu SAs, %zu policies)\n", config_path.c_str(),
                    config.ports.size(), config.sas.size(), config.policies.size());
        return 0;
    }

    std::vector<std::string> args = ravelin::dp::eal_argv(config);
    std::vector<char*> eal_argv;
    for (auto& a : args) eal_argv.push_back(a.data());
    if (rte_eal_init(int(eal_argv.size()), eal_argv.data()) < 0) {
        std::fprintf(stderr, "ravelin-dataplane: EAL init failed: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    std::string error;
    auto dp = ravelin::dp::Dataplane::create(config, error);
    for (auto& s : config.sas) ravelin::wipe_keys(s.sa);   // the SAs hold their own expanded keys now
    if (!dp) {
        std::fprintf(stderr, "ravelin-dataplane: %s\n", error.c_str());
        rte_eal_cleanup();
        return 1;
    }
    if (!dp->open_channel(ravelin::channel::channel_path(config.file_prefix), error)) {
        std::fprintf(stderr, "ravelin-dataplane: %s\n", error.c_str());
        dp.reset();
        rte_eal_cleanup();
        return 1;
    }
    ravelin::dp::ControlServer control(*dp, ravelin::dataplane_socket_path(config.file_prefix));
    if (!control.start(error)) {
        std::fprintf(stderr, "ravelin-dataplane: %s\n", error.c_str());
        return 1;
    }
    g_running = dp.get();
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::printf("ravelin-dataplane: ready (%u workers, %zu ports, %zu SAs)\n", config.workers,
                config.ports.size(), config.sas.size());
    std::fflush(stdout);
    int rc = dp->run();
    control.stop();
    g_running = nullptr;
    dp.reset();
    rte_eal_cleanup();
    std::printf("ravelin-dataplane: stopped\n");
    return rc;
}

// ravelin-iked: the IKEv2 daemon.
//
//   ravelin-iked -c FILE [--dataplane PREFIX] [--attach-timeout S] [--check] [--foreground]
//   ravelin-iked -c FILE --standalone [--sa-sink FILE] [--check] [--foreground]
//
// Exit codes: 0 ok (or stopped by SIGTERM/SIGINT), 1 could not start
// (sockets, files, unsupported mode), 2 bad command line or configuration.
// Prints "ravelin-iked: ready" on stdout once it listens (docs/iked.md).
#include <filesystem>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "config.hh"
#include "daemon.hh"

namespace {

using namespace ravelin;

void say_ready()
{
    std::fputs("ravelin-iked: ready\n", stdout);
    std::fflush(stdout);
}

// Without --foreground: the child runs the daemon in its own session, the
// parent waits until it listens (or fails) and exits with that outcome, so
// "ravelin-iked -c FILE --standalone && next-step" works from scripts.
int run_detached(const iked::DaemonOptions& options, ike::IkeConfig config)
{
    int ready_pipe[2];
    if (pipe2(ready_pipe, O_CLOEXEC) != 0) {
        std::perror("ravelin-iked: pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        std::perror("ravelin-iked: fork");
        return 1;
    }
    if (pid > 0) {
        // This process only waits: let ^C and SIGTERM end it as usual.
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        sigprocmask(SIG_UNBLOCK, &set, nullptr);
        close(ready_pipe[1]);
        char c;
        ssize_t n;
        do n = read(ready_pipe[0], &c, 1);
        while (n < 0 && errno == EINTR);
        if (n == 1) {
            say_ready();
            return 0;
        }
        int status = 0;
        waitpid(pid, &status, 0);
        return WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1;
    }
    close(ready_pipe[0]);
    setsid();
    if (chdir("/") != 0) { /* keep going: paths in the config are absolute */ }
    iked::DaemonOptions child = options;
    child.syslog = true;
    return iked::run_daemon(child, std::move(config), [&] {
        char c = 'r';
        (void)!write(ready_pipe[1], &c, 1);
        close(ready_pipe[1]);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            close(null);
        }
    });
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"Ravelin IKEv2 daemon"};
    std::string config_path, sa_sink, dataplane = "ravelin";
    unsigned attach_timeout = 30;
    bool standalone = false, check = false, foreground = false;
    app.add_option("-c,--config", config_path, "configuration file (swanctl.conf syntax, docs/iked.md)")
        ->required();
    app.add_option("--dataplane", dataplane, "the data plane's DPDK file prefix (attached mode)")->capture_default_str();
    app.add_option("--attach-timeout", attach_timeout, "seconds to wait for the data plane at start")->capture_default_str();
    app.add_flag("--standalone", standalone, "kernel UDP sockets, no data plane (SAs go to the SA sink)");
    app.add_option("--sa-sink", sa_sink, "standalone: append installed/removed Child SAs as JSON lines, keys included");
    app.add_flag("--check", check, "validate the configuration and exit (0 ok, 2 error)");
    app.add_flag("--foreground", foreground, "stay in the foreground and log to stderr");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }

    std::string error;
    // Absolute paths: a detached daemon works in /, and the config's own
    // relative file names (certificates, keys) resolve against its folder.
    std::error_code ec;
    if (!config_path.empty()) config_path = std::filesystem::absolute(config_path, ec).string();
    if (!sa_sink.empty()) sa_sink = std::filesystem::absolute(sa_sink, ec).string();
    auto config = ike::load_ike_config(config_path, error);
    if (config && !iked::validate_daemon_config(config->daemon, error)) {
        error = config_path + ": " + error;
        config.reset();
    }
    if (!config) {
        std::fprintf(stderr, "ravelin-iked: %s\n", error.c_str());
        return 2;
    }
    if (check) {
        std::printf("ravelin-iked: %s: ok, %zu connection(s)\n", config_path.c_str(), config->connections.size());
        return 0;
    }
    if (!standalone && !sa_sink.empty()) {
        std::fprintf(stderr, "ravelin-iked: --sa-sink is for --standalone (attached, SAs go to the data plane)\n");
        return 2;
    }
    iked::block_daemon_signals();
    iked::DaemonOptions options;
    options.config_path = config_path;
    options.sa_sink = sa_sink;
    if (!standalone) {
        options.dataplane = dataplane;
        options.attach_timeout_s = attach_timeout;
    }
    if (!foreground) return run_detached(options, std::move(*config));
    return iked::run_daemon(options, std::move(*config), say_ready);
}

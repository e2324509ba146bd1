// ravelin-iked's main loop (standalone mode): one thread, one poll() over
// the IKE sockets, the control socket and a signalfd, waking at the
// engine's next timer.
//
//   datagram      -> UdpTransport classifies -> Engine::receive
//   timer         -> Engine::tick (retransmits, rekeys, DPD, keepalives)
//   control req   -> ControlServer -> Commands -> Engine
//   SIGHUP        -> reload the config file
//   SIGTERM/INT   -> exit (standalone SAs live only in this process and the
//                    SA sink's log, so there is nothing to tear down)
#pragma once

#include <functional>
#include <string>

#include "config.hh"

namespace ravelin::iked {

struct DaemonOptions {
    std::string config_path;
    std::string sa_sink;            // overrides iked.sa_sink when set
    bool syslog = false;            // log to syslog instead of stderr
};

// Checks the daemon settings the config parser leaves to the daemon: listen
// addresses are numeric, ports differ, log levels are known.
bool validate_daemon_config(const ike::DaemonConfig& d, std::string& error);

// Runs until SIGTERM/SIGINT. `on_ready` is called once everything listens.
// Returns the process exit code (0 after a signal, 1 if start-up failed;
// the reason is logged and written to stderr).
int run_standalone(const DaemonOptions& options, ike::IkeConfig config,
                   const std::function<void()>& on_ready);

// Blocks SIGTERM, SIGINT and SIGHUP (they are read from a signalfd) and
// ignores SIGPIPE. Call before any thread exists.
void block_daemon_signals();

} // namespace ravelin::iked

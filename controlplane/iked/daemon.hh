// ravelin-iked's main loop: one thread, one poll() over the control
// socket, a signalfd and (standalone) the IKE sockets, waking at the
// engine's next timer.
//
// Standalone: kernel UDP sockets, Child SAs to a log or JSON-lines sink.
//   datagram      -> UdpTransport classifies -> Engine::receive
// Attached (the gateway): the channel to ravelin-dataplane (dp_channel.hh);
// the loop also wakes every millisecond to serve its rings.
//   punted frame  -> DataplaneTransport classifies -> Engine::receive
//   SA changes    -> DataplaneSaSink -> commands ring
//   replies       -> results (logged), lifetime events -> Engine::sa_expired,
//                    acquires -> Engine::acquire, SA listings -> list-sas
//   data plane gone (heartbeat stale, file replaced) -> re-attach, install
//                    policies and inbound SAs again, rekey every child
//   at start      -> adopt the SAs the data plane still carries from a
//                    previous ravelin-iked (dp_sink.hh)
// Both:
//   timer         -> Engine::tick (retransmits, rekeys, DPD, keepalives)
//   control req   -> ControlServer -> Commands -> Engine
//   SIGHUP        -> reload the config file
//   SIGTERM/INT   -> exit. The data plane keeps the installed SAs (a new
//                    ravelin-iked adopts them); standalone SAs live only in
//                    this process and the sink's log.
#pragma once

#include <functional>
#include <string>

#include "config.hh"

namespace ravelin::iked {

struct DaemonOptions {
    std::string config_path;
    std::string sa_sink;            // overrides iked.sa_sink when set
    bool syslog = false;            // log to syslog instead of stderr
    // Attached mode when set: the data plane's DPDK file prefix.
    std::string dataplane;
    unsigned attach_timeout_s = 30; // wait this long for the data plane at start
};

// Checks the daemon settings the config parser leaves to the daemon: listen
// addresses are numeric, ports differ, log levels are known.
bool validate_daemon_config(const ike::DaemonConfig& d, std::string& error);

// Runs until SIGTERM/SIGINT. `on_ready` is called once everything listens
// (attached: once the data plane answered). Returns the process exit code
// (0 after a signal, 1 if start-up failed; the reason is logged and
// written to stderr).
int run_daemon(const DaemonOptions& options, ike::IkeConfig config, const std::function<void()>& on_ready);

// Blocks SIGTERM, SIGINT and SIGHUP (they are read from a signalfd) and
// ignores SIGPIPE. Call before any thread exists.
void block_daemon_signals();

} // namespace ravelin::iked

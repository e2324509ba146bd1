// ravelin-iked's logging: one spdlog logger per subsystem ("ike", "cfg",
// "net", "ctl"), registered by name so the engine library finds them with
// spdlog::get("ike") without knowing about the daemon.
//
// All loggers write to one sink (stderr, or syslog once the daemon has
// detached), each through its own token bucket: a peer that makes us log on
// every datagram cannot fill the disk. Lines over the budget are dropped and
// counted, and one summary line says how many when logging resumes.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "config.hh"

namespace ravelin::iked {

// Always created. The config may name more (strongSwan's "chd", "knl", ...
// are accepted by the parser); those get a logger too, so a level set for
// them takes effect if anything ever logs there.
inline constexpr const char* subsystems[] = {"ike", "chd", "cfg", "net", "ctl"};

// A token bucket in front of another sink: `rate` lines per second on
// average, bursts up to `burst`.
class RateLimitedSink final : public spdlog::sinks::base_sink<std::mutex> {
public:
    RateLimitedSink(spdlog::sink_ptr inner, double rate, double burst);
    uint64_t dropped() const;

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override;
    void flush_() override;

private:
    spdlog::sink_ptr inner_;
    double rate_, burst_, tokens_;
    std::chrono::steady_clock::time_point last_;
    uint64_t pending_dropped_ = 0;  // since the last summary line
    uint64_t total_dropped_ = 0;
};

struct LogOptions {
    bool syslog = false;            // else stderr
    double rate = 200;              // lines per second per subsystem
    double burst = 1000;
};

class Logging {
public:
    // Creates and registers the subsystem loggers (replacing any with the
    // same names), with levels from `levels`. Unknown level names are an
    // error.
    bool start(const ike::LogLevels& levels, const LogOptions& options, std::string& error);
    // Levels from a reloaded config.
    bool apply(const ike::LogLevels& levels, std::string& error);
    bool set_level(std::string_view subsystem, std::string_view level, std::string& error);
    // Lines dropped by each subsystem's rate limit so far.
    std::map<std::string, uint64_t> dropped() const;
    // Current level names per subsystem.
    std::map<std::string, std::string> levels() const;

private:
    std::shared_ptr<spdlog::logger> add(const std::string& name);

    spdlog::sink_ptr out_;
    LogOptions options_;
    std::map<std::string, std::shared_ptr<RateLimitedSink>> limiters_;
};

// "trace", "debug", "info", "warning"/"warn", "error"/"err", "critical", "off".
bool parse_level(std::string_view text, spdlog::level::level_enum& out);

// The subsystem's logger; a null sink logger if it was never created (the
// unit tests use the components without a Logging).
std::shared_ptr<spdlog::logger> logger(const char* subsystem);

} // namespace ravelin::iked

#include "logging.hh"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <syslog.h>

namespace ravelin::iked {

RateLimitedSink::RateLimitedSink(spdlog::sink_ptr inner, double rate, double burst)
    : inner_(std::move(inner)), rate_(rate), burst_(burst), tokens_(burst),
      last_(std::chrono::steady_clock::now())
{
}

uint64_t RateLimitedSink::dropped() const
{
    std::lock_guard lock(const_cast<std::mutex&>(mutex_));
    return total_dropped_;
}

void RateLimitedSink::sink_it_(const spdlog::details::log_msg& msg)
{
    auto now = std::chrono::steady_clock::now();
    double elapsed = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
    if (tokens_ < 1.0) {
        ++pending_dropped_;
        ++total_dropped_;
        return;
    }
    tokens_ -= 1.0;
    if (pending_dropped_) {
        // The summary costs no token: it replaces the lines it stands for.
        std::string text = fmt::format("rate limit: {} log lines dropped", pending_dropped_);
        spdlog::details::log_msg summary(msg.time, {}, msg.logger_name, spdlog::level::warn, text);
        inner_->log(summary);
        pending_dropped_ = 0;
    }
    inner_->log(msg);
}

void RateLimitedSink::flush_() { inner_->flush(); }

bool parse_level(std::string_view text, spdlog::level::level_enum& out)
{
    using spdlog::level::level_enum;
    static const std::pair<std::string_view, level_enum> names[] = {
        {"trace", level_enum::trace}, {"debug", level_enum::debug},
        {"info", level_enum::info},   {"warning", level_enum::warn},
        {"warn", level_enum::warn},   {"error", level_enum::err},
        {"err", level_enum::err},     {"critical", level_enum::critical},
        {"off", level_enum::off},
    };
    for (const auto& [name, level] : names)
        if (text == name) {
            out = level;
            return true;
        }
    return false;
}

bool Logging::start(const ike::LogLevels& levels, const LogOptions& options, std::string& error)
{
    options_ = options;
    if (options.syslog) {
        out_ = std::make_shared<spdlog::sinks::syslog_sink_mt>("ravelin-iked", LOG_PID, LOG_DAEMON, true);
        out_->set_pattern("%n: %v");
    } else {
        out_ = std::make_shared<spdlog::sinks::stderr_sink_mt>();
        out_->set_pattern("%Y-%m-%dT%H:%M:%S.%e %-3n %L %v");
    }
    out_->set_level(spdlog::level::trace);
    for (const auto& [name, limiter] : limiters_) spdlog::drop(name);
    limiters_.clear();
    for (const char* name : subsystems) add(name);
    return apply(levels, error);
}

std::shared_ptr<spdlog::logger> Logging::add(const std::string& name)
{
    auto limiter = std::make_shared<RateLimitedSink>(out_, options_.rate, options_.burst);
    limiters_[name] = limiter;
    spdlog::drop(name);
    auto log = std::make_shared<spdlog::logger>(name, limiter);
    log->flush_on(spdlog::level::trace);   // stderr is unbuffered anyway; syslog is per line
    spdlog::register_logger(log);
    return log;
}

bool Logging::apply(const ike::LogLevels& levels, std::string& error)
{
    spdlog::level::level_enum def;
    if (!parse_level(levels.default_level, def)) {
        error = "unknown log level '" + levels.default_level + "'";
        return false;
    }
    for (const auto& [sub, level] : levels.subsystems) {
        spdlog::level::level_enum l;
        if (!parse_level(level, l)) {
            error = "unknown log level '" + level + "' for " + sub;
            return false;
        }
    }
    if (!out_) return true;   // not started: only checked
    for (const auto& [sub, level] : levels.subsystems)
        if (!limiters_.count(sub)) add(sub);
    for (const auto& [name, limiter] : limiters_) {
        auto it = levels.subsystems.find(name);
        spdlog::level::level_enum l = def;
        if (it != levels.subsystems.end()) parse_level(it->second, l);
        if (auto log = spdlog::get(name)) log->set_level(l);
    }
    return true;
}

bool Logging::set_level(std::string_view subsystem, std::string_view level, std::string& error)
{
    spdlog::level::level_enum l;
    if (!parse_level(level, l)) {
        error = "unknown log level '" + std::string(level) +
                "' (trace, debug, info, warning, error, critical, off)";
        return false;
    }
    if (subsystem == "all") {
        for (const auto& [name, limiter] : limiters_)
            if (auto log = spdlog::get(name)) log->set_level(l);
        return true;
    }
    auto log = limiters_.count(std::string(subsystem)) ? spdlog::get(std::string(subsystem)) : nullptr;
    if (!log) {
        std::string known;
        for (const auto& [name, limiter] : limiters_) known += name + ", ";
        error = "unknown log subsystem '" + std::string(subsystem) + "' (" + known + "all)";
        return false;
    }
    log->set_level(l);
    return true;
}

std::map<std::string, uint64_t> Logging::dropped() const
{
    std::map<std::string, uint64_t> out;
    for (const auto& [name, limiter] : limiters_) out[name] = limiter->dropped();
    return out;
}

std::map<std::string, std::string> Logging::levels() const
{
    std::map<std::string, std::string> out;
    for (const auto& [name, limiter] : limiters_)
        if (auto log = spdlog::get(name)) {
            auto sv = spdlog::level::to_string_view(log->level());
            out[name] = std::string(sv.data(), sv.size());
        }
    return out;
}

std::shared_ptr<spdlog::logger> logger(const char* subsystem)
{
    if (auto log = spdlog::get(subsystem)) return log;
    static auto null = std::make_shared<spdlog::logger>("null", std::make_shared<spdlog::sinks::null_sink_mt>());
    return null;
}

} // namespace ravelin::iked

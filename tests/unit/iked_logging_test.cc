// ravelin-iked's logging (controlplane/iked/logging.hh): the per-subsystem
// rate limit drops and counts a flood and says so once, and levels come
// from the config and from log-level commands.
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <thread>

#include <spdlog/sinks/ostream_sink.h>

#include "logging.hh"

namespace ravelin::iked {
namespace {

using namespace std::chrono_literals;

int count_lines(const std::string& s, const std::string& needle)
{
    int n = 0;
    for (auto p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
    return n;
}

TEST(IkedLogging, FloodIsDroppedCountedAndSummarised)
{
    std::ostringstream out;
    auto inner = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
    inner->set_pattern("%l %v");
    // 10 lines/s, bursts of 5: a flood of 100 in a few milliseconds lets 5 through.
    auto limited = std::make_shared<RateLimitedSink>(inner, 10, 5);
    spdlog::logger log("flood", limited);
    log.set_level(spdlog::level::trace);
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 100; ++i) log.info("peer said something {}", i);
    ASSERT_LT(std::chrono::steady_clock::now() - t0, 50ms) << "the flood must be faster than the refill";
    EXPECT_EQ(count_lines(out.str(), "peer said something"), 5);
    EXPECT_EQ(limited->dropped(), 95u);
    EXPECT_EQ(count_lines(out.str(), "rate limit"), 0) << "no summary while still flooding";

    // After the bucket refilled, the next line comes with one summary first.
    std::this_thread::sleep_for(150ms);
    log.warn("later");
    std::string text = out.str();
    EXPECT_EQ(count_lines(text, "rate limit: 95 log lines dropped"), 1) << text;
    EXPECT_LT(text.find("rate limit"), text.find("later"));
    // And only once.
    std::this_thread::sleep_for(150ms);
    log.warn("again");
    EXPECT_EQ(count_lines(out.str(), "rate limit"), 1);
    EXPECT_EQ(limited->dropped(), 95u);
}

TEST(IkedLogging, LevelsFromConfigAndCommands)
{
    Logging logging;
    ike::LogLevels levels;
    levels.default_level = "warning";
    levels.subsystems["ike"] = "debug";
    levels.subsystems["knl"] = "error";   // a strongSwan name the parser accepts: gets a logger
    std::string error;
    ASSERT_TRUE(logging.start(levels, {}, error)) << error;
    EXPECT_EQ(spdlog::get("ike")->level(), spdlog::level::debug);
    EXPECT_EQ(spdlog::get("net")->level(), spdlog::level::warn);
    EXPECT_EQ(spdlog::get("ctl")->level(), spdlog::level::warn);
    ASSERT_TRUE(spdlog::get("knl"));
    EXPECT_EQ(spdlog::get("knl")->level(), spdlog::level::err);
    EXPECT_EQ(logger("ike").get(), spdlog::get("ike").get());

    EXPECT_TRUE(logging.set_level("net", "trace", error)) << error;
    EXPECT_EQ(spdlog::get("net")->level(), spdlog::level::trace);
    EXPECT_FALSE(logging.set_level("net", "loud", error));
    EXPECT_FALSE(logging.set_level("nope", "info", error));
    EXPECT_NE(error.find("nope"), std::string::npos);
    EXPECT_TRUE(logging.set_level("all", "off", error));
    EXPECT_EQ(spdlog::get("ike")->level(), spdlog::level::off);
    EXPECT_EQ(logging.levels().at("cfg"), "off");

    // A reloaded config sets them again; a bad level is refused whole.
    levels.subsystems["ike"] = "info";
    ASSERT_TRUE(logging.apply(levels, error)) << error;
    EXPECT_EQ(spdlog::get("ike")->level(), spdlog::level::info);
    levels.subsystems["cfg"] = "chatty";
    EXPECT_FALSE(logging.apply(levels, error));
    EXPECT_EQ(spdlog::get("cfg")->level(), spdlog::level::warn);
    EXPECT_EQ(spdlog::get("ike")->level(), spdlog::level::info);
}

} // namespace
} // namespace ravelin::iked

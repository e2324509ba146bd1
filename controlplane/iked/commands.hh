// The daemon's control commands (control.hh carries them): what each one
// asks of the engine, and the JSON the replies carry. ravelinctl renders
// these replies; scripts can read them with --json.
//
//   list-sas                       {"sas":[IKE SA ...]} (attached: with data-plane counters)
//   list-conns                     {"connections":[connection ...]}
//   initiate {connection, child?}  {"ok":true}  (no child: the first one)
//   terminate {connection}         {"ok":true}
//   rekey {connection, child?}     {"ok":true}   (no child: the IKE SA)
//   reload                         {"ok":true,"touched":[names]}
//   log-level {subsystem, level}   {"ok":true,"levels":{...}}
//   diagnose {connection?}         {"diagnoses":[...]}
//   stats                          {"engine":{...},"log":{...}, ...}
//
// Any failure: {"error":"..."}.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control.hh"
#include "engine.hh"
#include "logging.hh"

namespace ravelin::iked {

// --- replies as JSON (pure, tested on their own) -------------------------------

nlohmann::json suite_json(const ike::SelectedSuite& s, bool ike);
nlohmann::json sas_json(const std::vector<ike::IkeSaInfo>& sas);
nlohmann::json connections_json(const ike::IkeConfig& config);
// Data-plane drops by reason ({"reason": count}) for one connection's
// Child SAs; null when there is no data plane to ask.
using TunnelDropsFn = std::function<nlohmann::json(const std::string& connection)>;
nlohmann::json diagnoses_json(const std::vector<ike::Diagnosis>& list, ike::TimePoint now = {},
                              const TunnelDropsFn& tunnel_drops = {});
nlohmann::json engine_stats_json(const ike::EngineStats& s);
// The drops of `connection`'s tunnels (all children, both directions) in
// the data plane's stats JSON ("tunnels": [{connection, drops}]): a
// TunnelDropsFn answer. Null when the stats have no "tunnels".
nlohmann::json tunnel_drops_from_stats(const nlohmann::json& stats, const std::string& connection);

// --- the handler ----------------------------------------------------------------

struct CommandHooks {
    // Re-reads the config file and hands it to the engine: the touched
    // connection names, or false with "file:line: reason".
    std::function<bool(std::vector<std::string>& touched, std::string& error)> reload;
    // Daemon counters to add to "stats" (transport, control socket, sinks).
    std::function<void(nlohmann::json& out)> stats;
    // Attached mode: adds the data plane's live counters to list-sas'
    // children ("in"/"out": packets, bytes, idle_s).
    std::function<void(nlohmann::json& sas)> sa_counters;
    // The data plane's stats JSON, read once per diagnose for every
    // connection's "dataplane_drops" (tunnel_drops_from_stats). Unset while
    // ravelin-iked runs standalone, nullopt when the data plane did not
    // answer: the field is then null.
    std::function<std::optional<nlohmann::json>()> dataplane_stats;
};

class Commands final : public ControlHandler {
public:
    Commands(ike::Engine& engine, Logging& logging, CommandHooks hooks)
        : engine_(engine), logging_(logging), hooks_(std::move(hooks)) {}
    nlohmann::json handle(const nlohmann::json& request) override;

private:
    ike::Engine& engine_;
    Logging& logging_;
    CommandHooks hooks_;
};

} // namespace ravelin::iked

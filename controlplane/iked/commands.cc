#include "commands.hh"

#include <fmt/format.h>

#include "names.hh"

namespace ravelin::iked {

using nlohmann::json;

namespace {

json name_or_null(uint16_t id, std::string (*name)(uint16_t))
{
    return id ? json(name(id)) : json(nullptr);
}

json ts_json(const std::vector<ike::TrafficSelector>& list)
{
    json out = json::array();
    for (const auto& ts : list) out.push_back(format_ts(ts));
    return out;
}

json ts_config_json(const std::vector<ike::TsConfig>& list)
{
    json out = json::array();
    for (const auto& ts : list) out.push_back(format_ts_config(ts));
    return out;
}

json endpoint_json(const ike::Endpoint& e)
{
    return {{"addr", format_address(e.addr)}, {"port", e.port}};
}

json proposals_json(const std::vector<ike::ProposalSpec>& list)
{
    json out = json::array();
    for (const auto& p : list) out.push_back(describe_proposal(p));
    return out;
}

const char* mode_name(ike::ChildMode m) { return m == ike::ChildMode::tunnel ? "tunnel" : "transport"; }

const char* action_name(ike::StartAction a)
{
    switch (a) {
    case ike::StartAction::none: return "none";
    case ike::StartAction::trap: return "trap";
    case ike::StartAction::start: return "start";
    }
    return "?";
}

const char* action_name(ike::CloseAction a)
{
    switch (a) {
    case ike::CloseAction::none: return "none";
    case ike::CloseAction::trap: return "trap";
    case ike::CloseAction::start: return "start";
    }
    return "?";
}

const char* action_name(ike::DpdAction a)
{
    switch (a) {
    case ike::DpdAction::clear: return "clear";
    case ike::DpdAction::trap: return "trap";
    case ike::DpdAction::restart: return "restart";
    }
    return "?";
}

json auth_json(const ike::AuthConfig& a)
{
    json j = {{"auth", a.auth == ike::AuthKind::psk ? "psk" : "pubkey"},
              {"id", a.id.any ? std::string("%any") : a.id.text}};
    if (!a.certs.empty()) j["certs"] = a.certs;
    if (!a.cacerts.empty()) j["cacerts"] = a.cacerts;
    return j;
}

json phase_json(ike::Phase p)
{
    switch (p) {
    case ike::Phase::none: return nullptr;
    case ike::Phase::ike_sa_init: return "IKE_SA_INIT";
    case ike::Phase::ike_auth: return "IKE_AUTH";
    case ike::Phase::child: return "CREATE_CHILD_SA";
    }
    return nullptr;
}

std::string opt_string(const json& request, const char* key)
{
    auto it = request.find(key);
    if (it == request.end() || it->is_null()) return "";
    return it->get<std::string>();   // throws (-> bad request) if not a string
}

json ok() { return {{"ok", true}}; }
json fail(std::string e) { return {{"error", std::move(e)}}; }

} // namespace

json suite_json(const ike::SelectedSuite& s, bool ike)
{
    json j = {{"encr", name_or_null(s.encr, encr_name)},
              {"encr_key_bits", s.encr_key_bits},
              {"integ", name_or_null(s.integ, integ_name)},
              {"dh", name_or_null(s.dh, dh_name)},
              {"text", describe_suite(s, ike)}};
    if (ike) j["prf"] = name_or_null(s.prf, prf_name);
    else j["esn"] = s.esn;
    return j;
}

json sas_json(const std::vector<ike::IkeSaInfo>& sas)
{
    json list = json::array();
    for (const auto& sa : sas) {
        json children = json::array();
        for (const auto& c : sa.children)
            children.push_back({
                {"name", c.name},
                {"unique_id", c.unique_id},
                {"reqid", c.reqid},
                {"state", c.state},
                {"mode", mode_name(c.mode)},
                {"udp_encap", c.udp_encap},
                {"spi_in", fmt::format("{:08x}", c.spi_in)},
                {"spi_out", fmt::format("{:08x}", c.spi_out)},
                {"suite", suite_json(c.suite, false)},
                {"installed_s", c.installed_s},
                {"rekey_in_s", c.rekey_in_s},
                {"life_in_s", c.life_in_s},
                {"local_ts", ts_json(c.local_ts)},
                {"remote_ts", ts_json(c.remote_ts)},
            });
        list.push_back({
            {"name", sa.name},
            {"unique_id", sa.unique_id},
            {"state", sa.state},
            {"version", 2},
            {"initiator", sa.initiator},
            {"spi_i", fmt::format("{:016x}", sa.spi_i)},
            {"spi_r", fmt::format("{:016x}", sa.spi_r)},
            {"local", endpoint_json(sa.local)},
            {"remote", endpoint_json(sa.remote)},
            {"local_id", sa.local_id},
            {"remote_id", sa.remote_id},
            {"nat_local", sa.nat_local},
            {"nat_remote", sa.nat_remote},
            {"nat_fake", sa.nat_fake},
            {"suite", suite_json(sa.suite, true)},
            {"established_s", sa.established_s},
            {"rekey_in_s", sa.rekey_in_s},
            {"children", std::move(children)},
        });
    }
    return {{"sas", std::move(list)}};
}

json connections_json(const ike::IkeConfig& config)
{
    json list = json::array();
    for (const auto& c : config.connections) {
        json children = json::array();
        for (const auto& ch : c.children)
            children.push_back({
                {"name", ch.name},
                {"mode", mode_name(ch.mode)},
                {"local_ts", ts_config_json(ch.local_ts)},
                {"remote_ts", ts_config_json(ch.remote_ts)},
                {"esp_proposals", proposals_json(ch.esp_proposals)},
                {"start_action", action_name(ch.start_action)},
                {"close_action", action_name(ch.close_action)},
                {"dpd_action", action_name(ch.dpd_action)},
                {"rekey_time_s", ch.rekey_time_s},
                {"life_time_s", ch.life_time_s},
                {"reqid", ch.reqid},
            });
        list.push_back({
            {"name", c.name},
            {"version", 2},
            {"local_addrs", c.local_addrs},
            {"remote_addrs", c.remote_addrs},
            {"local_port", c.local_port},
            {"remote_port", c.remote_port},
            {"proposals", proposals_json(c.proposals)},
            {"local", auth_json(c.local)},
            {"remote", auth_json(c.remote)},
            {"encap", c.encap},
            {"dpd_delay_s", c.dpd_delay_s},
            {"rekey_time_s", c.rekey_time_s},
            {"reauth_time_s", c.reauth_time_s},
            {"children", std::move(children)},
        });
    }
    return {{"connections", std::move(list)}};
}

json tunnel_drops_from_stats(const json& stats, const std::string& connection)
{
    auto tunnels = stats.find("tunnels");
    if (!stats.is_object() || tunnels == stats.end() || !tunnels->is_array()) return nullptr;
    json sum = json::object();
    for (const auto& t : *tunnels) {
        if (!t.is_object() || t.value("connection", std::string{}) != connection) continue;
        auto drops = t.find("drops");
        if (drops == t.end() || !drops->is_object()) continue;
        for (const auto& [reason, n] : drops->items())
            if (n.is_number_unsigned() || (n.is_number_integer() && n.get<int64_t>() >= 0))
                sum[reason] = sum.value(reason, uint64_t(0)) + n.get<uint64_t>();
    }
    return sum;
}

json diagnoses_json(const std::vector<ike::Diagnosis>& list, ike::TimePoint now, const TunnelDropsFn& tunnel_drops)
{
    auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
    json out = json::array();
    for (const auto& d : list) {
        json failed = nullptr;
        if (d.phase_number) {
            failed = {
                {"phase", d.phase_number},
                {"exchange", d.exchange},
                {"notify", or_null(d.notify)},
                {"reason", d.reason},
                {"detected_by", d.by_peer ? "peer" : "local"},
                {"role", d.as_initiator ? "initiator" : "responder"},
                {"child", or_null(d.child)},
                {"seconds_ago", now == ike::TimePoint{} ? json(nullptr)
                                    : json(std::chrono::duration_cast<std::chrono::seconds>(now - d.failed_at).count())},
            };
        }
        json ours_esp = json::object(), children = json::array();
        for (const auto& c : d.children) {
            ours_esp[c.name] = c.esp_proposals;
            children.push_back({{"name", c.name}, {"state", c.state}, {"esp_proposals", c.esp_proposals},
                                {"local_ts", c.local_ts}, {"remote_ts", c.remote_ts}});
        }
        out.push_back({
            {"connection", d.connection},
            {"phase1", d.phase1},
            {"phase2", d.phase2},
            {"failed_phase", phase_json(d.failed_phase)},
            {"failure", d.failure},
            {"failed", std::move(failed)},
            {"our_proposals", d.our_proposals},
            {"peer_proposals", d.peer_proposals},
            {"proposals",
             {{"ours", {{"ike", d.our_ike_keywords}, {"esp", std::move(ours_esp)}}},
              {"peer",
               {{"ike", or_null(d.peer_ike_keywords)},
                {"ike_seen", d.peer_ike_keywords.empty() ? json(nullptr) : json(d.peer_ike_answered ? "answered" : "offered")},
                {"esp", or_null(d.peer_esp_keywords)},
                {"esp_seen", d.peer_esp_keywords.empty() ? json(nullptr) : json(d.peer_esp_answered ? "answered" : "offered")}}}}},
            {"our_ts", d.our_ts},
            {"peer_ts", d.peer_ts},
            {"children", std::move(children)},
            {"dataplane_drops", tunnel_drops ? tunnel_drops(d.connection) : json(nullptr)},
            {"hint", d.hint},
        });
    }
    return {{"diagnoses", std::move(out)}};
}

json engine_stats_json(const ike::EngineStats& s)
{
    return {
        {"rx_messages", s.rx_messages},       {"tx_messages", s.tx_messages},
        {"retransmits", s.retransmits},       {"rx_invalid", s.rx_invalid},
        {"half_open", s.half_open},           {"cookies_sent", s.cookies_sent},
        {"ike_established", s.ike_established}, {"child_installed", s.child_installed},
        {"ike_rekeys", s.ike_rekeys},         {"child_rekeys", s.child_rekeys},
        {"auth_failures", s.auth_failures},   {"negotiation_failures", s.negotiation_failures},
    };
}

json Commands::handle(const json& request)
{
    const std::string command = request.at("command").get<std::string>();
    const auto now = ike::Clock::now();
    std::string error;

    if (command == "list-sas") {
        json out = sas_json(engine_.list_sas(now));
        if (hooks_.sa_counters) hooks_.sa_counters(out);
        return out;
    }
    if (command == "list-conns") return connections_json(engine_.config());
    if (command == "stats") {
        json out = {{"engine", engine_stats_json(engine_.stats())},
                    {"log", {{"levels", logging_.levels()}, {"dropped", logging_.dropped()}}}};
        if (hooks_.stats) hooks_.stats(out);
        return out;
    }
    if (command == "diagnose") {
        std::string name = opt_string(request, "connection");
        if (!name.empty() && !engine_.config().find(name)) return fail("no connection named '" + name + "'");
        auto all = engine_.diagnose();
        std::vector<ike::Diagnosis> picked;
        for (auto& d : all)
            if (name.empty() || d.connection == name) picked.push_back(std::move(d));
        std::optional<json> stats = hooks_.dataplane_stats ? hooks_.dataplane_stats() : std::nullopt;
        TunnelDropsFn drops;
        if (stats) drops = [&stats](const std::string& conn) { return tunnel_drops_from_stats(*stats, conn); };
        return diagnoses_json(picked, now, drops);
    }
    if (command == "initiate" || command == "terminate" || command == "rekey") {
        std::string conn = opt_string(request, "connection");
        std::string child = opt_string(request, "child");
        if (conn.empty()) return fail(command + " needs a \"connection\"");
        bool done = false;
        if (command == "initiate") done = engine_.initiate(now, conn, child, error);
        else if (command == "terminate") done = engine_.terminate(now, conn, error);
        else if (child.empty()) done = engine_.rekey_ike(now, conn, error);
        else done = engine_.rekey_child(now, conn, child, error);
        if (!done) return fail(error.empty() ? command + " failed" : error);
        logger("ctl")->info("{} {}{}{}", command, conn, child.empty() ? "" : "/", child);
        return ok();
    }
    if (command == "reload") {
        if (!hooks_.reload) return fail("reload is not available");
        std::vector<std::string> touched;
        if (!hooks_.reload(touched, error)) return fail(error);
        return {{"ok", true}, {"touched", touched}};
    }
    if (command == "log-level") {
        std::string sub = opt_string(request, "subsystem");
        std::string level = opt_string(request, "level");
        if (sub.empty() || level.empty()) return fail("log-level needs \"subsystem\" and \"level\"");
        if (!logging_.set_level(sub, level, error)) return fail(error);
        return {{"ok", true}, {"levels", logging_.levels()}};
    }
    return fail("unknown command '" + command +
                "' (known: list-sas, list-conns, initiate, terminate, rekey, reload, log-level, diagnose, stats)");
}

} // namespace ravelin::iked

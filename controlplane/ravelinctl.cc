// ravelinctl: operate a Ravelin gateway.
//
//   ravelinctl [--file-prefix P | --socket PATH] stats [--json]        data plane counters
//   ravelinctl [--iked-socket PATH] list-sas [--json]                  IKE and Child SAs
//   ravelinctl [--iked-socket PATH] list-conns [--json]                configured connections
//   ravelinctl [--iked-socket PATH] initiate --ike NAME [--child NAME]
//   ravelinctl [--iked-socket PATH] terminate --ike NAME
//   ravelinctl [--iked-socket PATH] rekey --ike NAME [--child NAME]    no --child: the IKE SA
//   ravelinctl [--iked-socket PATH] reload
//   ravelinctl [--iked-socket PATH] log-level SUBSYSTEM LEVEL
//   ravelinctl [--iked-socket PATH] diagnose [NAME] [--json]
//   ravelinctl [--iked-socket PATH] ike-stats [--json]
//
// Each command is one request on a unix socket and one JSON reply:
// ravelin-dataplane's control socket for `stats`, ravelin-iked's for the
// rest (docs/iked.md). The human output of list-sas and list-conns follows
// `swanctl --list-sas` / `--list-conns`.
//
// Exit codes: 0 ok, 1 the daemon reported an error (or gave no usable
// answer), 2 usage, 3 cannot connect to the daemon.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ravelin/paths.hh"

namespace {

using nlohmann::json;

constexpr const char* default_iked_socket = "/run/ravelin/iked.sock";
constexpr std::size_t max_reply = 64 * 1024 * 1024;

enum Exit : int { exit_ok = 0, exit_daemon = 1, exit_usage = 2, exit_connect = 3 };

struct Failure {
    Exit code;
    std::string message;
};

// One request line, the whole reply (the server closes after answering).
bool request(const std::string& path, const std::string& line, const char* daemon, std::string& reply,
             Failure& failure)
{
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof(addr.sun_path)) {
        failure = {exit_usage, "socket path too long: " + path};
        return false;
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        failure = {exit_connect, "cannot connect to " + path + ": " + std::strerror(errno) + " (is " + daemon +
                                     " running?)"};
        if (fd >= 0) close(fd);
        return false;
    }
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::string out = line + "\n";
    if (send(fd, out.data(), out.size(), MSG_NOSIGNAL) != ssize_t(out.size())) {
        failure = {exit_daemon, "cannot send to " + path + ": " + std::strerror(errno)};
        close(fd);
        return false;
    }
    char buf[65536];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0 && reply.size() < max_reply) reply.append(buf, size_t(n));
    close(fd);
    if (reply.empty()) {
        failure = {exit_daemon, "no answer from " + path};
        return false;
    }
    return true;
}

// Sends `req` to iked; the reply, or nullopt with `failure` (a reply with
// "error" is a failure too).
std::optional<json> ask_iked(const std::string& path, const json& req, Failure& failure)
{
    std::string reply;
    if (!request(path, req.dump(), "ravelin-iked", reply, failure)) return std::nullopt;
    json doc = json::parse(reply, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
        failure = {exit_daemon, "bad answer from ravelin-iked: " + reply.substr(0, 200)};
        return std::nullopt;
    }
    if (doc.contains("error")) {
        failure = {exit_daemon, doc["error"].is_string() ? doc["error"].get<std::string>() : doc["error"].dump()};
        return std::nullopt;
    }
    return doc;
}

// --- data plane stats -----------------------------------------------------------

void print_counters(const char* title, const json& obj, bool skip_zero)
{
    std::printf("%s:\n", title);
    bool any = false;
    for (auto& [k, v] : obj.items()) {
        if (skip_zero && v.get<uint64_t>() == 0) continue;
        std::printf("  %-22s %14llu\n", k.c_str(), static_cast<unsigned long long>(v.get<uint64_t>()));
        any = true;
    }
    if (!any) std::printf("  (none)\n");
}

// {"replay": 2, "auth_failed": 1} as "auth_failed 1, replay 2".
std::string drops_text(const json& drops)
{
    std::string text;
    for (const auto& [reason, n] : drops.items()) text += (text.empty() ? "" : ", ") + reason + " " + n.dump();
    return text;
}

void print_dataplane_stats(const json& s)
{
    print_counters("packets", s.at("stats"), false);
    print_counters("drops (non-zero)", s.at("drops"), true);
    std::printf("SAs:\n");
    for (const auto& sa : s.at("sas")) {
        std::printf("  %-3s %08x  %-9s worker %u  %10llu packets %14llu bytes%s\n",
                    sa.at("direction").get<std::string>().c_str(), sa.at("spi").get<unsigned>(),
                    sa.at("mode").get<std::string>().c_str(), sa.at("worker").get<unsigned>(),
                    static_cast<unsigned long long>(sa.at("packets").get<uint64_t>()),
                    static_cast<unsigned long long>(sa.at("bytes").get<uint64_t>()),
                    sa.at("expired").get<bool>() ? "  EXPIRED" : "");
        if (auto d = sa.find("drops"); d != sa.end() && d->is_object() && !d->empty())
            std::printf("      drops: %s\n", drops_text(*d).c_str());
    }
    std::printf("neighbors:\n");
    for (const auto& n : s.at("neighbors"))
        std::printf("  %-40s %s%s\n", n.at("ip").get<std::string>().c_str(),
                    n.at("resolved").get<bool>() ? n.at("mac").get<std::string>().c_str() : "(incomplete)",
                    n.value("static", false) ? "  static" : "");
    if (!s.at("events").empty()) {
        std::printf("recent events:\n");
        for (const auto& e : s.at("events"))
            std::printf("  %s %08x %s\n", e.at("direction").get<std::string>().c_str(),
                        e.at("spi").get<unsigned>(), e.at("type").get<std::string>().c_str());
    }
}

// --- IKE: human output ------------------------------------------------------------

std::string str(const json& j, const char* key)
{
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return "";
    return it->is_string() ? it->get<std::string>() : it->dump();
}

int64_t num(const json& j, const char* key, int64_t fallback = -1)
{
    auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<int64_t>() : fallback;
}

std::string join(const json& list, const char* sep)
{
    std::string out;
    if (!list.is_array()) return out;
    for (const auto& v : list) {
        if (!out.empty()) out += sep;
        out += v.is_string() ? v.get<std::string>() : v.dump();
    }
    return out;
}

std::string upper(std::string s)
{
    for (auto& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

// swanctl's algorithm line: AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519
std::string suite_text(const json& suite)
{
    return suite.is_object() ? str(suite, "text") : "";
}

void print_sas(const json& doc)
{
    for (const auto& sa : doc.at("sas")) {
        bool init = sa.value("initiator", false);
        std::printf("%s: #%lld, %s, IKEv2, %s_i%s %s_r%s\n", str(sa, "name").c_str(),
                    (long long)num(sa, "unique_id", 0), str(sa, "state").c_str(), str(sa, "spi_i").c_str(),
                    init ? "*" : "", str(sa, "spi_r").c_str(), init ? "" : "*");
        const auto& l = sa.at("local");
        const auto& r = sa.at("remote");
        std::printf("  local  '%s' @ %s[%lld]\n", str(sa, "local_id").c_str(), str(l, "addr").c_str(),
                    (long long)num(l, "port", 0));
        std::printf("  remote '%s' @ %s[%lld]\n", str(sa, "remote_id").c_str(), str(r, "addr").c_str(),
                    (long long)num(r, "port", 0));
        std::string suite = suite_text(sa.value("suite", json()));
        if (!suite.empty() && str(sa.at("suite"), "encr") != "") std::printf("  %s\n", suite.c_str());
        if (str(sa, "state") != "CONNECTING") {
            std::printf("  established %llds ago", (long long)num(sa, "established_s", 0));
            if (num(sa, "rekey_in_s") >= 0) std::printf(", rekeying in %llds", (long long)num(sa, "rekey_in_s"));
            std::printf("\n");
        }
        for (const auto& c : sa.value("children", json::array())) {
            std::printf("  %s: #%lld, reqid %lld, %s, %s%s, ESP:%s\n", str(c, "name").c_str(),
                        (long long)num(c, "unique_id", 0), (long long)num(c, "reqid", 0),
                        str(c, "state").c_str(), upper(str(c, "mode")).c_str(),
                        c.value("udp_encap", false) ? "-in-UDP" : "", suite_text(c.value("suite", json())).c_str());
            std::printf("    installed %llds ago", (long long)num(c, "installed_s", 0));
            if (num(c, "rekey_in_s") >= 0) std::printf(", rekeying in %llds", (long long)num(c, "rekey_in_s"));
            if (num(c, "life_in_s") >= 0) std::printf(", expires in %llds", (long long)num(c, "life_in_s"));
            std::printf("\n");
            // Counters come from the data plane (attached mode only), in
            // swanctl's shape: "in  c6ebc868, 1234 bytes, 10 packets, 2s ago".
            for (const char* dir : {"in", "out"}) {
                std::string spi = str(c, dir == std::string("in") ? "spi_in" : "spi_out");
                std::printf("    %-3s %s", dir, spi.c_str());
                if (c.contains(dir) && c.at(dir).is_object()) {
                    const json& d = c.at(dir);
                    std::printf(", %llu bytes, %llu packets", (unsigned long long)d.value("bytes", uint64_t(0)),
                                (unsigned long long)d.value("packets", uint64_t(0)));
                    if (d.value("idle_s", -1.0) >= 0) std::printf(", %.0fs ago", d.value("idle_s", -1.0));
                }
                std::printf("\n");
            }
            std::printf("    local  %s\n", join(c.value("local_ts", json::array()), " ").c_str());
            std::printf("    remote %s\n", join(c.value("remote_ts", json::array()), " ").c_str());
        }
    }
}

std::string auth_text(const std::string& auth)
{
    return auth == "psk" ? "pre-shared key" : auth == "pubkey" ? "public key" : auth;
}

std::string every(const char* what, int64_t seconds)
{
    return seconds > 0 ? std::string(what) + " every " + std::to_string(seconds) + "s"
                       : std::string("no ") + what;
}

void print_conns(const json& doc)
{
    for (const auto& c : doc.at("connections")) {
        std::printf("%s: IKEv2, %s, %s\n", str(c, "name").c_str(),
                    every("reauthentication", num(c, "reauth_time_s", 0)).c_str(),
                    every("rekeying", num(c, "rekey_time_s", 0)).c_str());
        std::string la = join(c.value("local_addrs", json::array()), ", ");
        std::string ra = join(c.value("remote_addrs", json::array()), ", ");
        std::printf("  local:  %s\n", la.empty() ? "%any" : la.c_str());
        std::printf("  remote: %s\n", ra.empty() ? "%any" : ra.c_str());
        std::printf("  proposals: %s\n", join(c.value("proposals", json::array()), ", ").c_str());
        for (const char* side : {"local", "remote"}) {
            const auto& a = c.at(side);
            std::printf("  %s %s authentication:\n", side, auth_text(str(a, "auth")).c_str());
            std::printf("    id: %s\n", str(a, "id").c_str());
            if (a.contains("certs")) std::printf("    certs: %s\n", join(a["certs"], ", ").c_str());
            if (a.contains("cacerts")) std::printf("    cacerts: %s\n", join(a["cacerts"], ", ").c_str());
        }
        for (const auto& ch : c.value("children", json::array())) {
            std::printf("  %s: %s, %s, start %s, close %s, dpd %s\n", str(ch, "name").c_str(),
                        upper(str(ch, "mode")).c_str(), every("rekeying", num(ch, "rekey_time_s", 0)).c_str(),
                        str(ch, "start_action").c_str(), str(ch, "close_action").c_str(),
                        str(ch, "dpd_action").c_str());
            std::printf("    local:  %s\n", join(ch.value("local_ts", json::array()), " ").c_str());
            std::printf("    remote: %s\n", join(ch.value("remote_ts", json::array()), " ").c_str());
            std::printf("    esp proposals: %s\n", join(ch.value("esp_proposals", json::array()), ", ").c_str());
        }
    }
}

// "phase 1, IKE_AUTH: AUTHENTICATION_FAILED (from the peer; we initiated), 3 s ago"
std::string failed_line(const json& f)
{
    std::string notify = str(f, "notify");
    std::string what = notify.empty() ? str(f, "reason") : notify;
    std::string line = "phase " + std::to_string(f.value("phase", 0)) + ", " + str(f, "exchange") + ": " + what;
    line += str(f, "detected_by") == "peer" ? " (from the peer; " : " (refused by us; ";
    line += str(f, "role") == "initiator" ? "we initiated)" : "the peer initiated)";
    std::string child = str(f, "child");
    if (!child.empty()) line += ", child '" + child + "'";
    if (f.contains("seconds_ago") && f["seconds_ago"].is_number())
        line += ", " + std::to_string(f["seconds_ago"].get<long long>()) + " s ago";
    return line;
}

void print_diagnoses(const json& doc)
{
    const auto& list = doc.at("diagnoses");
    if (list.empty()) std::printf("no connection to diagnose\n");
    for (const auto& d : list) {
        std::printf("%s:\n", str(d, "connection").c_str());
        auto line = [&](const char* label, const std::string& value) {
            if (!value.empty()) std::printf("  %-20s %s\n", label, value.c_str());
        };
        line("phase 1 (IKE SA):", str(d, "phase1"));
        line("phase 2 (Child SA):", str(d, "phase2"));
        const json failed = d.value("failed", json());
        if (failed.is_object()) {
            line("failed:", failed_line(failed));
            if (str(failed, "reason") != str(failed, "notify")) line("reason:", str(failed, "reason"));
        } else {
            std::string phase = str(d, "failed_phase");
            std::string failure = str(d, "failure");
            if (!phase.empty() || !failure.empty())
                line("failed:", phase.empty() ? failure : phase + (failure.empty() ? "" : ": " + failure));
        }
        const json props = d.value("proposals", json());
        if (props.is_object()) {
            const json ours = props.value("ours", json::object());
            std::string o = "IKE " + str(ours, "ike");
            const json esp = ours.value("esp", json::object());   // named: items() must not outlive it
            for (auto& [child, kw] : esp.items())
                o += "; ESP " + child + ": " + (kw.is_string() ? kw.get<std::string>() : "");
            line("our proposals:", o);
            const json peer = props.value("peer", json::object());
            std::string p;
            if (!str(peer, "ike").empty()) p = "IKE " + str(peer, "ike") + " (" + str(peer, "ike_seen") + ")";
            if (!str(peer, "esp").empty())
                p += (p.empty() ? "" : "; ") + std::string("ESP ") + str(peer, "esp") + " (" + str(peer, "esp_seen") + ")";
            line("peer proposals:", p);
        } else {
            line("our proposals:", str(d, "our_proposals"));
            line("peer proposals:", str(d, "peer_proposals"));
        }
        line("our selectors:", str(d, "our_ts"));
        line("peer selectors:", str(d, "peer_ts"));
        if (d.contains("dataplane_drops")) {
            const json& drops = d["dataplane_drops"];
            std::string text = drops.is_object() ? drops_text(drops) : std::string{};
            line("data-plane drops:", drops.is_object() ? (text.empty() ? "none" : text)
                                                        : "unknown (no data plane: standalone, or it did not answer)");
        }
        line("hint:", str(d, "hint"));
    }
}

void print_tree(const json& j, int indent)
{
    for (auto& [k, v] : j.items()) {
        if (v.is_object()) {
            std::printf("%*s%s:\n", indent, "", k.c_str());
            print_tree(v, indent + 2);
        } else {
            std::printf("%*s%-24s %s\n", indent, "", k.c_str(), v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str());
        }
    }
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app{"Operate a Ravelin IPsec gateway"};
    std::string prefix = "ravelin", socket_path, iked_socket = default_iked_socket;
    app.add_option("--file-prefix", prefix, "DPDK file prefix of the data plane instance");
    app.add_option("--socket", socket_path, "data plane control socket path (overrides --file-prefix)");
    app.add_option("--iked-socket", iked_socket, "ravelin-iked's control socket")->capture_default_str();
    app.require_subcommand(1);

    bool as_json = false;
    std::string ike, child, subsystem, level, name;
    auto* stats = app.add_subcommand("stats", "data-plane packet, drop and SA counters");
    stats->add_flag("--json", as_json, "print the raw JSON");
    auto* list_sas = app.add_subcommand("list-sas", "IKE SAs and their Child SAs (like swanctl --list-sas)");
    list_sas->add_flag("--json", as_json, "print the raw JSON");
    auto* list_conns = app.add_subcommand("list-conns", "configured connections (like swanctl --list-conns)");
    list_conns->add_flag("--json", as_json, "print the raw JSON");
    auto* initiate = app.add_subcommand("initiate", "start a connection's IKE SA and Child SA(s)");
    initiate->add_option("--ike", ike, "connection name")->required();
    initiate->add_option("--child", child, "Child SA name (default: the connection's first child)");
    auto* terminate = app.add_subcommand("terminate", "delete a connection's IKE SA and its Child SAs");
    terminate->add_option("--ike", ike, "connection name")->required();
    auto* rekey = app.add_subcommand("rekey", "rekey a Child SA, or the IKE SA without --child");
    rekey->add_option("--ike", ike, "connection name")->required();
    rekey->add_option("--child", child, "Child SA name");
    auto* reload = app.add_subcommand("reload", "re-read ravelin-iked's configuration file");
    auto* log_level = app.add_subcommand("log-level", "change a log subsystem's level");
    log_level->add_option("subsystem", subsystem, "ike, cfg, net, ctl or all")->required();
    log_level->add_option("level", level, "trace, debug, info, warning, error, critical, off")->required();
    auto* diagnose = app.add_subcommand("diagnose", "which phase of a connection failed, and why");
    diagnose->add_option("name", name, "connection name (default: all)");
    diagnose->add_flag("--json", as_json, "print the raw JSON");
    auto* ike_stats = app.add_subcommand("ike-stats", "ravelin-iked's counters");
    ike_stats->add_flag("--json", as_json, "print the raw JSON");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? exit_ok : exit_usage;
    }

    Failure failure{exit_ok, ""};
    auto fail = [&failure] {
        std::fprintf(stderr, "ravelinctl: %s\n", failure.message.c_str());
        return int(failure.code);
    };

    if (stats->parsed()) {
        if (socket_path.empty()) socket_path = ravelin::dataplane_socket_path(prefix);
        std::string reply;
        if (!request(socket_path, "stats", "ravelin-dataplane", reply, failure)) return fail();
        json doc = json::parse(reply, nullptr, false);
        if (doc.is_discarded() || doc.contains("error")) {
            std::fprintf(stderr, "ravelinctl: bad answer: %s\n", reply.c_str());
            return exit_daemon;
        }
        if (as_json) std::cout << doc.dump(2) << "\n";
        else print_dataplane_stats(doc);
        return exit_ok;
    }

    json req;
    if (list_sas->parsed()) req = {{"command", "list-sas"}};
    else if (list_conns->parsed()) req = {{"command", "list-conns"}};
    else if (initiate->parsed()) req = {{"command", "initiate"}, {"connection", ike}};
    else if (terminate->parsed()) req = {{"command", "terminate"}, {"connection", ike}};
    else if (rekey->parsed()) req = {{"command", "rekey"}, {"connection", ike}};
    else if (reload->parsed()) req = {{"command", "reload"}};
    else if (log_level->parsed()) req = {{"command", "log-level"}, {"subsystem", subsystem}, {"level", level}};
    else if (diagnose->parsed()) req = {{"command", "diagnose"}};
    else if (ike_stats->parsed()) req = {{"command", "stats"}};
    if (!child.empty()) req["child"] = child;
    if (!name.empty()) req["connection"] = name;

    auto doc = ask_iked(iked_socket, req, failure);
    if (!doc) return fail();
    if (as_json) {
        std::cout << doc->dump(2) << "\n";
        return exit_ok;
    }
    try {
        if (list_sas->parsed()) print_sas(*doc);
        else if (list_conns->parsed()) print_conns(*doc);
        else if (diagnose->parsed()) print_diagnoses(*doc);
        else if (ike_stats->parsed()) print_tree(*doc, 0);
        else if (reload->parsed()) {
            const auto& touched = doc->value("touched", json::array());
            std::printf("reloaded: %zu connection(s) changed%s%s\n", touched.size(), touched.empty() ? "" : ": ",
                        join(touched, ", ").c_str());
        } else if (log_level->parsed()) {
            std::printf("%s: %s\n", subsystem.c_str(), level.c_str());
        } else {
            std::printf("%s: ok\n", req["command"].get<std::string>().c_str());
        }
    } catch (const json::exception& e) {
        std::fprintf(stderr, "ravelinctl: unexpected answer from ravelin-iked (%s)\n", e.what());
        return exit_daemon;
    }
    return exit_ok;
}

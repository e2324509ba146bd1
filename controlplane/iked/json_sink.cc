#include "json_sink.hh"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "logging.hh"
#include "names.hh"

namespace ravelin::iked {

namespace {

void wipe(std::string& s) { secure_wipe(s.data(), s.size()); }

nlohmann::ordered_json ts_list(const std::vector<ike::TrafficSelector>& list)
{
    auto out = nlohmann::ordered_json::array();
    for (const auto& ts : list) out.push_back(format_ts(ts));
    return out;
}

} // namespace

std::string sa_event_json(std::string_view event, const ike::ChildSaRecord& record,
                          const SaDescriptor& sa)
{
    using nlohmann::ordered_json;
    const bool inbound = sa.direction == SaDirection::inbound;
    // The descriptor's key array holds the cipher key and then, for AEAD,
    // the salt; cipher_key_len counts the key alone.
    std::size_t key_len = std::min<std::size_t>(sa.cipher_key_len + salt_len(sa.cipher), sa.cipher_key.size());
    std::size_t integ_len = std::min<std::size_t>(sa.integ_key_len, sa.integ_key.size());
    std::string encr_key = hex_string(sa.cipher_key.data(), key_len);
    std::string integ_key = hex_string(sa.integ_key.data(), integ_len);

    ordered_json j;
    j["event"] = event;
    j["connection"] = record.connection;
    j["child"] = record.child;
    j["reqid"] = record.reqid;
    j["direction"] = inbound ? "in" : "out";
    j["spi"] = fmt::format("0x{:08x}", sa.spi.value);
    j["mode"] = sa.mode == SaMode::tunnel ? "tunnel" : "transport";
    j["encr"] = esp_cipher_name(sa.cipher);
    j["encr_key_bits"] = unsigned(sa.cipher_key_len) * 8;
    j["encr_key"] = encr_key;
    if (sa.integ == EspInteg::none) {
        j["integ"] = nullptr;
        j["integ_key"] = nullptr;
    } else {
        j["integ"] = esp_integ_name(sa.integ);
        j["integ_key"] = integ_key;
    }
    j["esn"] = sa.esn;
    j["local"] = format_address(sa.local);
    j["remote"] = format_address(sa.remote);
    j["udp_encap"] = sa.udp_encap;
    j["local_port"] = sa.encap_local_port;
    j["remote_port"] = sa.encap_remote_port;
    j["local_ts"] = ts_list(record.local_ts);
    j["remote_ts"] = ts_list(record.remote_ts);
    std::string line = j.dump();
    wipe(encr_key);
    wipe(integ_key);
    wipe(j["encr_key"].get_ref<std::string&>());
    if (j["integ_key"].is_string()) wipe(j["integ_key"].get_ref<std::string&>());
    return line;
}

void LoggingSaSink::install_inbound(const ike::ChildSaRecord& sa) { event("install", sa, sa.inbound); }
void LoggingSaSink::install_outbound(const ike::ChildSaRecord& sa) { event("install", sa, sa.outbound); }
void LoggingSaSink::remove_inbound(const ike::ChildSaRecord& sa) { event("remove", sa, sa.inbound); }
void LoggingSaSink::remove_outbound(const ike::ChildSaRecord& sa) { event("remove", sa, sa.outbound); }

void LoggingSaSink::event(std::string_view what, const ike::ChildSaRecord& record, const SaDescriptor& sa)
{
    if (what == "install") ++installed_;
    else ++removed_;
    const bool inbound = sa.direction == SaDirection::inbound;
    std::string algs = esp_cipher_name(sa.cipher) + "-" + std::to_string(unsigned(sa.cipher_key_len) * 8);
    if (sa.integ != EspInteg::none) algs += "/" + esp_integ_name(sa.integ);
    logger("ike")->info("{} {} SA {:08x} {}/{} reqid {} {} {} {} {}{}", what, inbound ? "inbound" : "outbound",
                        sa.spi.value, record.connection, record.child, record.reqid, algs,
                        format_address(sa.local), inbound ? "<-" : "->", format_address(sa.remote),
                        sa.udp_encap ? " (UDP)" : "");
}

int open_secret_file(const std::string& path, std::string& error)
{
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        error = "cannot open " + path + ": " + std::strerror(errno);
        return -1;
    }
    // An existing file keeps its mode on open(): tighten it, it will hold keys.
    if (fchmod(fd, 0600) != 0) {
        error = "cannot chmod 0600 " + path + ": " + std::strerror(errno);
        ::close(fd);
        return -1;
    }
    return fd;
}

bool write_all(int fd, std::string_view line)
{
    while (!line.empty()) {
        ssize_t w = ::write(fd, line.data(), line.size());
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        line.remove_prefix(std::size_t(w));
    }
    return true;
}

std::unique_ptr<JsonSaSink> JsonSaSink::open(const std::string& path, std::string& error)
{
    int fd = open_secret_file(path, error);
    if (fd < 0) return nullptr;
    return std::unique_ptr<JsonSaSink>(new JsonSaSink(fd, path));
}

JsonSaSink::~JsonSaSink()
{
    if (fd_ >= 0) ::close(fd_);
}

void JsonSaSink::event(std::string_view what, const ike::ChildSaRecord& record, const SaDescriptor& sa)
{
    LoggingSaSink::event(what, record, sa);
    std::string line = sa_event_json(what, record, sa) + "\n";
    // One write() per line on an O_APPEND fd: a reader never sees half a
    // line from us, and nothing stays buffered in this process.
    if (!write_all(fd_, line)) {
        ++write_errors_;
        logger("ike")->error("SA sink {}: write failed: {}", path_, std::strerror(errno));
    }
    secure_wipe(line.data(), line.size());
}

} // namespace ravelin::iked

// ravelin-dataplane configuration: TOML parsed once at start into typed
// structs. Anything wrong is refused with file, line and reason; nothing
// downstream re-validates what this file guarantees.
//
// The format is documented in docs/configuration.md; an example is in
// config/examples/gateway-a.toml.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ravelin/sa_descriptor.hh"
#include "ravelin/types.hh"

namespace ravelin::dp {

struct ConfigError {
    std::string file;
    unsigned line = 0;     // 0 when the error is not tied to one line
    std::string reason;

    std::string to_string() const;   // "file:line: reason"
};

enum class PortRole : uint8_t { protected_side, unprotected_side };

// An address of the gateway itself on a port, with the length of the
// attached subnet (host bits are allowed here: 198.18.1.1/24).
struct InterfaceAddress {
    IpAddress addr;
    uint8_t prefix_len = 0;
};

struct PortConfig {
    std::string name;
    std::string device;            // DPDK devargs, e.g. "net_af_packet0,iface=veth0"
    PortRole role = PortRole::protected_side;
    std::vector<InterfaceAddress> addresses;
    uint16_t mtu = 1500;           // IP MTU
    unsigned line = 0;
};

struct RouteConfig {
    IpPrefix prefix;
    std::optional<IpAddress> via;  // none: destination is on the port's link
    std::string port;
    unsigned line = 0;
};

struct SaConfig {
    SaDescriptor sa;
    std::optional<uint16_t> mtu;   // outer path MTU; default: unprotected port's MTU
    std::optional<uint16_t> worker;// owner worker; default: spread by SPI
    unsigned line = 0;
};

struct PolicyConfig {
    PolicyDescriptor policy;
    unsigned line = 0;
};

struct DataplaneConfig {
    std::string source;            // file name, for messages
    unsigned workers = 1;          // worker lcores (the main lcore is extra)
    unsigned burst = 32;
    unsigned mbufs = 16383;        // mbuf pool size
    unsigned ring_size = 1024;     // hand-off, punt and event rings
    bool legacy_algorithms = false;
    std::vector<std::string> eal_args; // extra EAL arguments ("--no-huge", ...)
    std::vector<PortConfig> ports;
    std::vector<RouteConfig> routes;
    std::vector<SaConfig> sas;
    std::vector<PolicyConfig> policies;
};

template <typename T>
class Result {
public:
    Result(T v) : v_(std::move(v)) {}
    Result(ConfigError e) : v_(std::move(e)) {}
    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }
    T& value() { return std::get<0>(v_); }
    const T& value() const { return std::get<0>(v_); }
    const ConfigError& error() const { return std::get<1>(v_); }

private:
    std::variant<T, ConfigError> v_;
};

// Parse `text` (the contents of `source`). Validates everything it can
// without DPDK: algorithms and key lengths, legacy gating, duplicate SPIs,
// prefixes with host bits, policies naming unknown SAs, routes naming unknown
// ports, port roles (exactly one protected and one or more unprotected).
Result<DataplaneConfig> parse_config(std::string_view text, std::string_view source);
Result<DataplaneConfig> load_config(const std::string& path);

// Parsers for the value syntaxes, shared with tests and tools.
std::optional<IpAddress> parse_ip(std::string_view s);
std::optional<IpPrefix> parse_prefix(std::string_view s, std::string* why = nullptr);

} // namespace ravelin::dp

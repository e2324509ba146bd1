// ravelin-dataplane configuration: TOML parsed once at start into typed
// structs. Anything wrong is refused with file, line and reason; nothing
// downstream re-validates what this file guarantees.
//
// The format is documented in docs/configuration.md; an example is in
// config/examples/gateway-a.toml.
#pragma once

#include <array>
#include <bit>
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

// A static neighbour: the next hop's MAC given instead of resolved by ARP or
// ND. The entry is pinned: ARP and ND from the link do not change it.
struct NeighborConfig {
    IpAddress address;
    std::array<uint8_t, 6> mac{};
    std::string port;
    unsigned line = 0;
};

struct SaConfig {
    SaDescriptor sa;
    // Outer path MTU. Always set after parsing: when the file has none it is
    // the MTU of the unprotected port holding the tunnel's local address
    // (transport mode, or no such port: the first unprotected port).
    std::optional<uint16_t> mtu;
    std::optional<uint16_t> worker;// owner worker; default: spread by SPI
    unsigned line = 0;
};

struct PolicyConfig {
    PolicyDescriptor policy;
    unsigned line = 0;
};

// Limits the loader checks and Dataplane::create checks again for a
// configuration made in code.
inline constexpr unsigned max_mtu = 9000;   // ports and SAs
inline constexpr unsigned max_flow_cache_tuples = 1u << 26;
// flow_cache_tuples: 0 (no cache) or a power of two from 4 (a set's ways).
constexpr bool valid_flow_cache_tuples(unsigned t) noexcept
{
    return t == 0 || (t >= 4 && t <= max_flow_cache_tuples && std::has_single_bit(t));
}

struct DataplaneConfig {
    std::string source;            // file name, for messages
    std::vector<unsigned> lcores{0, 1}; // EAL lcore ids; the first is the main lcore
    unsigned workers = 1;          // worker lcores: lcores.size() - 1 (at least 1)
    // CPU the main lcore's thread is pinned to; none: the CPU numbered like
    // the lcore. The main lcore mostly sleeps, so it can share a worker's
    // CPU when the other CPUs belong to something else.
    std::optional<unsigned> main_cpu;
    // SCHED_FIFO priority of the main lcore's thread (1..99); 0: the normal
    // scheduler. A sleeping main lcore woken by the doorbell then runs at
    // once instead of waiting for the CPU's other threads.
    unsigned main_rt_priority = 0;
    std::string file_prefix = "ravelin"; // EAL --file-prefix, one per running instance
    bool hugepages = true;         // false: EAL --no-huge with memory_mb of plain memory
    unsigned memory_mb = 256;      // only used without hugepages
    unsigned burst = 32;
    unsigned mbufs = 16383;        // mbuf pool size
    unsigned ring_size = 1024;     // hand-off, punt and event rings
    // Tuples in each worker's outbound flow cache: 0 (none) or a power of
    // two from 4 (docs/configuration.md).
    unsigned flow_cache_tuples = 65536;
    bool legacy_algorithms = false;
    std::vector<std::string> eal_args; // extra EAL arguments, appended verbatim
    std::vector<PortConfig> ports;
    std::vector<RouteConfig> routes;
    std::vector<NeighborConfig> neighbors;
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
// On success the SA keys live in the returned config: the caller wipes them
// (wipe_keys) once installed. On failure nothing keyed is left behind.
Result<DataplaneConfig> parse_config(std::string_view text, std::string_view source);
Result<DataplaneConfig> load_config(const std::string& path);

// The complete argv for rte_eal_init(), argv[0] ("ravelin-dataplane")
// included: -l (or --lcores when main_cpu is set; and --main-lcore when the
// first lcore is not the lowest),
// --file-prefix, --no-huge -m when hugepages are off, --no-pci when every
// port is a vdev, one --vdev per vdev port and one -a per PCI port in file
// order, then eal_args. DPDK port ids do not follow file order: look ports
// up by device name.
std::vector<std::string> eal_argv(const DataplaneConfig& cfg);

// Parsers for the value syntaxes, shared with tests and tools.
std::optional<IpAddress> parse_ip(std::string_view s);
std::optional<IpPrefix> parse_prefix(std::string_view s, std::string* why = nullptr);

} // namespace ravelin::dp

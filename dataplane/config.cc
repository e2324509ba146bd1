// Loading ravelin-dataplane's TOML configuration into typed structs.
//
// Sections are read in a fixed order whatever their order in the file
// ([dataplane], ports, routes, neighbours, SAs, policies) so each can be
// checked against the ones before it: a route or a neighbour against port
// names and subnets, an SA's endpoints against port addresses, a policy
// against the SAs. The first problem ends the load;
// its message names the file, the line and, where we can guess, what the
// operator meant to write.
//
// Inside the loader a refusal is thrown (Refused) and turned into a
// ConfigError at the parse_config boundary: this runs once at start-up, and
// it keeps each field's check to one line instead of a ladder of ifs.

#include "config.hh"

#include <arpa/inet.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>
#include <numeric>
#include <span>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <toml++/toml.h>

namespace ravelin::dp {

std::string ConfigError::to_string() const
{
    if (line == 0) return fmt::format("{}: {}", file, reason);
    return fmt::format("{}:{}: {}", file, line, reason);
}

namespace {

struct Refused {
    unsigned line;
    std::string reason;
};

[[noreturn]] void refuse(unsigned line, std::string reason)
{
    throw Refused{line, std::move(reason)};
}

unsigned line_of(const toml::node& n) { return n.source().begin.line; }

template <typename E>
struct Named {
    std::string_view name;
    E value;
};

// ---- small text helpers ---------------------------------------------------

// A user string for a message: quoted, control bytes escaped, and cut short,
// so a stray binary blob cannot turn one error into a screenful.
std::string quote(std::string_view s)
{
    std::string out = "\"";
    for (std::size_t i = 0; i < s.size() && i < 64; ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            out += fmt::format("\\x{:02x}", c);
        else
            out += char(c);
    }
    return out + (s.size() > 64 ? "...\"" : "\"");
}

std::size_t edit_distance(std::string_view a, std::string_view b)
{
    std::vector<std::size_t> row(b.size() + 1);
    std::iota(row.begin(), row.end(), std::size_t{0});
    for (std::size_t i = 0; i < a.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i + 1;
        for (std::size_t j = 0; j < b.size(); ++j) {
            std::size_t up = row[j + 1];
            row[j + 1] = std::min({up + 1, row[j] + 1, diag + (a[i] != b[j])});
            diag = up;
        }
    }
    return row[b.size()];
}

// " (did you mean 'x'?)" when one known name is a likely typo of `got`.
std::string suggestion(std::string_view got, std::span<const std::string_view> known)
{
    if (got.size() > 64) return {};
    std::string_view best;
    std::size_t best_d = 3;   // more than two edits is a different word
    for (auto k : known) {
        std::size_t d = edit_distance(got, k);
        if (d < best_d) best_d = d, best = k;
    }
    return best.empty() ? std::string{} : fmt::format(" (did you mean '{}'?)", best);
}

template <typename E, std::size_t N>
std::vector<std::string_view> names_of(const Named<E> (&table)[N])
{
    std::vector<std::string_view> v;
    for (auto& n : table) v.push_back(n.name);
    return v;
}

std::string_view type_name(const toml::node& n)
{
    switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a floating-point number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    default: return "a date/time";
    }
}

std::string spi_text(Spi spi) { return fmt::format("0x{:x}", spi.value); }

std::string_view family_name(IpFamily f) { return f == IpFamily::v4 ? "IPv4" : "IPv6"; }

// Parse all of `s` as an unsigned number in `base`; no sign, no spaces.
template <typename T>
std::optional<T> whole_number(std::string_view s, int base = 10)
{
    T v{};
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
    return v;
}

// ---- one TOML table --------------------------------------------------------

// A table being read, with a context for messages ("sa spi 0x1001") and the
// list of keys it may hold. Unknown keys are refused up front: a misspelt key
// must not surface as "missing key", or worse, as a silently applied default.
class Section {
public:
    Section(const toml::table& t, std::string context, std::span<const std::string_view> known)
        : t_(t), ctx_(std::move(context))
    {
        for (auto&& [k, v] : t_) {
            if (std::find(known.begin(), known.end(), k.str()) != known.end()) continue;
            unsigned line = k.source().begin.line ? k.source().begin.line : line_of(v);
            refuse(line, fmt::format("{}: unknown key {}{}", ctx_, quote(k.str()),
                                     suggestion(k.str(), known)));
        }
    }

    void rename(std::string context) { ctx_ = std::move(context); }
    const std::string& context() const { return ctx_; }
    unsigned line() const { return line_of(t_); }
    const toml::node* find(std::string_view key) const { return t_.get(key); }

    // Refuse with this section's context, at `at`'s line (the header's
    // line when there is no node, e.g. for a missing key).
    [[noreturn]] void fail(const toml::node* at, std::string_view why) const
    {
        refuse(at ? line_of(*at) : line(), fmt::format("{}: {}", ctx_, why));
    }

    const toml::node& need(std::string_view key, std::string_view example) const
    {
        if (auto* n = find(key)) return *n;
        fail(nullptr, fmt::format("missing {} (for example {} = {})", key, key, example));
    }

    std::optional<std::string_view> text(std::string_view key) const
    {
        auto* n = find(key);
        if (!n) return std::nullopt;
        if (auto* s = n->as_string()) return std::string_view(s->get());
        fail(n, fmt::format("{} must be a string, not {}", key, type_name(*n)));
    }

    bool flag(std::string_view key, bool dflt) const
    {
        auto* n = find(key);
        if (!n) return dflt;
        if (auto* b = n->as_boolean()) return b->get();
        fail(n, fmt::format("{} must be true or false, not {}", key, type_name(*n)));
    }

    uint64_t integer(const toml::node& n, std::string_view key, uint64_t lo, uint64_t hi) const
    {
        auto* i = n.as_integer();
        if (!i) fail(&n, fmt::format("{} must be an integer, not {}", key, type_name(n)));
        int64_t v = i->get();
        if (v < 0 || uint64_t(v) < lo || uint64_t(v) > hi)
            fail(&n, fmt::format("{} = {} is out of range ({}..{})", key, v, lo, hi));
        return uint64_t(v);
    }

    std::optional<uint64_t> number(std::string_view key, uint64_t lo, uint64_t hi) const
    {
        auto* n = find(key);
        if (!n) return std::nullopt;
        return integer(*n, key, lo, hi);
    }

    uint64_t number(std::string_view key, uint64_t lo, uint64_t hi, uint64_t dflt) const
    {
        return number(key, lo, hi).value_or(dflt);
    }

    template <typename E, std::size_t N>
    std::optional<E> choice(std::string_view key, const Named<E> (&table)[N]) const
    {
        auto s = text(key);
        if (!s) return std::nullopt;
        for (auto& n : table)
            if (n.name == *s) return n.value;
        auto names = names_of(table);
        fail(find(key), fmt::format("{} = {} is not one of: {}{}", key, quote(*s), fmt::join(names, ", "),
                                    suggestion(*s, names)));
    }

    template <typename E, std::size_t N>
    E choice(std::string_view key, const Named<E> (&table)[N], E dflt) const
    {
        return choice(key, table).value_or(dflt);
    }

private:
    const toml::table& t_;
    std::string ctx_;
};

// ---- addresses ---------------------------------------------------------------

std::string format_ip(const IpAddress& a)
{
    char buf[INET6_ADDRSTRLEN] = {};
    inet_ntop(a.family == IpFamily::v4 ? AF_INET : AF_INET6, a.bytes.data(), buf, sizeof buf);
    return buf;
}

std::string format_prefix(const IpPrefix& p) { return fmt::format("{}/{}", format_ip(p.addr), p.len); }

unsigned max_len(IpFamily f) { return f == IpFamily::v4 ? 32 : 128; }

IpPrefix network_of(const IpAddress& a, unsigned len)
{
    IpPrefix p{a, uint8_t(len)};
    for (unsigned bit = len; bit < max_len(a.family); ++bit)
        p.addr.bytes[bit / 8] &= uint8_t(~(0x80u >> (bit % 8)));
    return p;
}

// "address/len" with host bits allowed (the caller decides whether they may
// be set). Fills `why` on failure.
std::optional<InterfaceAddress> split_prefix(std::string_view s, std::string* why)
{
    auto say = [&](std::string m) {
        if (why) *why = std::move(m);
        return std::nullopt;
    };
    auto slash = s.find('/');
    if (slash == std::string_view::npos)
        return say(fmt::format("{} has no prefix length (write a single host as "
                               "198.18.1.5/32 or 2001:db8::5/128)", quote(s)));
    auto addr = parse_ip(s.substr(0, slash));
    if (!addr) return say(fmt::format("{} is not an IPv4 or IPv6 address", quote(s.substr(0, slash))));
    auto len_text = s.substr(slash + 1);
    auto len = len_text.size() <= 3 ? whole_number<unsigned>(len_text) : std::nullopt;
    if (!len) return say(fmt::format("{}: prefix length {} is not a number", quote(s), quote(len_text)));
    if (*len > max_len(addr->family))
        return say(fmt::format("{}: prefix length {} is out of range for {} (0..{})", quote(s), *len,
                               family_name(addr->family), max_len(addr->family)));
    return InterfaceAddress{*addr, uint8_t(*len)};
}

} // namespace

std::optional<IpAddress> parse_ip(std::string_view s)
{
    if (s.empty() || s.size() >= INET6_ADDRSTRLEN || s.find('\0') != std::string_view::npos)
        return std::nullopt;
    std::string z(s);
    IpAddress a;
    if (inet_pton(AF_INET, z.c_str(), a.bytes.data()) == 1) {
        a.family = IpFamily::v4;
        return a;
    }
    if (inet_pton(AF_INET6, z.c_str(), a.bytes.data()) == 1) {
        a.family = IpFamily::v6;
        return a;
    }
    return std::nullopt;
}

std::optional<IpPrefix> parse_prefix(std::string_view s, std::string* why)
{
    auto a = split_prefix(s, why);
    if (!a) return std::nullopt;
    IpPrefix p = network_of(a->addr, a->prefix_len);
    if (p.addr != a->addr) {
        if (why)
            *why = fmt::format("{}/{} has host bits set; did you mean {}?", format_ip(a->addr),
                               a->prefix_len, format_prefix(p));
        return std::nullopt;
    }
    return p;
}

namespace {

IpAddress address_at(const Section& s, const toml::node& n, std::string_view key)
{
    auto* str = n.as_string();
    if (!str) s.fail(&n, fmt::format("{} must be a string such as \"198.18.0.1\", not {}", key, type_name(n)));
    auto a = parse_ip(str->get());
    if (!a) s.fail(&n, fmt::format("{} = {} is not an IPv4 or IPv6 address", key, quote(str->get())));
    return *a;
}

IpPrefix prefix_at(const Section& s, const toml::node& n, std::string_view key)
{
    auto* str = n.as_string();
    if (!str) s.fail(&n, fmt::format("{} must be a string such as \"198.18.1.0/24\", not {}", key, type_name(n)));
    std::string why;
    auto p = parse_prefix(str->get(), &why);
    if (!p) s.fail(&n, fmt::format("{}: {}", key, why));
    return *p;
}

// ---- [dataplane] -------------------------------------------------------------

constexpr unsigned max_lcore_id = 1023;

// EAL lcore list syntax: "0,1", "0-3", "0,2-5".
std::vector<unsigned> lcore_list(const Section& s, const toml::node& n)
{
    auto* str = n.as_string();
    if (!str) s.fail(&n, fmt::format("lcores must be a string such as \"0,1\" or \"0-3\", not {}", type_name(n)));
    std::string_view rest = str->get();
    std::vector<unsigned> out;
    while (true) {
        auto comma = rest.find(',');
        auto item = rest.substr(0, comma);
        auto dash = item.find('-');
        auto lo = whole_number<unsigned>(item.substr(0, dash));
        auto hi = dash == std::string_view::npos ? lo : whole_number<unsigned>(item.substr(dash + 1));
        if (!lo || !hi || *hi > max_lcore_id || *lo > *hi)
            s.fail(&n, fmt::format("lcores: {} is not an lcore id or range (0..{}, like \"2\" or \"2-5\")",
                                   quote(item), max_lcore_id));
        for (unsigned id = *lo; id <= *hi; ++id) {
            if (std::find(out.begin(), out.end(), id) != out.end())
                s.fail(&n, fmt::format("lcores: lcore {} is listed twice", id));
            out.push_back(id);
        }
        if (comma == std::string_view::npos) break;
        rest = rest.substr(comma + 1);
    }
    if (out.size() < 2)
        s.fail(&n, fmt::format("lcores = {} names one lcore; the data plane needs a main lcore "
                               "plus at least one worker (for example \"0,1\")", quote(str->get())));
    return out;
}

// Printable ASCII, spaces optional: TOML escapes ("\u0000") can put
// anything into a string, and these end up in a C argv.
bool printable(std::string_view s, bool spaces)
{
    return std::all_of(s.begin(), s.end(), [&](char c) { return (c > ' ' || (spaces && c == ' ')) && c < 0x7f; });
}

bool valid_name(std::string_view s)
{
    return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_' || c == '.';
    });
}

// EAL options the [dataplane] keys already produce; given twice, EAL either
// refuses or silently takes one of them.
constexpr std::string_view managed_eal_options[] = {
    "-l", "--lcores", "-c", "--main-lcore", "--file-prefix", "--no-huge", "-m", "--no-pci",
};

std::vector<std::string> extra_eal_args(const Section& s, const toml::node& n)
{
    auto* arr = n.as_array();
    if (!arr) s.fail(&n, fmt::format("eal_args must be an array of strings, not {}", type_name(n)));
    std::vector<std::string> out;
    for (auto& el : *arr) {
        auto* str = el.as_string();
        if (!str) s.fail(&el, fmt::format("eal_args: every element must be a string, not {}", type_name(el)));
        if (!printable(str->get(), true))
            s.fail(&el, fmt::format("eal_args: {} has a control or non-ASCII character", quote(str->get())));
        std::string_view opt = str->get();
        opt = opt.substr(0, opt.find('='));
        if (std::find(std::begin(managed_eal_options), std::end(managed_eal_options), opt) !=
            std::end(managed_eal_options))
            s.fail(&el, fmt::format("eal_args: {} is set from [dataplane] (lcores, file_prefix, hugepages, "
                                    "memory_mb) or from the ports; remove it here", quote(opt)));
        out.push_back(str->get());
    }
    return out;
}

constexpr std::string_view dataplane_keys[] = {
    "lcores", "main_cpu", "main_rt_priority", "file_prefix", "hugepages", "memory_mb", "burst", "mbufs", "ring_size",
    "flow_cache_tuples", "legacy_algorithms", "eal_args",
};

void read_dataplane(const toml::table& t, DataplaneConfig& cfg)
{
    Section s(t, "[dataplane]", dataplane_keys);
    if (auto* n = s.find("lcores")) cfg.lcores = lcore_list(s, *n);
    cfg.workers = unsigned(cfg.lcores.size() - 1);
    if (auto cpu = s.number("main_cpu", 0, max_lcore_id)) cfg.main_cpu = unsigned(*cpu);
    cfg.main_rt_priority = unsigned(s.number("main_rt_priority", 0, 99, 0));
    if (auto v = s.text("file_prefix")) {
        if (!valid_name(*v))
            s.fail(s.find("file_prefix"), fmt::format("file_prefix = {} must be 1-64 letters, digits, "
                                                      "'-', '_' or '.'", quote(*v)));
        cfg.file_prefix = *v;
    }
    cfg.hugepages = s.flag("hugepages", true);
    cfg.memory_mb = unsigned(s.number("memory_mb", 64, 1u << 20, 256));
    cfg.burst = unsigned(s.number("burst", 1, 256, 32));
    cfg.mbufs = unsigned(s.number("mbufs", 1023, 1u << 24, 16383));
    cfg.ring_size = unsigned(s.number("ring_size", 64, 1u << 20, 1024));
    if (cfg.ring_size & (cfg.ring_size - 1))
        s.fail(s.find("ring_size"), fmt::format("ring_size = {} must be a power of two (DPDK rings); "
                                                "try {}", cfg.ring_size, std::bit_floor(cfg.ring_size)));
    cfg.flow_cache_tuples = unsigned(s.number("flow_cache_tuples", 0, max_flow_cache_tuples, 65536));
    if (!valid_flow_cache_tuples(cfg.flow_cache_tuples))
        s.fail(s.find("flow_cache_tuples"),
               fmt::format("flow_cache_tuples = {} must be 0 (no cache) or a power of two from 4; try {}",
                           cfg.flow_cache_tuples, std::max(4u, std::bit_floor(cfg.flow_cache_tuples))));
    cfg.legacy_algorithms = s.flag("legacy_algorithms", false);
    if (auto* n = s.find("eal_args")) cfg.eal_args = extra_eal_args(s, *n);
}

// ---- [[port]] ----------------------------------------------------------------

// "0000:01:00.0" or "01:00.0", optionally followed by ",devargs".
bool is_pci_address(std::string_view dev)
{
    dev = dev.substr(0, dev.find(','));
    auto hex = [](std::string_view s, std::size_t n) {
        return s.size() == n && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(uint8_t(c)); });
    };
    if (dev.size() == 12) {
        if (!hex(dev.substr(0, 4), 4) || dev[4] != ':') return false;
        dev = dev.substr(5);
    }
    return dev.size() == 7 && hex(dev.substr(0, 2), 2) && dev[2] == ':' && hex(dev.substr(3, 2), 2) &&
           dev[5] == '.' && dev[6] >= '0' && dev[6] <= '7';
}

// The EAL device name: PCI address or vdev name, without devargs.
std::string_view device_name(std::string_view dev) { return dev.substr(0, dev.find(',')); }

constexpr Named<PortRole> port_roles[] = {
    {"protected", PortRole::protected_side},
    {"unprotected", PortRole::unprotected_side},
};

InterfaceAddress interface_address(const Section& s, const toml::node& n)
{
    auto* str = n.as_string();
    if (!str) s.fail(&n, fmt::format("address: every element must be a string such as \"198.18.1.1/24\", "
                                     "not {}", type_name(n)));
    std::string why;
    auto a = split_prefix(str->get(), &why);
    if (!a) s.fail(&n, fmt::format("address: {}", why));
    unsigned max = max_len(a->addr.family);
    if (a->prefix_len == 0)
        s.fail(&n, fmt::format("address: {} would put every address on this link; give the subnet's real "
                               "length, like /24", quote(str->get())));
    if (a->prefix_len < max - 1 && network_of(a->addr, a->prefix_len).addr == a->addr)
        s.fail(&n, fmt::format("address: {} is a subnet, not an address of the gateway "
                               "(write the gateway's own address, like 198.18.1.1/24)", quote(str->get())));
    return *a;
}

constexpr std::string_view port_keys[] = {"name", "role", "device", "address", "mtu"};

// A section's name for messages before it is read: by its identifying key
// when that is a plain value, else by position.
std::string peek_context(const toml::table& t, std::string_view section, std::size_t index)
{
    if (section == "sa")
        if (auto* i = t.get_as<int64_t>("spi"); i && i->get() >= 0)
            return fmt::format("sa spi 0x{:x}", i->get());
    if (section == "port")
        if (auto* n = t.get_as<std::string>("name"); n && valid_name(n->get()))
            return fmt::format("port {}", quote(n->get()));
    return fmt::format("[[{}]] #{}", section, index + 1);
}

PortConfig read_port(const toml::table& t, std::size_t index)
{
    Section s(t, peek_context(t, "port", index), port_keys);
    PortConfig p;
    p.line = s.line();
    s.need("name", "\"outside\"");
    p.name = *s.text("name");
    if (!valid_name(p.name))
        s.fail(s.find("name"), fmt::format("name = {} must be 1-64 letters, digits, '-', '_' or '.'", quote(p.name)));
    s.rename(fmt::format("port {}", quote(p.name)));
    s.need("role", "\"protected\"");
    p.role = *s.choice("role", port_roles);
    s.need("device", "\"net_af_packet0,iface=veth0\"");
    p.device = *s.text("device");
    if (p.device.empty() || !printable(p.device, false))
        s.fail(s.find("device"), fmt::format("device = {} must be DPDK devargs without spaces, like "
                                             "\"net_af_packet0,iface=veth0\" or \"0000:01:00.0\"", quote(p.device)));
    auto& addrs = s.need("address", "[\"198.18.0.1/24\"]");
    auto* arr = addrs.as_array();
    if (!arr || arr->empty())
        s.fail(&addrs, "address must be a non-empty array of the gateway's addresses on this port, "
                       "like [\"198.18.0.1/24\"]");
    for (auto& el : *arr) p.addresses.push_back(interface_address(s, el));
    p.mtu = uint16_t(s.number("mtu", 576, max_mtu, 1500));
    bool has_v6 = std::any_of(p.addresses.begin(), p.addresses.end(),
                              [](auto& a) { return a.addr.family == IpFamily::v6; });
    if (has_v6 && p.mtu < 1280)
        s.fail(s.find("mtu"), fmt::format("mtu = {} is below 1280, the IPv6 minimum, and this port has an "
                                          "IPv6 address", p.mtu));
    return p;
}

bool overlaps(const InterfaceAddress& a, const InterfaceAddress& b)
{
    return network_of(a.addr, a.prefix_len).contains(b.addr) || network_of(b.addr, b.prefix_len).contains(a.addr);
}

// Checks across ports: unique names and devices, no subnet on two ports
// (connected routes would be ambiguous), and the roles.
void check_ports(const DataplaneConfig& cfg)
{
    const PortConfig* prot = nullptr;
    for (std::size_t i = 0; i < cfg.ports.size(); ++i) {
        const PortConfig& p = cfg.ports[i];
        for (std::size_t j = 0; j < i; ++j) {
            const PortConfig& q = cfg.ports[j];
            auto ctx = fmt::format("port {}", quote(p.name));
            if (q.name == p.name)
                refuse(p.line, fmt::format("{}: the name is already used by the port on line {}", ctx, q.line));
            if (device_name(q.device) == device_name(p.device))
                refuse(p.line, fmt::format("{}: device name {} is already used by port {}; every port needs its "
                                           "own device (net_af_packet0, net_af_packet1, ...)",
                                           ctx, quote(device_name(p.device)), quote(q.name)));
            for (auto& a : p.addresses)
                for (auto& b : q.addresses)
                    if (overlaps(a, b))
                        refuse(p.line, fmt::format("{}: address {}/{} overlaps {}/{} on port {}; a subnet can be "
                                                   "on one port only", ctx, format_ip(a.addr), a.prefix_len,
                                                   format_ip(b.addr), b.prefix_len, quote(q.name)));
        }
        if (p.role != PortRole::protected_side) continue;
        if (prot)
            refuse(p.line, fmt::format("port {}: port {} is already the protected port; the data plane has "
                                       "exactly one", quote(p.name), quote(prot->name)));
        prot = &p;
    }
    if (cfg.ports.empty())
        refuse(0, "no [[port]] sections: the gateway needs one protected port and at least one unprotected port");
    if (!prot) refuse(0, "no port has role = \"protected\" (the inside, clear-text side); exactly one must");
    if (cfg.ports.size() < 2)
        refuse(0, "no port has role = \"unprotected\" (the outside, ESP side); at least one must");
}

const PortConfig* find_port(const DataplaneConfig& cfg, std::string_view name)
{
    for (auto& p : cfg.ports)
        if (p.name == name) return &p;
    return nullptr;
}

// ---- [[route]] ---------------------------------------------------------------

constexpr std::string_view route_keys[] = {"prefix", "via", "port"};

bool is_link_local(const IpAddress& a)
{
    return a.family == IpFamily::v6 && a.bytes[0] == 0xfe && (a.bytes[1] & 0xc0) == 0x80;
}

// A next hop (a route's via, a static neighbour) must be a host on one of
// the port's subnets, or IPv6 link-local, and not the gateway itself.
void check_on_link(const Section& s, const toml::node& n, std::string_view key, const IpAddress& ip,
                   const PortConfig& port)
{
    bool on_link = is_link_local(ip);
    for (auto& a : port.addresses) {
        if (a.addr == ip) s.fail(&n, fmt::format("{} {} is the gateway's own address", key, format_ip(ip)));
        on_link = on_link || network_of(a.addr, a.prefix_len).contains(ip);
    }
    if (!on_link)
        s.fail(&n, fmt::format("{} {} is not in any subnet of port {}; the next hop must be reachable "
                               "on that link", key, format_ip(ip), quote(port.name)));
}

const PortConfig& port_at(const Section& s, const DataplaneConfig& cfg, std::string_view name)
{
    if (const PortConfig* port = find_port(cfg, name)) return *port;
    std::vector<std::string_view> names;
    for (auto& p : cfg.ports) names.push_back(p.name);
    s.fail(s.find("port"), fmt::format("port {} is not a [[port]] name{}", quote(name), suggestion(name, names)));
}

RouteConfig read_route(const toml::table& t, std::size_t index, const DataplaneConfig& cfg)
{
    Section s(t, fmt::format("[[route]] #{}", index + 1), route_keys);
    RouteConfig r;
    r.line = s.line();
    r.prefix = prefix_at(s, s.need("prefix", "\"198.18.7.0/24\""), "prefix");
    s.rename(fmt::format("route {}", format_prefix(r.prefix)));
    s.need("port", "\"outside\"");
    r.port = *s.text("port");
    const PortConfig* port = &port_at(s, cfg, r.port);
    if (auto* n = s.find("via")) {
        IpAddress via = address_at(s, *n, "via");
        if (via.family != r.prefix.addr.family)
            s.fail(n, fmt::format("via {} is {} but the prefix is {}", format_ip(via), family_name(via.family),
                                  family_name(r.prefix.addr.family)));
        check_on_link(s, *n, "via", via, *port);
        r.via = via;
    }
    for (auto& other : cfg.routes)
        if (other.prefix == r.prefix) s.fail(nullptr, fmt::format("same prefix as the route on line {}", other.line));
    // Port subnets are routed without a [[route]]; one with the same prefix
    // would silently replace that connected route.
    for (auto& p : cfg.ports)
        for (auto& a : p.addresses)
            if (network_of(a.addr, a.prefix_len) == r.prefix)
                s.fail(s.find("prefix"), fmt::format("{} is the subnet of port {} (address {}/{}), reachable "
                                                     "without a [[route]]; remove this one",
                                                     format_prefix(r.prefix), quote(p.name), format_ip(a.addr),
                                                     a.prefix_len));
    return r;
}

// ---- [[neighbor]] ------------------------------------------------------------

constexpr std::string_view neighbor_keys[] = {"address", "mac", "port"};

// "02:00:5e:10:00:01" (or with dashes); six octets, two hex digits each.
std::optional<std::array<uint8_t, 6>> parse_mac(std::string_view s)
{
    std::array<uint8_t, 6> mac{};
    if (s.size() != 17) return std::nullopt;
    for (std::size_t i = 0; i < 6; ++i) {
        if (i > 0 && s[i * 3 - 1] != ':' && s[i * 3 - 1] != '-') return std::nullopt;
        auto octet = whole_number<uint8_t>(s.substr(i * 3, 2), 16);
        if (!octet) return std::nullopt;
        mac[i] = *octet;
    }
    return mac;
}

NeighborConfig read_neighbor(const toml::table& t, std::size_t index, const DataplaneConfig& cfg)
{
    Section s(t, fmt::format("[[neighbor]] #{}", index + 1), neighbor_keys);
    NeighborConfig nb;
    nb.line = s.line();
    const toml::node& addr = s.need("address", "\"198.18.0.2\"");
    nb.address = address_at(s, addr, "address");
    s.rename(fmt::format("neighbor {}", format_ip(nb.address)));
    s.need("port", "\"outside\"");
    nb.port = *s.text("port");
    check_on_link(s, addr, "address", nb.address, port_at(s, cfg, nb.port));
    const toml::node& mac = s.need("mac", "\"02:00:5e:10:00:01\"");
    auto* text = mac.as_string();
    auto parsed = text ? parse_mac(text->get()) : std::nullopt;
    if (!parsed)
        s.fail(&mac, fmt::format("mac must be six hex octets such as \"02:00:5e:10:00:01\", not {}",
                                 text ? quote(text->get()) : std::string(type_name(mac))));
    nb.mac = *parsed;
    if (nb.mac[0] & 1) s.fail(&mac, "mac is a multicast or broadcast address; a next hop needs a unicast one");
    if (nb.mac == std::array<uint8_t, 6>{}) s.fail(&mac, "mac 00:00:00:00:00:00 is not an address");
    for (auto& other : cfg.neighbors)
        if (other.address == nb.address)
            s.fail(&addr, fmt::format("the neighbor on line {} has the same address", other.line));
    return nb;
}

// ---- [[sa]] ------------------------------------------------------------------

struct CipherName {
    std::string_view name;
    EspCipher cipher;
    unsigned key_bytes;   // without salt
    std::string_view kind;
};

constexpr CipherName cipher_names[] = {
    {"aes128gcm16", EspCipher::aes_gcm16, 16, "AEAD"},
    {"aes256gcm16", EspCipher::aes_gcm16, 32, "AEAD"},
    {"aes128gmac", EspCipher::null_aes_gmac, 16, "AEAD"},
    {"aes256gmac", EspCipher::null_aes_gmac, 32, "AEAD"},
    {"chacha20poly1305", EspCipher::chacha20_poly1305, 32, "AEAD"},
    {"aes128", EspCipher::aes_cbc, 16, "CBC"},
    {"aes256", EspCipher::aes_cbc, 32, "CBC"},
    {"3des", EspCipher::des3_cbc, 24, "CBC"},
    {"null", EspCipher::null, 0, "NULL"},
};

constexpr Named<EspInteg> integ_names[] = {
    {"sha256", EspInteg::hmac_sha256_128},
    {"sha384", EspInteg::hmac_sha384_192},
    {"sha512", EspInteg::hmac_sha512_256},
    {"sha1", EspInteg::hmac_sha1_96},
};

constexpr Named<SaDirection> directions[] = {{"in", SaDirection::inbound}, {"out", SaDirection::outbound}};
constexpr Named<SaMode> sa_modes[] = {{"tunnel", SaMode::tunnel}, {"transport", SaMode::transport}};
constexpr Named<DfMode> df_modes[] = {{"copy", DfMode::copy}, {"set", DfMode::set}, {"clear", DfMode::clear}};

std::string_view direction_word(SaDirection d) { return d == SaDirection::inbound ? "inbound" : "outbound"; }

// An SPI written as an integer (0x1001) or a string ("0x1001", "4097").
// 0..255 are reserved by RFC 4303 section 2.1.
Spi spi_at(const Section& s, const toml::node& n, std::string_view key)
{
    std::optional<uint64_t> v;
    if (auto* i = n.as_integer()) {
        if (i->get() >= 0) v = uint64_t(i->get());
    } else if (auto* str = n.as_string()) {
        std::string_view t = str->get();
        bool hex = t.size() > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X');
        v = whole_number<uint64_t>(hex ? t.substr(2) : t, hex ? 16 : 10);
    } else {
        s.fail(&n, fmt::format("{} must be an integer like 0x1001, not {}", key, type_name(n)));
    }
    if (!v || *v > 0xffffffffu)
        s.fail(&n, fmt::format("{} is not a 32-bit SPI (write 0x1001 or \"0x1001\")", key));
    if (*v < 256)
        s.fail(&n, fmt::format("{} {} is reserved (RFC 4303: SPIs 0-255 are not for SAs); use 256 or above",
                               key, *v));
    return Spi{uint32_t(*v)};
}

// Hex key material, with or without a 0x prefix. Never echoes the key.
std::vector<uint8_t> hex_key(const Section& s, const toml::node& n, std::string_view key)
{
    auto* str = n.as_string();
    if (!str) s.fail(&n, fmt::format("{} must be a hex string like \"0x0123...\", not {}", key, type_name(n)));
    std::string_view t = str->get();
    if (t.size() >= 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'X')) t.remove_prefix(2);
    if (t.size() % 2)
        s.fail(&n, fmt::format("{} has an odd number of hex digits ({}); every byte is two digits", key, t.size()));
    std::vector<uint8_t> out;
    for (std::size_t i = 0; i < t.size(); i += 2) {
        auto b = whole_number<uint8_t>(t.substr(i, 2), 16);
        if (!b) s.fail(&n, fmt::format("{} has a character that is not a hex digit at position {}", key, i + 1));
        out.push_back(*b);
    }
    return out;
}

void check_legacy(const Section& s, const toml::node* n, std::string_view name, bool legacy, const DataplaneConfig& cfg)
{
    if (legacy && !cfg.legacy_algorithms)
        s.fail(n, fmt::format("{} is a legacy algorithm (RFC 8221 says do not use it for new SAs); set "
                              "legacy_algorithms = true in [dataplane] if a peer still needs it", name));
}

// encryption, integrity and both keys. AEAD keying material is key || salt.
void read_sa_crypto(const Section& s, SaDescriptor& sa, const DataplaneConfig& cfg)
{
    auto& enc_node = s.need("encryption", "\"aes256gcm16\"");
    std::vector<std::string_view> enc_list;
    for (auto& c : cipher_names) enc_list.push_back(c.name);
    auto enc_text = s.text("encryption").value();
    auto c = std::find_if(std::begin(cipher_names), std::end(cipher_names), [&](auto& c) { return c.name == enc_text; });
    if (c == std::end(cipher_names))
        s.fail(&enc_node, fmt::format("encryption = {} is not one of: {}{}", quote(enc_text),
                                      fmt::join(enc_list, ", "), suggestion(enc_text, enc_list)));
    sa.cipher = c->cipher;
    check_legacy(s, &enc_node, c->name, is_legacy(sa.cipher), cfg);

    auto integ = s.choice("integrity", integ_names);
    const toml::node* integ_node = s.find("integrity");
    if (is_aead(sa.cipher) && integ)
        s.fail(integ_node, fmt::format("{} is AEAD and authenticates by itself; remove integrity", c->name));
    if (!is_aead(sa.cipher) && !integ)
        s.fail(&enc_node, fmt::format("{} ({}) does not authenticate; add an integrity algorithm "
                                      "(integrity = \"sha256\")", c->name, c->kind));
    sa.integ = integ.value_or(EspInteg::none);
    if (integ) check_legacy(s, integ_node, s.text("integrity").value(), is_legacy(sa.integ), cfg);

    unsigned need = c->key_bytes + salt_len(sa.cipher);
    auto* key_node = s.find("key");
    if (!key_node && need) s.need("key", "\"0x...\"");
    auto key = key_node ? hex_key(s, *key_node, "key") : std::vector<uint8_t>{};
    if (key.size() != need) {
        std::string what = salt_len(sa.cipher)
            ? fmt::format("{} ({}-byte key + {}-byte salt)", need, c->key_bytes, salt_len(sa.cipher))
            : fmt::format("{}", need);
        s.fail(key_node, need == 0 ? std::string("null encryption takes no key; remove key")
                                   : fmt::format("key is {} bytes, {} needs {}", key.size(), c->name, what));
    }
    std::copy(key.begin(), key.end(), sa.cipher_key.begin());
    sa.cipher_key_len = uint8_t(c->key_bytes);
    secure_wipe(key.data(), key.size());

    auto* ikey_node = s.find("integrity_key");
    if (!integ && ikey_node) s.fail(ikey_node, "integrity_key given without an integrity algorithm; remove it");
    if (!integ) return;
    auto ikey = hex_key(s, s.need("integrity_key", "\"0x...\""), "integrity_key");
    if (ikey.size() != integ_key_len(sa.integ))
        s.fail(ikey_node, fmt::format("integrity_key is {} bytes, {} needs {}", ikey.size(),
                                      s.text("integrity").value(), integ_key_len(sa.integ)));
    std::copy(ikey.begin(), ikey.end(), sa.integ_key.begin());
    sa.integ_key_len = uint8_t(ikey.size());
    secure_wipe(ikey.data(), ikey.size());
}

// The unprotected port holding `a`, if any.
const PortConfig* port_owning(const DataplaneConfig& cfg, const IpAddress& a)
{
    for (auto& p : cfg.ports)
        if (p.role == PortRole::unprotected_side)
            for (auto& ia : p.addresses)
                if (ia.addr == a) return &p;
    return nullptr;
}

// Tunnel endpoints and UDP encapsulation. Returns the unprotected port that
// holds the local address (tunnel mode), for the default MTU.
const PortConfig* read_sa_endpoints(const Section& s, SaDescriptor& sa, const DataplaneConfig& cfg)
{
    auto* ln = s.find("local");
    auto* rn = s.find("remote");
    if (sa.mode == SaMode::tunnel) {
        s.need("local", "\"198.18.0.1\", this gateway's end of the tunnel");
        s.need("remote", "\"198.18.0.2\", the peer's end of the tunnel");
    }
    if (ln) sa.local = address_at(s, *ln, "local");
    if (rn) sa.remote = address_at(s, *rn, "remote");
    if (ln && rn && sa.local.family != sa.remote.family)
        s.fail(rn, fmt::format("local {} is {} but remote {} is {}; both tunnel ends must be the same family",
                               format_ip(sa.local), family_name(sa.local.family), format_ip(sa.remote),
                               family_name(sa.remote.family)));
    if (ln && !rn) sa.remote.family = sa.local.family;
    if (rn && !ln) sa.local.family = sa.remote.family;
    const PortConfig* owner = ln ? port_owning(cfg, sa.local) : nullptr;
    if (sa.mode == SaMode::tunnel && !owner)
        s.fail(ln, fmt::format("local {} is not an address of any unprotected port; local is this gateway's end "
                               "of the tunnel for both directions (are local and remote swapped?)",
                               format_ip(sa.local)));
    sa.udp_encap = s.flag("encap", false);
    for (auto key : {"encap_local_port", "encap_remote_port"})
        if (!sa.udp_encap && s.find(key))
            s.fail(s.find(key), fmt::format("{} is set but encap is not true", key));
    // The workers recognise ESP-in-UDP on 4500 only (RFC 3948; the port
    // IKE floats to), so another local port would send ESP that the peer
    // answers where nothing listens.
    sa.encap_local_port = uint16_t(s.number("encap_local_port", 4500, 4500, 4500));
    sa.encap_remote_port = uint16_t(s.number("encap_remote_port", 1, 65535, 4500));
    return owner;
}

void read_sa_lifetime(const Section& s, SaLifetime& lt)
{
    constexpr uint64_t max = uint64_t(INT64_MAX);
    lt.soft_bytes = s.number("soft_bytes", 0, max, 0);
    lt.hard_bytes = s.number("hard_bytes", 0, max, 0);
    lt.soft_packets = s.number("soft_packets", 0, max, 0);
    lt.hard_packets = s.number("hard_packets", 0, max, 0);
    if (lt.soft_bytes && lt.hard_bytes && lt.soft_bytes >= lt.hard_bytes)
        s.fail(s.find("soft_bytes"), fmt::format("soft_bytes {} must be below hard_bytes {}", lt.soft_bytes, lt.hard_bytes));
    if (lt.soft_packets && lt.hard_packets && lt.soft_packets >= lt.hard_packets)
        s.fail(s.find("soft_packets"),
               fmt::format("soft_packets {} must be below hard_packets {}", lt.soft_packets, lt.hard_packets));
}

// Everything after the keys and endpoints; all optional.
void read_sa_options(const Section& s, SaConfig& c, const PortConfig* owner, const DataplaneConfig& cfg)
{
    SaDescriptor& sa = c.sa;
    sa.esn = s.flag("esn", false);
    sa.replay_window = uint16_t(s.number("replay_window", 0, max_replay_window, default_replay_window));
    sa.copy_dscp = s.flag("copy_dscp", true);
    sa.df = s.choice("df", df_modes, DfMode::copy);
    sa.reqid = uint32_t(s.number("reqid", 0, 0xffffffffu, 0));
    read_sa_lifetime(s, sa.lifetime);
    if (auto w = s.number("worker", 0, 65535)) {
        if (*w >= cfg.workers)
            s.fail(s.find("worker"), fmt::format("worker = {} but workers are numbered 0..{} (one per lcore "
                                                 "after the first in [dataplane] lcores)", *w, cfg.workers - 1));
        c.worker = uint16_t(*w);
    }
    if (auto m = s.number("mtu", 576, max_mtu)) {
        if (sa.local.family == IpFamily::v6 && *m < 1280)
            s.fail(s.find("mtu"), fmt::format("mtu = {} is below 1280, the IPv6 minimum, for an IPv6 tunnel", *m));
        c.mtu = uint16_t(*m);
        return;
    }
    if (!owner)
        for (auto& p : cfg.ports)
            if (p.role == PortRole::unprotected_side && !owner) owner = &p;
    c.mtu = owner->mtu;
}

constexpr std::string_view sa_keys[] = {
    "spi", "direction", "mode", "encryption", "integrity", "key", "integrity_key", "local", "remote",
    "encap", "encap_local_port", "encap_remote_port", "esn", "replay_window", "copy_dscp", "df", "mtu",
    "worker", "reqid", "soft_bytes", "hard_bytes", "soft_packets", "hard_packets",
};

SaConfig read_sa(const toml::table& t, std::size_t index, const DataplaneConfig& cfg)
{
    Section s(t, peek_context(t, "sa", index), sa_keys);
    SaConfig c;
    c.line = s.line();
    SaDescriptor& sa = c.sa;
    sa.spi = spi_at(s, s.need("spi", "0x1001"), "spi");
    s.rename(fmt::format("sa spi {}", spi_text(sa.spi)));
    s.need("direction", "\"out\"");
    sa.direction = *s.choice("direction", directions);
    for (auto& other : cfg.sas)
        if (other.sa.spi == sa.spi && other.sa.direction == sa.direction)
            s.fail(s.find("spi"), fmt::format("spi {} is already used by the {} SA on line {}; SPIs are unique "
                                              "per direction", spi_text(sa.spi), direction_word(sa.direction),
                                              other.line));
    sa.mode = s.choice("mode", sa_modes, SaMode::tunnel);
    read_sa_crypto(s, sa, cfg);
    const PortConfig* owner = read_sa_endpoints(s, sa, cfg);
    read_sa_options(s, c, owner, cfg);
    return c;
}

// ---- [[policy]] --------------------------------------------------------------

constexpr Named<PolicyAction> actions[] = {
    {"protect", PolicyAction::protect}, {"bypass", PolicyAction::bypass}, {"discard", PolicyAction::discard},
};

constexpr Named<uint8_t> protocols[] = {
    {"any", 0}, {"tcp", 6}, {"udp", 17}, {"icmp", 1}, {"ipv6-icmp", 58}, {"sctp", 132},
};

uint8_t protocol_at(const Section& s, const toml::node& n, IpFamily family)
{
    uint64_t proto = 0;
    if (n.is_integer()) {
        proto = s.integer(n, "protocol", 1, 255);
    } else {
        auto text = s.text("protocol").value();
        auto num = whole_number<uint8_t>(text);
        if (num && *num > 0) {
            proto = *num;
        } else {
            auto p = s.choice("protocol", protocols);   // refuses unknown names
            proto = *p;
        }
    }
    if (proto == 1 && family == IpFamily::v6)
        s.fail(&n, "protocol icmp (1) is IPv4's ICMP; for an IPv6 policy use \"ipv6-icmp\"");
    if (proto == 58 && family == IpFamily::v4)
        s.fail(&n, "protocol ipv6-icmp (58) is IPv6's ICMP; for an IPv4 policy use \"icmp\"");
    return uint8_t(proto);
}

// "any", 53, "53" or "1000-2000". Only tcp, udp and sctp have ports.
PortRange port_range_at(const Section& s, std::string_view key, uint8_t proto)
{
    auto* n = s.find(key);
    if (!n || (n->is_string() && n->as_string()->get() == "any")) return {};
    if (proto != 6 && proto != 17 && proto != 132)
        s.fail(n, fmt::format("{} needs protocol tcp, udp or sctp (this policy's protocol has no ports)", key));
    if (n->is_integer()) {
        auto p = uint16_t(s.integer(*n, key, 0, 65535));
        return {p, p};
    }
    auto text = s.text(key).value();
    auto dash = text.find('-');
    auto lo = whole_number<uint16_t>(text.substr(0, dash));
    auto hi = dash == std::string_view::npos ? lo : whole_number<uint16_t>(text.substr(dash + 1));
    if (!lo || !hi)
        s.fail(n, fmt::format("{} = {} is not \"any\", a port (0..65535) or a range like \"1000-2000\"", key, quote(text)));
    if (*lo > *hi)
        s.fail(n, fmt::format("{} = {}: the range is reversed (write \"{}-{}\")", key, quote(text), *hi, *lo));
    return {*lo, *hi};
}

// The SA a protect policy names: it must exist with the policy's direction.
void check_policy_sa(const Section& s, const toml::node* n, const PolicyDescriptor& p, const DataplaneConfig& cfg)
{
    bool other_direction = false;
    for (auto& c : cfg.sas) {
        if (c.sa.spi != p.sa) continue;
        if (c.sa.direction == p.direction) return;
        other_direction = true;
    }
    auto dir = direction_word(p.direction);
    if (other_direction)
        s.fail(n, fmt::format("sa {} is not an {} SA; an {} policy needs an {} SA", spi_text(p.sa), dir, dir, dir));
    s.fail(n, fmt::format("sa {} names no {} [[sa]]", spi_text(p.sa), dir));
}

constexpr std::string_view policy_keys[] = {
    "direction", "local", "remote", "protocol", "local_port", "remote_port", "action", "sa", "priority",
};

PolicyConfig read_policy(const toml::table& t, std::size_t index, const DataplaneConfig& cfg)
{
    Section s(t, fmt::format("policy #{}", index + 1), policy_keys);
    PolicyConfig c;
    c.line = s.line();
    PolicyDescriptor& p = c.policy;
    s.need("direction", "\"out\"");
    p.direction = *s.choice("direction", directions);
    p.local = prefix_at(s, s.need("local", "\"198.18.1.0/24\""), "local");
    p.remote = prefix_at(s, s.need("remote", "\"198.18.2.0/24\""), "remote");
    if (p.local.addr.family != p.remote.addr.family)
        s.fail(s.find("remote"), fmt::format("local {} is {} but remote {} is {}; write one policy per family",
                                             format_prefix(p.local), family_name(p.local.addr.family),
                                             format_prefix(p.remote), family_name(p.remote.addr.family)));
    if (auto* n = s.find("protocol")) p.protocol = protocol_at(s, *n, p.local.addr.family);
    p.local_ports = port_range_at(s, "local_port", p.protocol);
    p.remote_ports = port_range_at(s, "remote_port", p.protocol);
    s.need("action", "\"protect\"");
    p.action = *s.choice("action", actions);
    auto* sa_node = s.find("sa");
    if (p.action == PolicyAction::protect && !sa_node)
        s.fail(s.find("action"), "action = \"protect\" needs sa = <spi of the SA to use>");
    if (p.action != PolicyAction::protect && sa_node)
        s.fail(sa_node, fmt::format("sa is only for action = \"protect\"; remove it from this {} policy",
                                    *s.text("action")));
    if (sa_node) {
        p.sa = spi_at(s, *sa_node, "sa");
        check_policy_sa(s, sa_node, p, cfg);
    }
    p.priority = uint32_t(s.number("priority", 0, 0xffffffffu, 100));
    return c;
}

// ---- the whole file ----------------------------------------------------------

// Call `read(table, index)` for each element of the top-level array `key`.
template <typename F>
void for_each_table(const toml::table& root, std::string_view key, F&& read)
{
    auto* n = root.get(key);
    if (!n) return;
    auto* arr = n->as_array();
    if (!arr)
        refuse(line_of(*n), fmt::format("{} must be written [[{}]] (double brackets, one per {}), not {}",
                                        key, key, key, n->is_table() ? "[" + std::string(key) + "]" : type_name(*n)));
    for (std::size_t i = 0; i < arr->size(); ++i) {
        auto* t = (*arr)[i].as_table();
        if (!t) refuse(line_of((*arr)[i]), fmt::format("{} must be written [[{}]] sections", key, key));
        read(*t, i);
    }
}

constexpr std::string_view top_keys[] = {"dataplane", "port", "route", "neighbor", "sa", "policy"};

void load(const toml::table& root, DataplaneConfig& cfg)
{
    Section top(root, "top level", top_keys);
    if (auto* n = root.get("dataplane")) {
        if (!n->is_table()) refuse(line_of(*n), "dataplane must be a [dataplane] section");
        read_dataplane(*n->as_table(), cfg);
    }
    for_each_table(root, "port", [&](auto& t, std::size_t i) { cfg.ports.push_back(read_port(t, i)); });
    check_ports(cfg);
    for_each_table(root, "route", [&](auto& t, std::size_t i) { cfg.routes.push_back(read_route(t, i, cfg)); });
    for_each_table(root, "neighbor",
                   [&](auto& t, std::size_t i) { cfg.neighbors.push_back(read_neighbor(t, i, cfg)); });
    for_each_table(root, "sa", [&](auto& t, std::size_t i) { cfg.sas.push_back(read_sa(t, i, cfg)); });
    for_each_table(root, "policy", [&](auto& t, std::size_t i) { cfg.policies.push_back(read_policy(t, i, cfg)); });
}

// The parsed tree keeps its own copies of the key strings: overwrite them
// before the tree is freed (best effort: the caller still owns the text).
struct WipedTree {
    toml::table table;
    ~WipedTree()
    {
        auto* sas = table.get_as<toml::array>("sa");
        if (!sas) return;
        for (auto& el : *sas) {
            auto* t = el.as_table();
            if (!t) continue;
            for (auto key : {"key", "integrity_key"})
                if (auto* s = t->get_as<std::string>(key)) secure_wipe(s->get().data(), s->get().size());
        }
    }
};

// ---- before toml++ sees the text ---------------------------------------------

// "U+00A0" for the UTF-8 sequence `rest` starts with, or the byte when malformed.
std::string describe_char(std::string_view rest)
{
    auto b = [&](std::size_t i) { return i < rest.size() ? uint8_t(rest[i]) : 0; };
    unsigned n = b(0) >= 0xf0 ? 4 : b(0) >= 0xe0 ? 3 : b(0) >= 0xc0 ? 2 : 1;
    char32_t cp = b(0) & (0x7f >> n);
    for (unsigned i = 1; i < n; ++i) {
        if ((b(i) & 0xc0) != 0x80) return fmt::format("byte 0x{:02x}", b(0));
        cp = cp << 6 | (b(i) & 0x3f);
    }
    return n == 1 ? fmt::format("byte 0x{:02x}", b(0)) : fmt::format("U+{:04X}", uint32_t(cp));
}

// toml++ gets ASCII only. The toml++ 3.3.0 we link reaches
// __builtin_unreachable() (undefined behaviour) on some non-ASCII characters
// where it looks for whitespace (marzer/tomlplusplus#190, fixed after 3.3.0),
// and no Ravelin value needs non-ASCII. This refuses non-ASCII outside
// comments, with the line; ascii_copy() then replaces whatever is left.
// Telling comments from strings takes a small lexer. Should it misjudge some
// malformed input, toml++ still sees only ASCII: the lexer decides the
// message, never safety.
void refuse_non_ascii(std::string_view t)
{
    enum class In { code, comment, basic, literal, ml_basic, ml_literal } in = In::code;
    unsigned line = 1;
    char prev = '\n';   // last character in code, spaces aside
    auto run = [&](std::size_t at, char q) {   // length of a run of quotes
        std::size_t n = 0;
        while (at + n < t.size() && t[at + n] == q) ++n;
        return n;
    };
    for (std::size_t i = 0; i < t.size(); ++i) {
        char c = t[i];
        if (c == '\n') {
            ++line;
            if (in != In::ml_basic && in != In::ml_literal) {
                in = In::code;
                prev = '\n';
            }
            continue;
        }
        if (uint8_t(c) >= 0x80 && in != In::comment) {
            refuse(line, fmt::format("{} {}", describe_char(t.substr(i)), in == In::code
                ? "outside a string or comment; TOML allows non-ASCII only in strings and comments "
                  "(a pasted smart quote or non-breaking space?)"
                : "in a string; configuration values are ASCII (non-ASCII is fine in # comments)"));
        }
        switch (in) {
        case In::code:
            if (c == '#') in = In::comment;
            // A quote opens a string only where TOML lets one start.
            if ((c == '"' || c == '\'') && std::string_view("\n=[,{.").find(prev) != std::string_view::npos) {
                bool multi = run(i, c) >= 3;
                in = c == '"' ? (multi ? In::ml_basic : In::basic) : (multi ? In::ml_literal : In::literal);
                if (multi) i += 2;
            }
            if (c != ' ' && c != '\t') prev = c;
            break;
        case In::comment: break;
        case In::basic:
        case In::ml_basic:
            if (c == '\\' && i + 1 < t.size() && t[i + 1] != '\n' && uint8_t(t[i + 1]) < 0x80) {
                ++i;   // an escaped quote does not end the string
            } else if (c == '"' && (in == In::basic || run(i, c) >= 3)) {
                if (in == In::ml_basic) i += run(i, c) - 1;   // up to two quotes before """ are content
                in = In::code;
            }
            break;
        case In::literal:
        case In::ml_literal:
            if (c == '\'' && (in == In::literal || run(i, c) >= 3)) {
                if (in == In::ml_literal) i += run(i, c) - 1;
                in = In::code;
            }
            break;
        }
    }
}

// Overwrites its text when it goes: copies of the file hold the keys.
struct WipedString {
    std::string s;
    WipedString(std::string v) : s(std::move(v)) {}
    WipedString(const WipedString&) = delete;
    WipedString& operator=(const WipedString&) = delete;
    ~WipedString() { secure_wipe(s.data(), s.size()); }
};

// The text for toml++, with every non-ASCII byte (only comments have any
// after refuse_non_ascii) replaced by '?', so lines and lengths stay as they are.
void ascii_copy(std::string_view text, std::string& out)
{
    out.assign(text);
    for (char& c : out)
        if (uint8_t(c) >= 0x80) c = '?';
}

// toml++ says "Error while parsing key-value pair: expected ..."; say what
// kind of error it is and keep the detail.
std::string syntax_error(std::string_view d)
{
    constexpr std::string_view lead = "Error while parsing ";
    if (d.substr(0, lead.size()) == lead) d.remove_prefix(lead.size());
    return fmt::format("TOML syntax error: {}", d);
}

} // namespace

Result<DataplaneConfig> parse_config(std::string_view text, std::string_view source)
{
    DataplaneConfig cfg;
    cfg.source = source;
    try {
        if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);   // UTF-8 byte order mark
        refuse_non_ascii(text);
        WipedString ascii{std::string()};
        ascii_copy(text, ascii.s);
        WipedTree root{toml::parse(ascii.s, source)};
        load(root.table, cfg);
        return cfg;
    } catch (const toml::parse_error& e) {
        return ConfigError{std::string(source), e.source().begin.line, syntax_error(e.description())};
    } catch (const Refused& r) {
        for (auto& c : cfg.sas) wipe_keys(c.sa);
        return ConfigError{std::string(source), r.line, r.reason};
    }
}

Result<DataplaneConfig> load_config(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) return ConfigError{path, 0, fmt::format("cannot open: {}", std::strerror(errno))};
    std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (in.bad()) return ConfigError{path, 0, fmt::format("cannot read: {}", std::strerror(errno))};
    auto r = parse_config(text, path);
    secure_wipe(text.data(), text.size());   // the file holds keys
    return r;
}

std::vector<std::string> eal_argv(const DataplaneConfig& cfg)
{
    std::vector<std::string> argv{"ravelin-dataplane"};
    std::string lcores;
    for (unsigned id : cfg.lcores) {
        lcores += (lcores.empty() ? "" : ",") + std::to_string(id);
        // EAL's --lcores syntax: "0@1,1" runs lcore 0 on CPU 1, lcore 1 on CPU 1.
        if (cfg.main_cpu && id == cfg.lcores.front()) lcores += "@" + std::to_string(*cfg.main_cpu);
    }
    argv.insert(argv.end(), {cfg.main_cpu ? "--lcores" : "-l", lcores});
    // EAL makes the lowest lcore the main one unless told otherwise; the
    // config promises the first listed.
    if (!cfg.lcores.empty() && cfg.lcores.front() != *std::min_element(cfg.lcores.begin(), cfg.lcores.end()))
        argv.insert(argv.end(), {"--main-lcore", std::to_string(cfg.lcores.front())});
    argv.insert(argv.end(), {"--file-prefix", cfg.file_prefix});
    if (!cfg.hugepages) argv.insert(argv.end(), {"--no-huge", "-m", std::to_string(cfg.memory_mb)});
    bool any_pci = std::any_of(cfg.ports.begin(), cfg.ports.end(), [](auto& p) { return is_pci_address(p.device); });
    if (!any_pci) argv.push_back("--no-pci");
    for (auto& p : cfg.ports) argv.insert(argv.end(), {is_pci_address(p.device) ? "-a" : "--vdev", p.device});
    argv.insert(argv.end(), cfg.eal_args.begin(), cfg.eal_args.end());
    return argv;
}

} // namespace ravelin::dp

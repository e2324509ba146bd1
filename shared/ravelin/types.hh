// Strong types shared by the control plane and the data plane.
//
// Everything here is trivially copyable: these types travel inside ring
// messages between processes, so they must not own memory.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace ravelin {

// A value wrapped so that an SPI cannot be passed where an SA index is
// expected. Comparison and hashing come from the underlying integer.
template <typename Tag, typename Rep>
struct StrongInt {
    Rep value{};
    constexpr StrongInt() = default;
    constexpr explicit StrongInt(Rep v) : value(v) {}
    constexpr auto operator<=>(const StrongInt&) const = default;
};

struct SpiTag {};
struct SaIndexTag {};
struct WorkerTag {};

// Security Parameter Index, host byte order.
using Spi = StrongInt<SpiTag, uint32_t>;
// Slot of an SA in the data plane's SA table.
using SaIndex = StrongInt<SaIndexTag, uint32_t>;
// Worker number (0..workers-1), not the DPDK lcore id.
using WorkerId = StrongInt<WorkerTag, uint16_t>;

// 64-bit ESP sequence number; with ESN the high half is implicit on the wire.
using SeqNum = uint64_t;

enum class IpFamily : uint8_t { v4 = 4, v6 = 6 };

// An IPv4 or IPv6 address in network byte order. IPv4 uses bytes[0..3].
struct IpAddress {
    IpFamily family = IpFamily::v4;
    std::array<uint8_t, 16> bytes{};

    static constexpr IpAddress v4(uint32_t host_order)
    {
        IpAddress a;
        a.family = IpFamily::v4;
        a.bytes[0] = uint8_t(host_order >> 24);
        a.bytes[1] = uint8_t(host_order >> 16);
        a.bytes[2] = uint8_t(host_order >> 8);
        a.bytes[3] = uint8_t(host_order);
        return a;
    }
    constexpr uint32_t v4_host() const
    {
        return uint32_t(bytes[0]) << 24 | uint32_t(bytes[1]) << 16 |
               uint32_t(bytes[2]) << 8 | uint32_t(bytes[3]);
    }
    constexpr std::size_t size() const { return family == IpFamily::v4 ? 4 : 16; }
    constexpr bool operator==(const IpAddress&) const = default;
};

// An address prefix such as 198.18.1.0/24 or 2001:db8::/32. Host bits are
// zero (the config parser refuses a prefix that has them set).
struct IpPrefix {
    IpAddress addr;
    uint8_t len = 0;

    constexpr bool contains(const IpAddress& a) const
    {
        if (a.family != addr.family) return false;
        unsigned full = len / 8, rest = len % 8;
        for (unsigned i = 0; i < full; ++i)
            if (a.bytes[i] != addr.bytes[i]) return false;
        if (rest == 0) return true;
        uint8_t mask = uint8_t(0xff00 >> rest);
        return (a.bytes[full] & mask) == addr.bytes[full];
    }
    constexpr bool operator==(const IpPrefix&) const = default;
};

// Inclusive port range; {0, 65535} means any port.
struct PortRange {
    uint16_t lo = 0;
    uint16_t hi = 65535;
    constexpr bool contains(uint16_t p) const { return p >= lo && p <= hi; }
    constexpr bool any() const { return lo == 0 && hi == 65535; }
    constexpr bool operator==(const PortRange&) const = default;
};

static_assert(std::is_trivially_copyable_v<Spi>);
static_assert(std::is_trivially_copyable_v<IpAddress>);
static_assert(std::is_trivially_copyable_v<IpPrefix>);

} // namespace ravelin

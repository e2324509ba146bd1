// Host <-> network byte order for the data plane's per-packet code.
//
// DPDK's rte_bswap16/32 (behind rte_cpu_to_be_16/32 and the reverse) are
// asm volatile for anything but a constant (x86 rte_byteorder.h): a
// register shuffle per swap that the compiler can neither fold into the
// load or store next to it nor move. These are plain builtins.
#pragma once

#include <cstdint>
#include <cstring>

namespace ravelin::dp {

constexpr uint16_t net16(uint16_t v) noexcept { return __builtin_bswap16(v); }
constexpr uint32_t net32(uint32_t v) noexcept { return __builtin_bswap32(v); }

// Big-endian fields at any alignment (ESP after a 14-octet Ethernet header
// is only 2-octet aligned).
inline uint16_t load_be16(const uint8_t* p) noexcept
{
    uint16_t v;
    std::memcpy(&v, p, 2);
    return net16(v);
}
inline uint32_t load_be32(const uint8_t* p) noexcept
{
    uint32_t v;
    std::memcpy(&v, p, 4);
    return net32(v);
}
inline void store_be16(uint8_t* p, uint16_t v) noexcept
{
    const uint16_t be = net16(v);
    std::memcpy(p, &be, 2);
}
inline void store_be32(uint8_t* p, uint32_t v) noexcept
{
    const uint32_t be = net32(v);
    std::memcpy(p, &be, 4);
}

} // namespace ravelin::dp

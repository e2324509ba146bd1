// What the data plane needs to know to install one ESP SA or one policy.
//
// Produced by the data plane's config loader for manually keyed SAs, and by
// ravelin-iked for negotiated Child SAs (sent through the SA command ring).
// Trivially copyable, no pointers: it crosses a process boundary.
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>

#include "ravelin/algorithms.hh"
#include "ravelin/types.hh"

namespace ravelin {

enum class SaDirection : uint8_t { inbound = 0, outbound = 1 };
enum class SaMode : uint8_t { tunnel = 0, transport = 1 };

// What to do with the DF bit of the outer IPv4 header in tunnel mode.
enum class DfMode : uint8_t { copy = 0, set = 1, clear = 2 };

// 0 means "no limit". Soft limits raise an event once; hard limits stop the
// SA (packets are dropped with reason sa_expired).
struct SaLifetime {
    uint64_t soft_bytes = 0;
    uint64_t hard_bytes = 0;
    uint64_t soft_packets = 0;
    uint64_t hard_packets = 0;
};

inline constexpr unsigned max_cipher_key_len = 32 + 4; // AES-256 or ChaCha20 key + salt
inline constexpr unsigned max_integ_key_len = 64;      // HMAC-SHA-512
inline constexpr unsigned max_replay_window = 4096;
inline constexpr unsigned default_replay_window = 1024;

struct SaDescriptor {
    Spi spi;
    SaDirection direction = SaDirection::inbound;
    SaMode mode = SaMode::tunnel;
    EspCipher cipher = EspCipher::aes_gcm16;
    EspInteg integ = EspInteg::none;

    // Cipher key followed by the salt for AEAD ciphers (RFC 4106 §8.1 keying
    // material layout); cipher_key_len counts the key without the salt.
    uint8_t cipher_key_len = 0;
    uint8_t integ_key_len = 0;
    std::array<uint8_t, max_cipher_key_len> cipher_key{};
    std::array<uint8_t, max_integ_key_len> integ_key{};

    // Tunnel endpoints (outer header); for transport mode only the family
    // and the encapsulation ports matter.
    IpAddress local;
    IpAddress remote;

    bool udp_encap = false;       // RFC 3948 ESP-in-UDP
    uint16_t encap_local_port = 4500;
    uint16_t encap_remote_port = 4500;

    bool esn = false;             // extended sequence numbers
    uint16_t replay_window = default_replay_window; // 0 = anti-replay off
    bool copy_dscp = true;        // copy inner DSCP to the outer header
    DfMode df = DfMode::copy;

    SaLifetime lifetime;

    // Policies name the SA by SPI; reqid groups the two directions of one
    // Child SA for the control plane (0 when manually keyed).
    uint32_t reqid = 0;
};

enum class PolicyAction : uint8_t { protect = 0, bypass = 1, discard = 2 };

// One SPD entry (RFC 4301 §4.4.1). "local" is our side: for outbound traffic
// it matches the source, for inbound the destination.
struct PolicyDescriptor {
    SaDirection direction = SaDirection::outbound;
    IpPrefix local;
    IpPrefix remote;
    uint8_t protocol = 0;         // IP protocol number, 0 = any
    PortRange local_ports;
    PortRange remote_ports;
    PolicyAction action = PolicyAction::discard;
    Spi sa;                       // for protect: the SA to use (outbound) or expect (inbound)
    uint32_t priority = 0;        // lower value wins; ties go to the earlier entry
    bool operator==(const PolicyDescriptor&) const = default;
};

static_assert(std::is_trivially_copyable_v<SaDescriptor>);
static_assert(std::is_trivially_copyable_v<PolicyDescriptor>);

// Wipe key material in a way the compiler may not elide.
inline void secure_wipe(void* p, std::size_t n)
{
    volatile uint8_t* v = static_cast<volatile uint8_t*>(p);
    while (n--) *v++ = 0;
}

inline void wipe_keys(SaDescriptor& sa)
{
    secure_wipe(sa.cipher_key.data(), sa.cipher_key.size());
    secure_wipe(sa.integ_key.data(), sa.integ_key.size());
}

} // namespace ravelin

// The channel between ravelin-iked and ravelin-dataplane: what the two
// processes exchange and how the shared memory that carries it is laid out.
//
// The data plane creates one file per instance (channel_path(file_prefix),
// mode 0600: SA keys cross it) and lays four single-producer,
// single-consumer rte_rings out in it; the control plane maps the same file
// and uses the rings through DPDK's inline ring functions, without EAL.
// Messages are fixed-size, versioned and trivially copyable, written and
// read in place in the ring slots (rte_ring zero-copy API), so the reader
// can wipe key bytes in the slot itself.
//
//   commands   control plane -> data plane   Command   SA and policy changes, queries
//   replies    data plane -> control plane   Reply     results, events, acquires, SA listings
//   punt       data plane -> control plane   Frame     IKE datagrams for our addresses
//   transmit   control plane -> data plane   Frame     IKE datagrams (and NAT-T keepalives) to send
//
// Liveness: the data plane stores CLOCK_MONOTONIC nanoseconds in
// `heartbeat_ns` on every pass of its main loop, and a random `instance` at
// start. A new instance id (the file is recreated when the data plane
// restarts) or a heartbeat older than a second tells the control plane that
// the data plane it talked to is gone. One control plane at a time: it
// holds an exclusive flock() on the file while attached, and on attach
// resets the ring ends it owns (a killed predecessor may have left a
// half-finished enqueue or dequeue behind).
//
// Doorbell: the data plane's main lcore sleeps between passes (longer when
// it has been idle), on a futex in the header. The control plane rings it
// after it writes commands or frames, so those are picked up at once
// instead of after the rest of a sleep.
//
// No DPDK types here: the rings are placed at `RingInfo::offset` and their
// layout is DPDK's (rte_ring_get_memsize_elem), so both sides must be built
// against the same DPDK; `version` changes whenever anything here does.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ravelin/events.hh"
#include "ravelin/sa_descriptor.hh"
#include "ravelin/types.hh"

namespace ravelin::channel {

inline constexpr uint32_t magic = 0x52564c43;   // "RVLC"
inline constexpr uint16_t version = 2;

inline std::string channel_path(const std::string& file_prefix)
{
    return "/run/ravelin/" + file_prefix + ".channel";
}

// --- layout ------------------------------------------------------------------

enum class RingId : uint8_t { commands = 0, replies = 1, punt = 2, transmit = 3 };
inline constexpr unsigned ring_count = 4;

// Element counts (powers of two; a ring holds count - 1).
inline constexpr uint32_t commands_ring_size = 1024;
inline constexpr uint32_t replies_ring_size = 4096;
inline constexpr uint32_t punt_ring_size = 256;
inline constexpr uint32_t transmit_ring_size = 256;

struct RingInfo {
    uint64_t offset = 0;     // from the start of the mapping, cache-line aligned
    uint32_t element_size = 0;
    uint32_t count = 0;
};

struct alignas(64) Header {
    uint32_t magic = 0;
    uint16_t version = 0;
    uint16_t header_size = 0;      // sizeof(Header)
    uint64_t total_size = 0;       // bytes of the mapping
    uint64_t instance = 0;         // random, chosen at data-plane start
    uint32_t dataplane_pid = 0;
    uint32_t workers = 0;
    std::array<RingInfo, ring_count> rings{};
    alignas(64) std::atomic<uint64_t> heartbeat_ns{0};   // data plane writes
    alignas(64) std::atomic<uint32_t> control_pid{0};    // attached control plane, 0 = none
    alignas(64) std::atomic<uint32_t> doorbell{0};       // futex word: control plane rings
};
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "a futex word is 32 bits");

// Control plane: wake the data plane's main lcore. A shared (not
// FUTEX_PRIVATE) futex: the word is in a file both processes map.
inline void ring_doorbell(Header& h) noexcept
{
    h.doorbell.fetch_add(1, std::memory_order_release);
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&h.doorbell), FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

// Data plane: sleep up to `timeout_ns`, or less if the bell rings. `seen`
// is the doorbell value read before the pass that came before this sleep:
// a ring since then returns at once, so no ring is lost.
inline void wait_doorbell(Header& h, uint32_t seen, uint64_t timeout_ns) noexcept
{
    timespec ts{time_t(timeout_ns / 1000000000u), long(timeout_ns % 1000000000u)};
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&h.doorbell), FUTEX_WAIT, seen, &ts, nullptr, 0);
}

// --- names carried with SAs (for listings after a restart, and metrics) -------

inline constexpr unsigned name_len = 48;

struct Name {
    std::array<char, name_len> text{};   // NUL-terminated, truncated
    void set(std::string_view s)
    {
        text.fill(0);
        std::memcpy(text.data(), s.data(), std::min<std::size_t>(s.size(), name_len - 1));
    }
    std::string_view view() const { return {text.data(), strnlen(text.data(), name_len)}; }
};

// --- commands: control plane -> data plane -------------------------------------

enum class CommandType : uint16_t {
    hello = 1,          // first message after attach; answered with a result
    sa_add = 2,         // install an SA; an outbound SA replaces its reqid's current one
    sa_delete = 3,      // remove an SA (no-op result "not found" if it is gone)
    policies_set = 4,   // replace all policies of one reqid (count 0: remove them)
    sa_list = 5,        // one sa_info reply per installed SA, then list_end
    flush = 6,          // remove every SA and policy the control plane installed
};

inline constexpr unsigned max_policies_per_command = 16;

struct SaAdd {
    SaDescriptor sa;              // keys: the data plane wipes them in the slot after use
    uint16_t outer_mtu = 0;       // 0: the MTU of the port holding sa.local
    Name connection;
    Name child;
};

struct SaDelete {
    Spi spi;
    SaDirection direction = SaDirection::inbound;
};

// The policies of one Child SA. Outbound protect policies use the reqid's
// outbound SA, whichever is current (sa_add with the same reqid swaps it
// in place, so a rekey never rebuilds the SPD); with no outbound SA
// installed yet (start_action = trap) a matching packet raises an acquire
// and is dropped. Inbound protect policies accept what the reqid's inbound
// SAs carried. PolicyDescriptor::sa is ignored.
struct PoliciesSet {
    uint32_t reqid = 0;
    uint8_t count = 0;
    std::array<PolicyDescriptor, max_policies_per_command> policies{};
};

struct Command {
    uint16_t version = channel::version;
    CommandType type = CommandType::hello;
    uint32_t seq = 0;             // echoed in the result
    uint64_t sent_ns = 0;         // CLOCK_MONOTONIC when enqueued
    union {
        SaAdd sa_add;
        SaDelete sa_delete;
        PoliciesSet policies;
    };
    Command() : sa_add() {}
};
static_assert(std::is_trivially_copyable_v<Command>);

// --- replies: data plane -> control plane ---------------------------------------

enum class ReplyType : uint16_t {
    result = 1,         // one per command, in command order
    event = 2,          // soft/hard lifetime, sequence exhaustion
    acquire = 3,        // traffic hit a protect policy whose reqid has no outbound SA
    sa_info = 4,        // one installed SA (sa_list)
    list_end = 5,       // end of an sa_list answer
};

enum class Status : uint16_t {
    ok = 0,
    bad_version = 1,
    bad_command = 2,    // unknown type or malformed fields
    invalid_sa = 3,     // the descriptor cannot be installed (see `error`)
    spi_in_use = 4,
    table_full = 5,
    not_found = 6,
    policy_error = 7,   // the SPD could not be built with these policies
};

struct Result {
    Status status = Status::ok;
    std::array<char, 80> error{};  // NUL-terminated reason when status != ok
    uint64_t applied_ns = 0;       // CLOCK_MONOTONIC when the change was visible to workers
};

struct Acquire {
    uint32_t reqid = 0;
    IpAddress src, dst;            // the packet that hit the policy
    uint8_t protocol = 0;
    uint16_t src_port = 0, dst_port = 0;
};

struct SaInfo {
    Spi spi;
    SaDirection direction = SaDirection::inbound;
    SaMode mode = SaMode::tunnel;
    bool hard_reached = false;
    uint32_t reqid = 0;
    uint16_t worker = 0;
    uint64_t packets = 0;
    uint64_t bytes = 0;
    uint64_t installed_ns = 0;     // CLOCK_MONOTONIC
    uint64_t first_use_ns = 0;     // 0: not used yet
    uint64_t last_use_ns = 0;      // 0: not used yet
    IpAddress local, remote;       // tunnel endpoints
    Name connection;
    Name child;
};

struct Reply {
    uint16_t version = channel::version;
    ReplyType type = ReplyType::result;
    uint32_t seq = 0;              // result, sa_info, list_end: the command's seq
    union {
        Result result;
        DataplaneEvent event;
        Acquire acquire;
        SaInfo sa_info;
    };
    Reply() : result() {}
};
static_assert(std::is_trivially_copyable_v<Reply>);

// --- frames: IKE datagrams both ways ---------------------------------------------

// The UDP payload exactly as on the wire (with the 4-byte non-ESP marker on
// a NAT-T port; a NAT-T keepalive is the single byte 0xff). The data plane
// builds or strips the Ethernet, IP and UDP headers; the route and the next
// hop are its business.
inline constexpr unsigned max_frame_payload = 8192 - 64;

struct Frame {
    uint16_t version = channel::version;
    uint16_t length = 0;           // bytes of payload in use
    uint16_t local_port = 0;       // UDP ports, host order
    uint16_t remote_port = 0;
    IpAddress local;               // our address (punt: the destination)
    IpAddress remote;              // the peer
    uint8_t pad[64 - 8 - 2 * sizeof(IpAddress)]{};
    std::array<uint8_t, max_frame_payload> payload;
};
static_assert(std::is_trivially_copyable_v<Frame>);
static_assert(sizeof(Frame) == 8192);

} // namespace ravelin::channel

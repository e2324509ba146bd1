// Events the data plane raises for the control plane (RFC 4301 §4.4.2.1
// lifetimes, RFC 4303 §3.3.3 sequence number exhaustion).
//
// Workers enqueue them on a multi-producer ring; they never block: if the
// ring is full the event is counted as lost and raised again on a later
// packet (events are level-triggered per SA, see dataplane/sa.hh).
#pragma once

#include <cstdint>
#include <type_traits>

#include "ravelin/types.hh"

namespace ravelin {

inline constexpr uint16_t event_version = 1;

enum class EventType : uint16_t {
    soft_lifetime = 1,   // soft byte or packet limit reached: rekey now
    hard_lifetime = 2,   // hard limit reached: the SA no longer carries traffic
    seq_exhausted = 3,   // outbound sequence number would wrap: SA stopped
};

struct DataplaneEvent {
    uint16_t version = event_version;
    EventType type = EventType::soft_lifetime;
    Spi spi;
    uint8_t direction = 0;   // SaDirection
    uint64_t packets = 0;    // SA counters when the event was raised
    uint64_t bytes = 0;
};

static_assert(std::is_trivially_copyable_v<DataplaneEvent>);

constexpr const char* event_name(EventType t)
{
    switch (t) {
    case EventType::soft_lifetime: return "soft-lifetime";
    case EventType::hard_lifetime: return "hard-lifetime";
    case EventType::seq_exhausted: return "seq-exhausted";
    }
    return "unknown";
}

} // namespace ravelin

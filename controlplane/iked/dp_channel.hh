// ravelin-iked's end of the channel to ravelin-dataplane
// (shared/ravelin/channel.hh): maps the data plane's channel file, owns the
// producer end of the command and transmit rings and the consumer end of
// the reply and punt rings, and tells whether the data plane is alive.
//
// No EAL: the rings are DPDK rte_rings in the shared file, used through
// DPDK's inline ring functions. Messages are written and read in place
// (zero-copy ring API); command slots are written once and the local copy
// of any key bytes is wiped as soon as it is in the ring.
//
// Commands that do not fit in the ring wait in a local queue (bounded) and
// go out, in order, on the next flush(); nothing is lost while the data
// plane is slow, only when it is gone (then the daemon re-attaches and
// re-installs, see daemon.cc).
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>

#include "message.hh"
#include "ravelin/channel.hh"

struct rte_ring;

namespace ravelin::iked {

struct ChannelStats {
    uint64_t commands_sent = 0;      // written into the ring
    uint64_t commands_queued = 0;    // had to wait for ring space
    uint64_t commands_dropped = 0;   // local queue full (data plane stuck)
    uint64_t replies = 0;
    uint64_t frames_in = 0;
    uint64_t frames_out = 0;
    uint64_t frames_out_dropped = 0; // ring full or too large
    uint64_t bad_messages = 0;       // wrong version in a reply or frame
};

class DataplaneChannel {
public:
    DataplaneChannel() = default;
    ~DataplaneChannel();
    DataplaneChannel(const DataplaneChannel&) = delete;
    DataplaneChannel& operator=(const DataplaneChannel&) = delete;

    // Maps the channel file at `path` and takes the control-plane end.
    // False with `error` when the file is missing or not a channel of this
    // version, its data plane is not running (heartbeat older than
    // `max_age_ns`), or another control plane holds it.
    bool attach(const std::string& path, uint64_t now_ns, uint64_t max_age_ns, std::string& error);
    void detach();
    bool attached() const { return header_ != nullptr; }
    uint64_t instance() const { return instance_; }
    uint32_t dataplane_pid() const;

    // False when the data plane's heartbeat is older than `max_age_ns`, or
    // the file at the path is no longer the one we mapped (a new data
    // plane instance). `why` says which.
    bool alive(uint64_t now_ns, uint64_t max_age_ns, std::string& why) const;

    // Queues `cmd` (seq and sent_ns are filled in) and wipes the key bytes
    // of `cmd` itself. Returns the seq.
    uint32_t send(channel::Command& cmd);
    // Writes queued commands into the ring, in order, as far as it has room.
    void flush();
    std::size_t queued() const { return queue_.size(); }
    // When the command with this seq was handed to send() (CLOCK_MONOTONIC),
    // 0 if unknown (one of the last 4096 commands only).
    uint64_t sent_ns(uint32_t seq) const
    {
        const auto& e = sent_[seq % sent_.size()];
        return e.first == seq ? e.second : 0;
    }

    // One datagram to send: UDP payload `head` + `body` (head is the non-ESP
    // marker or empty). False (counted) when it is too large or the ring is full.
    bool transmit(const IpAddress& local, uint16_t local_port, const IpAddress& remote,
                  uint16_t remote_port, ike::ByteView head, ike::ByteView body);

    // Hands at most `budget` replies / punted frames to `f`, read in place
    // (the references are valid only during the call).
    unsigned poll_replies(const std::function<void(const channel::Reply&)>& f, unsigned budget = 256);
    unsigned poll_frames(const std::function<void(const channel::Frame&)>& f, unsigned budget = 64);

    const ChannelStats& stats() const { return stats_; }

    static uint64_t monotonic_ns();

private:
    rte_ring* ring(channel::RingId id) const { return rings_[unsigned(id)]; }
    bool write_command(channel::Command& cmd);

    static constexpr std::size_t max_queued = 1 << 16;

    std::string path_;
    int fd_ = -1;
    void* base_ = nullptr;
    std::size_t size_ = 0;
    channel::Header* header_ = nullptr;
    rte_ring* rings_[channel::ring_count] = {};
    dev_t dev_ = 0;
    ino_t ino_ = 0;
    uint64_t instance_ = 0;
    uint32_t next_seq_ = 1;
    std::deque<channel::Command> queue_;
    std::array<std::pair<uint32_t, uint64_t>, 4096> sent_{};
    ChannelStats stats_;
};

// Wipes every key byte a command may carry (sa_add).
void wipe_command(channel::Command& cmd);

} // namespace ravelin::iked

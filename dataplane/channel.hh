// The data plane's end of the control-plane channel (shared/ravelin/channel.hh):
// the file, its mapping and the four rings laid out in it.
//
// The data plane creates the file at start (a stale one left by a killed
// instance is removed first), so every start has a new inode and a new
// random `instance`: a control plane still mapping the old file sees it
// go stale (heartbeat stops) and re-maps. The file is unlinked on a clean
// stop. What travels over the rings, and when, is dataplane_channel.cc's
// business; this class only owns the memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ravelin/channel.hh"

struct rte_ring;

namespace ravelin::dp {

class Channel {
public:
    // Create (or recreate) the channel file at `path`, mode 0600, and lay
    // out the header and the rings. Returns nullptr with `error` set.
    static std::unique_ptr<Channel> create(const std::string& path, unsigned workers, std::string& error);
    // Unmaps and unlinks the file.
    ~Channel();
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;

    channel::Header& header() noexcept { return *header_; }
    rte_ring* ring(channel::RingId id) noexcept { return rings_[unsigned(id)]; }
    const std::string& path() const noexcept { return path_; }

    void heartbeat(uint64_t now_ns) noexcept { header_->heartbeat_ns.store(now_ns, std::memory_order_release); }
    // The pid the attached control plane wrote into the header, 0 if none.
    uint32_t control_pid() const noexcept { return header_->control_pid.load(std::memory_order_acquire); }

    // Bytes the file needs for the header and the four rings.
    static std::size_t layout_size() noexcept;

private:
    Channel() = default;

    std::string path_;
    void* base_ = nullptr;
    std::size_t size_ = 0;
    channel::Header* header_ = nullptr;
    rte_ring* rings_[channel::ring_count]{};
};

// CLOCK_MONOTONIC in nanoseconds (the channel's time base).
uint64_t monotonic_ns() noexcept;

} // namespace ravelin::dp

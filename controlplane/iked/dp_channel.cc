#include "dp_channel.hh"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include <rte_ring.h>
#include <rte_ring_elem.h>
#include <rte_ring_peek_zc.h>

namespace ravelin::iked {

namespace {

using channel::Command;
using channel::Frame;
using channel::Reply;
using channel::RingId;

// What each ring must hold, as the control plane was built.
constexpr uint32_t element_size(RingId id)
{
    switch (id) {
    case RingId::commands: return sizeof(Command);
    case RingId::replies: return sizeof(Reply);
    case RingId::punt:
    case RingId::transmit: return sizeof(Frame);
    }
    return 0;
}

// One element of `esize` bytes, in place, or nullptr when the ring has none
// (dequeue) or no room (enqueue). A single element never wraps.
void* enqueue_start(rte_ring* r, uint32_t esize)
{
    rte_ring_zc_data zcd;
    return rte_ring_enqueue_zc_burst_elem_start(r, esize, 1, &zcd, nullptr) == 1 ? zcd.ptr1 : nullptr;
}

void* dequeue_start(rte_ring* r, uint32_t esize)
{
    rte_ring_zc_data zcd;
    return rte_ring_dequeue_zc_burst_elem_start(r, esize, 1, &zcd, nullptr) == 1 ? zcd.ptr1 : nullptr;
}

} // namespace

void wipe_command(Command& cmd)
{
    if (cmd.type == channel::CommandType::sa_add) wipe_keys(cmd.sa_add.sa);
}

uint64_t DataplaneChannel::monotonic_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

DataplaneChannel::~DataplaneChannel()
{
    detach();
}

bool DataplaneChannel::attach(const std::string& path, uint64_t now_ns, uint64_t max_age_ns, std::string& error)
{
    detach();
    auto fail = [&](std::string why) {
        error = path + ": " + why;
        detach();
        return false;
    };
    path_ = path;
    fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) return fail(std::strerror(errno));
    if (flock(fd_, LOCK_EX | LOCK_NB) != 0)
        return fail(errno == EWOULDBLOCK ? "another ravelin-iked is attached to this data plane"
                                         : std::string("flock: ") + std::strerror(errno));
    struct stat st;
    if (fstat(fd_, &st) != 0) return fail(std::string("fstat: ") + std::strerror(errno));
    if (std::size_t(st.st_size) < sizeof(channel::Header)) return fail("too small to be a channel");
    size_ = std::size_t(st.st_size);
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    base_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (base_ == MAP_FAILED) {
        base_ = nullptr;
        return fail(std::string("mmap: ") + std::strerror(errno));
    }
    auto* h = static_cast<channel::Header*>(base_);
    if (h->magic != channel::magic) return fail("not a Ravelin channel (bad magic)");
    if (h->version != channel::version || h->header_size != sizeof(channel::Header))
        return fail("channel version " + std::to_string(h->version) + ", this ravelin-iked speaks " +
                    std::to_string(channel::version) + ": data plane and control plane are from different builds");
    if (h->total_size != size_) return fail("size in the header does not match the file");
    for (unsigned i = 0; i < channel::ring_count; ++i) {
        const channel::RingInfo& ri = h->rings[i];
        uint32_t want = element_size(RingId(i));
        uint64_t bytes = sizeof(rte_ring) + uint64_t(ri.count) * ri.element_size;
        if (ri.element_size != want || ri.count == 0 || (ri.count & (ri.count - 1)) != 0 || ri.offset % 64 != 0 ||
            ri.offset < sizeof(channel::Header) || ri.offset + bytes > size_)
            return fail("ring " + std::to_string(i) + " is malformed");
        auto* r = reinterpret_cast<rte_ring*>(static_cast<uint8_t*>(base_) + ri.offset);
        if (r->size != ri.count || r->mask != ri.count - 1) return fail("ring " + std::to_string(i) + " is malformed");
        rings_[i] = r;
    }
    uint64_t beat = h->heartbeat_ns.load(std::memory_order_acquire);
    if (beat + max_age_ns < now_ns) return fail("the data plane is not running (stale heartbeat)");

    // We are the only control plane (flock). A killed predecessor may have
    // stopped between moving a head and its tail: put our ends back.
    for (RingId id : {RingId::commands, RingId::transmit}) ring(id)->prod.head = ring(id)->prod.tail;
    for (RingId id : {RingId::replies, RingId::punt}) ring(id)->cons.head = ring(id)->cons.tail;
    header_ = h;
    instance_ = h->instance;
    header_->control_pid.store(uint32_t(getpid()), std::memory_order_release);
    return true;
}

void DataplaneChannel::detach()
{
    for (auto& c : queue_) wipe_command(c);
    queue_.clear();
    if (header_) header_->control_pid.store(0, std::memory_order_release);
    header_ = nullptr;
    std::fill(std::begin(rings_), std::end(rings_), nullptr);
    if (base_) munmap(base_, size_);
    base_ = nullptr;
    size_ = 0;
    if (fd_ >= 0) ::close(fd_);   // also releases the flock
    fd_ = -1;
    instance_ = 0;
}

uint32_t DataplaneChannel::dataplane_pid() const
{
    return header_ ? header_->dataplane_pid : 0;
}

bool DataplaneChannel::alive(uint64_t now_ns, uint64_t max_age_ns, std::string& why) const
{
    if (!header_) {
        why = "not attached";
        return false;
    }
    uint64_t beat = header_->heartbeat_ns.load(std::memory_order_acquire);
    if (beat + max_age_ns < now_ns) {
        why = "no heartbeat for " + std::to_string((now_ns - beat) / 1'000'000) + " ms";
        return false;
    }
    struct stat st;
    if (stat(path_.c_str(), &st) != 0 || st.st_dev != dev_ || st.st_ino != ino_) {
        why = "the channel file was replaced (the data plane restarted)";
        return false;
    }
    return true;
}

uint32_t DataplaneChannel::send(Command& cmd)
{
    cmd.version = channel::version;
    cmd.seq = next_seq_++;
    if (next_seq_ == 0) next_seq_ = 1;
    cmd.sent_ns = monotonic_ns();
    sent_[cmd.seq % sent_.size()] = {cmd.seq, cmd.sent_ns};
    if (queue_.empty() && write_command(cmd)) {
        wipe_command(cmd);
        return cmd.seq;
    }
    if (queue_.size() >= max_queued) {
        ++stats_.commands_dropped;
    } else {
        ++stats_.commands_queued;
        queue_.push_back(cmd);
    }
    wipe_command(cmd);
    return cmd.seq;
}

bool DataplaneChannel::write_command(Command& cmd)
{
    if (!header_) return false;
    void* slot = enqueue_start(ring(RingId::commands), sizeof(Command));
    if (!slot) return false;
    std::memcpy(slot, &cmd, sizeof cmd);
    rte_ring_enqueue_zc_elem_finish(ring(RingId::commands), 1);
    channel::ring_doorbell(*header_);
    ++stats_.commands_sent;
    return true;
}

void DataplaneChannel::flush()
{
    while (!queue_.empty() && write_command(queue_.front())) {
        wipe_command(queue_.front());
        queue_.pop_front();
    }
}

bool DataplaneChannel::transmit(const IpAddress& local, uint16_t local_port, const IpAddress& remote,
                                uint16_t remote_port, ike::ByteView head, ike::ByteView body)
{
    std::size_t len = head.size() + body.size();
    void* slot = header_ && len <= channel::max_frame_payload ? enqueue_start(ring(RingId::transmit), sizeof(Frame))
                                                              : nullptr;
    if (!slot) {
        ++stats_.frames_out_dropped;
        return false;
    }
    auto* f = static_cast<Frame*>(slot);
    f->version = channel::version;
    f->length = uint16_t(len);
    f->local_port = local_port;
    f->remote_port = remote_port;
    f->local = local;
    f->remote = remote;
    if (!head.empty()) std::memcpy(f->payload.data(), head.data(), head.size());
    if (!body.empty()) std::memcpy(f->payload.data() + head.size(), body.data(), body.size());
    rte_ring_enqueue_zc_elem_finish(ring(RingId::transmit), 1);
    channel::ring_doorbell(*header_);
    ++stats_.frames_out;
    return true;
}

unsigned DataplaneChannel::poll_replies(const std::function<void(const Reply&)>& f, unsigned budget)
{
    unsigned n = 0;
    for (; header_ && n < budget; ++n) {
        void* slot = dequeue_start(ring(RingId::replies), sizeof(Reply));
        if (!slot) break;
        const auto* r = static_cast<const Reply*>(slot);
        if (r->version == channel::version) {
            ++stats_.replies;
            f(*r);
        } else {
            ++stats_.bad_messages;
        }
        // f may have detached us (the data plane went away).
        if (!header_) return n + 1;
        rte_ring_dequeue_zc_elem_finish(ring(RingId::replies), 1);
    }
    return n;
}

unsigned DataplaneChannel::poll_frames(const std::function<void(const Frame&)>& f, unsigned budget)
{
    unsigned n = 0;
    for (; header_ && n < budget; ++n) {
        void* slot = dequeue_start(ring(RingId::punt), sizeof(Frame));
        if (!slot) break;
        const auto* fr = static_cast<const Frame*>(slot);
        if (fr->version == channel::version && fr->length <= channel::max_frame_payload) {
            ++stats_.frames_in;
            f(*fr);
        } else {
            ++stats_.bad_messages;
        }
        if (!header_) return n + 1;
        rte_ring_dequeue_zc_elem_finish(ring(RingId::punt), 1);
    }
    return n;
}

} // namespace ravelin::iked

// The channel file: created, sized, mapped and laid out by the data plane.
//
//   offset 0                 Header (magic, version, instance, ring table,
//                            heartbeat and control_pid on their own lines)
//   rings[commands].offset   rte_ring + 1024 Command slots
//   rings[replies].offset    rte_ring + 4096 Reply slots
//   rings[punt].offset       rte_ring + 256 Frame slots
//   rings[transmit].offset   rte_ring + 256 Frame slots
//
// Each ring starts on a cache line (rte_ring_get_memsize_elem sizes are
// cache-line multiples, so aligning the first is enough). The rings are
// single-producer / single-consumer: each end belongs to one process, and
// SP/SC is what the zero-copy peek API needs.
#include "channel.hh"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <new>

#include <rte_ring.h>
#include <rte_ring_elem.h>

namespace ravelin::dp {

namespace {

using namespace ravelin::channel;

static_assert(sizeof(Command) % 4 == 0 && sizeof(Reply) % 4 == 0 && sizeof(Frame) % 4 == 0,
              "rte_ring element sizes must be multiples of 4");

struct RingSpec {
    const char* name;
    uint32_t element_size;
    uint32_t count;
};

constexpr RingSpec ring_specs[ring_count] = {
    {"rvl_ch_commands", sizeof(Command), commands_ring_size},
    {"rvl_ch_replies", sizeof(Reply), replies_ring_size},
    {"rvl_ch_punt", sizeof(Frame), punt_ring_size},
    {"rvl_ch_transmit", sizeof(Frame), transmit_ring_size},
};

constexpr std::size_t align_up(std::size_t v, std::size_t a) { return (v + a - 1) / a * a; }

std::string errno_text(const std::string& what, const std::string& path)
{
    return what + " " + path + ": " + std::strerror(errno);
}

uint64_t random_instance()
{
    uint64_t v = 0;
    while (v == 0)
        if (getrandom(&v, sizeof v, 0) != ssize_t(sizeof v)) v = uint64_t(time(nullptr)) ^ uint64_t(getpid()) << 32;
    return v;
}

} // namespace

uint64_t monotonic_ns() noexcept
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000u + uint64_t(ts.tv_nsec);
}

std::size_t Channel::layout_size() noexcept
{
    std::size_t off = align_up(sizeof(Header), 64);
    for (const RingSpec& s : ring_specs)
        off += align_up(std::size_t(rte_ring_get_memsize_elem(s.element_size, s.count)), 64);
    return align_up(off, 4096);
}

std::unique_ptr<Channel> Channel::create(const std::string& path, unsigned workers, std::string& error)
{
    std::unique_ptr<Channel> ch(new Channel());
    ch->path_ = path;
    if (auto slash = path.rfind('/'); slash != std::string::npos && slash > 0)
        mkdir(path.substr(0, slash).c_str(), 0750);   // /run/ravelin, as for the control socket
    // A file left by a killed instance: a new inode, so a control plane
    // still mapping the old one can never mistake it for this instance.
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
        error = errno_text("cannot remove the stale channel file", path);
        return nullptr;
    }
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        error = errno_text("cannot create the channel file", path);
        return nullptr;
    }
    fchmod(fd, 0600);   // whatever the umask: SA keys cross this file
    ch->size_ = layout_size();
    if (ftruncate(fd, off_t(ch->size_)) != 0) {
        error = errno_text("cannot size the channel file", path);
        close(fd);
        unlink(path.c_str());
        return nullptr;
    }
    void* base = mmap(nullptr, ch->size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);   // the mapping keeps the file; the control plane locks its own descriptor
    if (base == MAP_FAILED) {
        error = errno_text("cannot map the channel file", path);
        unlink(path.c_str());
        return nullptr;
    }
    ch->base_ = base;
    auto* bytes = static_cast<uint8_t*>(base);
    Header* h = new (base) Header();
    h->version = channel::version;
    h->header_size = uint16_t(sizeof(Header));
    h->total_size = ch->size_;
    h->instance = random_instance();
    h->dataplane_pid = uint32_t(getpid());
    h->workers = workers;
    std::size_t off = align_up(sizeof(Header), 64);
    for (unsigned i = 0; i < ring_count; ++i) {
        const RingSpec& s = ring_specs[i];
        auto* r = reinterpret_cast<rte_ring*>(bytes + off);
        if (rte_ring_init(r, s.name, s.count, RING_F_SP_ENQ | RING_F_SC_DEQ) != 0) {
            error = std::string("cannot initialise channel ring ") + s.name;
            return nullptr;   // the destructor unmaps and unlinks
        }
        h->rings[i] = RingInfo{off, s.element_size, s.count};
        ch->rings_[i] = r;
        off += align_up(std::size_t(rte_ring_get_memsize_elem(s.element_size, s.count)), 64);
    }
    h->heartbeat_ns.store(monotonic_ns(), std::memory_order_relaxed);
    // The magic last: a reader that sees it sees a complete layout.
    std::atomic_thread_fence(std::memory_order_release);
    h->magic = channel::magic;
    ch->header_ = h;
    return ch;
}

Channel::~Channel()
{
    if (base_) {
        // A control plane still mapping the file sees the heartbeat stop.
        munmap(base_, size_);
        unlink(path_.c_str());
    }
}

} // namespace ravelin::dp

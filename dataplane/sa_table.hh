// The SA table: slots of DpSa pointers, plus an SPI hash for inbound SAs.
//
// One writer (the main lcore, under `writer_lock()`), many RCU readers (the
// workers). Publication is a release store of the slot pointer after the SA
// is fully built; removal stores nullptr and retires the old SA with an RCU
// token (rte_rcu_qsbr_start). reclaim(), called on every main-loop pass,
// frees retired SAs (and wipes their keys) once every worker has passed a
// quiescent point since (rte_rcu_qsbr_check, non-blocking): the writer never
// waits for the workers, so a rekey costs the main lcore microseconds even
// when a worker is slow to report.
// Outbound SAs are reached through the SPD entry's slot, so a rekey can swap
// the SA in a slot without rebuilding the SPD; inbound SAs through the SPI.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "sa.hh"

struct rte_hash;
struct rte_rcu_qsbr;

namespace ravelin::dp {

inline constexpr uint32_t no_slot = UINT32_MAX;

class SaTable {
public:
    static std::unique_ptr<SaTable> create(const std::string& name, uint32_t capacity, rte_rcu_qsbr* rcu);
    ~SaTable();
    SaTable(const SaTable&) = delete;
    SaTable& operator=(const SaTable&) = delete;

    // --- workers (inside an RCU read-side section) ------------------------
    DpSa* get(uint32_t slot) const noexcept
    {
        return slot < capacity_ ? slots_[slot].load(std::memory_order_acquire) : nullptr;
    }
    // For n <= 64 SPIs in network byte order: the inbound SA or nullptr.
    void lookup_inbound(const uint32_t* const* spi_be, uint32_t n, DpSa** out) const noexcept;

    // --- main lcore ---------------------------------------------------------
    // Take ownership of `sa` and publish it in a free, unreserved slot (and,
    // for inbound SAs, under its SPI). Returns the slot, or no_slot if the
    // table is full or an inbound SA with that SPI exists.
    uint32_t install(DpSa* sa);
    // Set an empty slot aside (an outbound SA's reqid slot, which policies
    // name before the SA exists): install() never takes it; replace() fills
    // it. Returns no_slot if the table is full.
    uint32_t reserve();
    // Give a reserved slot back (it must be empty, or be emptied later).
    void release(uint32_t slot);
    // Publish `sa` in `slot`, replacing what is there (outbound rekey);
    // the old SA is freed after a grace period.
    bool replace(uint32_t slot, DpSa* sa);
    // Unpublish and free after a grace period.
    void remove(uint32_t slot);
    // Frees what was retired before every worker's last quiescent point;
    // returns how many SAs are still waiting. Main lcore; takes the writer
    // lock, so a reader walking the table and the retired SAs under it sees
    // each SA exactly once, live, retired or handed to on_free.
    std::size_t reclaim();
    // Called (main lcore, writer lock held) with each SA just before it is
    // freed: its counters are final then.
    void on_free(std::function<void(const DpSa&)> f) { on_free_ = std::move(f); }
    std::size_t retired() const noexcept { return retired_.size(); }
    // Each SA unpublished but not freed yet: packets in flight during its
    // grace period still move its counters. Writer lock held.
    template <typename F>
    void for_each_retired(F&& f) const
    {
        for (const Retired& r : retired_) f(*r.sa);
    }
    // Slot of the SA with this SPI and direction, or no_slot (linear; main lcore only).
    uint32_t find(Spi spi, SaDirection dir) const;

    uint32_t capacity() const noexcept { return capacity_; }
    // Held by the writer while it changes the table, and by readers that are
    // not RCU-registered (the telemetry thread) while they walk it.
    std::mutex& writer_lock() noexcept { return lock_; }

private:
    SaTable() = default;
    void retire(DpSa* old, int32_t key_position);
    struct Retired {
        DpSa* sa;
        int32_t key_position;   // in the SPI hash, or -1
        uint64_t token;         // rte_rcu_qsbr_start() when retired
    };
    std::deque<Retired> retired_;
    std::function<void(const DpSa&)> on_free_;

    rte_hash* spi_hash_ = nullptr;
    rte_rcu_qsbr* rcu_ = nullptr;
    std::unique_ptr<std::atomic<DpSa*>[]> slots_;
    std::unique_ptr<bool[]> reserved_;   // main lcore only
    uint32_t capacity_ = 0;
    std::mutex lock_;
};

} // namespace ravelin::dp

// SA table: RCU-published slots and the inbound SPI hash.
#include "sa_table.hh"

#include <algorithm>

#include <rte_hash.h>
#include <rte_jhash.h>
#include <rte_rcu_qsbr.h>

namespace ravelin::dp {

std::unique_ptr<SaTable> SaTable::create(const std::string& name, uint32_t capacity, rte_rcu_qsbr* rcu)
{
    std::unique_ptr<SaTable> t(new SaTable());
    rte_hash_parameters p{};
    p.name = name.c_str();
    p.entries = std::max<uint32_t>(capacity, 8);   // rte_hash's minimum
    p.key_len = sizeof(uint32_t);
    p.hash_func = rte_jhash;
    p.socket_id = SOCKET_ID_ANY;
    // Lock-free readers. With this flag a deleted key's position is not
    // reused until we free it ourselves after the grace period.
    p.extra_flag = RTE_HASH_EXTRA_FLAGS_RW_CONCURRENCY_LF;
    t->spi_hash_ = rte_hash_create(&p);
    if (!t->spi_hash_) return nullptr;
    t->rcu_ = rcu;
    t->capacity_ = capacity;
    t->slots_ = std::make_unique<std::atomic<DpSa*>[]>(capacity);
    for (uint32_t i = 0; i < capacity; ++i) t->slots_[i].store(nullptr, std::memory_order_relaxed);
    t->reserved_ = std::make_unique<bool[]>(capacity);   // value-initialised: false
    return t;
}

SaTable::~SaTable()
{
    // The workers are stopped by now (offline readers are not waited for).
    if (!retired_.empty()) rte_rcu_qsbr_synchronize(rcu_, RTE_QSBR_THRID_INVALID);
    for (const Retired& r : retired_) sa_free(r.sa);
    for (uint32_t i = 0; i < capacity_; ++i) sa_free(slots_[i].exchange(nullptr));
    rte_hash_free(spi_hash_);
}

void SaTable::lookup_inbound(const uint32_t* const* spi_be, uint32_t n, DpSa** out) const noexcept
{
    void* data[RTE_HASH_LOOKUP_BULK_MAX];
    uint64_t hits = 0;
    rte_hash_lookup_bulk_data(spi_hash_, reinterpret_cast<const void**>(const_cast<const uint32_t**>(spi_be)),
                              n, &hits, data);
    for (uint32_t i = 0; i < n; ++i)
        out[i] = (hits >> i & 1) ? get(uint32_t(uintptr_t(data[i]))) : nullptr;
}

uint32_t SaTable::install(DpSa* sa)
{
    uint32_t slot = 0;
    while (slot < capacity_ && (slots_[slot].load(std::memory_order_relaxed) != nullptr || reserved_[slot])) ++slot;
    if (slot == capacity_) return no_slot;
    // rte_hash_add_key_data() would silently re-point an existing key.
    if (sa->direction == SaDirection::inbound && rte_hash_lookup(spi_hash_, &sa->spi_be) >= 0) return no_slot;
    sa->slot = slot;
    // Publish the SA before its SPI: a reader that finds the key finds the SA.
    slots_[slot].store(sa, std::memory_order_release);
    if (sa->direction == SaDirection::inbound &&
        rte_hash_add_key_data(spi_hash_, &sa->spi_be, reinterpret_cast<void*>(uintptr_t(slot))) < 0) {
        slots_[slot].store(nullptr, std::memory_order_release);
        return no_slot;
    }
    return slot;
}

uint32_t SaTable::reserve()
{
    for (uint32_t slot = 0; slot < capacity_; ++slot)
        if (!reserved_[slot] && slots_[slot].load(std::memory_order_relaxed) == nullptr) {
            reserved_[slot] = true;
            return slot;
        }
    return no_slot;
}

void SaTable::release(uint32_t slot)
{
    if (slot < capacity_) reserved_[slot] = false;
}

void SaTable::retire(DpSa* old, int32_t key_position)
{
    if (!old) return;
    // Freed by reclaim() once no worker can still hold `old` (or the hash
    // position).
    retired_.push_back({old, key_position, rte_rcu_qsbr_start(rcu_)});
}

std::size_t SaTable::reclaim()
{
    std::lock_guard lock(lock_);
    // Tokens grow: the first one not yet safe ends the walk.
    while (!retired_.empty() && rte_rcu_qsbr_check(rcu_, retired_.front().token, false) == 1) {
        const Retired& r = retired_.front();
        if (r.key_position >= 0) rte_hash_free_key_with_position(spi_hash_, r.key_position);
        if (on_free_) on_free_(*r.sa);
        sa_free(r.sa);
        retired_.pop_front();
    }
    return retired_.size();
}

bool SaTable::replace(uint32_t slot, DpSa* sa)
{
    if (slot >= capacity_) return false;
    DpSa* old = slots_[slot].load(std::memory_order_relaxed);
    if (old && old->direction == SaDirection::inbound) return false;   // inbound: install + remove
    sa->slot = slot;
    slots_[slot].store(sa, std::memory_order_release);
    retire(old, -1);
    return true;
}

void SaTable::remove(uint32_t slot)
{
    if (slot >= capacity_) return;
    DpSa* old = slots_[slot].load(std::memory_order_relaxed);
    if (!old) return;
    int32_t pos = -1;
    if (old->direction == SaDirection::inbound) pos = rte_hash_del_key(spi_hash_, &old->spi_be);
    slots_[slot].store(nullptr, std::memory_order_release);
    retire(old, pos);
}

uint32_t SaTable::find(Spi spi, SaDirection dir) const
{
    for (uint32_t i = 0; i < capacity_; ++i) {
        DpSa* sa = slots_[i].load(std::memory_order_relaxed);
        if (sa && sa->spi == spi && sa->direction == dir) return i;
    }
    return no_slot;
}

} // namespace ravelin::dp

#include "flow_cache.hh"

#include <rte_malloc.h>

namespace ravelin::dp {

FlowCache::~FlowCache() { rte_free(sets_); }

bool FlowCache::init(unsigned log2_sets, uint64_t seed, int socket) noexcept
{
    rte_free(sets_);
    sets_ = nullptr;
    mask_ = 0;
    if (log2_sets > max_log2_sets) return false;
    const uint32_t n = uint32_t(1) << log2_sets;
    // Zeroed: generation 0 marks every entry empty.
    // On the worker's node if it has the memory, else on any: with
    // hugepages DPDK does not fall back from a named socket by itself
    // (hugepages reserved on one node only). Not covered by the unit tests,
    // whose EAL runs without hugepages, where DPDK takes any socket anyway.
    for (int s : {socket, int(SOCKET_ID_ANY)}) {
        sets_ = static_cast<Set*>(rte_zmalloc_socket("ravelin_flow_cache", n * sizeof(Set), alignof(Set), s));
        if (sets_ || s == SOCKET_ID_ANY) break;
    }
    mask_ = sets_ ? n - 1 : 0;
    seed_ = seed;
    return sets_ != nullptr;
}

} // namespace ravelin::dp

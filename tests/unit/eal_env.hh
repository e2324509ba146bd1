// Test environment: one DPDK EAL per test binary, without hugepages or PCI,
// so tests can make mbufs, rings, ACL and LPM tables like the data plane.
// Include from exactly the tests that need it; call ravelin::test::eal() at
// the top of each such test (it initialises once). A benchmark may ask for
// 2 MiB hugepages on its first call, as the data plane runs: without them
// every 4 KiB page of a large table costs TLB misses the gateway does not
// pay.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

namespace ravelin::test {

inline void eal(bool hugepages = false)
{
    static bool done = [hugepages] {
        std::string prefix = "--file-prefix=rvl-test-" + std::to_string(::getpid());
        // --in-memory: the hugepages are not backed by files, so a killed
        // benchmark leaves none behind.
        const char* argv[] = {"test",      hugepages ? "--in-memory" : "--no-huge",
                              "--no-pci",  "-m",                 "512",
                              "--no-telemetry", "-l",            "0",
                              "--log-level=lib.eal:error",       prefix.c_str()};
        int argc = int(sizeof(argv) / sizeof(argv[0]));
        if (rte_eal_init(argc, const_cast<char**>(argv)) < 0) {
            std::fprintf(stderr, "rte_eal_init failed: %s%s\n", rte_strerror(rte_errno),
                         hugepages ? " (with hugepages: are 512 MiB of 2 MiB pages free?)" : "");
            std::abort();
        }
        // The runtime directory (/var/run/dpdk/<prefix>) is per test
        // process; remove it at exit so test runs leave nothing behind.
        static std::string runtime_dir = rte_eal_get_runtime_dir();
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(runtime_dir, ec);
        });
        return true;
    }();
    (void)done;
}

// A pool of 2 KiB-data-room mbufs with the standard 128 B headroom.
inline rte_mempool* test_pool()
{
    eal();
    static rte_mempool* pool =
        rte_pktmbuf_pool_create("rvl_test_pool", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (!pool) std::abort();
    return pool;
}

} // namespace ravelin::test

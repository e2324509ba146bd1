// SA table (dataplane/sa_table.hh): install, SPI lookup, and RCU retirement
// under a concurrent reader.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include "eal_env.hh"
#include "sa_table.hh"

namespace ravelin::dp {
namespace {

struct Rcu {
    rte_rcu_qsbr* v;
    explicit Rcu(unsigned threads)
    {
        v = static_cast<rte_rcu_qsbr*>(rte_zmalloc(nullptr, rte_rcu_qsbr_get_memsize(threads), 64));
        rte_rcu_qsbr_init(v, threads);
    }
    ~Rcu() { rte_free(v); }
};

struct Mgr {
    IMB_MGR* m = crypto_manager_create();
    ~Mgr() { crypto_manager_free(m); }
};

DpSa* make_sa(IMB_MGR* mgr, uint32_t spi, SaDirection dir)
{
    SaDescriptor d;
    d.spi = Spi(spi);
    d.direction = dir;
    d.cipher = EspCipher::aes_gcm16;
    d.cipher_key_len = 16;
    for (unsigned i = 0; i < 20; ++i) d.cipher_key[i] = uint8_t(0x5a);
    d.local = IpAddress::v4(0xc6120001);
    d.remote = IpAddress::v4(0xc6120002);
    const char* why = nullptr;
    DpSa* sa = sa_create(mgr, d, 1500, WorkerId(0), &why);
    EXPECT_NE(sa, nullptr) << why;
    return sa;
}

TEST(SaTable, InstallFindAndInboundLookup)
{
    test::eal();
    Rcu rcu(1);
    Mgr mgr;
    auto t = SaTable::create("sat_1", 16, rcu.v);
    ASSERT_TRUE(t);
    uint32_t in = t->install(make_sa(mgr.m, 0x1000, SaDirection::inbound));
    uint32_t out = t->install(make_sa(mgr.m, 0x1000, SaDirection::outbound));
    ASSERT_NE(in, no_slot);
    ASSERT_NE(out, no_slot);
    EXPECT_NE(in, out);
    EXPECT_EQ(t->find(Spi(0x1000), SaDirection::inbound), in);
    EXPECT_EQ(t->find(Spi(0x1000), SaDirection::outbound), out);
    EXPECT_EQ(t->get(in)->slot, in);

    uint32_t spi_be[2] = {rte_cpu_to_be_32(0x1000), rte_cpu_to_be_32(0x2000)};
    const uint32_t* keys[2] = {&spi_be[0], &spi_be[1]};
    DpSa* found[2];
    t->lookup_inbound(keys, 2, found);
    EXPECT_EQ(found[0], t->get(in));
    EXPECT_EQ(found[1], nullptr);

    DpSa* dup = make_sa(mgr.m, 0x1000, SaDirection::inbound);
    EXPECT_EQ(t->install(dup), no_slot) << "two inbound SAs with one SPI";
    sa_free(dup);

    t->remove(in);
    t->lookup_inbound(keys, 1, found);
    EXPECT_EQ(found[0], nullptr);
    EXPECT_EQ(t->get(in), nullptr);
}

// A reader keeps dereferencing whatever SA is in the slot while the writer
// replaces it thousands of times. sa_free() wipes the keys, so a reader that
// could see a freed SA would find the salt zeroed (and ASan/valgrind would
// flag the use after free).
TEST(SaTable, ReplaceWaitsForReaders)
{
    test::eal();
    Rcu rcu(1);
    Mgr mgr;
    auto t = SaTable::create("sat_2", 4, rcu.v);
    uint32_t slot = t->install(make_sa(mgr.m, 7, SaDirection::outbound));
    ASSERT_NE(slot, no_slot);
    std::atomic<bool> stop{false}, online{false};
    std::atomic<uint64_t> reads{0}, bad{0};
    std::thread reader([&] {
        rte_rcu_qsbr_thread_register(rcu.v, 0);
        rte_rcu_qsbr_thread_online(rcu.v, 0);
        online.store(true);
        while (!stop.load()) {
            // Like a worker over one burst: keep the pointer for a while,
            // re-reading the SA, then report a quiescent state.
            const DpSa* sa = t->get(slot);
            for (int i = 0; i < 256; ++i) {
                if (!sa || reinterpret_cast<const volatile uint8_t*>(sa->xform.salt)[0] != 0x5a) bad.fetch_add(1);
                reads.fetch_add(1, std::memory_order_relaxed);
            }
            rte_rcu_qsbr_quiescent(rcu.v, 0);
        }
        rte_rcu_qsbr_thread_offline(rcu.v, 0);
        rte_rcu_qsbr_thread_unregister(rcu.v, 0);
    });
    // Only a registered, online reader is waited for: start replacing once
    // it is. Each replace then waits for the reader's next quiescent state,
    // so the reader runs alongside every one of them.
    while (!online.load()) std::this_thread::yield();
    constexpr uint32_t replaced = 2000;
    for (uint32_t i = 0; i < replaced; ++i)
        ASSERT_TRUE(t->replace(slot, make_sa(mgr.m, 8 + i, SaDirection::outbound)));
    stop.store(true);
    reader.join();
    EXPECT_GE(reads.load(), uint64_t(replaced)) << "the reader must have run alongside the writer";
    EXPECT_EQ(bad.load(), 0u);
    EXPECT_EQ(t->get(slot)->spi.value, 8u + replaced - 1);
    // With the reader offline nothing holds an old SA: all of them go.
    EXPECT_EQ(t->reclaim(), 0u);
}

// Retiring never blocks the writer: while the reader has not reported a
// quiescent state since, the old SA waits (keys intact); after it has, the
// next reclaim() frees it.
TEST(SaTable, RetiredSasWaitForTheReadersWithoutBlockingTheWriter)
{
    test::eal();
    Rcu rcu(1);
    Mgr mgr;
    auto t = SaTable::create("sat_3", 4, rcu.v);
    uint32_t slot = t->install(make_sa(mgr.m, 7, SaDirection::outbound));
    ASSERT_NE(slot, no_slot);
    rte_rcu_qsbr_thread_register(rcu.v, 0);
    rte_rcu_qsbr_thread_online(rcu.v, 0);
    std::vector<uint32_t> freed;
    bool locked_in_on_free = false;
    t->on_free([&](const DpSa& sa) {
        freed.push_back(sa.spi.value);
        // Held by reclaim(): another thread cannot take it now.
        locked_in_on_free = !std::async(std::launch::async, [&] {
                                 bool got = t->writer_lock().try_lock();
                                 if (got) t->writer_lock().unlock();
                                 return got;
                             }).get();
    });
    auto retired_spis = [&] {
        std::vector<uint32_t> v;
        std::lock_guard lock(t->writer_lock());
        t->for_each_retired([&](const DpSa& sa) { v.push_back(sa.spi.value); });
        return v;
    };
    const DpSa* held = t->get(slot);                    // the "worker" holds it
    ASSERT_TRUE(t->replace(slot, make_sa(mgr.m, 8, SaDirection::outbound)));   // returns at once
    EXPECT_EQ(t->retired(), 1u);
    EXPECT_EQ(t->reclaim(), 1u);                        // no quiescent state yet
    EXPECT_EQ(held->xform.salt[0], 0x5a);                // still intact
    // Out of the table, not freed: a reader still finds it among the retired.
    EXPECT_EQ(retired_spis(), std::vector<uint32_t>{7});
    EXPECT_TRUE(freed.empty());
    rte_rcu_qsbr_quiescent(rcu.v, 0);
    EXPECT_EQ(t->reclaim(), 0u);
    EXPECT_EQ(freed, std::vector<uint32_t>{7});
    EXPECT_TRUE(locked_in_on_free) << "on_free runs under the writer lock";
    EXPECT_TRUE(retired_spis().empty());
    t->remove(slot);
    EXPECT_EQ(t->retired(), 1u);
    rte_rcu_qsbr_quiescent(rcu.v, 0);
    EXPECT_EQ(t->reclaim(), 0u);
    rte_rcu_qsbr_thread_offline(rcu.v, 0);
    rte_rcu_qsbr_thread_unregister(rcu.v, 0);
}

} // namespace
} // namespace ravelin::dp

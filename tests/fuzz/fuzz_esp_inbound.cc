// libFuzzer target: the data plane's receive path on the unprotected port.
//
// The first input byte picks a mode:
//   even: the rest is a raw Ethernet frame (classification, IP checks, SPI
//         lookup, replay pre-check, ICV rejection); unless bit 1 is set its
//         destination MAC is overwritten with the gateway's, so mutations
//         get past the "addressed to us" check;
//   odd:  the rest is the *decrypted content* of an ESP packet for the
//         fixture's inbound SA: payload, padding, pad length and next header
//         as the fuzzer likes. The harness seals it with the peer's key and
//         a fresh sequence number, so the ICV verifies and the fuzzer
//         reaches the trailer, padding and inner-packet parsing behind it.
// Either way the worker must drop or forward without crashing, and every
// mbuf must come back to the pool.
#include <cstdint>
#include <cstring>
#include <memory>

#include <rte_ether.h>
#include <rte_ip.h>

#include "../unit/dp_fixture.hh"
#include "esp.hh"

namespace {

using namespace ravelin;
using namespace ravelin::dp;

struct Harness {
    test::DataplaneFixture fixture{"fuzz"};
    IMB_MGR* mgr = crypto_manager_create();
    DpSa* peer_out = nullptr;
    uint64_t seq = 0;

    Harness() { peer_out = test::fixture_peer_sa(mgr, 0x2002, SaDirection::outbound); }

    rte_mbuf* frame(const uint8_t* data, size_t size, bool keep_mac)
    {
        rte_mbuf* m = rte_pktmbuf_alloc(fixture.dp->pool());
        if (!m) std::abort();
        size = std::min<size_t>(size, rte_pktmbuf_tailroom(m));
        auto* p = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(size)));
        std::memcpy(p, data, size);
        if (!keep_mac && size >= 6)
            std::memcpy(p, fixture.dp->shared().ports[fixture.outside.id].mac.addr_bytes, 6);
        return m;
    }

    //  | Ethernet | IPv4 (peer -> gw, proto 50) | SPI | Seq | IV | fuzz bytes | ICV |
    rte_mbuf* sealed(const uint8_t* data, size_t size)
    {
        constexpr size_t hdr = 14 + 20 + 8 + 8, icv = 16;
        size = std::min<size_t>(size, 1400);
        rte_mbuf* m = rte_pktmbuf_alloc(fixture.dp->pool());
        if (!m) std::abort();
        auto* p = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, uint16_t(hdr + size + icv)));
        std::memset(p, 0, hdr);
        auto* eth = reinterpret_cast<rte_ether_hdr*>(p);
        eth->dst_addr = fixture.dp->shared().ports[fixture.outside.id].mac;
        eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
        auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
        ip->version_ihl = 0x45;
        ip->time_to_live = 64;
        ip->next_proto_id = 50;
        ip->total_length = rte_cpu_to_be_16(uint16_t(20 + 16 + size + icv));
        ip->src_addr = rte_cpu_to_be_32(0xc6120002);
        ip->dst_addr = rte_cpu_to_be_32(0xc6120001);
        ip->hdr_checksum = rte_ipv4_cksum(ip);
        uint8_t* esp = p + 14 + 20;
        uint64_t s = ++seq;
        uint32_t spi = rte_cpu_to_be_32(0x2002), lo = rte_cpu_to_be_32(uint32_t(s));
        std::memcpy(esp, &spi, 4);
        std::memcpy(esp + 4, &lo, 4);
        std::memcpy(esp + 16, data, size);
        peer_out->xform.seal(mgr, peer_out->xform, peer_out->keys, esp, uint32_t(16 + size), uint32_t(s >> 32));
        return m;
    }

    void run(rte_mbuf* m)
    {
        fixture.outside.inject(0, m);
        fixture.poll_all(2);
        fixture.dp->housekeeping();   // may answer or solicit ...
        fixture.poll_all(1);          // ... which worker 0 then sends
        for (auto* port : {&fixture.inside, &fixture.outside})
            for (unsigned q = 0; q < test::ring_queues; ++q)
                for (rte_mbuf* out : port->take(q)) rte_pktmbuf_free(out);
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    static Harness* h = new Harness();   // one EAL per process; never torn down
    if (size < 1) return 0;
    unsigned before = rte_mempool_avail_count(h->fixture.dp->pool());
    h->run(data[0] & 1 ? h->sealed(data + 1, size - 1) : h->frame(data + 1, size - 1, data[0] & 2));
    // Nothing may be lost: every mbuf is back (forwarded frames were freed
    // above, dropped ones by the worker; ARP/ND replies went out and were freed).
    if (rte_mempool_avail_count(h->fixture.dp->pool()) != before) std::abort();
    return 0;
}

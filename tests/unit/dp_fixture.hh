// A whole Dataplane in-process, on net_ring ports, driven by hand: the test
// puts frames on a port's RX rings, calls poll_once() on the workers it
// wants to run, and takes what they sent off the TX rings. No threads, no
// namespaces, fully deterministic. Shared by worker_test and the inbound
// fuzz target.
#pragma once

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <rte_ethdev.h>
#include <rte_eth_ring.h>
#include <rte_ip.h>
#include <rte_rcu_qsbr.h>
#include <rte_udp.h>

#include "config.hh"
#include "dataplane.hh"
#include "eal_env.hh"

namespace ravelin::test {

inline constexpr unsigned ring_queues = 2;

// One ring-backed ethdev with `ring_queues` RX and TX rings.
struct RingPort {
    std::string name;     // ethdev name: rte_eth_from_rings() prefixes "net_ring_"
    rte_ring* rx[ring_queues]{};
    rte_ring* tx[ring_queues]{};
    uint16_t id = 0;

    explicit RingPort(const std::string& n) : name("net_ring_" + n)
    {
        for (unsigned q = 0; q < ring_queues; ++q) {
            rx[q] = rte_ring_create((n + "_rx" + std::to_string(q)).c_str(), 4096, SOCKET_ID_ANY, 0);
            tx[q] = rte_ring_create((n + "_tx" + std::to_string(q)).c_str(), 4096, SOCKET_ID_ANY, 0);
        }
        int rc = rte_eth_from_rings(n.c_str(), rx, ring_queues, tx, ring_queues, SOCKET_ID_ANY);
        if (rc < 0) std::abort();
        id = uint16_t(rc);
    }
    void inject(unsigned q, rte_mbuf* m) const
    {
        if (rte_ring_enqueue(rx[q], m) != 0) std::abort();
    }
    std::vector<rte_mbuf*> take(unsigned q) const
    {
        std::vector<rte_mbuf*> out;
        void* obj;
        while (rte_ring_dequeue(tx[q], &obj) == 0) out.push_back(static_cast<rte_mbuf*>(obj));
        return out;
    }
};

// 32-byte AES-256 key + 4-byte salt, as hex, for the fixture's SAs.
inline const char* fixture_key = "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
                                 "a0a1a2a3";

// `dataplane_keys`: more lines for the [dataplane] table; `inside_keys`,
// `outside_keys`: for the [[port]] tables.
inline std::string fixture_config(const std::string& in_dev, const std::string& out_dev, unsigned window = 1024,
                                  const std::string& dataplane_keys = "", const std::string& inside_keys = "",
                                  const std::string& outside_keys = "")
{
    std::string w = std::to_string(window);
    return std::string(R"([dataplane]
lcores = "0,1,2"
file_prefix = "rvl-fixture"
)") + dataplane_keys + R"(

[[port]]
name = "inside"
role = "protected"
device = ")" + in_dev + R"("
address = ["198.18.1.1/24", "2001:db8:1::1/64"]
)" + inside_keys + R"(

[[port]]
name = "outside"
role = "unprotected"
device = ")" + out_dev + R"("
address = ["198.18.0.1/24", "2001:db8::1/64"]
)" + outside_keys + R"(

[[sa]]
spi = 0x1001
direction = "out"
encryption = "aes256gcm16"
key = ")" + fixture_key + R"("
local = "198.18.0.1"
remote = "198.18.0.2"
esn = true
replay_window = )" + w + R"(
worker = 1

[[sa]]
spi = 0x2002
direction = "in"
encryption = "aes256gcm16"
key = ")" + fixture_key + R"("
local = "198.18.0.1"
remote = "198.18.0.2"
esn = true
replay_window = )" + w + R"(
worker = 0

[[policy]]
direction = "out"
local = "198.18.1.0/24"
remote = "198.18.2.0/24"
action = "protect"
sa = 0x1001

[[policy]]
direction = "in"
local = "198.18.1.0/24"
remote = "198.18.2.0/24"
action = "protect"
sa = 0x2002
)";
}

inline constexpr uint32_t fixture_gw_outside = 0xc6120001;   // 198.18.0.1
inline constexpr uint32_t fixture_peer = 0xc6120002;         // 198.18.0.2

// An ESN tunnel SA with the fixture's AES-256-GCM key and salt
// (fixture_key), from `local` to `remote`.
inline SaDescriptor fixture_sa_descriptor(uint32_t spi, SaDirection dir, uint32_t local, uint32_t remote)
{
    SaDescriptor d;
    d.spi = Spi(spi);
    d.direction = dir;
    d.cipher = EspCipher::aes_gcm16;
    d.cipher_key_len = 32;
    for (unsigned i = 0; i < 32; ++i) d.cipher_key[i] = uint8_t(i);
    for (unsigned i = 0; i < 4; ++i) d.cipher_key[32 + i] = uint8_t(0xa0 + i);
    d.local = IpAddress::v4(local);
    d.remote = IpAddress::v4(remote);
    d.esn = true;
    return d;
}

// An SA of the fixture's far end (the mirror of the gateway's SAs): same
// AES-256-GCM key and salt as fixture_key, tunnel peer <-> gateway.
inline dp::DpSa* fixture_peer_sa(IMB_MGR* mgr, uint32_t spi, SaDirection dir, bool esn = true,
                                 uint16_t window = 1024, uint16_t mtu = 1500)
{
    SaDescriptor d = fixture_sa_descriptor(spi, dir, fixture_peer, fixture_gw_outside);
    d.esn = esn;
    d.replay_window = window;
    const char* why = "?";
    dp::DpSa* sa = dp::sa_create(mgr, d, mtu, WorkerId(0), &why);
    if (!sa) {
        std::fprintf(stderr, "fixture_peer_sa: %s\n", why);
        std::abort();
    }
    return sa;
}

// The gateway of fixture_config() with both neighbours already resolved.
struct DataplaneFixture {
    RingPort inside;
    RingPort outside;
    std::unique_ptr<dp::Dataplane> dp;
    rte_ether_addr host_mac{{0x02, 0, 0, 0, 0, 0x02}};
    rte_ether_addr peer_mac{{0x02, 0, 0, 0, 0, 0x03}};

    // `extra` is appended to the config (more [[policy]] or [[sa]] tables);
    // the others go into its [dataplane] and [[port]] tables.
    explicit DataplaneFixture(const std::string& tag, unsigned window = 1024, const std::string& extra = "",
                              const std::string& dataplane_keys = "", const std::string& inside_keys = "",
                              const std::string& outside_keys = "")
        : inside((eal(), "rvl_in_" + tag)), outside("rvl_out_" + tag)
    {
        auto cfg = dp::parse_config(fixture_config(inside.name, outside.name, window, dataplane_keys, inside_keys, outside_keys) +
                                        extra,
                                    "fixture.toml");
        if (!cfg) {
            std::fprintf(stderr, "%s\n", cfg.error().to_string().c_str());
            std::abort();
        }
        std::string error;
        dp = dp::Dataplane::create(cfg.value(), error);
        if (!dp) {
            std::fprintf(stderr, "Dataplane::create: %s\n", error.c_str());
            std::abort();
        }
        auto& s = dp->shared();
        for (unsigned w = 0; w < s.workers; ++w) {
            rte_rcu_qsbr_thread_register(s.rcu, w);
            rte_rcu_qsbr_thread_online(s.rcu, w);
        }
        s.neighbors->add(IpAddress::v4(0xc6120102), inside.id, host_mac);   // 198.18.1.2
        s.neighbors->add(IpAddress::v4(0xc6120002), outside.id, peer_mac);  // 198.18.0.2
    }
    ~DataplaneFixture()
    {
        auto& s = dp->shared();
        for (unsigned w = 0; w < s.workers; ++w) {
            rte_rcu_qsbr_thread_offline(s.rcu, w);
            rte_rcu_qsbr_thread_unregister(s.rcu, w);
        }
    }
    void poll_all(unsigned rounds = 4)
    {
        for (unsigned r = 0; r < rounds; ++r)
            for (unsigned w = 0; w < dp->shared().workers; ++w) dp->worker(w).poll_once();
    }
    uint64_t drops(dp::DropReason r) const
    {
        uint64_t n = 0;
        for (unsigned w = 0; w < dp->shared().workers; ++w) n += dp->worker(w).counters().drops[size_t(r)].get();
        return n;
    }
};

// Ethernet + IPv4 + UDP frame carrying `payload` bytes whose first 4 are `tag`.
inline rte_mbuf* udp_frame(rte_mempool* pool, uint32_t src, uint32_t dst, uint32_t tag, uint16_t payload = 32,
                           const rte_ether_addr& dst_mac = {})
{
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    uint16_t len = uint16_t(sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr) + sizeof(rte_udp_hdr) + payload);
    char* frame = m ? rte_pktmbuf_append(m, len) : nullptr;
    if (!frame) std::abort();   // test pool exhausted: a leak in the test
    std::memset(frame, 0, len);
    auto* eth = reinterpret_cast<rte_ether_hdr*>(frame);
    eth->dst_addr = dst_mac;
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
    ip->version_ihl = 0x45;
    ip->time_to_live = 64;
    ip->next_proto_id = IPPROTO_UDP;
    ip->total_length = rte_cpu_to_be_16(uint16_t(len - sizeof(rte_ether_hdr)));
    ip->src_addr = rte_cpu_to_be_32(src);
    ip->dst_addr = rte_cpu_to_be_32(dst);
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
    udp->src_port = rte_cpu_to_be_16(1234);
    udp->dst_port = rte_cpu_to_be_16(5678);
    udp->dgram_len = rte_cpu_to_be_16(uint16_t(sizeof(rte_udp_hdr) + payload));
    std::memcpy(udp + 1, &tag, sizeof tag);
    return m;
}

} // namespace ravelin::test

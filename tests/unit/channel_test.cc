// The control-plane channel, data-plane side (dataplane/channel.hh,
// dataplane_channel.cc). The test plays ravelin-iked: it maps the channel
// file with open + mmap and uses only DPDK's inline ring functions on it
// (no EAL call on that side), sends commands, reads replies and frames,
// and checks what the in-process data plane (dp_fixture.hh) does with
// real packets.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <rte_ip.h>
#include <rte_ring_elem.h>
#include <rte_ring_peek_zc.h>
#include <rte_udp.h>

#include "dp_fixture.hh"
#include "esp.hh"
#include "ravelin/channel.hh"

namespace ravelin::dp {
namespace {

using namespace ravelin::channel;
using test::DataplaneFixture;
using test::udp_frame;

constexpr uint32_t gw_outside = 0xc6120001;   // 198.18.0.1
constexpr uint32_t peer = 0xc6120002;         // 198.18.0.2
constexpr uint32_t host_a = 0xc6120102;       // 198.18.1.2, behind the gateway
constexpr uint32_t host_c = 0xc6120302;       // 198.18.3.2, behind the peer (reqid 7)
constexpr uint32_t host_d = 0xc6120402;       // 198.18.4.2, behind the peer (reqid 9, trap)

// The control plane's view: the file mapped, the rings at their offsets.
struct ControlPlane {
    uint8_t* base = nullptr;
    std::size_t size = 0;
    Header* h = nullptr;
    rte_ring* rings[ring_count]{};
    uint32_t seq = 0;
    Command* last_slot = nullptr;   // where the last command was written

    explicit ControlPlane(const std::string& path)
    {
        int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) throw std::runtime_error("cannot open " + path);
        struct stat st{};
        fstat(fd, &st);
        size = std::size_t(st.st_size);
        void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED) throw std::runtime_error("cannot map " + path);
        base = static_cast<uint8_t*>(p);
        h = reinterpret_cast<Header*>(base);
        for (unsigned i = 0; i < ring_count; ++i) rings[i] = reinterpret_cast<rte_ring*>(base + h->rings[i].offset);
    }
    ~ControlPlane() { munmap(base, size); }
    rte_ring* ring(RingId id) { return rings[unsigned(id)]; }
    void attach() { h->control_pid.store(uint32_t(getpid())); }

    // Write one command in place in the commands ring; returns its seq.
    uint32_t send(const std::function<void(Command&)>& fill)
    {
        rte_ring_zc_data z{};
        if (rte_ring_enqueue_zc_burst_elem_start(ring(RingId::commands), sizeof(Command), 1, &z, nullptr) != 1)
            throw std::runtime_error("commands ring full");
        last_slot = new (z.ptr1) Command();
        last_slot->seq = ++seq;
        fill(*last_slot);
        rte_ring_enqueue_zc_elem_finish(ring(RingId::commands), 1);
        return seq;
    }
    std::vector<Reply> replies()
    {
        std::vector<Reply> out;
        Reply r;
        while (rte_ring_sc_dequeue_elem(ring(RingId::replies), &r, sizeof r) == 0) out.push_back(r);
        return out;
    }
    std::optional<Frame> punted()
    {
        rte_ring_zc_data z{};
        if (rte_ring_dequeue_zc_burst_elem_start(ring(RingId::punt), sizeof(Frame), 1, &z, nullptr) != 1)
            return std::nullopt;
        Frame f = *static_cast<Frame*>(z.ptr1);
        rte_ring_dequeue_zc_elem_finish(ring(RingId::punt), 1);
        return f;
    }
    void transmit(const Frame& f)
    {
        rte_ring_zc_data z{};
        if (rte_ring_enqueue_zc_burst_elem_start(ring(RingId::transmit), sizeof(Frame), 1, &z, nullptr) != 1)
            throw std::runtime_error("transmit ring full");
        std::memcpy(z.ptr1, &f, sizeof f);
        rte_ring_enqueue_zc_elem_finish(ring(RingId::transmit), 1);
    }
};

std::string channel_file(const std::string& tag)
{
    return "/tmp/rvl-channel-test-" + std::to_string(getpid()) + "-" + tag + ".channel";
}

// A gateway with its channel open and a control plane attached to it.
struct Gateway {
    DataplaneFixture f;
    std::string path;
    std::unique_ptr<ControlPlane> cp;

    explicit Gateway(const std::string& tag, bool attach = true) : f("ch_" + tag), path(channel_file(tag))
    {
        std::string error;
        if (!f.dp->open_channel(path, error)) throw std::runtime_error(error);
        cp = std::make_unique<ControlPlane>(path);
        if (attach) cp->attach();
    }
    // One housekeeping pass. The test thread is every worker: take them
    // offline so grace periods do not wait for a quiescent state.
    void hk()
    {
        auto& s = f.dp->shared();
        for (unsigned w = 0; w < s.workers; ++w) rte_rcu_qsbr_thread_offline(s.rcu, w);
        f.dp->housekeeping();
        for (unsigned w = 0; w < s.workers; ++w) rte_rcu_qsbr_thread_online(s.rcu, w);
    }
    rte_ether_addr mac(uint16_t port) { return f.dp->shared().ports[port].mac; }
    // Apply what was sent, every worker past a grace period (old SAs and
    // SPDs freed); every command must have succeeded.
    void settle();
};

// The gateway's side of reqid `reqid`'s Child SA (the fixture's key, so
// test::fixture_peer_sa is its mirror).
SaDescriptor gw_sa(uint32_t spi, SaDirection dir, uint32_t reqid)
{
    SaDescriptor d = test::fixture_sa_descriptor(spi, dir, gw_outside, peer);
    d.reqid = reqid;
    return d;
}

PolicyDescriptor policy(SaDirection dir, uint32_t remote_net, PolicyAction action = PolicyAction::protect)
{
    PolicyDescriptor p;
    p.direction = dir;
    p.local = {IpAddress::v4(0xc6120100), 24};
    p.remote = {IpAddress::v4(remote_net), 24};
    p.action = action;
    return p;
}

std::function<void(Command&)> sa_add(const SaDescriptor& d, const char* conn = "", const char* child = "")
{
    return [=](Command& c) {
        c.type = CommandType::sa_add;
        c.sa_add.sa = d;
        c.sa_add.connection.set(conn);
        c.sa_add.child.set(child);
    };
}

std::function<void(Command&)> policies_set(uint32_t reqid, std::vector<PolicyDescriptor> ps)
{
    return [=](Command& c) {
        c.type = CommandType::policies_set;
        c.policies.reqid = reqid;
        c.policies.count = uint8_t(ps.size());
        for (std::size_t i = 0; i < ps.size(); ++i) c.policies.policies[i] = ps[i];
    };
}

std::function<void(Command&)> simple(CommandType t)
{
    return [=](Command& c) { c.type = t; };
}

std::function<void(Command&)> sa_delete(uint32_t spi, SaDirection dir)
{
    return [=](Command& c) {
        c.type = CommandType::sa_delete;
        c.sa_delete.spi = Spi(spi);
        c.sa_delete.direction = dir;
    };
}

bool all_zero(const uint8_t* p, std::size_t n)
{
    return std::all_of(p, p + n, [](uint8_t b) { return b == 0; });
}

std::string error_of(const Reply& r) { return std::string(r.result.error.data()); }

void Gateway::settle()
{
    auto& shared = f.dp->shared();
    for (unsigned w = 0; w < shared.workers; ++w) rte_rcu_qsbr_quiescent(shared.rcu, w);
    hk();
    for (const Reply& r : cp->replies()) EXPECT_EQ(r.result.status, Status::ok) << error_of(r);
}

// Send a clear packet host_a -> dst into the gateway; return what left the
// outside port (ESP) on either queue.
std::vector<rte_mbuf*> send_out(Gateway& s, uint32_t dst, uint32_t tag)
{
    s.f.inside.inject(0, udp_frame(s.f.dp->pool(), host_a, dst, tag, 32, s.mac(s.f.inside.id)));
    s.f.poll_all(2);
    auto a = s.f.outside.take(0), b = s.f.outside.take(1);
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

uint32_t outer_spi(rte_mbuf* m) { return rte_be_to_cpu_32(*rte_pktmbuf_mtod_offset(m, uint32_t*, 14 + 20)); }

uint64_t channel_stat(Gateway& s, const std::string& key)
{
    return s.f.dp->stats_json()["channel"][key].get<uint64_t>();
}

TEST(Channel, FileHeaderAndRings)
{
    Gateway s("file", false);
    struct stat st{};
    ASSERT_EQ(stat(s.path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << "SA keys cross this file";
    const Header& h = *s.cp->h;
    EXPECT_EQ(h.magic, magic);
    EXPECT_EQ(h.version, version);
    EXPECT_EQ(h.header_size, sizeof(Header));
    EXPECT_EQ(h.total_size, std::size_t(st.st_size));
    EXPECT_NE(h.instance, 0u);
    EXPECT_EQ(h.dataplane_pid, uint32_t(getpid()));
    EXPECT_EQ(h.workers, s.f.dp->shared().workers);
    const uint32_t sizes[] = {sizeof(Command), sizeof(Reply), sizeof(Frame), sizeof(Frame)};
    const uint32_t counts[] = {commands_ring_size, replies_ring_size, punt_ring_size, transmit_ring_size};
    for (unsigned i = 0; i < ring_count; ++i) {
        EXPECT_EQ(h.rings[i].offset % 64, 0u);
        EXPECT_EQ(h.rings[i].element_size, sizes[i]);
        EXPECT_EQ(h.rings[i].count, counts[i]);
        EXPECT_LE(h.rings[i].offset + uint64_t(rte_ring_get_memsize_elem(sizes[i], counts[i])), h.total_size);
        EXPECT_EQ(rte_ring_get_capacity(s.cp->rings[i]), counts[i] - 1);
    }
    uint64_t before = h.heartbeat_ns.load();
    usleep(1000);
    s.hk();
    EXPECT_GT(h.heartbeat_ns.load(), before) << "heartbeat must move every pass";
    // A second instance at the same path: a new file and a new instance id.
    uint64_t first = h.instance;
    std::string error;
    auto again = Channel::create(s.path + ".2", 2, error);
    ASSERT_NE(again, nullptr) << error;
    EXPECT_NE(again->header().instance, first);
    std::string p2 = again->path();
    again.reset();
    EXPECT_NE(access(p2.c_str(), F_OK), 0) << "the file is unlinked on destruction";
}

TEST(Channel, SaAddPoliciesEncryptRekeyDeleteList)
{
    Gateway s("sa");
    uint32_t hello = s.cp->send(simple(CommandType::hello));
    SaDescriptor out = gw_sa(0x5005, SaDirection::outbound, 7);
    SaDescriptor in = gw_sa(0x6006, SaDirection::inbound, 7);
    in.lifetime.soft_packets = 1;   // the first packet raises an event
    uint32_t add_out = s.cp->send(sa_add(out, "site-b", "net-c"));
    Command* out_slot = s.cp->last_slot;
    uint32_t add_in = s.cp->send(sa_add(in, "site-b", "net-c"));
    Command* in_slot = s.cp->last_slot;
    uint32_t pol = s.cp->send(policies_set(7, {policy(SaDirection::outbound, 0xc6120300),
                                               policy(SaDirection::inbound, 0xc6120300)}));
    uint64_t before = monotonic_ns();
    s.hk();

    auto r = s.cp->replies();
    ASSERT_EQ(r.size(), 4u);
    const uint32_t seqs[] = {hello, add_out, add_in, pol};
    for (unsigned i = 0; i < 4; ++i) {
        EXPECT_EQ(r[i].type, ReplyType::result);
        EXPECT_EQ(r[i].seq, seqs[i]) << "results in command order";
        EXPECT_EQ(r[i].result.status, Status::ok) << error_of(r[i]);
        EXPECT_GE(r[i].result.applied_ns, before);
    }
    // The data plane wiped the keys in the ring slots it consumed.
    EXPECT_TRUE(all_zero(out_slot->sa_add.sa.cipher_key.data(), max_cipher_key_len));
    EXPECT_TRUE(all_zero(in_slot->sa_add.sa.cipher_key.data(), max_cipher_key_len));
    EXPECT_TRUE(all_zero(in_slot->sa_add.sa.integ_key.data(), max_integ_key_len));

    // Outbound: sealed with SPI 0x5005, and the peer's mirror SA opens it.
    IMB_MGR* mgr = crypto_manager_create();
    WorkerCounters pc;
    EspContext ctx{mgr, nullptr, &pc, 0};
    DpSa* peer_in = test::fixture_peer_sa(mgr, 0x5005, SaDirection::inbound);
    auto sent = send_out(s, host_c, 42);
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(outer_spi(sent[0]), 0x5005u);
    rte_pktmbuf_adj(sent[0], 14);
    ASSERT_EQ(esp_decap(ctx, *peer_in, sent[0], 20), DropReason::none);
    uint32_t tag;
    std::memcpy(&tag, rte_pktmbuf_mtod_offset(sent[0], uint8_t*, 28), 4);
    EXPECT_EQ(tag, 42u);
    rte_pktmbuf_free(sent[0]);

    // Inbound: the peer's packet is decrypted and passes the reqid's policy.
    DpSa* peer_out = test::fixture_peer_sa(mgr, 0x6006, SaDirection::outbound);
    rte_mbuf* m = udp_frame(s.f.dp->pool(), host_c, host_a, 43);
    rte_pktmbuf_adj(m, 14);
    ASSERT_EQ(esp_encap(ctx, *peer_out, m), DropReason::none);
    auto* eth = reinterpret_cast<rte_ether_hdr*>(rte_pktmbuf_prepend(m, 14));
    eth->dst_addr = s.mac(s.f.outside.id);
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    s.f.outside.inject(0, m);
    s.f.poll_all(2);
    auto clear = s.f.inside.take(0);
    ASSERT_EQ(clear.size(), 1u) << "policy_mismatch drops: " << s.f.drops(DropReason::policy_mismatch);
    rte_pktmbuf_free(clear[0]);
    s.hk();
    r = s.cp->replies();
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].type, ReplyType::event);
    EXPECT_EQ(r[0].event.type, EventType::soft_lifetime);
    EXPECT_EQ(r[0].event.spi, Spi(0x6006));

    // Rekey: a second outbound SA of reqid 7 takes the same slot.
    auto& sas = *s.f.dp->shared().sas;
    uint32_t slot = sas.find(Spi(0x5005), SaDirection::outbound);
    ASSERT_NE(slot, no_slot);
    uint32_t rekey = s.cp->send(sa_add(gw_sa(0x5105, SaDirection::outbound, 7), "site-b", "net-c"));
    s.hk();
    r = s.cp->replies();
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].seq, rekey);
    EXPECT_EQ(r[0].result.status, Status::ok) << error_of(r[0]);
    EXPECT_EQ(sas.find(Spi(0x5105), SaDirection::outbound), slot) << "a rekey swaps the SA in place";
    EXPECT_EQ(sas.find(Spi(0x5005), SaDirection::outbound), no_slot);
    sent = send_out(s, host_c, 44);
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(outer_spi(sent[0]), 0x5105u);
    rte_pktmbuf_free(sent[0]);

    // sa_list: every SA (the configured two without names), then list_end, then the result.
    uint32_t list = s.cp->send(simple(CommandType::sa_list));
    s.hk();
    r = s.cp->replies();
    ASSERT_EQ(r.size(), 4u + 2u);
    std::map<uint32_t, SaInfo> infos;
    for (unsigned i = 0; i < 4; ++i) {
        EXPECT_EQ(r[i].type, ReplyType::sa_info);
        EXPECT_EQ(r[i].seq, list);
        infos[r[i].sa_info.spi.value] = r[i].sa_info;
    }
    EXPECT_EQ(r[4].type, ReplyType::list_end);
    EXPECT_EQ(r[5].type, ReplyType::result);
    EXPECT_EQ(r[5].seq, list);
    ASSERT_EQ(infos.size(), 4u);
    ASSERT_TRUE(infos.count(0x1001) && infos.count(0x2002) && infos.count(0x5105) && infos.count(0x6006));
    EXPECT_TRUE(infos[0x1001].connection.view().empty());
    const SaInfo& i6 = infos[0x6006];
    EXPECT_EQ(i6.direction, SaDirection::inbound);
    EXPECT_EQ(i6.reqid, 7u);
    EXPECT_EQ(i6.packets, 1u);
    EXPECT_EQ(i6.connection.view(), "site-b");
    EXPECT_EQ(i6.child.view(), "net-c");
    EXPECT_EQ(i6.local, IpAddress::v4(gw_outside));
    EXPECT_EQ(i6.remote, IpAddress::v4(peer));
    EXPECT_GE(i6.installed_ns, before);
    EXPECT_GE(i6.first_use_ns, i6.installed_ns);
    EXPECT_GE(i6.last_use_ns, i6.first_use_ns);
    EXPECT_LE(i6.last_use_ns, monotonic_ns());
    EXPECT_EQ(infos[0x5105].packets, 1u);
    EXPECT_EQ(infos[0x5105].first_use_ns != 0, true);
    EXPECT_EQ(infos[0x1001].first_use_ns, 0u) << "never used";

    // sa_delete: the replaced SA is gone (not_found), the current one goes,
    // and then the policy traps: drop + acquire.
    uint32_t del_old = s.cp->send(sa_delete(0x5005, SaDirection::outbound));
    uint32_t del_cur = s.cp->send(sa_delete(0x5105, SaDirection::outbound));
    uint32_t del_cfg = s.cp->send(sa_delete(0x1001, SaDirection::outbound));
    s.hk();
    r = s.cp->replies();
    ASSERT_EQ(r.size(), 3u);
    EXPECT_EQ(r[0].seq, del_old);
    EXPECT_EQ(r[0].result.status, Status::not_found);
    EXPECT_EQ(r[1].seq, del_cur);
    EXPECT_EQ(r[1].result.status, Status::ok) << error_of(r[1]);
    EXPECT_EQ(r[2].seq, del_cfg);
    EXPECT_EQ(r[2].result.status, Status::not_found) << "configured SAs are not the channel's to delete";
    EXPECT_TRUE(send_out(s, host_c, 45).empty());
    EXPECT_EQ(s.f.drops(DropReason::no_sa_acquire), 1u);

    auto stats = s.f.dp->stats_json();
    EXPECT_EQ(stats["channel"]["commands_applied"].get<uint64_t>(), 4u + 1u + 1u + 1u);
    EXPECT_EQ(stats["channel"]["commands_failed"].get<uint64_t>(), 2u);
    EXPECT_TRUE(stats["channel"]["attached"].get<bool>());
    EXPECT_EQ(stats["channel"]["control_pid"].get<uint32_t>(), uint32_t(getpid()));
    EXPECT_EQ(stats["drops"]["no_sa_acquire"].get<uint64_t>(), 1u);

    // flush: the channel's SAs and policies go, the configured ones stay.
    uint32_t flush = s.cp->send(simple(CommandType::flush));
    s.hk();
    r = s.cp->replies();   // the acquire of the trapped packet, and the result
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(r[0].type, ReplyType::result);
    EXPECT_EQ(r[0].seq, flush);
    EXPECT_EQ(r[0].result.status, Status::ok);
    EXPECT_EQ(r[1].type, ReplyType::acquire);
    EXPECT_EQ(r[1].acquire.reqid, 7u);
    EXPECT_EQ(sas.find(Spi(0x6006), SaDirection::inbound), no_slot);
    EXPECT_NE(sas.find(Spi(0x1001), SaDirection::outbound), no_slot);
    EXPECT_NE(sas.find(Spi(0x2002), SaDirection::inbound), no_slot);
    for (rte_mbuf* x : send_out(s, host_c, 46)) rte_pktmbuf_free(x);   // no policy now
    EXPECT_EQ(s.f.drops(DropReason::no_policy), 1u);

    sa_free(peer_in);
    sa_free(peer_out);
    crypto_manager_free(mgr);
}

// A policy change publishes a new SPD without waiting for the workers: the
// old one is freed later, once each has passed a quiescent point. (The main
// lcore used to block in rte_rcu_qsbr_synchronize here: with the workers
// online and not reporting, this test would hang.)
TEST(Channel, PolicyChangeDoesNotWaitForTheWorkers)
{
    Gateway s("spdq");
    auto& shared = s.f.dp->shared();
    const Spd* before = shared.spd_out.load();
    uint32_t pol = s.cp->send(policies_set(9, {policy(SaDirection::outbound, 0xc6120300)}));
    s.f.dp->housekeeping();   // the workers (this thread) stay online, not quiescent
    auto r = s.cp->replies();
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].seq, pol);
    EXPECT_EQ(r[0].result.status, Status::ok) << error_of(r[0]);
    EXPECT_NE(shared.spd_out.load(), before) << "the new SPD is published at once";
    for (unsigned w = 0; w < shared.workers; ++w) rte_rcu_qsbr_quiescent(shared.rcu, w);
    s.f.dp->housekeeping();   // frees the old SPDs
    pol = s.cp->send(policies_set(9, {}));   // and back: the reqid's slot goes after a grace period
    s.f.dp->housekeeping();
    r = s.cp->replies();
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].result.status, Status::ok) << error_of(r[0]);
    for (unsigned w = 0; w < shared.workers; ++w) rte_rcu_qsbr_quiescent(shared.rcu, w);
    s.hk();
}

// A worker remembers the last flow it classified across bursts; a policy
// change must reach that very flow at once, the next packet.
TEST(Channel, PolicyChangeReachesTheFlowAWorkerRemembers)
{
    Gateway s("spdm");
    auto spi_of_next = [&](uint32_t tag) {
        auto sent = send_out(s, host_c, tag);
        const uint32_t spi = sent.size() == 1 ? outer_spi(sent[0]) : 0;
        for (rte_mbuf* m : sent) rte_pktmbuf_free(m);
        return spi;
    };
    s.cp->send(sa_add(gw_sa(0x5005, SaDirection::outbound, 7), "site-b", "net-c"));
    s.cp->send(policies_set(7, {policy(SaDirection::outbound, 0xc6120300)}));
    s.settle();
    EXPECT_EQ(spi_of_next(1), 0x5005u);
    EXPECT_EQ(spi_of_next(2), 0x5005u);   // the same flow, from the worker's memo
    const uint64_t unmatched = s.f.drops(DropReason::no_policy);
    s.cp->send(policies_set(7, {}));
    s.settle();
    EXPECT_EQ(spi_of_next(3), 0u) << "the removed policy still protected the remembered flow";
    EXPECT_EQ(s.f.drops(DropReason::no_policy), unmatched + 1);
    s.cp->send(policies_set(7, {policy(SaDirection::outbound, 0xc6120300)}));
    s.settle();
    EXPECT_EQ(spi_of_next(4), 0x5005u);
}

// A worker remembers the inbound SA of the last SPI it looked up; once
// that SA is deleted, the next packet with its SPI finds none.
TEST(Channel, SaDeleteReachesTheSpiAWorkerRemembers)
{
    Gateway s("sam");
    auto& shared = s.f.dp->shared();
    s.cp->send(sa_add(gw_sa(0x6006, SaDirection::inbound, 7), "site-b", "net-c"));
    s.cp->send(policies_set(7, {policy(SaDirection::inbound, 0xc6120300)}));
    s.settle();
    IMB_MGR* mgr = crypto_manager_create();
    WorkerCounters pc;
    EspContext ctx{mgr, nullptr, &pc, 0};
    DpSa* peer_out = test::fixture_peer_sa(mgr, 0x6006, SaDirection::outbound);
    // Into the queue of the SA's owner: the worker that finds the SA is the
    // one that decrypts (no hand-off, which looks the SA up again).
    const DpSa* sa = shared.sas->get(shared.sas->find(Spi(0x6006), SaDirection::inbound));
    ASSERT_NE(sa, nullptr);
    const uint16_t queue = sa->owner.value;
    auto clear_after = [&](uint32_t tag) {
        rte_mbuf* m = udp_frame(s.f.dp->pool(), host_c, host_a, tag);
        rte_pktmbuf_adj(m, 14);
        EXPECT_EQ(esp_encap(ctx, *peer_out, m), DropReason::none);
        auto* eth = reinterpret_cast<rte_ether_hdr*>(rte_pktmbuf_prepend(m, 14));
        eth->dst_addr = s.mac(s.f.outside.id);
        eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
        s.f.outside.inject(queue, m);
        s.f.poll_all(2);
        auto a = s.f.inside.take(0), b = s.f.inside.take(1);
        for (rte_mbuf* c : a) rte_pktmbuf_free(c);
        for (rte_mbuf* c : b) rte_pktmbuf_free(c);
        return a.size() + b.size();
    };
    EXPECT_EQ(clear_after(1), 1u);
    EXPECT_EQ(clear_after(2), 1u);   // the SA from the worker's memo
    const uint64_t no_sa = s.f.drops(DropReason::no_sa);
    // Deleted, but not yet freed (no grace period has passed): the SA is
    // still intact in memory, and must not be used.
    s.cp->send(sa_delete(0x6006, SaDirection::inbound));
    s.f.dp->housekeeping();   // the workers stay online, not quiescent: nothing is freed
    for (const Reply& r : s.cp->replies()) EXPECT_EQ(r.result.status, Status::ok) << error_of(r);
    EXPECT_EQ(clear_after(3), 0u) << "the deleted SA still decrypted its SPI";
    EXPECT_EQ(s.f.drops(DropReason::no_sa), no_sa + 1);
    s.settle();
    sa_free(peer_out);
    crypto_manager_free(mgr);
}

TEST(Channel, BadCommandsGetErrors)
{
    Gateway s("bad");
    std::vector<std::pair<uint32_t, Status>> expect;
    expect.push_back({s.cp->send([](Command& c) { c.version = 99; c.type = CommandType::hello; }), Status::bad_version});
    expect.push_back({s.cp->send([](Command& c) { c.type = CommandType(77); }), Status::bad_command});
    expect.push_back({s.cp->send([](Command& c) {
                          c.type = CommandType::policies_set;
                          c.policies.reqid = 5;
                          c.policies.count = max_policies_per_command + 1;
                      }),
                      Status::bad_command});
    SaDescriptor bad_key = gw_sa(0x7007, SaDirection::inbound, 5);
    bad_key.cipher_key_len = 7;
    expect.push_back({s.cp->send(sa_add(bad_key)), Status::invalid_sa});
    expect.push_back({s.cp->send(sa_add(gw_sa(0x7008, SaDirection::inbound, 0))), Status::invalid_sa});
    expect.push_back({s.cp->send(sa_add(gw_sa(0x2002, SaDirection::inbound, 5))), Status::spi_in_use});
    expect.push_back({s.cp->send([](Command& c) {
                          c.type = CommandType::sa_add;
                          c.sa_add.sa = gw_sa(0x7009, SaDirection::inbound, 5);
                          c.sa_add.sa.direction = SaDirection(9);
                      }),
                      Status::bad_command});
    expect.push_back({s.cp->send(sa_delete(0x7777, SaDirection::inbound)), Status::not_found});
    PolicyDescriptor host_bits = policy(SaDirection::outbound, 0xc6120301);
    expect.push_back({s.cp->send(policies_set(5, {host_bits})), Status::policy_error});
    PolicyDescriptor mixed = policy(SaDirection::outbound, 0xc6120300);
    mixed.remote.addr.family = IpFamily::v6;
    expect.push_back({s.cp->send(policies_set(5, {mixed})), Status::policy_error});
    // A bad version's slot is wiped whole, key bytes included.
    s.cp->send([](Command& c) {
        c.version = channel::version + 1;
        c.type = CommandType::sa_add;
        c.sa_add.sa = gw_sa(0x700a, SaDirection::inbound, 5);
    });
    Command* wrong_version = s.cp->last_slot;
    expect.push_back({s.cp->seq, Status::bad_version});
    s.hk();
    auto r = s.cp->replies();
    ASSERT_EQ(r.size(), expect.size());
    for (std::size_t i = 0; i < r.size(); ++i) {
        EXPECT_EQ(r[i].type, ReplyType::result);
        EXPECT_EQ(r[i].seq, expect[i].first);
        EXPECT_EQ(r[i].result.status, expect[i].second) << "command " << i << ": " << error_of(r[i]);
        EXPECT_FALSE(error_of(r[i]).empty()) << "command " << i << " needs a readable reason";
    }
    EXPECT_TRUE(all_zero(wrong_version->sa_add.sa.cipher_key.data(), max_cipher_key_len));
    EXPECT_EQ(channel_stat(s, "commands_failed"), expect.size());
    EXPECT_EQ(channel_stat(s, "commands_applied"), 0u);
    // Still serving after all that.
    uint32_t hello = s.cp->send(simple(CommandType::hello));
    s.hk();
    r = s.cp->replies();
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].seq, hello);
    EXPECT_EQ(r[0].result.status, Status::ok);
}

TEST(Channel, TrapPolicyRaisesOneAcquireThenTheSaFillsTheSlot)
{
    Gateway s("trap");
    s.cp->send(policies_set(9, {policy(SaDirection::outbound, 0xc6120400), policy(SaDirection::inbound, 0xc6120400)}));
    s.hk();
    auto r = s.cp->replies();
    ASSERT_EQ(r.size(), 1u);
    ASSERT_EQ(r[0].result.status, Status::ok) << error_of(r[0]);
    for (uint32_t i = 0; i < 3; ++i) EXPECT_TRUE(send_out(s, host_d, i).empty());
    EXPECT_EQ(s.f.drops(DropReason::no_sa_acquire), 3u);
    s.hk();
    r = s.cp->replies();
    ASSERT_EQ(r.size(), 1u) << "one acquire per reqid per 100 ms";
    EXPECT_EQ(r[0].type, ReplyType::acquire);
    EXPECT_EQ(r[0].acquire.reqid, 9u);
    EXPECT_EQ(r[0].acquire.src, IpAddress::v4(host_a));
    EXPECT_EQ(r[0].acquire.dst, IpAddress::v4(host_d));
    EXPECT_EQ(r[0].acquire.protocol, 17);
    EXPECT_EQ(r[0].acquire.src_port, 1234);
    EXPECT_EQ(r[0].acquire.dst_port, 5678);
    EXPECT_EQ(channel_stat(s, "acquires_forwarded"), 1u);
    EXPECT_EQ(s.f.dp->stats_json()["stats"]["acquires_raised"].get<uint64_t>(), 1u);

    // The negotiated SA lands in the slot the policy already names.
    s.cp->send(sa_add(gw_sa(0x9009, SaDirection::outbound, 9)));
    s.hk();
    r = s.cp->replies();
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].result.status, Status::ok) << error_of(r[0]);
    auto sent = send_out(s, host_d, 7);
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(outer_spi(sent[0]), 0x9009u);
    rte_pktmbuf_free(sent[0]);

    // Without a control plane acquires are counted, not queued.
    s.cp->h->control_pid.store(0);
    s.cp->send(sa_delete(0x9009, SaDirection::outbound));
    s.hk();
    s.cp->replies();
    usleep(120'000);   // past the worker's acquire interval for reqid 9
    EXPECT_TRUE(send_out(s, host_d, 8).empty());
    s.hk();
    EXPECT_TRUE(s.cp->replies().empty());
    EXPECT_EQ(channel_stat(s, "acquires_dropped"), 1u);
}

// A control plane that stops reading: results wait (bounded), commands
// wait behind them, nothing is lost or reordered once it reads again.
TEST(Channel, ResultsWaitWhenTheRepliesRingIsFull)
{
    Gateway s("full");
    const uint32_t total = replies_ring_size + 600;   // more than the ring holds
    uint32_t sent = 0;
    for (int pass = 0; pass < 1000 && sent < total; ++pass) {
        while (sent < total && rte_ring_free_count(s.cp->ring(RingId::commands)) > 0) {
            s.cp->send(simple(CommandType::hello));
            ++sent;
        }
        s.hk();
    }
    ASSERT_EQ(sent, total) << "commands must keep flowing until the replies ring and the pending list fill";
    for (int pass = 0; pass < 20; ++pass) s.hk();
    EXPECT_EQ(rte_ring_count(s.cp->ring(RingId::replies)), replies_ring_size - 1);
    uint64_t pending = channel_stat(s, "replies_pending");
    EXPECT_GT(pending, 0u);
    EXPECT_LE(pending, 256u) << "pending results are bounded";
    EXPECT_GT(rte_ring_count(s.cp->ring(RingId::commands)), 0u) << "commands wait while results cannot go out";
    std::vector<Reply> got;
    for (int pass = 0; pass < 200 && got.size() < total; ++pass) {
        auto r = s.cp->replies();
        got.insert(got.end(), r.begin(), r.end());
        s.hk();
    }
    auto r = s.cp->replies();
    got.insert(got.end(), r.begin(), r.end());
    ASSERT_EQ(got.size(), total);
    for (uint32_t i = 0; i < total; ++i) {
        ASSERT_EQ(got[i].seq, i + 1) << "results in command order";
        ASSERT_EQ(got[i].result.status, Status::ok);
    }
    EXPECT_EQ(channel_stat(s, "commands_applied"), total);
}

// An IKE datagram from the peer to 198.18.0.1:500.
rte_mbuf* ike_packet(Gateway& s, uint16_t dport, const std::vector<uint8_t>& payload)
{
    rte_mbuf* m = udp_frame(s.f.dp->pool(), peer, gw_outside, 0, uint16_t(payload.size()), s.mac(s.f.outside.id));
    auto* udp = rte_pktmbuf_mtod_offset(m, rte_udp_hdr*, 14 + 20);
    udp->src_port = rte_cpu_to_be_16(500);
    udp->dst_port = rte_cpu_to_be_16(dport);
    std::memcpy(udp + 1, payload.data(), payload.size());
    return m;
}

TEST(Channel, PuntedIkeBecomesFrames)
{
    Gateway s("punt", false);
    std::vector<uint8_t> ike(200);
    for (std::size_t i = 0; i < ike.size(); ++i) ike[i] = uint8_t(i * 7);
    s.f.outside.inject(0, ike_packet(s, 500, ike));
    s.f.poll_all(1);
    s.hk();
    EXPECT_FALSE(s.cp->punted()) << "nobody attached: dropped";
    EXPECT_EQ(s.f.dp->stats_json()["channel"]["punt_dropped"]["no_control_plane"].get<uint64_t>(), 1u);

    s.cp->attach();
    s.f.outside.inject(0, ike_packet(s, 500, ike));
    std::vector<uint8_t> natt = {0, 0, 0, 0, 0x11, 0x22};   // non-ESP marker + IKE
    s.f.outside.inject(1, ike_packet(s, 4500, natt));
    s.f.poll_all(1);
    s.hk();
    auto f1 = s.cp->punted();
    auto f2 = s.cp->punted();
    ASSERT_TRUE(f1 && f2);
    EXPECT_FALSE(s.cp->punted());
    if (f1->local_port != 500) std::swap(f1, f2);
    EXPECT_EQ(f1->version, version);
    EXPECT_EQ(f1->length, ike.size());
    EXPECT_EQ(f1->local, IpAddress::v4(gw_outside));
    EXPECT_EQ(f1->remote, IpAddress::v4(peer));
    EXPECT_EQ(f1->local_port, 500);
    EXPECT_EQ(f1->remote_port, 500);
    EXPECT_TRUE(std::equal(ike.begin(), ike.end(), f1->payload.begin()));
    EXPECT_EQ(f2->local_port, 4500);
    ASSERT_EQ(f2->length, natt.size()) << "the non-ESP marker stays: the payload as on the wire";
    EXPECT_TRUE(std::equal(natt.begin(), natt.end(), f2->payload.begin()));
    EXPECT_EQ(channel_stat(s, "punt_delivered"), 2u);
}

Frame out_frame(const IpAddress& local, const IpAddress& remote, const std::string& text)
{
    Frame f;
    f.local = local;
    f.remote = remote;
    f.local_port = 500;
    f.remote_port = 4500;
    f.length = uint16_t(text.size());
    std::memcpy(f.payload.data(), text.data(), text.size());
    return f;
}

TEST(Channel, TransmitBuildsRoutesAndWaitsForTheNeighbour)
{
    Gateway s("tx");
    IpAddress gw6{IpFamily::v6, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};
    IpAddress peer6 = gw6;
    peer6.bytes[15] = 2;
    s.f.dp->shared().neighbors->add(peer6, s.f.outside.id, s.f.peer_mac);
    s.cp->transmit(out_frame(IpAddress::v4(gw_outside), IpAddress::v4(peer), "ike-v4"));
    s.cp->transmit(out_frame(gw6, peer6, "ike-v6"));
    s.cp->transmit(out_frame(IpAddress::v4(0xc6120909), IpAddress::v4(peer), "not ours"));
    Frame bad = out_frame(IpAddress::v4(gw_outside), IpAddress::v4(peer), "x");
    bad.length = uint16_t(max_frame_payload + 1);
    s.cp->transmit(bad);
    s.cp->transmit(out_frame(IpAddress::v4(gw_outside), IpAddress::v4(0xc6120009), "waits"));   // unresolved
    s.hk();
    s.f.dp->worker(0).poll_once();   // worker 0 sends control_tx
    auto sent = s.f.outside.take(0);
    // The two frames and the ARP request for 198.18.0.9.
    ASSERT_EQ(sent.size(), 3u);
    int v4 = 0, v6 = 0, arp = 0;
    for (rte_mbuf* m : sent) {
        auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
        uint16_t type = rte_be_to_cpu_16(eth->ether_type);
        if (type == RTE_ETHER_TYPE_ARP) { ++arp; rte_pktmbuf_free(m); continue; }
        EXPECT_TRUE(rte_is_same_ether_addr(&eth->dst_addr, &s.f.peer_mac));
        EXPECT_TRUE(rte_is_same_ether_addr(&eth->src_addr, &s.f.dp->shared().ports[s.f.outside.id].mac));
        if (type == RTE_ETHER_TYPE_IPV4) {
            ++v4;
            auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
            rte_ipv4_hdr copy = *ip;
            uint16_t sum = copy.hdr_checksum;
            copy.hdr_checksum = 0;
            EXPECT_EQ(rte_ipv4_cksum(&copy), sum);
            EXPECT_EQ(ip->src_addr, rte_cpu_to_be_32(gw_outside));
            EXPECT_EQ(ip->dst_addr, rte_cpu_to_be_32(peer));
            auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
            EXPECT_EQ(rte_be_to_cpu_16(udp->src_port), 500);
            EXPECT_EQ(rte_be_to_cpu_16(udp->dst_port), 4500);
            EXPECT_NE(udp->dgram_cksum, 0);
            EXPECT_EQ(rte_ipv4_udptcp_cksum_verify(ip, udp), 0);
            EXPECT_EQ(std::string(reinterpret_cast<char*>(udp + 1), 6), "ike-v4");
        } else {
            ASSERT_EQ(type, RTE_ETHER_TYPE_IPV6);
            ++v6;
            auto* ip = reinterpret_cast<rte_ipv6_hdr*>(eth + 1);
            auto* udp = reinterpret_cast<rte_udp_hdr*>(ip + 1);
            EXPECT_NE(udp->dgram_cksum, 0) << "mandatory over IPv6";
            EXPECT_EQ(rte_ipv6_udptcp_cksum_verify(ip, udp), 0);
            EXPECT_EQ(std::string(reinterpret_cast<char*>(udp + 1), 6), "ike-v6");
        }
        rte_pktmbuf_free(m);
    }
    EXPECT_EQ(v4, 1);
    EXPECT_EQ(v6, 1);
    EXPECT_EQ(arp, 1);
    auto ch = s.f.dp->stats_json()["channel"];
    EXPECT_EQ(ch["transmit_sent"].get<uint64_t>(), 2u);
    EXPECT_EQ(ch["transmit_dropped"]["not_local"].get<uint64_t>(), 1u);
    EXPECT_EQ(ch["transmit_dropped"]["malformed"].get<uint64_t>(), 1u);
    EXPECT_EQ(ch["transmit_pending"].get<uint64_t>(), 1u);

    // The neighbour answers: the waiting frame goes.
    rte_ether_addr mac9{{0x02, 0, 0, 0, 0, 0x09}};
    s.f.dp->shared().neighbors->add(IpAddress::v4(0xc6120009), s.f.outside.id, mac9);
    s.hk();
    s.f.dp->worker(0).poll_once();
    sent = s.f.outside.take(0);
    ASSERT_EQ(sent.size(), 1u);
    auto* eth = rte_pktmbuf_mtod(sent[0], rte_ether_hdr*);
    EXPECT_TRUE(rte_is_same_ether_addr(&eth->dst_addr, &mac9));
    rte_pktmbuf_free(sent[0]);
    EXPECT_EQ(channel_stat(s, "transmit_sent"), 3u);
    EXPECT_EQ(channel_stat(s, "transmit_pending"), 0u);
}

} // namespace
} // namespace ravelin::dp

// ravelin-iked's end of the channel (dp_channel.hh, dp_sink.hh) against the
// data plane's real channel file (dataplane/channel.hh), with this test
// playing the data plane: it reads the commands ravelin-iked writes and
// answers on the other rings.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "channel.hh"
#include "dp_channel.hh"
#include "dp_sink.hh"

namespace ravelin::iked {
namespace {

using channel::Command;
using channel::CommandType;
using channel::Frame;
using channel::Reply;
using channel::RingId;
using namespace std::chrono_literals;

IpAddress v4(const char* text)
{
    IpAddress a;
    EXPECT_TRUE(parse_address(text, a)) << text;
    return a;
}

ike::TrafficSelector ts(const char* start, const char* end, uint8_t proto = 0)
{
    ike::TrafficSelector t;
    t.start = v4(start);
    t.end = v4(end);
    t.protocol = proto;
    return t;
}

// The data plane's side of one channel file in a temporary directory.
class FakeDataplane {
public:
    FakeDataplane()
    {
        dir_ = std::filesystem::temp_directory_path() / ("rvl-chan-" + std::to_string(getpid()));
        std::filesystem::create_directories(dir_);
        path = (dir_ / "test.channel").string();
        restart();
    }
    ~FakeDataplane()
    {
        chan_.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    // A new instance: new file, new inode.
    void restart()
    {
        chan_.reset();
        std::string error;
        chan_ = dp::Channel::create(path, 1, error);
        ASSERT_TRUE(chan_) << error;
        beat();
    }
    void beat() { chan_->heartbeat(DataplaneChannel::monotonic_ns()); }
    void beat_at(uint64_t ns) { chan_->heartbeat(ns); }

    std::vector<Command> commands()
    {
        std::vector<Command> out;
        Command c;
        while (rte_ring_dequeue_elem(chan_->ring(RingId::commands), &c, sizeof c) == 0) out.push_back(c);
        return out;
    }
    std::vector<Frame> transmitted()
    {
        std::vector<Frame> out;
        auto f = std::make_unique<Frame>();
        while (rte_ring_dequeue_elem(chan_->ring(RingId::transmit), f.get(), sizeof(Frame)) == 0) out.push_back(*f);
        return out;
    }
    void reply(Reply r) { ASSERT_EQ(rte_ring_enqueue_elem(chan_->ring(RingId::replies), &r, sizeof r), 0); }
    void punt(const Frame& f) { ASSERT_EQ(rte_ring_enqueue_elem(chan_->ring(RingId::punt), const_cast<Frame*>(&f), sizeof f), 0); }
    uint32_t control_pid() const { return chan_->control_pid(); }
    channel::Header& header() { return chan_->header(); }

    std::string path;

private:
    std::filesystem::path dir_;
    std::unique_ptr<dp::Channel> chan_;
};

constexpr uint64_t second = 1'000'000'000;

// A fake data plane and ravelin-iked's channel attached to it.
class Attached : public ::testing::Test {
protected:
    void SetUp() override
    {
        std::string error;
        ASSERT_TRUE(ch.attach(dp.path, DataplaneChannel::monotonic_ns(), second, error)) << error;
    }
    FakeDataplane dp;
    DataplaneChannel ch;
};
using IkedDpSink = Attached;
using IkedDpTransport = Attached;
using IkedDpChannelAttached = Attached;

TEST(IkedDpChannel, AttachChecksTheFileTheHeartbeatAndExclusivity)
{
    FakeDataplane dp;
    DataplaneChannel ch;
    std::string error;
    EXPECT_FALSE(ch.attach(dp.path + ".missing", DataplaneChannel::monotonic_ns(), second, error));
    EXPECT_NE(error.find("No such file"), std::string::npos) << error;

    dp.beat_at(1);   // a data plane that stopped beating long ago
    EXPECT_FALSE(ch.attach(dp.path, DataplaneChannel::monotonic_ns(), second, error));
    EXPECT_NE(error.find("not running"), std::string::npos) << error;

    dp.beat();
    ASSERT_TRUE(ch.attach(dp.path, DataplaneChannel::monotonic_ns(), second, error)) << error;
    EXPECT_EQ(dp.control_pid(), uint32_t(getpid()));
    EXPECT_EQ(ch.dataplane_pid(), uint32_t(getpid()));   // the fake data plane is this process

    DataplaneChannel second_cp;
    EXPECT_FALSE(second_cp.attach(dp.path, DataplaneChannel::monotonic_ns(), second, error));
    EXPECT_NE(error.find("another ravelin-iked"), std::string::npos) << error;

    ch.detach();
    EXPECT_EQ(dp.control_pid(), 0u);
    EXPECT_TRUE(second_cp.attach(dp.path, DataplaneChannel::monotonic_ns(), second, error)) << error;
}

TEST(IkedDpChannel, NotAChannelIsRefused)
{
    FakeDataplane dp;
    std::string junk = dp.path + ".junk";
    {
        FILE* f = std::fopen(junk.c_str(), "w");
        std::vector<char> zeros(8192, 0);
        std::fwrite(zeros.data(), 1, zeros.size(), f);
        std::fclose(f);
    }
    DataplaneChannel ch;
    std::string error;
    EXPECT_FALSE(ch.attach(junk, DataplaneChannel::monotonic_ns(), second, error));
    EXPECT_NE(error.find("bad magic"), std::string::npos) << error;
    std::filesystem::remove(junk);
}

TEST(IkedDpChannel, LivenessSeesAStoppedHeartbeatAndANewInstance)
{
    FakeDataplane dp;
    DataplaneChannel ch;
    std::string error, why;
    ASSERT_TRUE(ch.attach(dp.path, DataplaneChannel::monotonic_ns(), second, error)) << error;
    EXPECT_TRUE(ch.alive(DataplaneChannel::monotonic_ns(), second, why)) << why;
    EXPECT_FALSE(ch.alive(DataplaneChannel::monotonic_ns() + 3 * second, second, why));
    EXPECT_NE(why.find("no heartbeat"), std::string::npos) << why;
    uint64_t old_instance = ch.instance();
    dp.restart();
    EXPECT_FALSE(ch.alive(DataplaneChannel::monotonic_ns(), second, why));
    EXPECT_NE(why.find("replaced"), std::string::npos) << why;
    ASSERT_TRUE(ch.attach(dp.path, DataplaneChannel::monotonic_ns(), second, error)) << error;
    EXPECT_NE(ch.instance(), old_instance);
}

TEST_F(IkedDpChannelAttached, CommandsWaitForRingSpaceAndKeepTheirOrder)
{
    const unsigned n = channel::commands_ring_size + 100;   // more than the ring holds
    for (unsigned i = 0; i < n; ++i) {
        Command c;
        c.type = CommandType::hello;
        ch.send(c);
    }
    EXPECT_GT(ch.queued(), 0u);
    std::vector<Command> got = dp.commands();
    ch.flush();
    for (auto& c : dp.commands()) got.push_back(c);
    EXPECT_EQ(ch.queued(), 0u);
    ASSERT_EQ(got.size(), n);
    for (unsigned i = 0; i < n; ++i) EXPECT_EQ(got[i].seq, i + 1);
    EXPECT_GT(ch.sent_ns(n), 0u);
}

TEST_F(IkedDpChannelAttached, CommandsAndFramesRingTheDoorbell)
{
    channel::Header& h = dp.header();
    uint32_t before = h.doorbell.load();
    Command c;
    c.type = CommandType::hello;
    ch.send(c);
    EXPECT_EQ(h.doorbell.load(), before + 1) << "a command written to the ring rings";
    ch.flush();
    EXPECT_EQ(h.doorbell.load(), before + 1) << "nothing written, no ring";
    std::vector<uint8_t> msg(8, 1);
    ASSERT_TRUE(ch.transmit(v4("198.18.0.1"), 500, v4("198.18.0.2"), 500, {}, msg));
    EXPECT_EQ(h.doorbell.load(), before + 2);
}

// The data plane's main lcore sleeps on the doorbell: a ring ends the
// sleep at once, a ring it has not seen yet keeps it from sleeping at all,
// and without a ring it sleeps the whole timeout.
TEST_F(IkedDpChannelAttached, TheDoorbellEndsTheDataPlanesSleep)
{
    using clock = std::chrono::steady_clock;
    channel::Header& h = dp.header();
    const uint64_t long_sleep = 5 * second;
    uint32_t seen = h.doorbell.load();
    auto t0 = clock::now();
    channel::wait_doorbell(h, seen, 20'000'000);   // 20 ms, nobody rings
    EXPECT_GE(clock::now() - t0, std::chrono::milliseconds(19));

    std::atomic<bool> woke{false};
    std::thread sleeper([&] {
        channel::wait_doorbell(h, seen, long_sleep);
        woke = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));   // let it sleep
    t0 = clock::now();
    Command c;
    c.type = CommandType::hello;
    ch.send(c);
    sleeper.join();
    EXPECT_TRUE(woke);
    EXPECT_LT(clock::now() - t0, std::chrono::seconds(2)) << "the ring did not end the 5 s sleep";

    t0 = clock::now();
    channel::wait_doorbell(h, seen, long_sleep);   // rung since `seen` was read
    EXPECT_LT(clock::now() - t0, std::chrono::seconds(2));
}

TEST(IkedDpChannel, RangesBecomeExactPrefixes)
{
    auto text = [](const std::vector<IpPrefix>& v) {
        std::string s;
        for (const auto& p : v) s += ike::to_string(p.addr) + "/" + std::to_string(p.len) + " ";
        return s;
    };
    EXPECT_EQ(text(range_to_prefixes(v4("198.19.1.0"), v4("198.19.1.255"))), "198.19.1.0/24 ");
    EXPECT_EQ(text(range_to_prefixes(v4("198.19.1.7"), v4("198.19.1.7"))), "198.19.1.7/32 ");
    EXPECT_EQ(text(range_to_prefixes(v4("0.0.0.0"), v4("255.255.255.255"))), "0.0.0.0/0 ");
    EXPECT_EQ(text(range_to_prefixes(v4("198.19.1.1"), v4("198.19.1.6"))),
              "198.19.1.1/32 198.19.1.2/31 198.19.1.4/31 198.19.1.6/32 ");
    IpAddress lo6, hi6;
    ASSERT_TRUE(parse_address("::", lo6));
    ASSERT_TRUE(parse_address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", hi6));
    EXPECT_EQ(text(range_to_prefixes(lo6, hi6)), "::/0 ");
    ASSERT_TRUE(parse_address("2001:db8::", lo6));
    ASSERT_TRUE(parse_address("2001:db8::ffff", hi6));
    EXPECT_EQ(text(range_to_prefixes(lo6, hi6)), "2001:db8::/112 ");

    // Against brute force: every address of a random range is covered by
    // exactly one prefix, nothing outside it is.
    uint32_t seed = 12345;
    auto rnd = [&] { return seed = seed * 1103515245u + 12345u; };
    for (int round = 0; round < 200; ++round) {
        uint32_t a = 0xc6130000u + (rnd() >> 20) % 2048, b = a + (rnd() >> 20) % 700;
        auto prefixes = range_to_prefixes(IpAddress::v4(a), IpAddress::v4(b));
        ASSERT_LE(prefixes.size(), 64u);
        for (uint32_t x = a - 3; x <= b + 3; ++x) {
            int hits = 0;
            for (const auto& p : prefixes) hits += p.contains(IpAddress::v4(x));
            ASSERT_EQ(hits, x >= a && x <= b ? 1 : 0) << a << ".." << b << " at " << x;
        }
    }
}

TEST(IkedDpChannel, PoliciesCoverEverySelectorPairBothWays)
{
    auto p = child_policies({ts("198.19.1.0", "198.19.1.255")}, {ts("198.19.2.0", "198.19.2.255", 17)});
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(p[0].direction, SaDirection::outbound);
    EXPECT_EQ(p[1].direction, SaDirection::inbound);
    EXPECT_EQ(p[0].protocol, 17);
    EXPECT_EQ(p[0].local.len, 24);
    EXPECT_EQ(p[0].action, PolicyAction::protect);
    // A more specific pair wins over a broad one.
    auto broad = child_policies({ts("0.0.0.0", "255.255.255.255")}, {ts("0.0.0.0", "255.255.255.255")});
    EXPECT_LT(p[0].priority, broad[0].priority);
    // Too many pairs for one command: none at all, the sink says so.
    std::vector<ike::TrafficSelector> many;
    for (int i = 0; i < 9; ++i) many.push_back(ts("198.19.1.1", "198.19.1.1"));
    EXPECT_TRUE(child_policies(many, {ts("198.19.2.0", "198.19.2.255")}).empty());
}

ike::ChildSaRecord record(uint32_t reqid, uint32_t spi_in, uint32_t spi_out)
{
    ike::ChildSaRecord r;
    r.connection = "gw";
    r.child = "net";
    r.reqid = reqid;
    r.inbound.spi = Spi(spi_in);
    r.inbound.direction = SaDirection::inbound;
    r.inbound.cipher_key_len = 16;
    r.inbound.cipher_key.fill(0xaa);
    r.outbound.spi = Spi(spi_out);
    r.outbound.direction = SaDirection::outbound;
    r.outbound.cipher_key_len = 16;
    r.outbound.cipher_key.fill(0xbb);
    r.local_ts = {ts("198.19.1.0", "198.19.1.255")};
    r.remote_ts = {ts("198.19.2.0", "198.19.2.255")};
    return r;
}

// "policies:reqid:count", "add:in:spi", "del:out:spi" for each command.
std::vector<std::string> describe(const std::vector<Command>& cmds)
{
    std::vector<std::string> out;
    for (const auto& c : cmds) {
        char buf[64];
        switch (c.type) {
        case CommandType::policies_set:
            std::snprintf(buf, sizeof buf, "policies:%u:%u", c.policies.reqid, unsigned(c.policies.count));
            break;
        case CommandType::sa_add:
            std::snprintf(buf, sizeof buf, "add:%s:%x", c.sa_add.sa.direction == SaDirection::inbound ? "in" : "out",
                          c.sa_add.sa.spi.value);
            break;
        case CommandType::sa_delete:
            std::snprintf(buf, sizeof buf, "del:%s:%x", c.sa_delete.direction == SaDirection::inbound ? "in" : "out",
                          c.sa_delete.spi.value);
            break;
        default: std::snprintf(buf, sizeof buf, "type%u", unsigned(c.type));
        }
        out.push_back(buf);
    }
    return out;
}

using Strings = std::vector<std::string>;

TEST_F(IkedDpSink, InstallRekeyAndDeleteAreMakeBeforeBreak)
{
    DataplaneSaSink sink(ch);

    auto first = record(3, 0x1001, 0x2001);
    sink.install_inbound(first);
    sink.install_outbound(first);
    auto cmds = dp.commands();
    EXPECT_EQ(describe(cmds), (Strings{"policies:3:2", "add:in:1001", "add:out:2001"}));
    ASSERT_EQ(cmds.size(), 3u);
    EXPECT_EQ(cmds[1].sa_add.connection.view(), "gw");
    EXPECT_EQ(cmds[1].sa_add.child.view(), "net");
    EXPECT_EQ(cmds[1].sa_add.sa.cipher_key[0], 0xaa);   // the keys do travel
    EXPECT_EQ(cmds[0].policies.policies[0].local.len, 24);

    // Rekey: new inbound first, outbound swapped in place, the old outbound
    // needs no delete, the old inbound goes last. Policies stay.
    auto second_sa = record(3, 0x1002, 0x2002);
    sink.install_inbound(second_sa);
    sink.install_outbound(second_sa);
    sink.remove_outbound(first);
    sink.remove_inbound(first);
    EXPECT_EQ(describe(dp.commands()), (Strings{"add:in:1002", "add:out:2002", "del:in:1001"}));

    // Delete: both SAs, then the policies.
    sink.remove_inbound(second_sa);
    sink.remove_outbound(second_sa);
    EXPECT_EQ(describe(dp.commands()), (Strings{"del:in:1002", "del:out:2002", "policies:3:0"}));
}

TEST_F(IkedDpSink, TrapsKeepTheirPoliciesWithoutSas)
{
    DataplaneSaSink sink(ch);
    ike::TrapRecord trap{"gw", "net", 5, {ts("198.19.1.0", "198.19.1.255")}, {ts("198.19.2.0", "198.19.2.255")}};
    sink.install_trap(trap);
    EXPECT_EQ(describe(dp.commands()), (Strings{"policies:5:2"}));
    auto r = record(5, 0x1001, 0x2001);
    sink.install_inbound(r);
    sink.install_outbound(r);
    sink.remove_inbound(r);
    sink.remove_outbound(r);
    // The SAs go; the trap's policies stay for the next acquire.
    EXPECT_EQ(describe(dp.commands()), (Strings{"add:in:1001", "add:out:2001", "del:in:1001", "del:out:2001"}));
    sink.remove_trap(trap);
    EXPECT_EQ(describe(dp.commands()), (Strings{"policies:5:0"}));
}

TEST_F(IkedDpSink, AdoptedSasGoAfterTheGraceOnceReplaced)
{
    DataplaneSaSink sink(ch);
    auto now = ike::Clock::now();
    channel::SaInfo in, out;
    in.spi = Spi(0x1001);
    in.direction = SaDirection::inbound;
    in.reqid = 3;
    in.connection.set("gw");
    in.child.set("net");
    out = in;
    out.spi = Spi(0x2001);
    out.direction = SaDirection::outbound;
    sink.adopt(in, now + 1h);
    sink.adopt(out, now + 1h);
    sink.tick(now);
    EXPECT_TRUE(dp.commands().empty());   // nothing replaced them yet: they keep forwarding

    auto fresh = record(3, 0x1002, 0x2002);
    sink.install_inbound(fresh);
    sink.install_outbound(fresh);
    EXPECT_EQ(describe(dp.commands()), (Strings{"policies:3:2", "add:in:1002", "add:out:2002"}));
    sink.tick(ike::Clock::now());
    EXPECT_TRUE(dp.commands().empty());   // the peer may still send on the old inbound SA
    sink.tick(ike::Clock::now() + DataplaneSaSink::adopted_grace + 1s);
    EXPECT_EQ(describe(dp.commands()), (Strings{"del:in:1001"}));   // the outbound one was swapped in place
    EXPECT_EQ(sink.stats().adopted, 2u);
    EXPECT_EQ(sink.stats().adopted_removed, 1u);
}

TEST_F(IkedDpSink, AdoptedSasThatNothingReplacesExpire)
{
    DataplaneSaSink sink(ch);
    auto now = ike::Clock::now();
    channel::SaInfo in;
    in.spi = Spi(0x1001);
    in.direction = SaDirection::inbound;
    in.reqid = 3;
    in.connection.set("gw");
    sink.adopt(in, now + 10min);
    sink.tick(now + 11min);
    EXPECT_EQ(describe(dp.commands()), (Strings{"del:in:1001", "policies:3:0"}));
}

TEST_F(IkedDpSink, ANewDataPlaneGetsPoliciesAndInboundSasAgain)
{
    DataplaneSaSink sink(ch);
    auto r = record(3, 0x1001, 0x2001);
    sink.install_inbound(r);
    sink.install_outbound(r);
    ike::TrapRecord trap{"gw", "other", 9, {ts("198.19.3.0", "198.19.3.255")}, {ts("198.19.4.0", "198.19.4.255")}};
    sink.install_trap(trap);
    dp.commands();
    auto children = sink.installed_children();
    ASSERT_EQ(children.size(), 1u);
    EXPECT_EQ(children[0], (std::pair<std::string, std::string>{"gw", "net"}));

    dp.restart();
    std::string error;
    ASSERT_TRUE(ch.attach(dp.path, DataplaneChannel::monotonic_ns(), second, error)) << error;
    sink.reinstall();
    auto cmds = dp.commands();
    // Outbound SAs are not re-sent: the daemon rekeys (sequence numbers).
    EXPECT_EQ(describe(cmds), (Strings{"policies:3:2", "add:in:1001", "policies:9:2"}));
    ASSERT_EQ(cmds.size(), 3u);
    EXPECT_EQ(cmds[1].sa_add.sa.cipher_key[0], 0xaa);
}

TEST_F(IkedDpTransport, MarkerKeepalivesAndEspOnTheNatTPort)
{
    DataplaneTransport t(ch, 4500);
    ike::Endpoint me{v4("198.18.0.1"), 4500}, peer{v4("198.18.0.2"), 4500};
    std::vector<uint8_t> msg(40, 0x11);
    t.send(me, peer, msg);
    t.send_keepalive(me, peer);
    t.send(ike::Endpoint{me.addr, 500}, ike::Endpoint{peer.addr, 500}, msg);
    auto frames = dp.transmitted();
    ASSERT_EQ(frames.size(), 3u);
    EXPECT_EQ(frames[0].length, 44);                      // marker + message
    EXPECT_EQ(frames[0].payload[0] | frames[0].payload[3], 0);
    EXPECT_EQ(frames[0].payload[4], 0x11);
    EXPECT_EQ(frames[0].local, me.addr);
    EXPECT_EQ(frames[0].remote_port, 4500);
    EXPECT_EQ(frames[1].length, 1);
    EXPECT_EQ(frames[1].payload[0], 0xff);
    EXPECT_EQ(frames[2].length, 40);                      // port 500: no marker
    EXPECT_EQ(t.stats().tx_ike, 2u);
    EXPECT_EQ(t.stats().tx_keepalive, 1u);

    // Incoming: IKE behind the marker is delivered without it; keepalives,
    // ESP and runts are counted.
    auto frame = std::make_unique<Frame>();
    frame->local = me.addr;
    frame->local_port = 4500;
    frame->remote = peer.addr;
    frame->remote_port = 4501;
    frame->length = 44;
    std::fill(frame->payload.begin(), frame->payload.begin() + 4, 0);
    std::fill(frame->payload.begin() + 4, frame->payload.begin() + 44, 0x22);
    dp.punt(*frame);
    frame->length = 1;
    frame->payload[0] = 0xff;
    dp.punt(*frame);
    frame->length = 40;
    frame->payload[0] = 0x01;   // an SPI: ESP in UDP
    dp.punt(*frame);
    frame->length = 10;
    frame->local_port = 500;
    dp.punt(*frame);
    std::vector<std::pair<ike::Endpoint, std::size_t>> delivered;
    ch.poll_frames([&](const Frame& f) {
        t.receive(f, [&](const ike::Endpoint&, const ike::Endpoint& remote, ike::ByteView m) {
            delivered.emplace_back(remote, m.size());
            EXPECT_EQ(m[0], 0x22);
        });
    });
    ASSERT_EQ(delivered.size(), 1u);
    EXPECT_EQ(delivered[0].first.port, 4501);
    EXPECT_EQ(delivered[0].second, 40u);
    EXPECT_EQ(t.stats().rx_keepalive, 1u);
    EXPECT_EQ(t.stats().rx_esp_dropped, 1u);
    EXPECT_EQ(t.stats().rx_malformed, 1u);
}

TEST_F(IkedDpChannelAttached, RepliesAreReadInOrder)
{
    for (uint32_t i = 1; i <= 5; ++i) {
        Reply r;
        r.type = channel::ReplyType::result;
        r.seq = i;
        dp.reply(r);
    }
    Reply bad;
    bad.version = 99;
    dp.reply(bad);
    std::vector<uint32_t> seqs;
    ch.poll_replies([&](const Reply& r) { seqs.push_back(r.seq); });
    EXPECT_EQ(seqs, (std::vector<uint32_t>{1, 2, 3, 4, 5}));
    EXPECT_EQ(ch.stats().bad_messages, 1u);
}

} // namespace
} // namespace ravelin::iked

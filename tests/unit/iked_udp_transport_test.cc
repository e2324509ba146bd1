// Standalone mode's UDP transport (controlplane/iked/udp_transport.hh) on
// loopback sockets with kernel-chosen ports: what is delivered to the
// engine and what is counted and dropped on the IKE and NAT-T ports, the
// non-ESP marker on sends, and the source address chosen with pktinfo.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "udp_transport.hh"

namespace ravelin::iked {
namespace {

using Bytes = std::vector<uint8_t>;

IpAddress addr(const char* text)
{
    IpAddress a;
    EXPECT_TRUE(parse_address(text, a)) << text;
    return a;
}

// A plain UDP socket standing in for the peer.
class Peer {
public:
    explicit Peer(const char* bind_addr)
    {
        a_ = addr(bind_addr);
        v4_ = a_.family == IpFamily::v4;
        fd_ = socket(v4_ ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_storage ss = sockaddr_for(a_, 0);
        EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&ss), len()), 0) << std::strerror(errno);
        socklen_t l = sizeof ss;
        getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &l);
        port_ = ntohs(v4_ ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                          : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
        timeval tv{2, 0};
        setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    ~Peer() { close(fd_); }

    ike::Endpoint endpoint() const { return {a_, port_}; }

    void send_to(const char* to, uint16_t port, const Bytes& data)
    {
        sockaddr_storage ss = sockaddr_for(addr(to), port);
        ASSERT_EQ(sendto(fd_, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&ss), len()),
                  ssize_t(data.size()))
            << std::strerror(errno);
    }

    // The next datagram and who sent it; empty `from` on timeout.
    Bytes receive(ike::Endpoint& from)
    {
        uint8_t buf[70000];
        sockaddr_storage ss{};
        socklen_t l = sizeof ss;
        ssize_t n = recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&ss), &l);
        from = {};
        if (n < 0) return {};
        if (ss.ss_family == AF_INET) {
            auto* s = reinterpret_cast<sockaddr_in*>(&ss);
            from.addr.family = IpFamily::v4;
            std::memcpy(from.addr.bytes.data(), &s->sin_addr, 4);
            from.port = ntohs(s->sin_port);
        } else {
            auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
            from.addr.family = IpFamily::v6;
            std::memcpy(from.addr.bytes.data(), &s->sin6_addr, 16);
            from.port = ntohs(s->sin6_port);
        }
        return Bytes(buf, buf + n);
    }

private:
    sockaddr_storage sockaddr_for(const IpAddress& a, uint16_t port) const
    {
        sockaddr_storage ss{};
        if (a.family == IpFamily::v4) {
            auto* s = reinterpret_cast<sockaddr_in*>(&ss);
            s->sin_family = AF_INET;
            s->sin_port = htons(port);
            std::memcpy(&s->sin_addr, a.bytes.data(), 4);
        } else {
            auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
            s->sin6_family = AF_INET6;
            s->sin6_port = htons(port);
            std::memcpy(&s->sin6_addr, a.bytes.data(), 16);
        }
        return ss;
    }
    socklen_t len() const { return v4_ ? sizeof(sockaddr_in) : sizeof(sockaddr_in6); }

    int fd_ = -1;
    IpAddress a_;
    bool v4_ = true;
    uint16_t port_ = 0;
};

struct Delivered {
    ike::Endpoint local, remote;
    Bytes message;
};

// Waits (at most 2 s) until a transport socket is readable and drains
// every readable one.
std::vector<Delivered> pump(UdpTransport& t)
{
    std::vector<Delivered> out;
    std::vector<pollfd> fds;
    t.poll_fds(fds);
    if (poll(fds.data(), fds.size(), 2000) <= 0) return out;
    for (const auto& p : fds)
        if (p.revents & POLLIN)
            t.receive(p.fd, [&](const ike::Endpoint& l, const ike::Endpoint& r, ike::ByteView m) {
                out.push_back({l, r, Bytes(m.begin(), m.end())});
            });
    return out;
}

// Something shaped like an IKE message: a 28-byte header and a little more.
Bytes ike_message(uint8_t tag)
{
    Bytes m(40, tag);
    m[0] = 0x11;   // SPIi must not start with four zero bytes for this test's purpose
    return m;
}

Bytes with_marker(const Bytes& m)
{
    Bytes out(4 + m.size(), 0);
    std::copy(m.begin(), m.end(), out.begin() + 4);
    return out;
}

TEST(IkedUdpTransport, IkePortDeliversDatagramsAsTheyAre)
{
    UdpTransport t;
    std::string error;
    ASSERT_TRUE(t.open({"127.0.0.1"}, 0, 0, error)) << error;
    ASSERT_NE(t.ike_port(), 0);
    ASSERT_NE(t.nat_t_port(), 0);
    ASSERT_NE(t.ike_port(), t.nat_t_port());

    Peer peer("127.0.0.1");
    Bytes m = ike_message(1);
    peer.send_to("127.0.0.1", t.ike_port(), m);
    auto got = pump(t);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].message, m);
    EXPECT_EQ(got[0].local, (ike::Endpoint{addr("127.0.0.1"), t.ike_port()}));
    EXPECT_EQ(got[0].remote, peer.endpoint());

    // On port 500 four leading zero bytes are not a marker: delivered whole.
    Bytes zeros = with_marker(ike_message(2));
    peer.send_to("127.0.0.1", t.ike_port(), zeros);
    got = pump(t);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].message, zeros);
    EXPECT_EQ(t.stats().rx_ike, 2u);
}

TEST(IkedUdpTransport, NatTPortStripsMarkerCountsKeepalivesAndEsp)
{
    UdpTransport t;
    std::string error;
    ASSERT_TRUE(t.open({"127.0.0.1"}, 0, 0, error)) << error;
    Peer peer("127.0.0.1");
    const uint16_t natt = t.nat_t_port();

    Bytes m = ike_message(3);
    peer.send_to("127.0.0.1", natt, with_marker(m));
    auto got = pump(t);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].message, m) << "the non-ESP marker is stripped";
    EXPECT_EQ(got[0].local.port, natt);

    peer.send_to("127.0.0.1", natt, {0xff});                                       // keepalive
    peer.send_to("127.0.0.1", natt, {0x00, 0x00, 0x01, 0x00, 0, 0, 0, 1, 9, 9, 9, 9});  // ESP, SPI 0x100
    peer.send_to("127.0.0.1", natt, {0x00, 0x00, 0x00});                           // shorter than the marker
    peer.send_to("127.0.0.1", natt, {0xfe});                                       // one byte, not 0xff
    peer.send_to("127.0.0.1", natt, with_marker(Bytes(27, 0x22)));                 // marker + less than a header
    peer.send_to("127.0.0.1", natt, {0x00, 0x00, 0x00, 0x00});                     // marker alone
    // Nothing of these reaches the engine; the IKE message after them does.
    Bytes last = ike_message(4);
    peer.send_to("127.0.0.1", natt, with_marker(last));
    std::vector<Delivered> all;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (all.empty() && std::chrono::steady_clock::now() < deadline) {
        auto more = pump(t);
        all.insert(all.end(), more.begin(), more.end());
    }
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].message, last);
    const auto& s = t.stats();
    EXPECT_EQ(s.rx_keepalive, 1u);
    EXPECT_EQ(s.rx_esp_dropped, 1u);
    EXPECT_EQ(s.rx_malformed, 4u);
    EXPECT_EQ(s.rx_ike, 2u);
}

TEST(IkedUdpTransport, SendAddsTheMarkerOnlyFromTheNatTPort)
{
    UdpTransport t;
    std::string error;
    ASSERT_TRUE(t.open({"127.0.0.1"}, 0, 0, error)) << error;
    Peer peer("127.0.0.1");
    Bytes m = ike_message(5);
    ike::Endpoint from;

    t.send({addr("127.0.0.1"), t.ike_port()}, peer.endpoint(), m);
    EXPECT_EQ(peer.receive(from), m);
    EXPECT_EQ(from, (ike::Endpoint{addr("127.0.0.1"), t.ike_port()}));

    t.send({addr("127.0.0.1"), t.nat_t_port()}, peer.endpoint(), m);
    EXPECT_EQ(peer.receive(from), with_marker(m));
    EXPECT_EQ(from.port, t.nat_t_port());

    t.send_keepalive({addr("127.0.0.1"), t.nat_t_port()}, peer.endpoint());
    EXPECT_EQ(peer.receive(from), Bytes{0xff});
    EXPECT_EQ(from.port, t.nat_t_port());

    EXPECT_EQ(t.stats().tx_ike, 2u);
    EXPECT_EQ(t.stats().tx_keepalive, 1u);
    EXPECT_EQ(t.stats().tx_errors, 0u);

    // No socket on that port or address: counted, nothing sent.
    uint16_t unused = uint16_t(t.ike_port() == 1 ? 2 : 1);
    t.send({addr("127.0.0.1"), unused}, peer.endpoint(), m);
    t.send({addr("127.0.0.9"), t.ike_port()}, peer.endpoint(), m);
    t.send({addr("::1"), t.ike_port()}, peer.endpoint(), m);
    EXPECT_EQ(t.stats().tx_errors, 3u);
    EXPECT_EQ(t.stats().tx_ike, 2u);
}

TEST(IkedUdpTransport, WildcardSocketLearnsAndUsesTheLocalAddress)
{
    UdpTransport t;
    std::string error;
    ASSERT_TRUE(t.open({"0.0.0.0"}, 0, 0, error)) << error;
    Peer peer("127.0.0.1");
    Bytes m = ike_message(6);

    // All of 127/8 is local: the datagram's destination tells which address
    // the peer used.
    peer.send_to("127.0.0.2", t.ike_port(), m);
    auto got = pump(t);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].local, (ike::Endpoint{addr("127.0.0.2"), t.ike_port()}));

    // And a reply from that address leaves from it (IP_PKTINFO on sendmsg).
    ike::Endpoint from;
    t.send(got[0].local, got[0].remote, m);
    EXPECT_EQ(peer.receive(from), m);
    EXPECT_EQ(from, (ike::Endpoint{addr("127.0.0.2"), t.ike_port()}));
    t.send({addr("127.0.0.3"), t.nat_t_port()}, peer.endpoint(), m);
    EXPECT_EQ(peer.receive(from), with_marker(m));
    EXPECT_EQ(from, (ike::Endpoint{addr("127.0.0.3"), t.nat_t_port()}));
}

TEST(IkedUdpTransport, Ipv6)
{
    UdpTransport t;
    std::string error;
    ASSERT_TRUE(t.open({"::"}, 0, 0, error)) << error << " (IPv6 loopback needed)";
    Peer peer("::1");
    Bytes m = ike_message(7);
    peer.send_to("::1", t.nat_t_port(), with_marker(m));
    auto got = pump(t);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].message, m);
    EXPECT_EQ(got[0].local, (ike::Endpoint{addr("::1"), t.nat_t_port()}));
    EXPECT_EQ(got[0].remote, peer.endpoint());
    ike::Endpoint from;
    t.send(got[0].local, got[0].remote, m);
    EXPECT_EQ(peer.receive(from), with_marker(m));
    EXPECT_EQ(from, got[0].local);
}

TEST(IkedUdpTransport, BadListenAddressesAreRefused)
{
    UdpTransport t;
    std::string error;
    EXPECT_FALSE(t.open({"gw.example.net"}, 0, 0, error));
    EXPECT_NE(error.find("gw.example.net"), std::string::npos) << error;
    // 198.18.0.77 is not on this host: bind fails with a message naming it.
    EXPECT_FALSE(t.open({"198.18.0.77"}, 0, 0, error));
    EXPECT_NE(error.find("198.18.0.77"), std::string::npos) << error;
}

} // namespace
} // namespace ravelin::iked

// Standalone mode's IKE transport: kernel UDP sockets on the IKE port (500)
// and the NAT-T port (4500), IPv4 and IPv6, for each listen address or the
// wildcard.
//
// Datagrams are read with their destination address (IP_PKTINFO /
// IPV6_RECVPKTINFO), so the engine learns which of our addresses a peer
// talked to even on a wildcard socket, and replies leave from that address
// (sendmsg with a pktinfo control message). On the NAT-T port (RFC 3948 §2):
//
//   first four bytes zero  -> IKE with the non-ESP marker: strip, deliver
//   exactly one byte 0xff  -> NAT-keepalive: count, drop
//   anything else          -> ESP in UDP: no data plane here, count, drop
//
// An IKE datagram shorter than the 28-byte IKE header is counted and dropped.
// send() adds the marker when it sends from the NAT-T port.
#pragma once

#include <poll.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine.hh"

namespace ravelin::iked {

struct TransportStats {
    uint64_t rx_ike = 0;            // delivered to the engine
    uint64_t rx_keepalive = 0;
    uint64_t rx_esp_dropped = 0;    // ESP-in-UDP on the NAT-T port (no data plane)
    uint64_t rx_malformed = 0;      // shorter than marker + IKE header, or truncated
    uint64_t rx_errors = 0;         // recvmsg failures other than "nothing to read"
    uint64_t tx_ike = 0;
    uint64_t tx_keepalive = 0;
    uint64_t tx_errors = 0;         // no socket for the source endpoint, or sendmsg failed
};

class UdpTransport final : public ike::Transport {
public:
    using Deliver = std::function<void(const ike::Endpoint& local, const ike::Endpoint& remote,
                                       ike::ByteView message)>;

    UdpTransport() = default;
    ~UdpTransport() override;
    UdpTransport(const UdpTransport&) = delete;
    UdpTransport& operator=(const UdpTransport&) = delete;

    // Binds `addresses` (literal IPv4/IPv6; "0.0.0.0" and "::" are the
    // wildcards; empty = both wildcards) on `port` and `port_nat_t`. Port 0
    // lets the kernel choose (tests); ports() then tells what was bound.
    bool open(const std::vector<std::string>& addresses, uint16_t port, uint16_t port_nat_t,
              std::string& error);
    void close_all();

    // The IKE and NAT-T port actually bound (of the first socket pair).
    uint16_t ike_port() const { return ike_port_; }
    uint16_t nat_t_port() const { return nat_t_port_; }

    // For the daemon's poll loop: the socket fds; call receive() for each
    // that is readable. Reads at most `budget` datagrams from it.
    void poll_fds(std::vector<pollfd>& out) const;
    void receive(int fd, const Deliver& deliver, unsigned budget = 64);

    void send(const ike::Endpoint& local, const ike::Endpoint& remote, ike::ByteView message) override;
    void send_keepalive(const ike::Endpoint& local, const ike::Endpoint& remote) override;

    const TransportStats& stats() const { return stats_; }

private:
    struct Socket {
        int fd = -1;
        IpAddress addr;             // bound address (zeros for the wildcard)
        bool wildcard = false;
        uint16_t port = 0;          // bound port
        bool nat_t = false;
    };

    bool bind_one(const IpAddress& addr, bool wildcard, uint16_t port, bool nat_t, std::string& error);
    const Socket* find(const ike::Endpoint& local) const;
    void transmit(const ike::Endpoint& local, const ike::Endpoint& remote, ike::ByteView head,
                  ike::ByteView body, uint64_t& counter);

    std::vector<Socket> sockets_;
    uint16_t ike_port_ = 0, nat_t_port_ = 0;
    TransportStats stats_;
    std::vector<uint8_t> buf_;
};

// Address text to IpAddress (numeric only, never resolved).
bool parse_address(const std::string& text, IpAddress& out);

} // namespace ravelin::iked

#include "udp_transport.hh"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "datagram.hh"
#include "logging.hh"
#include "names.hh"

namespace ravelin::iked {

namespace {

constexpr std::size_t max_datagram = 65535 + marker_len;

bool is_zero(const IpAddress& a)
{
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a.bytes[i]) return false;
    return true;
}

socklen_t to_sockaddr(const IpAddress& a, uint16_t port, sockaddr_storage& ss)
{
    std::memset(&ss, 0, sizeof ss);
    if (a.family == IpFamily::v4) {
        auto* s = reinterpret_cast<sockaddr_in*>(&ss);
        s->sin_family = AF_INET;
        s->sin_port = htons(port);
        std::memcpy(&s->sin_addr, a.bytes.data(), 4);
        return sizeof *s;
    }
    auto* s = reinterpret_cast<sockaddr_in6*>(&ss);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    std::memcpy(&s->sin6_addr, a.bytes.data(), 16);
    return sizeof *s;
}

bool from_sockaddr(const sockaddr_storage& ss, ike::Endpoint& out)
{
    if (ss.ss_family == AF_INET) {
        const auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
        out.addr = IpAddress{};
        out.addr.family = IpFamily::v4;
        std::memcpy(out.addr.bytes.data(), &s->sin_addr, 4);
        out.port = ntohs(s->sin_port);
        return true;
    }
    if (ss.ss_family == AF_INET6) {
        const auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
        out.addr = IpAddress{};
        out.addr.family = IpFamily::v6;
        std::memcpy(out.addr.bytes.data(), &s->sin6_addr, 16);
        out.port = ntohs(s->sin6_port);
        return true;
    }
    return false;
}

} // namespace

bool parse_address(const std::string& text, IpAddress& out)
{
    out = IpAddress{};
    if (inet_pton(AF_INET, text.c_str(), out.bytes.data()) == 1) {
        out.family = IpFamily::v4;
        return true;
    }
    if (inet_pton(AF_INET6, text.c_str(), out.bytes.data()) == 1) {
        out.family = IpFamily::v6;
        return true;
    }
    return false;
}

UdpTransport::~UdpTransport() { close_all(); }

void UdpTransport::close_all()
{
    for (auto& s : sockets_)
        if (s.fd >= 0) ::close(s.fd);
    sockets_.clear();
}

bool UdpTransport::open(const std::vector<std::string>& addresses, uint16_t port,
                        uint16_t port_nat_t, std::string& error)
{
    close_all();
    buf_.resize(max_datagram);
    ike_port_ = port;
    nat_t_port_ = port_nat_t;
    std::vector<std::pair<IpAddress, bool>> binds;   // address, wildcard
    if (addresses.empty()) {
        binds.push_back({IpAddress{IpFamily::v4, {}}, true});
        binds.push_back({IpAddress{IpFamily::v6, {}}, true});
    }
    for (const auto& text : addresses) {
        IpAddress a;
        if (!parse_address(text, a)) {
            error = "listen address '" + text + "' is not a numeric IPv4 or IPv6 address";
            return false;
        }
        binds.push_back({a, is_zero(a)});
    }
    for (const auto& [addr, wildcard] : binds) {
        if (!bind_one(addr, wildcard, ike_port_, false, error) ||
            !bind_one(addr, wildcard, nat_t_port_, true, error)) {
            close_all();
            return false;
        }
    }
    auto log = logger("net");
    for (const auto& s : sockets_)
        log->info("listening on {}[{}]{}", s.wildcard ? (s.addr.family == IpFamily::v4 ? "0.0.0.0" : "::")
                                                     : format_address(s.addr),
                  s.port, s.nat_t ? " (NAT-T)" : "");
    return true;
}

bool UdpTransport::bind_one(const IpAddress& addr, bool wildcard, uint16_t port, bool nat_t,
                            std::string& error)
{
    const bool v4 = addr.family == IpFamily::v4;
    int fd = socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    auto fail = [&](const char* what) {
        error = std::string(what) + " " + format_address(addr) + " port " + std::to_string(port) +
                ": " + std::strerror(errno);
        if (fd >= 0) ::close(fd);
        return false;
    };
    if (fd < 0) return fail("cannot create a UDP socket for");
    int one = 1;
    if (v4) {
        if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) != 0)
            return fail("IP_PKTINFO on");
    } else {
        // Separate IPv4 and IPv6 sockets: no v4-mapped addresses to untangle.
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0 ||
            setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) != 0)
            return fail("IPV6_RECVPKTINFO on");
    }
    // A burst of IKE_SA_INITs (many peers after an outage) must not
    // overflow the default ~200 KiB: ask for 4 MiB (FORCE needs
    // CAP_NET_ADMIN; without it the kernel caps SO_RCVBUF at rmem_max).
    int rcvbuf = 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_storage ss;
    socklen_t len = to_sockaddr(addr, port, ss);
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) return fail("cannot bind");
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return fail("getsockname on");
    ike::Endpoint bound;
    from_sockaddr(ss, bound);
    // With port 0 the first socket of a role picks the port; the others
    // (other addresses, other family) then use the same one.
    if (nat_t) nat_t_port_ = bound.port;
    else ike_port_ = bound.port;
    sockets_.push_back({fd, addr, wildcard, bound.port, nat_t});
    return true;
}

void UdpTransport::poll_fds(std::vector<pollfd>& out) const
{
    for (const auto& s : sockets_) out.push_back({s.fd, POLLIN, 0});
}

void UdpTransport::receive(int fd, const Deliver& deliver, unsigned budget)
{
    auto it = std::find_if(sockets_.begin(), sockets_.end(), [fd](const Socket& s) { return s.fd == fd; });
    if (it == sockets_.end()) return;
    const Socket sock = *it;   // deliver() may send, which does not touch sockets_, but be safe
    auto log = logger("net");
    for (unsigned n = 0; n < budget; ++n) {
        sockaddr_storage from{};
        iovec iov{buf_.data(), buf_.size()};
        alignas(cmsghdr) char control[256];
        msghdr msg{};
        msg.msg_name = &from;
        msg.msg_namelen = sizeof from;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t got = recvmsg(sock.fd, &msg, MSG_DONTWAIT);
        if (got < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                ++stats_.rx_errors;
                log->debug("recvmsg on port {}: {}", sock.port, std::strerror(errno));
            }
            return;
        }
        ike::Endpoint remote, local;
        if (!from_sockaddr(from, remote)) {
            ++stats_.rx_errors;
            continue;
        }
        local.addr = sock.addr;
        local.port = sock.port;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                in_pktinfo pi;
                std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
                std::memcpy(local.addr.bytes.data(), &pi.ipi_addr, 4);
            } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
                in6_pktinfo pi;
                std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
                std::memcpy(local.addr.bytes.data(), &pi.ipi6_addr, 16);
            }
        }
        if (msg.msg_flags & MSG_TRUNC) {
            ++stats_.rx_malformed;
            continue;
        }
        ike::ByteView data(buf_.data(), std::size_t(got));
        switch (classify_datagram(sock.nat_t, data)) {
        case DatagramKind::keepalive: ++stats_.rx_keepalive; continue;
        case DatagramKind::esp: ++stats_.rx_esp_dropped; continue;
        case DatagramKind::malformed: ++stats_.rx_malformed; continue;
        case DatagramKind::ike: break;
        }
        ++stats_.rx_ike;
        deliver(local, remote, data);
    }
}

const UdpTransport::Socket* UdpTransport::find(const ike::Endpoint& local) const
{
    const Socket* wildcard = nullptr;
    for (const auto& s : sockets_) {
        if (s.port != local.port || s.addr.family != local.addr.family) continue;
        if (!s.wildcard && s.addr == local.addr) return &s;
        if (s.wildcard && !wildcard) wildcard = &s;
    }
    if (wildcard) return wildcard;
    // The engine may not know its address yet (initiating to a peer with no
    // local_addrs): any socket of the family and port will do.
    if (is_zero(local.addr))
        for (const auto& s : sockets_)
            if (s.port == local.port && s.addr.family == local.addr.family) return &s;
    return nullptr;
}

void UdpTransport::transmit(const ike::Endpoint& local, const ike::Endpoint& remote,
                            ike::ByteView head, ike::ByteView body, uint64_t& counter)
{
    auto log = logger("net");
    const Socket* s = find(local);
    if (!s || remote.addr.family != local.addr.family) {
        ++stats_.tx_errors;
        log->warn("no socket to send from {}[{}] to {}[{}]", format_address(local.addr), local.port,
                  format_address(remote.addr), remote.port);
        return;
    }
    sockaddr_storage to;
    socklen_t to_len = to_sockaddr(remote.addr, remote.port, to);
    iovec iov[2] = {{const_cast<uint8_t*>(head.data()), head.size()},
                    {const_cast<uint8_t*>(body.data()), body.size()}};
    msghdr msg{};
    msg.msg_name = &to;
    msg.msg_namelen = to_len;
    msg.msg_iov = iov;
    msg.msg_iovlen = 2;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
    // On a wildcard socket, pick the source address the peer knows us by.
    if (s->wildcard && !is_zero(local.addr)) {
        msg.msg_control = control;
        cmsghdr* c = reinterpret_cast<cmsghdr*>(control);
        if (local.addr.family == IpFamily::v4) {
            in_pktinfo pi{};
            std::memcpy(&pi.ipi_spec_dst, local.addr.bytes.data(), 4);
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof pi);
            std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
            msg.msg_controllen = CMSG_SPACE(sizeof pi);
        } else {
            in6_pktinfo pi{};
            std::memcpy(&pi.ipi6_addr, local.addr.bytes.data(), 16);
            c->cmsg_level = IPPROTO_IPV6;
            c->cmsg_type = IPV6_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof pi);
            std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
            msg.msg_controllen = CMSG_SPACE(sizeof pi);
        }
    }
    if (sendmsg(s->fd, &msg, MSG_DONTWAIT) < 0) {
        ++stats_.tx_errors;
        log->warn("sendmsg to {}[{}]: {}", format_address(remote.addr), remote.port, std::strerror(errno));
        return;
    }
    ++counter;
}

void UdpTransport::send(const ike::Endpoint& local, const ike::Endpoint& remote, ike::ByteView message)
{
    static const uint8_t marker[marker_len] = {0, 0, 0, 0};
    bool nat_t = local.port == nat_t_port_;
    transmit(local, remote, nat_t ? ike::ByteView(marker, marker_len) : ike::ByteView(), message,
             stats_.tx_ike);
}

void UdpTransport::send_keepalive(const ike::Endpoint& local, const ike::Endpoint& remote)
{
    static const uint8_t keepalive[1] = {0xff};
    transmit(local, remote, {}, ike::ByteView(keepalive, 1), stats_.tx_keepalive);
}

} // namespace ravelin::iked

#include "datagram.hh"

namespace ravelin::iked {

DatagramKind classify_datagram(bool nat_t_port, ike::ByteView& data)
{
    if (nat_t_port) {
        if (data.size() == 1 && data[0] == 0xff) return DatagramKind::keepalive;
        if (data.size() < marker_len) return DatagramKind::malformed;
        // A non-zero first word is an ESP SPI (RFC 3948 §2.1).
        if (data[0] || data[1] || data[2] || data[3]) return DatagramKind::esp;
        data = data.subspan(marker_len);
    }
    // Not even an IKE header: nothing the engine could answer.
    if (data.size() < ike::header_len) return DatagramKind::malformed;
    return DatagramKind::ike;
}

} // namespace ravelin::iked

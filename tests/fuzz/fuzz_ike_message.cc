// libFuzzer target: the IKE message codec (controlplane/ike/message.hh).
//
// The input is tried two ways:
//   1. as a datagram: parse_message();
//   2. as decrypted SK plaintext: the first byte is the first payload type
//      (the SK payload's Next Payload), the rest the chain: parse_payloads().
// Whatever parses is encoded again and re-parsed; that must succeed, give the
// same structure, and encode to the same bytes a second time (a parsed
// structure has one encoding). Seeds in corpus/ike_message/ are strongSwan
// datagrams and SK plaintexts from the testbed capture; the "_plaintext"
// ones are laid out as in 2.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "../unit/ike_message_equal.hh"
#include "message.hh"

namespace {

using namespace ravelin::ike;

void require(bool ok, const char* what)
{
    if (ok) return;
    std::fprintf(stderr, "fuzz_ike_message: %s\n", what);
    std::abort();
}

void check_status(const ParseStatus& s)
{
    // A failure names itself; success carries no payload type.
    require(!to_string(s.error).empty(), "unnamed error");
    require(!s || s.payload_type == 0, "success with a payload at fault");
}

void check_message(ByteView in)
{
    Message m;
    ParseStatus s = parse_message(in, m);
    check_status(s);
    if (!s) return;
    require(m.header.length == in.size(), "header length is not the datagram size");

    Bytes wire = encode_message(m.header, m.payloads);
    require(wire.size() <= in.size(), "re-encoding grew the message");
    Message again;
    require(bool(parse_message(wire, again)), "re-encoded message does not parse");
    require(test::same(again.payloads, m.payloads), "re-parsed payloads differ");
    Header want = m.header;
    want.length = uint32_t(wire.size());
    require(test::same(again.header, want), "re-parsed header differs");
    require(encode_message(again.header, again.payloads) == wire, "second encoding differs");
}

void check_plaintext(ByteView in)
{
    if (in.empty()) return;
    std::vector<Payload> payloads;
    ParseStatus s = parse_payloads(in[0], in.subspan(1), payloads);
    check_status(s);
    if (!s) return;

    Bytes wire;
    uint8_t first = encode_payloads(payloads, wire);
    require(first == (payloads.empty() ? 0 : in[0]), "first payload type changed");
    std::vector<Payload> again;
    require(bool(parse_payloads(first, wire, again)), "re-encoded chain does not parse");
    require(test::same(again, payloads), "re-parsed chain differs");
    Bytes wire2;
    encode_payloads(again, wire2);
    require(wire2 == wire, "second encoding of the chain differs");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    ByteView in(data, size);
    check_message(in);
    check_plaintext(in);
    return 0;
}

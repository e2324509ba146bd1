// IKEv2 message codec (controlplane/ike/message.hh): every payload type
// round trips, every ParseError comes from a hand-built input that has
// exactly that fault, the caps hold at their edge, and real strongSwan
// messages parse to what strongSwan negotiated and re-encode to the same bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ike_message_equal.hh"
#include "message.hh"

namespace ravelin::ike {
namespace {

using test::same;
using PT = PayloadType;

// --- helpers ----------------------------------------------------------------

Bytes hex(std::string_view s)
{
    auto nibble = [](char c) -> uint8_t {
        if (c >= '0' && c <= '9') return uint8_t(c - '0');
        if (c >= 'a' && c <= 'f') return uint8_t(c - 'a' + 10);
        ADD_FAILURE() << "bad hex digit " << c;
        return 0;
    };
    EXPECT_EQ(s.size() % 2, 0u);
    Bytes out;
    for (std::size_t i = 0; i + 1 < s.size(); i += 2)
        out.push_back(uint8_t(nibble(s[i]) << 4 | nibble(s[i + 1])));
    return out;
}

Bytes cat(std::initializer_list<Bytes> parts)
{
    Bytes out;
    for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
    return out;
}

Bytes be16(uint16_t v) { return {uint8_t(v >> 8), uint8_t(v)}; }

// Generic payload header with an explicit length, then the body.
Bytes payload_len(uint8_t next, uint16_t len, const Bytes& body, uint8_t flags = 0)
{
    return cat({{next, flags}, be16(len), body});
}

// Generic payload header with the right length.
Bytes payload(uint8_t next, const Bytes& body, uint8_t flags = 0)
{
    return payload_len(next, uint16_t(4 + body.size()), body, flags);
}

Bytes xform(uint8_t last, uint8_t type, uint16_t id, const Bytes& attrs = {})
{
    return cat({{last, 0}, be16(uint16_t(8 + attrs.size())), {type, 0}, be16(id), attrs});
}

Bytes key_length(uint16_t bits) { return cat({be16(0x800e), be16(bits)}); }

Bytes proposal(uint8_t last, uint8_t num_transforms, const Bytes& transforms,
               const Bytes& spi = {}, uint8_t protocol = 1)
{
    Bytes body = cat({{1, protocol, uint8_t(spi.size()), num_transforms}, spi, transforms});
    return cat({{last, 0}, be16(uint16_t(4 + body.size())), body});
}

Bytes selector_v4(uint8_t type = 7, uint16_t len = 16)
{
    return cat({{type, 6}, be16(len), be16(1000), be16(2000), {198, 18, 0, 0},
                {198, 18, 0, 255}});
}

struct Parsed {
    ParseStatus status;
    std::vector<Payload> payloads;
};

Parsed chain(uint8_t first, const Bytes& data)
{
    Parsed p;
    p.status = parse_payloads(first, data, p.payloads);
    return p;
}

// Compares by name so a failure prints "malformed", not 5.
void expect_error(const ParseStatus& s, ParseError want, uint8_t type, const char* what)
{
    EXPECT_EQ(to_string(s.error), to_string(want)) << what;
    EXPECT_EQ(int(s.payload_type), int(type)) << what;
}

void expect_ok(const ParseStatus& s, const char* what)
{
    EXPECT_TRUE(s) << what << ": " << to_string(s.error) << " at payload "
                   << int(s.payload_type);
}

Header test_header(uint32_t length = 0)
{
    Header h;
    h.spi_i = 0x0102030405060708;
    h.spi_r = 0x1112131415161718;
    h.exchange = ExchangeType::ike_auth;
    h.flags = header_flags::initiator;
    h.message_id = 7;
    h.length = length;
    return h;
}

Bytes with_header(uint8_t first, const Bytes& body)
{
    Header h = test_header(uint32_t(header_len + body.size()));
    h.next_payload = first;
    Bytes out;
    encode_header(h, out);
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

IpAddress v6(std::initializer_list<uint8_t> head)
{
    IpAddress a;
    a.family = IpFamily::v6;
    std::copy(head.begin(), head.end(), a.bytes.begin());
    return a;
}

// One payload of every kind the codec knows, in a legal order (SK last).
std::vector<Payload> one_of_each()
{
    SaPayload sa;
    sa.proposals.push_back({1, ProtocolId::ike, {},
                            {{TransformType::encr, 20, 256}, {TransformType::prf, 5, 0},
                             {TransformType::dh, 31, 0}}});
    sa.proposals.push_back({2, ProtocolId::esp, {0xde, 0xad, 0xbe, 0xef},
                            {{TransformType::encr, 12, 128}, {TransformType::integ, 12, 0},
                             {TransformType::esn, 1, 0}}});
    TsPayload tsi;
    tsi.selectors.push_back({17, 500, 500, IpAddress::v4(0xc6120001), IpAddress::v4(0xc6120001)});
    tsi.selectors.push_back({0, 0, 65535, IpAddress::v4(0xc6130000), IpAddress::v4(0xc61300ff)});
    TsPayload tsr;
    tsr.selectors.push_back({0, 0, 65535, v6({0x20, 0x01, 0x0d, 0xb8}),
                             v6({0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff})});
    CpPayload cp;
    cp.cfg_type = 1;
    cp.attributes = {{1, {}}, {8, {}}, {1, {198, 18, 5, 1}}};

    std::vector<Payload> v;
    v.push_back({PT::sa, false, sa});
    v.push_back({PT::ke, false, KePayload{31, Bytes(32, 0x42)}});
    v.push_back({PT::nonce, false, NoncePayload{Bytes(32, 0x07)}});
    v.push_back({PT::idi, false, IdPayload{IdType::fqdn, {'g', 'w', '.', 'a'}}});
    v.push_back({PT::idr, false, IdPayload{IdType::ipv4, {198, 18, 0, 2}}});
    v.push_back({PT::cert, false, CertPayload{4, Bytes(300, 0x30)}});
    v.push_back({PT::certreq, false, CertReqPayload{4, Bytes(40, 0x99)}});
    v.push_back({PT::auth, false, AuthPayload{AuthMethod::shared_key, Bytes(32, 0xaa)}});
    v.push_back({PT::notify, false,
                 NotifyPayload{ProtocolId::esp, {1, 2, 3, 4}, notify::rekey_sa, {}}});
    v.push_back({PT::notify, false,
                 NotifyPayload{ProtocolId::none, {}, notify::cookie, Bytes(16, 0x5c)}});
    v.push_back({PT::delete_, false, DeletePayload{ProtocolId::esp, {0xc0ffee01, 0xc0ffee02}}});
    v.push_back({PT::delete_, false, DeletePayload{ProtocolId::ike, {}}});
    v.push_back({PT::vendor, false, VendorPayload{{'r', 'a', 'v'}}});
    v.push_back({PT::tsi, false, tsi});
    v.push_back({PT::tsr, false, tsr});
    v.push_back({PT::cp, false, cp});
    v.push_back({PayloadType(200), false, UnknownPayload{200, {1, 2, 3}}});
    v.push_back({PT::sk, false, EncryptedPayload{uint8_t(PT::idi), Bytes(48, 0xe5)}});
    return v;
}

// --- round trips ----------------------------------------------------------------

TEST(IkeMessage, EveryPayloadTypeRoundTripsAlone)
{
    std::vector<Payload> all = one_of_each();
    all.push_back({PT::skf, false, FragmentPayload{uint8_t(PT::sa), 1, 3, Bytes(40, 0xf1)}});
    for (const Payload& p : all) {
        Bytes wire;
        uint8_t first = encode_payloads({p}, wire);
        Parsed back = chain(first, wire);
        std::string what = "payload type " + std::to_string(int(p.type));
        expect_ok(back.status, what.c_str());
        ASSERT_EQ(back.payloads.size(), 1u) << what;
        EXPECT_TRUE(same(back.payloads[0], p)) << what;
        // The last payload of a chain says "no next" unless it is SK/SKF.
        uint8_t want_next = 0;
        if (auto* sk = std::get_if<EncryptedPayload>(&p.body)) want_next = sk->first_inner;
        if (auto* skf = std::get_if<FragmentPayload>(&p.body)) want_next = skf->first_inner;
        EXPECT_EQ(wire[0], want_next) << what;
        EXPECT_EQ(std::size_t(wire[2] << 8 | wire[3]), wire.size()) << what;
    }
}

TEST(IkeMessage, WholeMessageRoundTripsWithLinksAndLengths)
{
    std::vector<Payload> payloads = one_of_each();
    Header h = test_header();
    Bytes wire = encode_message(h, payloads);
    EXPECT_EQ(wire.size(), std::size_t(wire[24] << 24 | wire[25] << 16 | wire[26] << 8 | wire[27]));
    EXPECT_EQ(wire[16], uint8_t(PT::sa));

    Message m;
    expect_ok(parse_message(wire, m), "whole message");
    EXPECT_EQ(m.header.length, wire.size());
    EXPECT_EQ(m.header.next_payload, uint8_t(PT::sa));
    EXPECT_EQ(m.header.spi_i, h.spi_i);
    EXPECT_EQ(m.header.spi_r, h.spi_r);
    EXPECT_EQ(m.header.message_id, 7u);
    EXPECT_EQ(m.header.exchange, ExchangeType::ike_auth);
    EXPECT_TRUE(m.header.from_initiator());
    EXPECT_FALSE(m.header.is_response());
    EXPECT_TRUE(same(m.payloads, payloads));

    // Walk the links by hand: each generic header names the next payload's
    // type, the SK names its first inner payload.
    std::size_t off = header_len;
    for (std::size_t i = 0; i < payloads.size(); ++i) {
        uint8_t want = i + 1 < payloads.size() ? uint8_t(payloads[i + 1].type) : uint8_t(PT::idi);
        EXPECT_EQ(wire[off], want) << "payload " << i;
        off += std::size_t(wire[off + 2] << 8 | wire[off + 3]);
    }
    EXPECT_EQ(off, wire.size());
}

TEST(IkeMessage, EncodesTheWireFormatsExactly)
{
    // A transform with Key Length, in TV format (attribute 0x800e).
    SaPayload sa;
    sa.proposals.push_back({1, ProtocolId::ike, {}, {{TransformType::encr, 20, 256}}});
    Bytes wire;
    EXPECT_EQ(encode_payloads({{PT::sa, false, sa}}, wire), uint8_t(PT::sa));
    EXPECT_EQ(wire, hex("00000018" "00000014010100010000000c01000014800e0100"));

    // IPv4 and IPv6 selectors: type 7 length 16, type 8 length 40.
    TsPayload ts;
    ts.selectors.push_back({6, 1, 2, IpAddress::v4(0x01020304), IpAddress::v4(0x05060708)});
    ts.selectors.push_back({0, 0, 65535, v6({0x20, 0x01}), v6({0x20, 0x02})});
    wire.clear();
    encode_payloads({{PT::tsi, false, ts}}, wire);
    EXPECT_EQ(wire, hex("00000040" "02000000"
                        "070600100001000201020304" "05060708"
                        "080000280000ffff" "20010000000000000000000000000000"
                        "20020000000000000000000000000000"));

    // The critical bit is written as given.
    wire.clear();
    encode_payloads({{PT::vendor, true, VendorPayload{{9}}}}, wire);
    EXPECT_EQ(wire, hex("0080000509"));
}

TEST(IkeMessage, KnownPayloadWithCriticalBitParsesAndKeepsTheBit)
{
    Bytes data = payload(0, Bytes(16, 1), 0x80);
    Parsed p = chain(uint8_t(PT::nonce), data);
    expect_ok(p.status, "critical nonce");
    ASSERT_EQ(p.payloads.size(), 1u);
    EXPECT_TRUE(p.payloads[0].critical);
    Bytes again;
    encode_payloads(p.payloads, again);
    EXPECT_EQ(again, data);
}

TEST(IkeMessage, UnknownNonCriticalPayloadIsKeptOpaque)
{
    // An unknown type between two known ones, and EAP, which the codec keeps
    // opaque too.
    Bytes data = cat({payload(201, Bytes(16, 1)), payload(uint8_t(PT::eap), {0xab, 0xcd}),
                      payload(0, {1, 2, 3, 4, 5})});
    Parsed p = chain(uint8_t(PT::nonce), data);
    expect_ok(p.status, "unknown payloads");
    ASSERT_EQ(p.payloads.size(), 3u);
    // Each generic header names the type of the payload after it.
    auto* u = std::get_if<UnknownPayload>(&p.payloads[1].body);
    ASSERT_NE(u, nullptr);
    EXPECT_EQ(u->type, 201);
    EXPECT_EQ(p.payloads[1].type, PayloadType(201));
    EXPECT_EQ(u->data, (Bytes{0xab, 0xcd}));
    auto* eap = std::get_if<UnknownPayload>(&p.payloads[2].body);
    ASSERT_NE(eap, nullptr);
    EXPECT_EQ(eap->type, uint8_t(PT::eap));
    EXPECT_EQ(p.payloads[2].type, PT::eap);
    EXPECT_EQ(eap->data, (Bytes{1, 2, 3, 4, 5}));
    Bytes again;
    EXPECT_EQ(encode_payloads(p.payloads, again), uint8_t(PT::nonce));
    EXPECT_EQ(again, data);
}

TEST(IkeMessage, UnknownCriticalPayloadIsReportedWithItsType)
{
    Bytes data = cat({payload(201, Bytes(16, 1)), payload(0, {1, 2}, 0x80)});
    expect_error(chain(uint8_t(PT::nonce), data).status, ParseError::unsupported_critical, 201,
                 "unknown critical");
    expect_error(chain(uint8_t(PT::eap), payload(0, {1}, 0x80)).status,
                 ParseError::unsupported_critical, uint8_t(PT::eap), "critical EAP");
    // Reserved bits beside the critical bit do not make a payload critical.
    expect_ok(chain(201, payload(0, {1}, 0x7f)).status, "reserved bits");
}

TEST(IkeMessage, TransformWithAnUnknownAttributeIsLeftOut)
{
    // RFC 7296 §3.3.6: such a transform is unacceptable, the message is not.
    Bytes attrs = cat({key_length(128), be16(0x8100), be16(5),        // TV, type 256
                       be16(0x0101), be16(3), {1, 2, 3}});             // TLV, type 257
    Bytes sa = proposal(0, 3,
                        cat({xform(3, 1, 20, key_length(256)), xform(3, 1, 12, attrs),
                             xform(0, 2, 5)}));
    Parsed p = chain(uint8_t(PT::sa), payload(0, sa));
    expect_ok(p.status, "unknown attribute");
    ASSERT_EQ(p.payloads.size(), 1u);
    const auto& prop = std::get<SaPayload>(p.payloads[0].body).proposals.at(0);
    ASSERT_EQ(prop.transforms.size(), 2u);
    EXPECT_EQ(prop.transforms[0], (Transform{TransformType::encr, 20, 256}));
    EXPECT_EQ(prop.transforms[1], (Transform{TransformType::prf, 5, 0}));
}

TEST(IkeMessage, SelectorWithStartAboveEndIsTheEnginesBusiness)
{
    Bytes sel = cat({{7, 0}, be16(16), be16(2000), be16(1000), {198, 18, 0, 9}, {198, 18, 0, 1}});
    Parsed p = chain(uint8_t(PT::tsi), payload(0, cat({{1, 0, 0, 0}, sel})));
    expect_ok(p.status, "start > end");
    const auto& ts = std::get<TsPayload>(p.payloads.at(0).body).selectors.at(0);
    EXPECT_EQ(ts.start_port, 2000);
    EXPECT_EQ(ts.end_port, 1000);
    EXPECT_EQ(ts.start, IpAddress::v4(0xc6120009));
    EXPECT_EQ(ts.end, IpAddress::v4(0xc6120001));
}

TEST(IkeMessage, NonceLengthLimitsAreInclusive)
{
    expect_ok(chain(uint8_t(PT::nonce), payload(0, Bytes(16, 1))).status, "16-byte nonce");
    expect_ok(chain(uint8_t(PT::nonce), payload(0, Bytes(256, 1))).status, "256-byte nonce");
}

TEST(IkeMessage, EmptyChain)
{
    Parsed p = chain(0, {});
    expect_ok(p.status, "empty");
    EXPECT_TRUE(p.payloads.empty());
    Bytes out;
    EXPECT_EQ(encode_payloads({}, out), 0);
    EXPECT_TRUE(out.empty());
    Bytes msg = encode_message(test_header(), {});
    EXPECT_EQ(msg.size(), header_len);
    Message m;
    expect_ok(parse_message(msg, m), "header only");
    EXPECT_EQ(m.header.next_payload, 0);
}

// --- the header -------------------------------------------------------------------

TEST(IkeMessage, HeaderChecks)
{
    Bytes good = encode_message(test_header(), {{PT::nonce, false, NoncePayload{Bytes(16, 3)}}});
    Header h;
    expect_ok(parse_header(good, h), "good header");
    EXPECT_EQ(h.length, good.size());
    EXPECT_EQ(h.version, 0x20);

    // Shorter than a header.
    expect_error(parse_header(ByteView(good).first(27), h), ParseError::truncated, 0, "27 bytes");
    expect_error(parse_header({}, h), ParseError::truncated, 0, "0 bytes");

    // Major version 1 or 3: bad_version, with the header still filled in
    // (the answer needs the SPIs). The minor version is ignored.
    for (uint8_t version : {uint8_t(0x10), uint8_t(0x30)}) {
        Bytes b = good;
        b[17] = version;
        Header bad;
        expect_error(parse_header(b, bad), ParseError::bad_version, 0, "major version");
        EXPECT_EQ(bad.spi_i, 0x0102030405060708u);
        EXPECT_EQ(bad.message_id, 7u);
    }
    Bytes minor = good;
    minor[17] = 0x2f;
    expect_ok(parse_header(minor, h), "minor version 15");

    // Length must equal the datagram size.
    Bytes longer = good;
    longer.push_back(0);
    expect_error(parse_header(longer, h), ParseError::bad_length, 0, "datagram longer");
    expect_error(parse_header(ByteView(good).first(good.size() - 1), h), ParseError::bad_length,
                 0, "datagram shorter");

    // Length below 28, even when it matches nothing else.
    Bytes small = good;
    small.resize(header_len);
    small[27] = 20;
    expect_error(parse_header(small, h), ParseError::bad_length, 0, "length 20");

    // Above max_message_len even when it equals the datagram size.
    Bytes huge = good;
    huge.resize(max_message_len + 1);
    uint32_t n = uint32_t(huge.size());
    huge[24] = uint8_t(n >> 24), huge[25] = uint8_t(n >> 16), huge[26] = uint8_t(n >> 8),
    huge[27] = uint8_t(n);
    expect_error(parse_header(huge, h), ParseError::bad_length, 0, "length 65536");

    // parse_message stops at the header.
    Message m;
    expect_error(parse_message(longer, m), ParseError::bad_length, 0, "message, bad length");
}

TEST(IkeMessage, HeaderEncodesAsGiven)
{
    Header h = test_header(0x01020304);
    h.next_payload = 46;
    h.version = 0x21;
    h.flags = header_flags::response;
    Bytes out;
    encode_header(h, out);
    EXPECT_EQ(out, hex("0102030405060708" "1112131415161718" "2e212320" "00000007" "01020304"));
    EXPECT_TRUE(h.is_response());
}

TEST(IkeMessage, MessageBodyErrorsComeThroughParseMessage)
{
    Message m;
    Bytes msg = with_header(uint8_t(PT::nonce), payload(0, Bytes(15, 1)));
    expect_error(parse_message(msg, m), ParseError::malformed, uint8_t(PT::nonce), "short nonce");
    msg = with_header(uint8_t(PT::nonce), payload(0, Bytes(16, 1)));
    expect_ok(parse_message(msg, m), "nonce message");
}

// --- every ParseError from a hand-built input ---------------------------------------

TEST(IkeMessage, Truncated)
{
    const uint8_t sa = uint8_t(PT::sa);
    struct Case {
        const char* what;
        uint8_t first;
        Bytes data;
    };
    Bytes long_nonce = payload(0, Bytes(20, 1));
    long_nonce.resize(12);
    const Case cases[] = {
        {"no data for the named payload", uint8_t(PT::nonce), {}},
        {"generic header cut", uint8_t(PT::nonce), {0, 0}},
        {"payload length past the data", uint8_t(PT::nonce), long_nonce},
        {"next payload named, none there", uint8_t(PT::vendor), payload(uint8_t(PT::vendor), {1})},
        {"proposal length past the SA", sa,
         payload(0, cat({{0, 0}, be16(60), {1, 1, 0, 0}}))},
        {"transform length past the proposal", sa,
         payload(0, proposal(0, 1, cat({{0, 0}, be16(20), {1, 0, 0, 12}})))},
        {"proposal SPI past the proposal", sa,
         payload(0, cat({{0, 0}, be16(10), {1, 3, 4, 0}, {1, 2}}))},
        {"TLV attribute past the transform", sa,
         payload(0, proposal(0, 1, xform(0, 1, 12, cat({be16(0x0101), be16(10), {1, 2}}))))},
        {"half an attribute", sa, payload(0, proposal(0, 1, xform(0, 1, 12, {0x80, 0x0e})))},
        {"notify SPI past the payload", uint8_t(PT::notify),
         payload(0, cat({{3, 8}, be16(16393), {1, 2, 3, 4}}))},
        {"delete SPIs past the payload", uint8_t(PT::delete_),
         payload(0, cat({{3, 4}, be16(3), {1, 2, 3, 4, 5, 6, 7, 8}}))},
        {"selector count past the payload", uint8_t(PT::tsi),
         payload(0, cat({{2, 0, 0, 0}, selector_v4()}))},
        {"selector length past the payload", uint8_t(PT::tsi),
         payload(0, cat({{1, 0, 0, 0}, {7, 0}, be16(40), Bytes(12, 0)}))},
        {"CP attribute past the payload", uint8_t(PT::cp),
         payload(0, cat({{1, 0, 0, 0}, be16(1), be16(4), {198, 18}}))},
    };
    for (const Case& c : cases)
        expect_error(chain(c.first, c.data).status, ParseError::truncated, c.first, c.what);
}

TEST(IkeMessage, BadLength)
{
    struct Case {
        const char* what;
        uint8_t first;
        Bytes data;
        uint8_t at;
    };
    const uint8_t sa = uint8_t(PT::sa);
    const Case cases[] = {
        {"payload length 3", uint8_t(PT::vendor), payload_len(0, 3, {}), uint8_t(PT::vendor)},
        {"SA without room for a proposal", sa, payload(0, {0, 0, 0, 4}), sa},
        {"KE without group and reserved", uint8_t(PT::ke), payload(0, {0, 31}),
         uint8_t(PT::ke)},
        {"ID without its fixed part", uint8_t(PT::idi), payload(0, {1}), uint8_t(PT::idi)},
        {"AUTH without its fixed part", uint8_t(PT::auth), payload(0, {2, 0, 0}),
         uint8_t(PT::auth)},
        {"CERT without encoding", uint8_t(PT::cert), payload(0, {}), uint8_t(PT::cert)},
        {"CERTREQ without encoding", uint8_t(PT::certreq), payload(0, {}), uint8_t(PT::certreq)},
        {"notify without its fixed part", uint8_t(PT::notify), payload(0, {0, 0, 0x40}),
         uint8_t(PT::notify)},
        {"delete without its fixed part", uint8_t(PT::delete_), payload(0, {1}),
         uint8_t(PT::delete_)},
        {"TS without its fixed part", uint8_t(PT::tsr), payload(0, {}), uint8_t(PT::tsr)},
        {"CP without its fixed part", uint8_t(PT::cp), payload(0, {1, 0}), uint8_t(PT::cp)},
        {"SKF without numbers", uint8_t(PT::skf), payload(0, {0, 1, 0}), uint8_t(PT::skf)},
        {"proposal length 7", sa, payload(0, cat({{0, 0}, be16(7), {1, 1, 0, 0}})), sa},
        {"transform length 7", sa,
         payload(0, proposal(0, 1, cat({{0, 0}, be16(7), {1, 0, 0, 12}}))), sa},
        {"IPv4 selector of IPv6 length", uint8_t(PT::tsi),
         payload(0, cat({{1, 0, 0, 0}, {7, 0}, be16(40), Bytes(36, 0)})), uint8_t(PT::tsi)},
        {"selector length 3", uint8_t(PT::tsi),
         payload(0, cat({{1, 0, 0, 0}, {7, 0}, be16(3), Bytes(12, 0)})), uint8_t(PT::tsi)},
        {"IPv6 selector of IPv4 length", uint8_t(PT::tsi),
         payload(0, cat({{1, 0, 0, 0}, selector_v4(8, 16)})), uint8_t(PT::tsi)},
        {"bytes after the last payload", uint8_t(PT::vendor), cat({payload(0, {1}), {0, 0}}),
         uint8_t(PT::vendor)},
        {"bytes with no payload", 0, {0, 0, 0, 4}, 0},
    };
    for (const Case& c : cases)
        expect_error(chain(c.first, c.data).status, ParseError::bad_length, c.at, c.what);
}

TEST(IkeMessage, Malformed)
{
    const uint8_t sa = uint8_t(PT::sa);
    Bytes enc = xform(3, 1, 20, key_length(256));
    Bytes prf_last = xform(0, 2, 5);
    struct Case {
        const char* what;
        uint8_t first;
        Bytes data;
    };
    const Case cases[] = {
        {"proposal flagged 1", sa, payload(0, proposal(1, 2, cat({enc, prf_last})))},
        {"only proposal flagged more", sa, payload(0, proposal(2, 2, cat({enc, prf_last})))},
        {"proposal after the last", sa,
         payload(0, cat({proposal(0, 2, cat({enc, prf_last})), proposal(0, 2, cat({enc, prf_last}))}))},
        {"last transform flagged more", sa,
         payload(0, proposal(0, 2, cat({enc, xform(3, 2, 5)})))},
        {"middle transform flagged last", sa,
         payload(0, proposal(0, 2, cat({xform(0, 1, 20, key_length(256)), prf_last})))},
        {"more transforms than counted", sa, payload(0, proposal(0, 1, cat({enc, prf_last})))},
        {"fewer transforms than counted", sa, payload(0, proposal(0, 3, cat({enc, prf_last})))},
        {"Key Length in TLV format", sa,
         payload(0, proposal(0, 1, xform(0, 1, 20, cat({be16(14), be16(2), be16(256)}))))},
        {"Key Length twice", sa,
         payload(0, proposal(0, 1, xform(0, 1, 20, cat({key_length(128), key_length(256)}))))},
        {"Key Length zero", sa, payload(0, proposal(0, 1, xform(0, 1, 20, key_length(0))))},
        {"nonce of 15 bytes", uint8_t(PT::nonce), payload(0, Bytes(15, 1))},
        {"nonce of 257 bytes", uint8_t(PT::nonce), payload(0, Bytes(257, 1))},
        {"notify SPI size 3", uint8_t(PT::notify),
         payload(0, cat({{3, 3}, be16(16393), {1, 2, 3}}))},
        {"IKE delete with SPI size 8", uint8_t(PT::delete_),
         payload(0, cat({{1, 8}, be16(1), Bytes(8, 1)}))},
        {"IKE delete with a count", uint8_t(PT::delete_), payload(0, cat({{1, 0}, be16(1)}))},
        {"IKE delete with trailing bytes", uint8_t(PT::delete_),
         payload(0, cat({{1, 0}, be16(0), {1, 2, 3, 4}}))},
        {"ESP delete with SPI size 8", uint8_t(PT::delete_),
         payload(0, cat({{3, 8}, be16(1), Bytes(8, 1)}))},
        {"AH delete with SPI size 0", uint8_t(PT::delete_), payload(0, cat({{2, 0}, be16(0)}))},
        {"delete of protocol 9", uint8_t(PT::delete_),
         payload(0, cat({{9, 4}, be16(1), {1, 2, 3, 4}}))},
        {"ESP delete with more bytes than SPIs", uint8_t(PT::delete_),
         payload(0, cat({{3, 4}, be16(1), Bytes(8, 1)}))},
        {"TS type 10", uint8_t(PT::tsi), payload(0, cat({{1, 0, 0, 0}, selector_v4(10)}))},
        {"more selectors than counted", uint8_t(PT::tsi),
         payload(0, cat({{1, 0, 0, 0}, selector_v4(), selector_v4()}))},
        {"SKF number 0", uint8_t(PT::skf), payload(0, cat({be16(0), be16(2), Bytes(20, 1)}))},
        {"SKF number above total", uint8_t(PT::skf),
         payload(0, cat({be16(3), be16(2), Bytes(20, 1)}))},
    };
    for (const Case& c : cases)
        expect_error(chain(c.first, c.data).status, ParseError::malformed, c.first, c.what);

    // The good neighbours of those cases parse.
    expect_ok(chain(sa, payload(0, proposal(0, 2, cat({enc, prf_last})))).status, "good SA");
    expect_ok(chain(uint8_t(PT::delete_), payload(0, cat({{1, 0}, be16(0)}))).status, "IKE del");
    expect_ok(chain(uint8_t(PT::notify), payload(0, cat({{1, 8}, be16(16393), Bytes(8, 1)})))
                  .status,
              "notify SPI 8");
    expect_ok(chain(uint8_t(PT::skf), payload(0, cat({be16(2), be16(2), Bytes(20, 1)}))).status,
              "SKF 2/2");
}

TEST(IkeMessage, CapsHoldAtTheirEdge)
{
    // Payloads: 64 parse, 65 do not.
    auto vendors = [](std::size_t n) {
        Bytes data;
        for (std::size_t i = 0; i < n; ++i)
            data = cat({data, payload(i + 1 < n ? uint8_t(PT::vendor) : 0, {uint8_t(i)})});
        return data;
    };
    Parsed ok = chain(uint8_t(PT::vendor), vendors(max_payloads));
    expect_ok(ok.status, "64 payloads");
    EXPECT_EQ(ok.payloads.size(), max_payloads);
    expect_error(chain(uint8_t(PT::vendor), vendors(max_payloads + 1)).status,
                 ParseError::too_many, uint8_t(PT::vendor), "65 payloads");

    // Proposals.
    auto proposals = [](std::size_t n) {
        Bytes body;
        for (std::size_t i = 0; i < n; ++i)
            body = cat({body, proposal(i + 1 < n ? 2 : 0, 1, xform(0, 2, 5))});
        return payload(0, body);
    };
    Parsed p = chain(uint8_t(PT::sa), proposals(max_proposals));
    expect_ok(p.status, "64 proposals");
    EXPECT_EQ(std::get<SaPayload>(p.payloads.at(0).body).proposals.size(), max_proposals);
    expect_error(chain(uint8_t(PT::sa), proposals(max_proposals + 1)).status,
                 ParseError::too_many, uint8_t(PT::sa), "65 proposals");

    // Transforms in one proposal.
    auto transforms = [](std::size_t n) {
        Bytes t;
        for (std::size_t i = 0; i < n; ++i)
            t = cat({t, xform(i + 1 < n ? 3 : 0, 1, uint16_t(i))});
        return payload(0, proposal(0, uint8_t(n), t));
    };
    p = chain(uint8_t(PT::sa), transforms(max_transforms));
    expect_ok(p.status, "64 transforms");
    EXPECT_EQ(std::get<SaPayload>(p.payloads.at(0).body).proposals.at(0).transforms.size(),
              max_transforms);
    expect_error(chain(uint8_t(PT::sa), transforms(max_transforms + 1)).status,
                 ParseError::too_many, uint8_t(PT::sa), "65 transforms");

    // Selectors.
    auto selectors = [](std::size_t n) {
        Bytes body{uint8_t(n), 0, 0, 0};
        for (std::size_t i = 0; i < n; ++i) body = cat({body, selector_v4()});
        return payload(0, body);
    };
    p = chain(uint8_t(PT::tsr), selectors(max_selectors));
    expect_ok(p.status, "64 selectors");
    EXPECT_EQ(std::get<TsPayload>(p.payloads.at(0).body).selectors.size(), max_selectors);
    expect_error(chain(uint8_t(PT::tsr), selectors(max_selectors + 1)).status,
                 ParseError::too_many, uint8_t(PT::tsr), "65 selectors");

    // SPIs in a delete.
    auto deletes = [](std::size_t n) {
        return payload(0, cat({{3, 4}, be16(uint16_t(n)), Bytes(n * 4, 0x11)}));
    };
    p = chain(uint8_t(PT::delete_), deletes(max_delete_spis));
    expect_ok(p.status, "256 SPIs");
    EXPECT_EQ(std::get<DeletePayload>(p.payloads.at(0).body).spis.size(), max_delete_spis);
    expect_error(chain(uint8_t(PT::delete_), deletes(max_delete_spis + 1)).status,
                 ParseError::too_many, uint8_t(PT::delete_), "257 SPIs");
}

TEST(IkeMessage, SkAndSkfMustBeLast)
{
    // SK's Next Payload is its first inner payload, so the chain ends there;
    // anything after it in the datagram is an error.
    Bytes sk = payload(uint8_t(PT::idi), Bytes(40, 0xe5));
    Parsed p = chain(uint8_t(PT::sk), sk);
    expect_ok(p.status, "SK alone");
    EXPECT_EQ(std::get<EncryptedPayload>(p.payloads.at(0).body).first_inner, uint8_t(PT::idi));

    expect_error(chain(uint8_t(PT::sk), cat({sk, payload(0, {1})})).status,
                 ParseError::sk_not_last, uint8_t(PT::sk), "payload after SK");
    expect_error(chain(uint8_t(PT::vendor), cat({payload(uint8_t(PT::sk), {1}), sk, {0}})).status,
                 ParseError::sk_not_last, uint8_t(PT::sk), "byte after SK");

    Bytes skf = payload(uint8_t(PT::sa), cat({be16(1), be16(2), Bytes(40, 0xf1)}));
    expect_ok(chain(uint8_t(PT::skf), skf).status, "SKF alone");
    expect_error(chain(uint8_t(PT::skf), cat({skf, payload(0, {1})})).status,
                 ParseError::sk_not_last, uint8_t(PT::skf), "payload after SKF");

    // In a whole message too.
    Message m;
    Bytes msg = with_header(uint8_t(PT::sk), cat({sk, payload(0, {1})}));
    expect_error(parse_message(msg, m), ParseError::sk_not_last, uint8_t(PT::sk), "message");
}

TEST(IkeMessage, ToStringNamesEveryError)
{
    const ParseError all[] = {ParseError::none,        ParseError::truncated,
                              ParseError::bad_length,  ParseError::bad_version,
                              ParseError::unsupported_critical, ParseError::malformed,
                              ParseError::too_many,    ParseError::sk_not_last};
    std::vector<std::string_view> names;
    for (ParseError e : all) names.push_back(to_string(e));
    EXPECT_EQ(names[1], "truncated");
    EXPECT_EQ(names[7], "sk_not_last");
    std::sort(names.begin(), names.end());
    EXPECT_TRUE(std::adjacent_find(names.begin(), names.end()) == names.end())
        << "names must differ";
    EXPECT_FALSE(to_string(ParseError(99)).empty());
}

TEST(IkeMessage, FindNotifyAndPayload)
{
    std::vector<Payload> v = one_of_each();
    const NotifyPayload* n = find_notify(v, notify::cookie);
    ASSERT_NE(n, nullptr);
    EXPECT_EQ(n->data, Bytes(16, 0x5c));
    const NotifyPayload* rekey = find_notify(v, notify::rekey_sa);
    ASSERT_NE(rekey, nullptr);
    EXPECT_EQ(rekey->spi, (Bytes{1, 2, 3, 4}));
    EXPECT_EQ(find_notify(v, notify::initial_contact), nullptr);
    const IdPayload* idr = find_payload<IdPayload>(v, PT::idr);
    ASSERT_NE(idr, nullptr);
    EXPECT_EQ(idr->type, IdType::ipv4);
}

// --- real messages ----------------------------------------------------------------
//
// From /work/shared/testbed/strongswan/captures/strongswan-ikev2-psk.pcap, two
// strongSwan 5.9.8 instances (198.18.0.1 initiator, 198.18.0.2 responder)
// negotiating AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519 with a PSK: the
// UDP payloads of frames 1 and 2 (IKE_SA_INIT on port 500) and of frame 3
// (IKE_AUTH on port 4500, without the 4-byte non-ESP marker), extracted with
// scapy. The "_plain" strings are SK plaintexts: frames 3, 11 and 13
// decrypted with the SK_ei from the capture's keys.txt (AES-GCM, RFC 5282),
// padding and pad length removed; their first byte is the SK payload's Next
// Payload (the first inner payload type), the rest the inner chain.

constexpr std::string_view sa_init_request =
    "2cb480d740a756ca00000000000000002120220800000000000000e822000028"
    "00000024010100030300000c01000014800e0100030000080200000500000008"
    "0400001f28000028001f000014f12238644437222e86890733e3fb349b174249"
    "4e69303f71d4f38c5fd0045929000024c248ae80358fcfddc51d79c7c114309a"
    "98915c57e4c5e75f37517bf541516daf2900001c000040049a44388131f1b3a5"
    "81074a4ec68bbf607f72939e2900001c0000400508b2f7382363f1627d1945ef"
    "521e682b5a33e1f7290000080000402e290000100000402f0002000300040005"
    "0000000800004016";

constexpr std::string_view sa_init_response =
    "2cb480d740a756ca00d1892298dee0bf2120222000000000000000f022000028"
    "00000024010100030300000c01000014800e0100030000080200000500000008"
    "0400001f28000028001f0000d5f53f79a0ea6cd549de52771cad4af245cae524"
    "fd43919795b1f73eec9c565e29000024adafcda0e6564b03ba7321a866df2527"
    "8914515198b4dd3034a6ebd795a4a2e42900001c000040043dee71fec5b726e8"
    "b8a63f8d0c94572af476b1772900001c00004005b5f25cc8c96c7312098d7c03"
    "348148a9978c6479290000080000402e290000100000402f0002000300040005"
    "29000008000040220000000800004014";

constexpr std::string_view ike_auth_request =
    "2cb480d740a756ca00d1892298dee0bf2e20230800000001000000ed230000d1"
    "108f712f60dc1f052e8a06c18e74ae089597ee45ded9b44469aede6d14844921"
    "ffa02f8073048d4a78b6f89f8867ef361413b1ee42186fdf5e0dea6c4d5d5e78"
    "31ae58d2f4a86dc22cb6433f4d80174a8bb13e9a320e782de96338b256178a6f"
    "3e857f118049b9d3aae69892871f128302df327a3db282cf73ab9a53ae8e6074"
    "9b8bb0ec7da8fb46d230c339174c98f10382b5308b7e2793fec8cfd77396360c"
    "3890cd133f53a0d6709be1e60db40726b107481547b2058389ee5fcc9128574e"
    "10088c69853adf28e77509ed3a";

constexpr std::string_view ike_auth_request_plain =
    "232900000c01000000c612000124000008000040002700000c01000000c61200"
    "022100002802000000cd2425b61896c7913d93bc13ade7edcd3ecaf5f41a0431"
    "e5f5d7283b811e76642c0000240000002001030402f88201b30300000c010000"
    "14800e010000000008050000002d00001801000000070000100000ffffc61301"
    "00c61301ff2900001801000000070000100000ffffc6130200c61302ff290000"
    "080000401429000008000040210000000800004024";

constexpr std::string_view create_child_request_plain =
    "292100000c03044009f88201b32800002c0000002801030403a0fefdf1030000"
    "0c01000014800e0100030000080400001f000000080500000022000024ec2434"
    "944e8674d62a9fafe71f06e2b4cd2a582c375760710939a6340e1d56882c0000"
    "28001f0000c98f819ca3164a1f59eab35c6f9fb0500ad0a3b29d44ebe2720e4e"
    "dad9f48e6b2d00001801000000070000100000ffffc6130100c61301ff000000"
    "1801000000070000100000ffffc6130200c61302ff";

constexpr std::string_view informational_delete_plain = "2a0000000c03040001f88201b3";

// The IKE_SA_INIT checks both directions share.
void check_sa_init(const Message& m, std::size_t notifies)
{
    EXPECT_EQ(m.header.spi_i, 0x2cb480d740a756caU);
    EXPECT_EQ(m.header.exchange, ExchangeType::ike_sa_init);
    EXPECT_EQ(m.header.message_id, 0u);
    EXPECT_EQ(m.header.next_payload, uint8_t(PT::sa));
    ASSERT_EQ(m.payloads.size(), 3 + notifies);

    const SaPayload* sa = find_payload<SaPayload>(m.payloads, PT::sa);
    ASSERT_NE(sa, nullptr);
    ASSERT_EQ(sa->proposals.size(), 1u);
    const Proposal& p = sa->proposals[0];
    EXPECT_EQ(p.number, 1);
    EXPECT_EQ(p.protocol, ProtocolId::ike);
    EXPECT_TRUE(p.spi.empty());
    const std::vector<Transform> want = {
        {TransformType::encr, 20, 256},     // ENCR_AES_GCM_16, 256-bit key
        {TransformType::prf, 5, 0},         // PRF_HMAC_SHA2_256
        {TransformType::dh, 31, 0},         // Curve25519
    };
    EXPECT_EQ(p.transforms, want);

    const KePayload* ke = find_payload<KePayload>(m.payloads, PT::ke);
    ASSERT_NE(ke, nullptr);
    EXPECT_EQ(ke->group, 31);
    EXPECT_EQ(ke->data.size(), 32u);

    const NoncePayload* nonce = find_payload<NoncePayload>(m.payloads, PT::nonce);
    ASSERT_NE(nonce, nullptr);
    EXPECT_EQ(nonce->data.size(), 32u);

    for (uint16_t type : {notify::nat_detection_source_ip, notify::nat_detection_destination_ip}) {
        const NotifyPayload* n = find_notify(m.payloads, type);
        ASSERT_NE(n, nullptr) << type;
        EXPECT_EQ(n->data.size(), 20u) << "SHA-1 of SPIs, address and port";
        EXPECT_TRUE(n->spi.empty());
    }
    EXPECT_NE(find_notify(m.payloads, notify::ikev2_fragmentation_supported), nullptr);
    const NotifyPayload* hashes = find_notify(m.payloads, notify::signature_hash_algorithms);
    ASSERT_NE(hashes, nullptr);
    EXPECT_EQ(hashes->data, (Bytes{0, 2, 0, 3, 0, 4, 0, 5}));
    for (const Payload& pl : m.payloads) EXPECT_FALSE(pl.critical);
}

Bytes reencode(const Message& m) { return encode_message(m.header, m.payloads); }

TEST(IkeMessageStrongswan, SaInitRequest)
{
    Bytes wire = hex(sa_init_request);
    Message m;
    expect_ok(parse_message(wire, m), "IKE_SA_INIT request");
    EXPECT_EQ(m.header.spi_r, 0u);
    EXPECT_TRUE(m.header.from_initiator());
    EXPECT_FALSE(m.header.is_response());
    EXPECT_EQ(m.header.length, 232u);
    check_sa_init(m, 5);
    EXPECT_NE(find_notify(m.payloads, 16406), nullptr);    // REDIRECT_SUPPORTED
    EXPECT_EQ(reencode(m), wire);
}

TEST(IkeMessageStrongswan, SaInitResponse)
{
    Bytes wire = hex(sa_init_response);
    Message m;
    expect_ok(parse_message(wire, m), "IKE_SA_INIT response");
    EXPECT_EQ(m.header.spi_r, 0x00d1892298dee0bfU);
    EXPECT_TRUE(m.header.is_response());
    EXPECT_FALSE(m.header.from_initiator());
    check_sa_init(m, 6);
    EXPECT_NE(find_notify(m.payloads, 16404), nullptr);    // MULTIPLE_AUTH_SUPPORTED
    EXPECT_EQ(reencode(m), wire);
}

TEST(IkeMessageStrongswan, IkeAuthRequestKeepsSkEncrypted)
{
    Bytes wire = hex(ike_auth_request);
    Message m;
    expect_ok(parse_message(wire, m), "IKE_AUTH request");
    EXPECT_EQ(m.header.exchange, ExchangeType::ike_auth);
    EXPECT_EQ(m.header.message_id, 1u);
    ASSERT_EQ(m.payloads.size(), 1u);
    const auto* sk = std::get_if<EncryptedPayload>(&m.payloads[0].body);
    ASSERT_NE(sk, nullptr);
    EXPECT_EQ(sk->first_inner, uint8_t(PT::idi));
    EXPECT_EQ(sk->body.size(), wire.size() - header_len - generic_header_len);
    EXPECT_EQ(reencode(m), wire);
}

// Parses a "_plain" string: first byte, then the chain.
Parsed plain(std::string_view text)
{
    Bytes b = hex(text);
    return chain(b.at(0), Bytes(b.begin() + 1, b.end()));
}

void expect_reencodes(const Parsed& p, std::string_view text)
{
    Bytes b = hex(text);
    Bytes out;
    EXPECT_EQ(encode_payloads(p.payloads, out), b.at(0));
    EXPECT_EQ(out, Bytes(b.begin() + 1, b.end()));
}

TEST(IkeMessageStrongswan, IkeAuthPlaintext)
{
    Parsed p = plain(ike_auth_request_plain);
    expect_ok(p.status, "IKE_AUTH plaintext");
    const PayloadType order[] = {PT::idi,    PT::notify, PT::idr,    PT::auth,  PT::sa,
                                 PT::tsi,    PT::tsr,    PT::notify, PT::notify, PT::notify};
    ASSERT_EQ(p.payloads.size(), std::size(order));
    for (std::size_t i = 0; i < std::size(order); ++i) EXPECT_EQ(p.payloads[i].type, order[i]);

    const IdPayload* idi = find_payload<IdPayload>(p.payloads, PT::idi);
    ASSERT_NE(idi, nullptr);
    EXPECT_EQ(idi->type, IdType::ipv4);
    EXPECT_EQ(idi->data, (Bytes{198, 18, 0, 1}));
    EXPECT_EQ(find_payload<IdPayload>(p.payloads, PT::idr)->data, (Bytes{198, 18, 0, 2}));
    EXPECT_NE(find_notify(p.payloads, notify::initial_contact), nullptr);

    const AuthPayload* auth = find_payload<AuthPayload>(p.payloads, PT::auth);
    ASSERT_NE(auth, nullptr);
    EXPECT_EQ(auth->method, AuthMethod::shared_key);
    EXPECT_EQ(auth->data.size(), 32u);      // PRF_HMAC_SHA2_256 output

    const SaPayload* sa = find_payload<SaPayload>(p.payloads, PT::sa);
    ASSERT_NE(sa, nullptr);
    ASSERT_EQ(sa->proposals.size(), 1u);
    EXPECT_EQ(sa->proposals[0].protocol, ProtocolId::esp);
    EXPECT_EQ(sa->proposals[0].spi, (Bytes{0xf8, 0x82, 0x01, 0xb3}));
    const std::vector<Transform> want = {{TransformType::encr, 20, 256},
                                         {TransformType::esn, 0, 0}};
    EXPECT_EQ(sa->proposals[0].transforms, want);

    const TsPayload* tsi = find_payload<TsPayload>(p.payloads, PT::tsi);
    ASSERT_NE(tsi, nullptr);
    ASSERT_EQ(tsi->selectors.size(), 1u);
    EXPECT_EQ(tsi->selectors[0],
              (TrafficSelector{0, 0, 65535, IpAddress::v4(0xc6130100), IpAddress::v4(0xc61301ff)}));
    const TsPayload* tsr = find_payload<TsPayload>(p.payloads, PT::tsr);
    ASSERT_NE(tsr, nullptr);
    EXPECT_EQ(tsr->selectors.at(0).start, IpAddress::v4(0xc6130200));
    expect_reencodes(p, ike_auth_request_plain);
}

TEST(IkeMessageStrongswan, CreateChildSaPlaintext)
{
    Parsed p = plain(create_child_request_plain);
    expect_ok(p.status, "CREATE_CHILD_SA plaintext");
    const NotifyPayload* rekey = find_notify(p.payloads, notify::rekey_sa);
    ASSERT_NE(rekey, nullptr);
    EXPECT_EQ(rekey->protocol, ProtocolId::esp);
    EXPECT_EQ(rekey->spi, (Bytes{0xf8, 0x82, 0x01, 0xb3}));
    const SaPayload* sa = find_payload<SaPayload>(p.payloads, PT::sa);
    ASSERT_NE(sa, nullptr);
    EXPECT_EQ(sa->proposals.at(0).transforms.at(1), (Transform{TransformType::dh, 31, 0}));
    const KePayload* ke = find_payload<KePayload>(p.payloads, PT::ke);
    ASSERT_NE(ke, nullptr);
    EXPECT_EQ(ke->group, 31);
    EXPECT_EQ(ke->data.size(), 32u);
    expect_reencodes(p, create_child_request_plain);
}

TEST(IkeMessageStrongswan, DeletePlaintext)
{
    Parsed p = plain(informational_delete_plain);
    expect_ok(p.status, "INFORMATIONAL plaintext");
    ASSERT_EQ(p.payloads.size(), 1u);
    const auto& del = std::get<DeletePayload>(p.payloads[0].body);
    EXPECT_EQ(del.protocol, ProtocolId::esp);
    EXPECT_EQ(del.spis, (std::vector<uint32_t>{0xf88201b3}));
    expect_reencodes(p, informational_delete_plain);
}

// Every prefix of a real message is refused, and so is every single-byte
// change that breaks it, without crashing; each accepted mutation re-encodes
// to a message that parses to the same structure.
TEST(IkeMessageStrongswan, PrefixesAndByteFlipsNeverCrash)
{
    Bytes wire = hex(sa_init_response);
    Message m;
    for (std::size_t n = 0; n < wire.size(); ++n)
        EXPECT_FALSE(parse_message(ByteView(wire).first(n), m)) << "prefix " << n;
    for (std::size_t i = 0; i < wire.size(); ++i) {
        for (uint8_t flip : {uint8_t(0x01), uint8_t(0x80), uint8_t(0xff)}) {
            Bytes b = wire;
            b[i] ^= flip;
            if (!parse_message(b, m)) continue;
            Message again;
            ASSERT_TRUE(parse_message(reencode(m), again)) << "byte " << i;
            EXPECT_TRUE(same(again.payloads, m.payloads)) << "byte " << i;
        }
    }
}

} // namespace
} // namespace ravelin::ike

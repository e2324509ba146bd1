// IKEv2 message codec (RFC 7296 §3, RFC 7383 §2.5).
//
// Parsing goes through a bounded Reader. Each payload body has one parse
// function that checks lengths and counts before it fills the struct, and one
// encode function beside it. The chain walker (parse_payloads) owns the
// generic payload header, the payload count cap and the rule that SK/SKF ends
// the chain.
//
// Which error a bad length gets:
//   bad_length  a length below the fixed minimum of its structure (payload,
//               proposal, transform) or a selector length that does not fit
//               its type; also bytes left over after the last payload;
//   truncated   a declared length (payload, substructure, SPI size,
//               attribute, count of fixed-size items) running past what
//               contains it;
//   malformed   everything else that is inconsistent inside a payload.
//
// Forward compatibility (RFC 7296 §3.3.6): a transform carrying an attribute
// other than Key Length cannot be understood, so it is unacceptable; the
// parser leaves it out of its proposal (the proposal may then lack a type and
// be refused by selection) instead of refusing the whole message. Transform
// types, transform ids, proposal protocols and SPI sizes are not judged here:
// proposal selection does that.
#include "message.hh"

#include <algorithm>

namespace ravelin::ike {
namespace {

// A read cursor over a byte span. A read past the end returns zeros and makes
// ok() false for good; the parse functions check remaining() before reading
// so they can name the error, and ok() guards the rest.
class Reader {
public:
    explicit Reader(ByteView data) : data_(data) {}

    bool ok() const { return ok_; }
    std::size_t remaining() const { return data_.size() - pos_; }

    uint8_t u8()
    {
        if (!need(1)) return 0;
        return data_[pos_++];
    }
    uint16_t u16()
    {
        if (!need(2)) return 0;
        uint16_t v = uint16_t(data_[pos_] << 8 | data_[pos_ + 1]);
        pos_ += 2;
        return v;
    }
    uint32_t u32()
    {
        uint32_t hi = u16();
        return hi << 16 | u16();
    }
    uint64_t u64()
    {
        uint64_t hi = u32();
        return hi << 32 | u32();
    }
    ByteView take(std::size_t n)
    {
        if (!need(n)) return {};
        ByteView v = data_.subspan(pos_, n);
        pos_ += n;
        return v;
    }
    Bytes copy(std::size_t n)
    {
        ByteView v = take(n);
        return Bytes(v.begin(), v.end());
    }
    Bytes copy_rest() { return copy(remaining()); }
    void skip(std::size_t n) { take(n); }

private:
    bool need(std::size_t n)
    {
        if (ok_ && n <= remaining()) return true;
        ok_ = false;
        return false;
    }

    ByteView data_;
    std::size_t pos_ = 0;
    bool ok_ = true;
};

void put_u8(Bytes& out, uint8_t v) { out.push_back(v); }
void put_u16(Bytes& out, uint16_t v)
{
    out.push_back(uint8_t(v >> 8));
    out.push_back(uint8_t(v));
}
void put_u32(Bytes& out, uint32_t v)
{
    put_u16(out, uint16_t(v >> 16));
    put_u16(out, uint16_t(v));
}
void put_u64(Bytes& out, uint64_t v)
{
    put_u32(out, uint32_t(v >> 32));
    put_u32(out, uint32_t(v));
}
void put_bytes(Bytes& out, ByteView v) { out.insert(out.end(), v.begin(), v.end()); }
void put_zeros(Bytes& out, std::size_t n) { out.insert(out.end(), n, 0); }

// Fills in the 16-bit length field (at offset 2) of the structure that
// starts at `start` and runs to the end of `out`: generic payload headers,
// proposals and transforms all keep it there.
void patch_len16(Bytes& out, std::size_t start)
{
    std::size_t len = out.size() - start;
    out[start + 2] = uint8_t(len >> 8);
    out[start + 3] = uint8_t(len);
}

constexpr uint8_t critical_bit = 0x80;
constexpr uint16_t attr_tv_bit = 0x8000;     // Attribute Format bit: TV
constexpr uint16_t attr_key_length = 14;
constexpr uint8_t last_proposal = 0, more_proposals = 2;
constexpr uint8_t last_transform = 0, more_transforms = 3;
constexpr std::size_t min_nonce = 16, max_nonce = 256;
constexpr std::size_t ts_v4_len = 16, ts_v6_len = 40;

// --- SA payload ------------------------------------------------------------
//
// Proposal substructure (§3.3.1), then Transform substructure (§3.3.2) and
// Transform attribute (§3.3.5), each row 32 bits:
//
//   | last (0/2) | reserved | proposal length          |
//   | number     | protocol | SPI size | #transforms   |
//   | SPI (SPI size bytes) ... | transforms ...        |
//
//   | last (0/3) | reserved | transform length         |
//   | type       | reserved | transform id             |
//   | attributes ...                                   |
//
//   | 1 | attribute type (15) | value (TV)             |
//   | 0 | attribute type (15) | length | value ... (TLV)

// Attributes of one transform. Sets `understood` false when an attribute
// other than Key Length is present.
ParseError parse_attributes(Reader& r, Transform& t, bool& understood)
{
    bool have_key_length = false;
    while (r.remaining() > 0) {
        if (r.remaining() < 4) return ParseError::truncated;
        uint16_t type = r.u16();
        uint16_t value = r.u16();
        bool tv = type & attr_tv_bit;
        type &= uint16_t(~attr_tv_bit);
        if (!tv) {
            if (value > r.remaining()) return ParseError::truncated;
            r.skip(value);
        }
        if (type != attr_key_length) {
            understood = false;
            continue;
        }
        // Key Length is TV only, at most once, and never zero (0 means absent).
        if (!tv || have_key_length || value == 0) return ParseError::malformed;
        have_key_length = true;
        t.key_bits = value;
    }
    return ParseError::none;
}

// Transforms of one proposal: exactly `count`, the last flagged 0, the others 3.
ParseError parse_transforms(Reader& r, uint8_t count, std::vector<Transform>& out)
{
    if (count > max_transforms) return ParseError::too_many;
    for (unsigned i = 0; i < count; ++i) {
        if (r.remaining() < 4) return ParseError::truncated;
        uint8_t last = r.u8();
        r.u8();
        uint16_t len = r.u16();
        if (len < 8) return ParseError::bad_length;
        if (len - 4u > r.remaining()) return ParseError::truncated;
        uint8_t want = i + 1 == count ? last_transform : more_transforms;
        if (last != want) return ParseError::malformed;

        Reader body(r.take(len - 4u));
        Transform t;
        t.type = TransformType(body.u8());
        body.u8();
        t.id = body.u16();
        bool understood = true;
        if (ParseError e = parse_attributes(body, t, understood); e != ParseError::none)
            return e;
        if (understood) out.push_back(t);
    }
    // Bytes after the transform flagged last.
    return r.remaining() == 0 ? ParseError::none : ParseError::malformed;
}

ParseError parse_proposal(Reader& r, Proposal& p)
{
    p.number = r.u8();
    p.protocol = ProtocolId(r.u8());
    uint8_t spi_size = r.u8();
    uint8_t count = r.u8();
    if (spi_size > r.remaining()) return ParseError::truncated;
    p.spi = r.copy(spi_size);
    return parse_transforms(r, count, p.transforms);
}

ParseError parse_sa(Reader& r, SaPayload& out)
{
    bool last_seen = false;
    while (r.remaining() > 0) {
        if (last_seen) return ParseError::malformed;     // after the last proposal
        if (out.proposals.size() == max_proposals) return ParseError::too_many;
        if (r.remaining() < 4) return ParseError::truncated;
        uint8_t last = r.u8();
        r.u8();
        uint16_t len = r.u16();
        if (len < 8) return ParseError::bad_length;
        if (len - 4u > r.remaining()) return ParseError::truncated;
        if (last != last_proposal && last != more_proposals) return ParseError::malformed;
        last_seen = last == last_proposal;

        Reader body(r.take(len - 4u));
        Proposal p;
        if (ParseError e = parse_proposal(body, p); e != ParseError::none) return e;
        out.proposals.push_back(std::move(p));
    }
    return last_seen ? ParseError::none : ParseError::malformed;
}

void encode_sa(const SaPayload& sa, Bytes& out)
{
    for (std::size_t i = 0; i < sa.proposals.size(); ++i) {
        const Proposal& p = sa.proposals[i];
        std::size_t start = out.size();
        put_u8(out, i + 1 == sa.proposals.size() ? last_proposal : more_proposals);
        put_zeros(out, 3);
        put_u8(out, p.number);
        put_u8(out, uint8_t(p.protocol));
        put_u8(out, uint8_t(p.spi.size()));
        put_u8(out, uint8_t(p.transforms.size()));
        put_bytes(out, p.spi);
        for (std::size_t j = 0; j < p.transforms.size(); ++j) {
            const Transform& t = p.transforms[j];
            std::size_t tstart = out.size();
            put_u8(out, j + 1 == p.transforms.size() ? last_transform : more_transforms);
            put_zeros(out, 3);
            put_u8(out, uint8_t(t.type));
            put_u8(out, 0);
            put_u16(out, t.id);
            if (t.key_bits != 0) {
                put_u16(out, attr_tv_bit | attr_key_length);
                put_u16(out, t.key_bits);
            }
            patch_len16(out, tstart);
        }
        patch_len16(out, start);
    }
}

// --- payloads with a small fixed part --------------------------------------
//
//   KE (§3.4):       | DH group | reserved (16)  | key exchange data ...
//   ID (§3.5):       | ID type | reserved (24)   | identification data ...
//   CERT (§3.6):     | encoding | certificate data ...
//   CERTREQ (§3.7):  | encoding | certification authority ...
//   AUTH (§3.8):     | method | reserved (24)    | authentication data ...
//   Nonce (§3.9):    | nonce data (16..256 bytes) ...
//   Vendor (§3.12):  | vendor id ...

ParseError parse_ke(Reader& r, KePayload& out)
{
    out.group = r.u16();
    r.skip(2);
    out.data = r.copy_rest();
    return ParseError::none;
}

ParseError parse_id(Reader& r, IdPayload& out)
{
    out.type = IdType(r.u8());
    r.skip(3);
    out.data = r.copy_rest();
    return ParseError::none;
}

ParseError parse_auth(Reader& r, AuthPayload& out)
{
    out.method = AuthMethod(r.u8());
    r.skip(3);
    out.data = r.copy_rest();
    return ParseError::none;
}

ParseError parse_nonce(Reader& r, NoncePayload& out)
{
    if (r.remaining() < min_nonce || r.remaining() > max_nonce) return ParseError::malformed;
    out.data = r.copy_rest();
    return ParseError::none;
}

// --- Notify (§3.10) and Delete (§3.11) -----------------------------------------
//
//   | protocol | SPI size | notify message type      |
//   | SPI (0, 4 or 8 bytes) ... | notification data ... |
//
//   | protocol | SPI size | number of SPIs           |
//   | SPIs (number x SPI size) ...                   |

ParseError parse_notify(Reader& r, NotifyPayload& out)
{
    out.protocol = ProtocolId(r.u8());
    uint8_t spi_size = r.u8();
    out.type = r.u16();
    if (spi_size != 0 && spi_size != 4 && spi_size != 8) return ParseError::malformed;
    if (spi_size > r.remaining()) return ParseError::truncated;
    out.spi = r.copy(spi_size);
    out.data = r.copy_rest();
    return ParseError::none;
}

void encode_notify(const NotifyPayload& n, Bytes& out)
{
    put_u8(out, uint8_t(n.protocol));
    put_u8(out, uint8_t(n.spi.size()));
    put_u16(out, n.type);
    put_bytes(out, n.spi);
    put_bytes(out, n.data);
}

ParseError parse_delete(Reader& r, DeletePayload& out)
{
    out.protocol = ProtocolId(r.u8());
    uint8_t spi_size = r.u8();
    uint16_t count = r.u16();
    switch (out.protocol) {
    case ProtocolId::ike:
        // The IKE SA is the one the message travels in: no SPIs.
        if (spi_size != 0 || count != 0 || r.remaining() != 0) return ParseError::malformed;
        return ParseError::none;
    case ProtocolId::esp:
    case ProtocolId::ah:
        break;
    default:
        return ParseError::malformed;
    }
    if (spi_size != 4) return ParseError::malformed;
    if (count > max_delete_spis) return ParseError::too_many;
    if (count * 4u > r.remaining()) return ParseError::truncated;
    if (count * 4u < r.remaining()) return ParseError::malformed;
    out.spis.reserve(count);
    for (unsigned i = 0; i < count; ++i) out.spis.push_back(r.u32());
    return ParseError::none;
}

void encode_delete(const DeletePayload& d, Bytes& out)
{
    // An IKE SA delete carries no SPIs whatever the struct holds.
    bool ike = d.protocol == ProtocolId::ike;
    put_u8(out, uint8_t(d.protocol));
    put_u8(out, ike ? 0 : 4);
    put_u16(out, ike ? 0 : uint16_t(d.spis.size()));
    if (ike) return;
    for (uint32_t spi : d.spis) put_u32(out, spi);
}

// --- Traffic selectors (§3.13, §3.13.1) ------------------------------------------
//
//   | number of TSs | reserved (24)                  |
//   | TS type (7/8) | IP protocol | selector length  |
//   | start port               | end port            |
//   | starting address (4 or 16 bytes) ...           |
//   | ending address (4 or 16 bytes) ...             |

ParseError parse_selector(Reader& r, TrafficSelector& ts)
{
    if (r.remaining() < 4) return ParseError::truncated;
    uint8_t type = r.u8();
    ts.protocol = r.u8();
    uint16_t len = r.u16();
    if (len >= 4 && len - 4u > r.remaining()) return ParseError::truncated;
    IpFamily family;
    if (type == uint8_t(TsType::ipv4_range)) {
        family = IpFamily::v4;
        if (len != ts_v4_len) return ParseError::bad_length;
    } else if (type == uint8_t(TsType::ipv6_range)) {
        family = IpFamily::v6;
        if (len != ts_v6_len) return ParseError::bad_length;
    } else {
        return ParseError::malformed;       // a TS type this codec cannot hold
    }
    ts.start_port = r.u16();
    ts.end_port = r.u16();
    ts.start.family = ts.end.family = family;
    std::size_t n = family == IpFamily::v4 ? 4 : 16;
    ByteView a = r.take(n), b = r.take(n);
    std::copy(a.begin(), a.end(), ts.start.bytes.begin());
    std::copy(b.begin(), b.end(), ts.end.bytes.begin());
    return ParseError::none;
}

ParseError parse_ts(Reader& r, TsPayload& out)
{
    uint8_t count = r.u8();
    r.skip(3);
    if (count > max_selectors) return ParseError::too_many;
    for (unsigned i = 0; i < count; ++i) {
        TrafficSelector ts;
        if (ParseError e = parse_selector(r, ts); e != ParseError::none) return e;
        out.selectors.push_back(ts);
    }
    return r.remaining() == 0 ? ParseError::none : ParseError::malformed;
}

void encode_ts(const TsPayload& p, Bytes& out)
{
    put_u8(out, uint8_t(p.selectors.size()));
    put_zeros(out, 3);
    for (const TrafficSelector& ts : p.selectors) {
        // The start address's family decides the type; the end is written
        // with the same size.
        bool v4 = ts.start.family == IpFamily::v4;
        std::size_t n = v4 ? 4 : 16;
        put_u8(out, uint8_t(v4 ? TsType::ipv4_range : TsType::ipv6_range));
        put_u8(out, ts.protocol);
        put_u16(out, uint16_t(v4 ? ts_v4_len : ts_v6_len));
        put_u16(out, ts.start_port);
        put_u16(out, ts.end_port);
        put_bytes(out, ByteView(ts.start.bytes.data(), n));
        put_bytes(out, ByteView(ts.end.bytes.data(), n));
    }
}

// --- Configuration (§3.15, §3.15.1) ------------------------------------------------
//
//   | CFG type | reserved (24)                       |
//   | R | attribute type (15) | length               |
//   | value (length bytes) ... | more attributes ... |

ParseError parse_cp(Reader& r, CpPayload& out)
{
    out.cfg_type = r.u8();
    r.skip(3);
    while (r.remaining() > 0) {
        if (r.remaining() < 4) return ParseError::truncated;
        uint16_t type = r.u16() & 0x7fff;   // the R bit is reserved
        uint16_t len = r.u16();
        if (len > r.remaining()) return ParseError::truncated;
        out.attributes.emplace_back(type, r.copy(len));
    }
    return ParseError::none;
}

void encode_cp(const CpPayload& cp, Bytes& out)
{
    put_u8(out, cp.cfg_type);
    put_zeros(out, 3);
    for (const auto& [type, value] : cp.attributes) {
        put_u16(out, type & 0x7fff);
        put_u16(out, uint16_t(value.size()));
        put_bytes(out, value);
    }
}

// --- SK (§3.14) and SKF (RFC 7383 §2.5) -------------------------------------------
//
//   SK:  | IV | encrypted payloads, padding, pad length | ICV |
//   SKF: | fragment number | total fragments | IV | ... | ICV |
//
// The generic header's Next Payload of both names the first payload inside.

ParseError parse_skf(Reader& r, uint8_t next, FragmentPayload& out)
{
    out.first_inner = next;
    out.number = r.u16();
    out.total = r.u16();
    if (out.number == 0 || out.number > out.total) return ParseError::malformed;
    out.body = r.copy_rest();
    return ParseError::none;
}

// --- dispatch -------------------------------------------------------------------

// Smallest payload length (generic header included) for each known type.
std::size_t min_payload_len(uint8_t type)
{
    switch (PayloadType(type)) {
    case PayloadType::sa: return generic_header_len + 8;       // one proposal header
    case PayloadType::ke:
    case PayloadType::idi:
    case PayloadType::idr:
    case PayloadType::auth:
    case PayloadType::notify:
    case PayloadType::delete_:
    case PayloadType::tsi:
    case PayloadType::tsr:
    case PayloadType::cp:
    case PayloadType::skf: return generic_header_len + 4;
    case PayloadType::cert:
    case PayloadType::certreq: return generic_header_len + 1;
    default: return generic_header_len;
    }
}

// Fills `out` from the payload body (the bytes after the generic header).
// `next` is the generic header's Next Payload, which SK and SKF keep.
ParseError parse_body(uint8_t type, uint8_t next, bool critical, ByteView body, PayloadBody& out)
{
    Reader r(body);
    auto with = [&](auto payload, auto parse) {
        ParseError e = parse(r, payload);
        out = std::move(payload);
        return e;
    };
    switch (PayloadType(type)) {
    case PayloadType::sa: return with(SaPayload{}, parse_sa);
    case PayloadType::ke: return with(KePayload{}, parse_ke);
    case PayloadType::idi:
    case PayloadType::idr: return with(IdPayload{}, parse_id);
    case PayloadType::cert: {
        CertPayload c{r.u8(), r.copy_rest()};
        out = std::move(c);
        return ParseError::none;
    }
    case PayloadType::certreq: {
        CertReqPayload c{r.u8(), r.copy_rest()};
        out = std::move(c);
        return ParseError::none;
    }
    case PayloadType::auth: return with(AuthPayload{}, parse_auth);
    case PayloadType::nonce: return with(NoncePayload{}, parse_nonce);
    case PayloadType::notify: return with(NotifyPayload{}, parse_notify);
    case PayloadType::delete_: return with(DeletePayload{}, parse_delete);
    case PayloadType::vendor: out = VendorPayload{r.copy_rest()}; return ParseError::none;
    case PayloadType::tsi:
    case PayloadType::tsr: return with(TsPayload{}, parse_ts);
    case PayloadType::cp: return with(CpPayload{}, parse_cp);
    case PayloadType::sk: out = EncryptedPayload{next, r.copy_rest()}; return ParseError::none;
    case PayloadType::skf: {
        FragmentPayload f;
        ParseError e = parse_skf(r, next, f);
        out = std::move(f);
        return e;
    }
    default:
        // EAP (48) is among these until the engine speaks it.
        if (critical) return ParseError::unsupported_critical;
        out = UnknownPayload{type, r.copy_rest()};
        return ParseError::none;
    }
}

bool ends_chain(const Payload& p)
{
    return std::holds_alternative<EncryptedPayload>(p.body) ||
           std::holds_alternative<FragmentPayload>(p.body);
}

// The type a payload is written as. The body decides, except for the pairs
// sharing a body (IDi/IDr, TSi/TSr) where `type` picks one of the two.
uint8_t wire_type(const Payload& p)
{
    struct Visitor {
        PayloadType declared;
        uint8_t operator()(const SaPayload&) const { return uint8_t(PayloadType::sa); }
        uint8_t operator()(const KePayload&) const { return uint8_t(PayloadType::ke); }
        uint8_t operator()(const IdPayload&) const
        {
            return uint8_t(declared == PayloadType::idr ? PayloadType::idr : PayloadType::idi);
        }
        uint8_t operator()(const CertPayload&) const { return uint8_t(PayloadType::cert); }
        uint8_t operator()(const CertReqPayload&) const { return uint8_t(PayloadType::certreq); }
        uint8_t operator()(const AuthPayload&) const { return uint8_t(PayloadType::auth); }
        uint8_t operator()(const NoncePayload&) const { return uint8_t(PayloadType::nonce); }
        uint8_t operator()(const NotifyPayload&) const { return uint8_t(PayloadType::notify); }
        uint8_t operator()(const DeletePayload&) const { return uint8_t(PayloadType::delete_); }
        uint8_t operator()(const TsPayload&) const
        {
            return uint8_t(declared == PayloadType::tsr ? PayloadType::tsr : PayloadType::tsi);
        }
        uint8_t operator()(const VendorPayload&) const { return uint8_t(PayloadType::vendor); }
        uint8_t operator()(const CpPayload&) const { return uint8_t(PayloadType::cp); }
        uint8_t operator()(const EncryptedPayload&) const { return uint8_t(PayloadType::sk); }
        uint8_t operator()(const FragmentPayload&) const { return uint8_t(PayloadType::skf); }
        uint8_t operator()(const UnknownPayload& u) const { return u.type; }
    };
    return std::visit(Visitor{p.type}, p.body);
}

void encode_body(const PayloadBody& body, Bytes& out)
{
    struct Visitor {
        Bytes& out;
        void operator()(const SaPayload& p) { encode_sa(p, out); }
        void operator()(const KePayload& p)
        {
            put_u16(out, p.group);
            put_zeros(out, 2);
            put_bytes(out, p.data);
        }
        void operator()(const IdPayload& p) { fixed_then(uint8_t(p.type), 3, p.data); }
        void operator()(const CertPayload& p) { fixed_then(p.encoding, 0, p.data); }
        void operator()(const CertReqPayload& p) { fixed_then(p.encoding, 0, p.data); }
        void operator()(const AuthPayload& p) { fixed_then(uint8_t(p.method), 3, p.data); }
        void operator()(const NoncePayload& p) { put_bytes(out, p.data); }
        void operator()(const NotifyPayload& p) { encode_notify(p, out); }
        void operator()(const DeletePayload& p) { encode_delete(p, out); }
        void operator()(const TsPayload& p) { encode_ts(p, out); }
        void operator()(const VendorPayload& p) { put_bytes(out, p.data); }
        void operator()(const CpPayload& p) { encode_cp(p, out); }
        void operator()(const EncryptedPayload& p) { put_bytes(out, p.body); }
        void operator()(const FragmentPayload& p)
        {
            put_u16(out, p.number);
            put_u16(out, p.total);
            put_bytes(out, p.body);
        }
        void operator()(const UnknownPayload& p) { put_bytes(out, p.data); }

        // One leading byte, `reserved` zero bytes, then the data.
        void fixed_then(uint8_t first, std::size_t reserved, const Bytes& data)
        {
            put_u8(out, first);
            put_zeros(out, reserved);
            put_bytes(out, data);
        }
    };
    std::visit(Visitor{out}, body);
}

} // namespace

std::string_view to_string(ParseError e)
{
    switch (e) {
    case ParseError::none: return "none";
    case ParseError::truncated: return "truncated";
    case ParseError::bad_length: return "bad_length";
    case ParseError::bad_version: return "bad_version";
    case ParseError::unsupported_critical: return "unsupported_critical";
    case ParseError::malformed: return "malformed";
    case ParseError::too_many: return "too_many";
    case ParseError::sk_not_last: return "sk_not_last";
    }
    return "unknown";
}

// IKE header (§3.1), 28 bytes:
//
//   | IKE SA initiator's SPI (64)                          |
//   | IKE SA responder's SPI (64)                          |
//   | next payload | major.minor | exchange type | flags   |
//   | message ID (32)                                      |
//   | length (32)                                          |
ParseStatus parse_header(ByteView datagram, Header& out)
{
    if (datagram.size() < header_len) return {ParseError::truncated};
    // Filled before the checks: an INVALID_MAJOR_VERSION answer needs the SPIs.
    Reader r(datagram);
    out.spi_i = r.u64();
    out.spi_r = r.u64();
    out.next_payload = r.u8();
    out.version = r.u8();
    out.exchange = ExchangeType(r.u8());
    out.flags = r.u8();
    out.message_id = r.u32();
    out.length = r.u32();
    if (out.version >> 4 != 2) return {ParseError::bad_version};
    if (out.length < header_len || out.length > max_message_len || out.length != datagram.size())
        return {ParseError::bad_length};
    return {};
}

// Generic payload header (§3.2), before each payload's body:
//
//   | next payload | C | reserved (7) | payload length (16) |
//
// On an error `out` holds the payloads parsed before the one at fault.
ParseStatus parse_payloads(uint8_t first, ByteView data, std::vector<Payload>& out)
{
    out.clear();
    Reader r(data);
    uint8_t type = first;
    while (type != 0) {
        if (out.size() == max_payloads) return {ParseError::too_many, type};
        if (r.remaining() < generic_header_len) return {ParseError::truncated, type};
        uint8_t next = r.u8();
        bool critical = r.u8() & critical_bit;
        uint16_t len = r.u16();
        if (len < min_payload_len(type)) return {ParseError::bad_length, type};
        if (len - generic_header_len > r.remaining()) return {ParseError::truncated, type};

        Payload p;
        p.type = PayloadType(type);
        p.critical = critical;
        ByteView body = r.take(len - generic_header_len);
        if (ParseError e = parse_body(type, next, critical, body, p.body); e != ParseError::none)
            return {e, type};
        out.push_back(std::move(p));
        if (ends_chain(out.back()))
            return r.remaining() == 0 ? ParseStatus{} : ParseStatus{ParseError::sk_not_last, type};
        type = next;
    }
    if (r.remaining() != 0)
        return {ParseError::bad_length, out.empty() ? uint8_t(0) : uint8_t(out.back().type)};
    return {};
}

ParseStatus parse_message(ByteView datagram, Message& out)
{
    out.payloads.clear();
    if (ParseStatus s = parse_header(datagram, out.header); !s) return s;
    return parse_payloads(out.header.next_payload, datagram.subspan(header_len), out.payloads);
}

// Lengths are written as they come: a payload whose body passes 65531 bytes,
// a proposal with more than 255 transforms or a TS payload with more than 255
// selectors cannot be represented, and the caller must not build one. Such
// counts never come out of the parser.
uint8_t encode_payloads(const std::vector<Payload>& payloads, Bytes& out)
{
    for (std::size_t i = 0; i < payloads.size(); ++i) {
        const Payload& p = payloads[i];
        // SK/SKF name their first inner payload; a payload after them would be
        // unreachable (the parser reports sk_not_last for such a chain).
        uint8_t next = 0;
        if (const auto* sk = std::get_if<EncryptedPayload>(&p.body))
            next = sk->first_inner;
        else if (const auto* skf = std::get_if<FragmentPayload>(&p.body))
            next = skf->first_inner;
        else if (i + 1 < payloads.size())
            next = wire_type(payloads[i + 1]);

        std::size_t start = out.size();
        put_u8(out, next);
        put_u8(out, p.critical ? critical_bit : 0);
        put_u16(out, 0);
        encode_body(p.body, out);
        patch_len16(out, start);
    }
    return payloads.empty() ? 0 : wire_type(payloads.front());
}

void encode_header(const Header& h, Bytes& out)
{
    put_u64(out, h.spi_i);
    put_u64(out, h.spi_r);
    put_u8(out, h.next_payload);
    put_u8(out, h.version);
    put_u8(out, uint8_t(h.exchange));
    put_u8(out, h.flags);
    put_u32(out, h.message_id);
    put_u32(out, h.length);
}

Bytes encode_message(Header h, const std::vector<Payload>& payloads)
{
    Bytes body;
    h.next_payload = encode_payloads(payloads, body);
    h.length = uint32_t(header_len + body.size());
    Bytes out;
    out.reserve(h.length);
    encode_header(h, out);
    put_bytes(out, body);
    return out;
}

const NotifyPayload* find_notify(const std::vector<Payload>& payloads, uint16_t type)
{
    for (const auto& p : payloads)
        if (const auto* n = std::get_if<NotifyPayload>(&p.body); n && n->type == type) return n;
    return nullptr;
}

} // namespace ravelin::ike

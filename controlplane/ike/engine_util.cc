// Helpers of the IKE engine: byte order, names, identities, NAT hashes,
// traffic selector narrowing, texts for logs and diagnostics.
#include "engine_impl.hh"

#include <arpa/inet.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <algorithm>

#include <spdlog/spdlog.h>

namespace ravelin::ike {

namespace detail {


using namespace std::chrono_literals;

// --- small helpers -----------------------------------------------------------------

std::shared_ptr<spdlog::logger> log_ike()
{
    static std::shared_ptr<spdlog::logger> fallback = spdlog::default_logger();
    auto l = spdlog::get("ike");
    return l ? l : fallback;
}


int64_t seconds_between(TimePoint from, TimePoint to)
{
    return std::chrono::duration_cast<std::chrono::seconds>(to - from).count();
}


std::string_view notify_name(uint16_t t)
{
    switch (t) {
    case notify::unsupported_critical_payload: return "UNSUPPORTED_CRITICAL_PAYLOAD";
    case notify::invalid_ike_spi: return "INVALID_IKE_SPI";
    case notify::invalid_major_version: return "INVALID_MAJOR_VERSION";
    case notify::invalid_syntax: return "INVALID_SYNTAX";
    case notify::invalid_message_id: return "INVALID_MESSAGE_ID";
    case notify::invalid_spi: return "INVALID_SPI";
    case notify::no_proposal_chosen: return "NO_PROPOSAL_CHOSEN";
    case notify::invalid_ke_payload: return "INVALID_KE_PAYLOAD";
    case notify::authentication_failed: return "AUTHENTICATION_FAILED";
    case notify::single_pair_required: return "SINGLE_PAIR_REQUIRED";
    case notify::no_additional_sas: return "NO_ADDITIONAL_SAS";
    case notify::internal_address_failure: return "INTERNAL_ADDRESS_FAILURE";
    case notify::failed_cp_required: return "FAILED_CP_REQUIRED";
    case notify::ts_unacceptable: return "TS_UNACCEPTABLE";
    case notify::invalid_selectors: return "INVALID_SELECTORS";
    case notify::temporary_failure: return "TEMPORARY_FAILURE";
    case notify::child_sa_not_found: return "CHILD_SA_NOT_FOUND";
    default: return "NOTIFY";
    }
}

} // namespace detail

std::string_view phase_name(Phase p)
{
    switch (p) {
    case Phase::none: return "none";
    case Phase::ike_sa_init: return "ike_sa_init";
    case Phase::ike_auth: return "ike_auth";
    case Phase::child: return "child";
    }
    return "none";
}

std::string failure_reason(Phase phase, std::string_view failure)
{
    std::string_view token = failure.substr(0, failure.find(':'));
    bool notify_like = !token.empty() && token.size() <= 40 &&
                       std::all_of(token.begin(), token.end(),
                                   [](char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; });
    if (notify_like) return std::string(token);
    if (failure == "timeout") return "timeout";
    return phase == Phase::ike_auth ? "AUTHENTICATION_FAILED" : "other";
}

namespace detail {

// ID payload body as it enters the AUTH computation (RFC 7296 §2.15: IDx').
Bytes id_body(const IdPayload& id)
{
    Bytes b{uint8_t(id.type), 0, 0, 0};
    b.insert(b.end(), id.data.begin(), id.data.end());
    return b;
}


// Equal identities. Distinguished names compare as names (X509_NAME_cmp:
// canonical form, so PrintableString and UTF8String of the same text match),
// everything else byte for byte.
bool same_id(const IdPayload& a, const IdPayload& b)
{
    if (a.type != b.type) return false;
    if (a.type != IdType::der_asn1_dn || a.data == b.data) return a.data == b.data;
    const unsigned char* pa = a.data.data();
    const unsigned char* pb = b.data.data();
    X509_NAME* na = d2i_X509_NAME(nullptr, &pa, long(a.data.size()));
    X509_NAME* nb = d2i_X509_NAME(nullptr, &pb, long(b.data.size()));
    bool same = na && nb && X509_NAME_cmp(na, nb) == 0;
    X509_NAME_free(na);
    X509_NAME_free(nb);
    return same;
}

std::string id_text(const IdPayload& id)
{
    switch (id.type) {
    case IdType::ipv4:
        if (id.data.size() == 4) {
            char s[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, id.data.data(), s, sizeof s);
            return s;
        }
        break;
    case IdType::ipv6:
        if (id.data.size() == 16) {
            char s[INET6_ADDRSTRLEN];
            inet_ntop(AF_INET6, id.data.data(), s, sizeof s);
            return s;
        }
        break;
    case IdType::fqdn:
    case IdType::rfc822:
        return std::string(id.data.begin(), id.data.end());
    case IdType::der_asn1_dn: {
        // "C=XX, O=Example, CN=gw" in the certificate's order, as strongSwan prints it.
        const unsigned char* p = id.data.data();
        X509_NAME* name = d2i_X509_NAME(nullptr, &p, long(id.data.size()));
        if (!name) break;
        std::string out;
        for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
            X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
            int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
            unsigned char* utf8 = nullptr;
            int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
            if (n < 0) continue;
            const char* sn = nid == NID_undef ? "?" : OBJ_nid2sn(nid);
            out += fmt::format("{}{}={}", out.empty() ? "" : ", ", sn, std::string_view(reinterpret_cast<char*>(utf8), size_t(n)));
            OPENSSL_free(utf8);
        }
        X509_NAME_free(name);
        return out;
    }
    default:
        break;
    }
    return fmt::format("id-type-{} ({} bytes)", int(id.type), id.data.size());
}

IdPayload address_id(const IpAddress& a)
{
    IdPayload id;
    id.type = a.family == IpFamily::v4 ? IdType::ipv4 : IdType::ipv6;
    id.data.assign(a.bytes.begin(), a.bytes.begin() + long(a.size()));
    return id;
}

std::optional<IpAddress> parse_address(std::string_view text)
{
    std::string s(text);
    IpAddress a;
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
        a.family = IpFamily::v4;
        return a;
    }
    if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
        a.family = IpFamily::v6;
        return a;
    }
    return std::nullopt;
}

// NAT_DETECTION_*_IP data (RFC 7296 §2.23).
Bytes nat_hash(uint64_t spi_i, uint64_t spi_r, const Endpoint& e)
{
    Bytes in;
    put_u64(in, spi_i);
    put_u64(in, spi_r);
    in.insert(in.end(), e.addr.bytes.begin(), e.addr.bytes.begin() + long(e.addr.size()));
    put_u16(in, e.port);
    return sha1(view(in));
}

TrafficSelector host_ts(const IpAddress& a)
{
    TrafficSelector ts;
    ts.start = a;
    ts.end = a;
    return ts;
}

// Intersection of two selectors (RFC 7296 §2.9 narrowing), if not empty.
std::optional<TrafficSelector> intersect(const TrafficSelector& a, const TrafficSelector& b)
{
    if (a.start.family != b.start.family) return std::nullopt;
    if (a.protocol && b.protocol && a.protocol != b.protocol) return std::nullopt;
    TrafficSelector r;
    r.protocol = a.protocol ? a.protocol : b.protocol;
    r.start_port = std::max(a.start_port, b.start_port);
    r.end_port = std::min(a.end_port, b.end_port);
    if (r.start_port > r.end_port) return std::nullopt;
    auto n = a.start.size();
    auto less = [n](const IpAddress& x, const IpAddress& y) {
        return std::memcmp(x.bytes.data(), y.bytes.data(), n) < 0;
    };
    r.start = less(a.start, b.start) ? b.start : a.start;
    r.end = less(a.end, b.end) ? a.end : b.end;
    if (less(r.end, r.start)) return std::nullopt;
    return r;
}

bool contains(const TrafficSelector& outer, const TrafficSelector& inner)
{
    auto i = intersect(outer, inner);
    return i && *i == inner;
}

std::vector<TrafficSelector> narrow(const std::vector<TrafficSelector>& ours,
                                    const std::vector<TrafficSelector>& theirs)
{
    std::vector<TrafficSelector> out;
    for (const auto& t : theirs)
        for (const auto& o : ours)
            if (auto i = intersect(o, t))
                if (std::find(out.begin(), out.end(), *i) == out.end()) out.push_back(*i);
    return out;
}

std::string ts_text(const TrafficSelector& ts)
{
    std::string s = to_string(ts.start);
    if (ts.start != ts.end) {
        // A prefix when the range is one.
        unsigned n = unsigned(ts.start.size()), len = 0;
        bool prefix = true;
        for (unsigned bit = 0; bit < n * 8; ++bit) {
            bool sb = ts.start.bytes[bit / 8] >> (7 - bit % 8) & 1;
            bool eb = ts.end.bytes[bit / 8] >> (7 - bit % 8) & 1;
            if (sb == eb && len == bit) { ++len; continue; }
            if (!(sb == 0 && eb == 1)) prefix = false;
        }
        s = prefix ? fmt::format("{}/{}", s, len) : fmt::format("{}..{}", s, to_string(ts.end));
    } else {
        s += ts.start.family == IpFamily::v4 ? "/32" : "/128";
    }
    if (ts.protocol || ts.start_port != 0 || ts.end_port != 65535) {
        s += fmt::format("[{}", int(ts.protocol));
        if (ts.start_port != 0 || ts.end_port != 65535)
            s += ts.start_port == ts.end_port ? fmt::format("/{}", ts.start_port)
                                              : fmt::format("/{}-{}", ts.start_port, ts.end_port);
        s += "]";
    }
    return s;
}

std::string ts_list_text(const std::vector<TrafficSelector>& v)
{
    std::string s;
    for (const auto& t : v) s += (s.empty() ? "" : " ") + ts_text(t);
    return s;
}

std::string proposals_text(const std::vector<Proposal>& v, ProtocolId p)
{
    std::string s;
    for (const auto& prop : v) {
        std::string part;
        // strongSwan's order: encryption, integrity, PRF, DH, ESN.
        auto ts = prop.transforms;
        auto rank = [](TransformType t) {
            switch (t) {
            case TransformType::encr: return 0;
            case TransformType::integ: return 1;
            case TransformType::prf: return 2;
            case TransformType::dh: return 3;
            case TransformType::esn: return 4;
            }
            return 5;
        };
        std::stable_sort(ts.begin(), ts.end(), [&](const Transform& a, const Transform& b) { return rank(a.type) < rank(b.type); });
        for (const auto& t : ts) {
            std::string name;
            switch (t.type) {
            case TransformType::encr:
                name = t.key_bits ? fmt::format("{}_{}", encr_name(t.id), t.key_bits) : std::string(encr_name(t.id));
                break;
            case TransformType::prf: name = prf_name(t.id); break;
            case TransformType::integ: name = integ_name(t.id); break;
            case TransformType::dh: name = dh_name(t.id); break;
            case TransformType::esn:
                if (p != ProtocolId::esp) continue;
                name = t.id ? "EXT_SEQ" : "NO_EXT_SEQ";
                break;
            }
            part += (part.empty() ? "" : "/") + name;
        }
        s += (s.empty() ? "" : ", ") + part;
    }
    return s;
}

std::string specs_text(const std::vector<ProposalSpec>& specs, ProtocolId p)
{
    std::vector<Proposal> v;
    for (const auto& s : specs) v.push_back(s.to_proposal(1, {}));
    return proposals_text(v, p);
}


NotifyPayload make_notify(uint16_t type, Bytes data)
{
    NotifyPayload n;
    n.type = type;
    n.data = std::move(data);
    return n;
}

Payload notify_payload(uint16_t type, Bytes data)
{
    return Payload{PayloadType::notify, false, make_notify(type, std::move(data))};
}

Bytes sig_hash_data()
{
    Bytes d;
    for (uint16_t h : supported_signature_hashes()) put_u16(d, h);
    return d;
}

bool endpoint_matches(const std::vector<std::string>& addrs, const IpAddress& a)
{
    if (addrs.empty()) return true;
    for (const auto& s : addrs) {
        if (s == "%any" || s == "0.0.0.0" || s == "::") return true;
        auto p = parse_address(s);
        if (p && *p == a) return true;
    }
    return false;
}


Bytes spi_bytes(uint32_t spi)
{
    Bytes b;
    put_u32(b, spi);
    return b;
}

std::vector<ProposalSpec> without_dh(std::vector<ProposalSpec> v)
{
    for (auto& s : v) s.dh.clear();
    return v;
}

std::vector<Proposal> strip_dh(std::vector<Proposal> v)
{
    for (auto& p : v)
        p.transforms.erase(std::remove_if(p.transforms.begin(), p.transforms.end(),
                                          [](const Transform& t) { return t.type == TransformType::dh; }),
                           p.transforms.end());
    return v;
}


} // namespace detail

std::string to_string(const IpAddress& a)
{
    char s[INET6_ADDRSTRLEN] = {};
    inet_ntop(a.family == IpFamily::v4 ? AF_INET : AF_INET6, a.bytes.data(), s, sizeof s);
    return s;
}

std::string to_string(const Endpoint& e)
{
    return e.addr.family == IpFamily::v4 ? fmt::format("{}[{}]", to_string(e.addr), e.port)
                                         : fmt::format("[{}][{}]", to_string(e.addr), e.port);
}

} // namespace ravelin::ike

// Structural equality of parsed IKE messages, field by field (message.hh
// gives operator== only to Transform and TrafficSelector). Used by
// ike_message_test and by the fuzz_ike_message target.
#pragma once

#include <tuple>
#include <variant>
#include <vector>

#include "message.hh"

namespace ravelin::ike::test {

// The fields of each body type but SaPayload (which has its own walk below).
inline auto fields(const KePayload& p) { return std::tie(p.group, p.data); }
inline auto fields(const IdPayload& p) { return std::tie(p.type, p.data); }
inline auto fields(const CertPayload& p) { return std::tie(p.encoding, p.data); }
inline auto fields(const CertReqPayload& p) { return std::tie(p.encoding, p.data); }
inline auto fields(const AuthPayload& p) { return std::tie(p.method, p.data); }
inline auto fields(const NoncePayload& p) { return std::tie(p.data); }
inline auto fields(const NotifyPayload& p) { return std::tie(p.protocol, p.spi, p.type, p.data); }
inline auto fields(const DeletePayload& p) { return std::tie(p.protocol, p.spis); }
inline auto fields(const TsPayload& p) { return std::tie(p.selectors); }
inline auto fields(const VendorPayload& p) { return std::tie(p.data); }
inline auto fields(const CpPayload& p) { return std::tie(p.cfg_type, p.attributes); }
inline auto fields(const EncryptedPayload& p) { return std::tie(p.first_inner, p.body); }
inline auto fields(const FragmentPayload& p)
{
    return std::tie(p.first_inner, p.number, p.total, p.body);
}
inline auto fields(const UnknownPayload& p) { return std::tie(p.type, p.data); }

inline bool same(const Proposal& a, const Proposal& b)
{
    return std::tie(a.number, a.protocol, a.spi, a.transforms) ==
           std::tie(b.number, b.protocol, b.spi, b.transforms);
}

inline bool same(const SaPayload& a, const SaPayload& b)
{
    if (a.proposals.size() != b.proposals.size()) return false;
    for (std::size_t i = 0; i < a.proposals.size(); ++i)
        if (!same(a.proposals[i], b.proposals[i])) return false;
    return true;
}

template <typename T>
bool same(const T& a, const T& b)
{
    return fields(a) == fields(b);
}

inline bool same(const Payload& a, const Payload& b)
{
    if (a.type != b.type || a.critical != b.critical || a.body.index() != b.body.index())
        return false;
    return std::visit(
        [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            return same(x, std::get<T>(b.body));
        },
        a.body);
}

inline bool same(const std::vector<Payload>& a, const std::vector<Payload>& b)
{
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (!same(a[i], b[i])) return false;
    return true;
}

inline bool same(const Header& a, const Header& b)
{
    return std::tie(a.spi_i, a.spi_r, a.next_payload, a.version, a.exchange, a.flags,
                    a.message_id, a.length) ==
           std::tie(b.spi_i, b.spi_r, b.next_payload, b.version, b.exchange, b.flags,
                    b.message_id, b.length);
}

} // namespace ravelin::ike::test

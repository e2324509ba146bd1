// Proposal strings and selection; see proposal.hh.
//
// The string rules follow strongSwan's (proposal_create_from_string and its
// checks), so a swanctl.conf proposal means the same thing here:
//   - tokens are separated by '-', case does not matter;
//   - IKE: without an explicit prf*, each integrity algorithm brings its
//     HMAC PRF; a PRF and a DH group are mandatory; with AEAD ciphers any
//     integrity algorithm is dropped (after it lent its PRF);
//   - ESP: a PRF is meaningless and dropped; a DH group asks for PFS; no
//     esn/noesn means noesn;
//   - AEAD and classic ciphers never share a proposal.
// One deviation: ESP with a classic cipher and no integrity is refused
// (strongSwan allows it; RFC 8221 does not, and the data plane never builds
// such an SA).
#include "proposal.hh"

#include <algorithm>
#include <array>
#include <cctype>

#include "crypto.hh"

namespace ravelin::ike {

namespace {

enum class Scope : uint8_t { both, ike_only, esp_only };

struct Keyword {
    std::string_view name;
    TransformType type;
    uint16_t id;
    uint16_t key_bits;
    bool legacy;
    Scope scope;
    uint16_t implied_prf;   // integrity keywords: the PRF an IKE proposal derives
};

constexpr TransformType E = TransformType::encr;
constexpr TransformType P = TransformType::prf;
constexpr TransformType I = TransformType::integ;
constexpr TransformType D = TransformType::dh;
constexpr TransformType N = TransformType::esn;

constexpr std::array keywords{
    Keyword{"aes", E, encr::aes_cbc, 128, false, Scope::both, 0},
    Keyword{"aes128", E, encr::aes_cbc, 128, false, Scope::both, 0},
    Keyword{"aes192", E, encr::aes_cbc, 192, false, Scope::both, 0},
    Keyword{"aes256", E, encr::aes_cbc, 256, false, Scope::both, 0},
    Keyword{"aes128gcm16", E, encr::aes_gcm_16, 128, false, Scope::both, 0},
    Keyword{"aes192gcm16", E, encr::aes_gcm_16, 192, false, Scope::both, 0},
    Keyword{"aes256gcm16", E, encr::aes_gcm_16, 256, false, Scope::both, 0},
    Keyword{"aes128gcm128", E, encr::aes_gcm_16, 128, false, Scope::both, 0},
    Keyword{"aes192gcm128", E, encr::aes_gcm_16, 192, false, Scope::both, 0},
    Keyword{"aes256gcm128", E, encr::aes_gcm_16, 256, false, Scope::both, 0},
    Keyword{"chacha20poly1305", E, encr::chacha20_poly1305, 0, false, Scope::both, 0},
    Keyword{"aes128gmac", E, encr::null_aes_gmac, 128, false, Scope::esp_only, 0},
    Keyword{"aes192gmac", E, encr::null_aes_gmac, 192, false, Scope::esp_only, 0},
    Keyword{"aes256gmac", E, encr::null_aes_gmac, 256, false, Scope::esp_only, 0},
    Keyword{"3des", E, encr::des3, 0, true, Scope::both, 0},
    Keyword{"null", E, encr::null_, 0, true, Scope::esp_only, 0},
    Keyword{"sha256", I, integ::hmac_sha2_256_128, 0, false, Scope::both, prf::hmac_sha2_256},
    Keyword{"sha384", I, integ::hmac_sha2_384_192, 0, false, Scope::both, prf::hmac_sha2_384},
    Keyword{"sha512", I, integ::hmac_sha2_512_256, 0, false, Scope::both, prf::hmac_sha2_512},
    Keyword{"sha1", I, integ::hmac_sha1_96, 0, true, Scope::both, prf::hmac_sha1},
    Keyword{"prfsha256", P, prf::hmac_sha2_256, 0, false, Scope::both, 0},
    Keyword{"prfsha384", P, prf::hmac_sha2_384, 0, false, Scope::both, 0},
    Keyword{"prfsha512", P, prf::hmac_sha2_512, 0, false, Scope::both, 0},
    Keyword{"prfsha1", P, prf::hmac_sha1, 0, true, Scope::both, 0},
    Keyword{"modp2048", D, dh::modp2048, 0, false, Scope::both, 0},
    Keyword{"modp3072", D, dh::modp3072, 0, false, Scope::both, 0},
    Keyword{"modp4096", D, dh::modp4096, 0, false, Scope::both, 0},
    Keyword{"ecp256", D, dh::ecp256, 0, false, Scope::both, 0},
    Keyword{"ecp384", D, dh::ecp384, 0, false, Scope::both, 0},
    Keyword{"ecp521", D, dh::ecp521, 0, false, Scope::both, 0},
    Keyword{"x25519", D, dh::curve25519, 0, false, Scope::both, 0},
    Keyword{"curve25519", D, dh::curve25519, 0, false, Scope::both, 0},
    Keyword{"modp1024", D, dh::modp1024, 0, true, Scope::both, 0},
    Keyword{"esn", N, 1, 0, false, Scope::esp_only, 0},
    Keyword{"noesn", N, 0, 0, false, Scope::esp_only, 0},
};

// Kept here rather than calling crypto.hh's is_aead() so this module needs
// nothing from crypto.cc but its constants.
bool aead_cipher(uint16_t id)
{
    return id == encr::aes_gcm_16 || id == encr::chacha20_poly1305 ||
           id == encr::null_aes_gmac;
}

const Keyword* find_keyword(std::string_view token)
{
    std::string lower(token);
    for (char& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
    for (const Keyword& k : keywords)
        if (k.name == lower) return &k;
    return nullptr;
}

std::string_view trim(std::string_view s)
{
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

void add_unique(std::vector<Transform>& list, Transform t)
{
    if (std::find(list.begin(), list.end(), t) == list.end()) list.push_back(t);
}

std::vector<Transform>& list_of(ProposalSpec& spec, TransformType type)
{
    switch (type) {
    case TransformType::encr: return spec.encr;
    case TransformType::prf: return spec.prf;
    case TransformType::integ: return spec.integ;
    case TransformType::dh: return spec.dh;
    case TransformType::esn: break;
    }
    return spec.esn;
}

const std::vector<Transform>* list_of(const ProposalSpec& spec, TransformType type)
{
    switch (type) {
    case TransformType::encr: return &spec.encr;
    case TransformType::prf: return &spec.prf;
    case TransformType::integ: return &spec.integ;
    case TransformType::dh: return &spec.dh;
    case TransformType::esn: return &spec.esn;
    }
    return nullptr;
}

const char* protocol_label(ProtocolId p) { return p == ProtocolId::ike ? "IKE" : "ESP"; }

// strongSwan's post-parse checks; `quoted` is the proposal for messages.
bool complete(ProposalSpec& spec, const std::vector<uint16_t>& implied_prfs,
              const std::string& quoted, std::string& error)
{
    const char* label = protocol_label(spec.protocol);
    if (spec.protocol == ProtocolId::ike) {
        if (spec.prf.empty())
            for (uint16_t id : implied_prfs) add_unique(spec.prf, {TransformType::prf, id, 0});
        if (spec.prf.empty()) {
            error = "no PRF in IKE proposal " + quoted +
                    " (add prfsha256/384/512, or an integrity algorithm to derive it from)";
            return false;
        }
        if (spec.dh.empty()) {
            error = "no DH group in IKE proposal " + quoted;
            return false;
        }
    } else {
        spec.prf.clear();
        if (spec.esn.empty()) spec.esn.push_back({TransformType::esn, 0, 0});
    }

    if (spec.encr.empty()) {
        error = std::string("no encryption algorithm in ") + label + " proposal " + quoted;
        return false;
    }
    const auto n_aead = std::count_if(spec.encr.begin(), spec.encr.end(),
                                      [](const Transform& t) { return aead_cipher(t.id); });
    if (n_aead != 0 && std::size_t(n_aead) != spec.encr.size()) {
        error = "AEAD and classic ciphers cannot share a proposal: " + quoted;
        return false;
    }
    if (n_aead != 0) {
        spec.integ.clear();   // AEAD carries its own integrity (RFC 5282 §8)
    } else if (spec.integ.empty()) {
        error = std::string("no integrity algorithm for the classic cipher in ") + label +
                " proposal " + quoted;
        return false;
    }
    return true;
}

// Does `offered` contain a transform of `type` from `ours`? Our order decides.
std::optional<Transform> pick(const std::vector<Transform>& ours, const Proposal& offered,
                              TransformType type)
{
    for (const Transform& want : ours) {
        for (const Transform& t : offered.transforms)
            if (t.type == type && t.id == want.id && t.key_bits == want.key_bits) return want;
    }
    return std::nullopt;
}

bool spi_size_ok(const Proposal& p)
{
    if (p.protocol == ProtocolId::ike) return p.spi.empty() || p.spi.size() == 8;
    if (p.protocol == ProtocolId::esp) return p.spi.size() == 4;
    return false;
}

constexpr std::array all_types{TransformType::encr, TransformType::prf, TransformType::integ,
                               TransformType::dh, TransformType::esn};

void set_field(SelectedSuite& s, const Transform& t)
{
    switch (t.type) {
    case TransformType::encr: s.encr = t.id; s.encr_key_bits = t.key_bits; break;
    case TransformType::prf: s.prf = t.id; break;
    case TransformType::integ: s.integ = t.id; break;
    case TransformType::dh: s.dh = t.id; break;
    case TransformType::esn: s.esn = t.id == 1; break;
    }
}

// --- names as strongSwan prints them -------------------------------------------

// crypto.hh's name, or "<PREFIX><id>" for an id it does not know.
std::string known_or_id(std::string_view name, const char* prefix, uint16_t id)
{
    return name == "UNKNOWN" ? prefix + std::to_string(id) : std::string(name);
}

std::string encr_label(uint16_t id) { return known_or_id(encr_name(id), "ENCR_", id); }

std::string integ_label(uint16_t id) { return known_or_id(integ_name(id), "INTEG_", id); }

std::string prf_label(uint16_t id) { return known_or_id(prf_name(id), "PRF_", id); }

std::string dh_label(uint16_t id) { return known_or_id(dh_name(id), "DH_", id); }

ProposalSpec spec_of(ProtocolId protocol, std::initializer_list<Transform> encrs,
                     std::initializer_list<Transform> integs, bool with_prf_and_dh)
{
    ProposalSpec s;
    s.protocol = protocol;
    s.encr = encrs;
    s.integ = integs;
    if (with_prf_and_dh) {
        s.prf = {{P, prf::hmac_sha2_256, 0}, {P, prf::hmac_sha2_384, 0}, {P, prf::hmac_sha2_512, 0}};
        s.dh = {{D, dh::curve25519, 0}, {D, dh::ecp256, 0}, {D, dh::ecp384, 0},
                {D, dh::ecp521, 0}, {D, dh::modp3072, 0}, {D, dh::modp4096, 0},
                {D, dh::modp2048, 0}};
    } else {
        s.esn = {{N, 0, 0}};
    }
    return s;
}

} // namespace

Proposal ProposalSpec::to_proposal(uint8_t number, Bytes spi) const
{
    Proposal p;
    p.number = number;
    p.protocol = protocol;
    p.spi = std::move(spi);
    for (TransformType type : all_types) {
        if (type == TransformType::esn && protocol != ProtocolId::esp) continue;
        const auto& list = *list_of(*this, type);
        p.transforms.insert(p.transforms.end(), list.begin(), list.end());
        if (type == TransformType::esn && list.empty())
            p.transforms.push_back({TransformType::esn, 0, 0});
    }
    return p;
}

Proposal SelectedSuite::to_proposal(ProtocolId protocol, Bytes our_spi) const
{
    Proposal p;
    p.number = number;
    p.protocol = protocol;
    p.spi = std::move(our_spi);
    p.transforms.push_back({TransformType::encr, encr, encr_key_bits});
    if (prf != 0) p.transforms.push_back({TransformType::prf, prf, 0});
    if (integ != 0) p.transforms.push_back({TransformType::integ, integ, 0});
    if (dh != 0) p.transforms.push_back({TransformType::dh, dh, 0});
    if (protocol == ProtocolId::esp)
        p.transforms.push_back({TransformType::esn, uint16_t(esn ? 1 : 0), 0});
    return p;
}

std::optional<ProposalSpec> parse_proposal(std::string_view text, ProtocolId protocol,
                                           bool allow_legacy, std::string& error)
{
    if (protocol != ProtocolId::ike && protocol != ProtocolId::esp) {
        error = "proposals are for IKE or ESP only";
        return std::nullopt;
    }
    text = trim(text);
    const std::string quoted = "'" + std::string(text) + "'";
    if (text.empty()) {
        error = "empty proposal";
        return std::nullopt;
    }
    if (text == "default") {
        error = "'default' stands for several proposals: use it in a proposal list";
        return std::nullopt;
    }

    ProposalSpec spec;
    spec.protocol = protocol;
    std::vector<uint16_t> implied_prfs;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t dash = text.find('-', pos);
        if (dash == std::string_view::npos) dash = text.size();
        const std::string_view token = trim(text.substr(pos, dash - pos));
        pos = dash + 1;
        if (token.empty()) {
            error = "empty algorithm in proposal " + quoted;
            return std::nullopt;
        }
        const Keyword* k = find_keyword(token);
        if (!k) {
            error = "unknown algorithm '" + std::string(token) + "' in proposal " + quoted;
            return std::nullopt;
        }
        if (k->scope == Scope::esp_only && protocol != ProtocolId::esp) {
            error = "'" + std::string(token) + "' is only valid in ESP proposals";
            return std::nullopt;
        }
        if (k->legacy && !allow_legacy) {
            error = "'" + std::string(token) +
                    "' is a legacy algorithm: it needs allow_legacy = yes";
            return std::nullopt;
        }
        add_unique(list_of(spec, k->type), {k->type, k->id, k->key_bits});
        if (k->implied_prf != 0 &&
            std::find(implied_prfs.begin(), implied_prfs.end(), k->implied_prf) == implied_prfs.end())
            implied_prfs.push_back(k->implied_prf);
    }
    if (!complete(spec, implied_prfs, quoted, error)) return std::nullopt;
    return spec;
}

std::optional<std::vector<ProposalSpec>> parse_proposals(std::string_view text,
                                                         ProtocolId protocol,
                                                         bool allow_legacy,
                                                         std::string& error)
{
    std::vector<ProposalSpec> out;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t comma = text.find(',', pos);
        if (comma == std::string_view::npos) comma = text.size();
        const std::string_view item = trim(text.substr(pos, comma - pos));
        pos = comma + 1;
        if (item.empty()) {
            error = "empty proposal in list '" + std::string(trim(text)) + "'";
            return std::nullopt;
        }
        if (item == "default") {
            auto defaults = protocol == ProtocolId::ike ? default_ike_proposals()
                                                        : default_esp_proposals();
            out.insert(out.end(), defaults.begin(), defaults.end());
        } else {
            auto spec = parse_proposal(item, protocol, allow_legacy, error);
            if (!spec) return std::nullopt;
            out.push_back(std::move(*spec));
        }
        // Proposal numbers are one byte and the codec caps the count.
        if (out.size() > max_proposals) {
            error = "more than " + std::to_string(max_proposals) + " proposals";
            return std::nullopt;
        }
    }
    return out;
}

// Defaults: RFC 8247's MUST/SHOULD algorithms, AEAD first. Classic CBC stays
// in for peers that do not do AEAD in IKE.
std::vector<ProposalSpec> default_ike_proposals()
{
    return {
        spec_of(ProtocolId::ike,
                {{E, encr::aes_gcm_16, 256}, {E, encr::aes_gcm_16, 128},
                 {E, encr::chacha20_poly1305, 0}},
                {}, true),
        spec_of(ProtocolId::ike, {{E, encr::aes_cbc, 256}, {E, encr::aes_cbc, 128}},
                {{I, integ::hmac_sha2_256_128, 0}, {I, integ::hmac_sha2_384_192, 0},
                 {I, integ::hmac_sha2_512_256, 0}},
                true),
    };
}

std::vector<ProposalSpec> default_esp_proposals()
{
    return {
        spec_of(ProtocolId::esp,
                {{E, encr::aes_gcm_16, 256}, {E, encr::aes_gcm_16, 128},
                 {E, encr::chacha20_poly1305, 0}},
                {}, false),
        spec_of(ProtocolId::esp, {{E, encr::aes_cbc, 256}, {E, encr::aes_cbc, 128}},
                {{I, integ::hmac_sha2_256_128, 0}, {I, integ::hmac_sha2_384_192, 0},
                 {I, integ::hmac_sha2_512_256, 0}},
                false),
    };
}

std::optional<SelectedSuite> select_proposal(const std::vector<Proposal>& offered,
                                             const std::vector<ProposalSpec>& ours)
{
    for (const ProposalSpec& spec : ours) {
        for (const Proposal& p : offered) {
            if (p.protocol != spec.protocol || !spi_size_ok(p)) continue;
            SelectedSuite s;
            bool ok = true;
            for (TransformType type : all_types) {
                const auto& want = *list_of(spec, type);
                if (want.empty()) continue;   // a type we do not constrain
                auto t = pick(want, p, type);
                if (!t) {
                    ok = false;
                    break;
                }
                set_field(s, *t);
            }
            if (!ok) continue;
            s.spi = p.spi;
            s.number = p.number;
            return s;
        }
    }
    return std::nullopt;
}

std::optional<SelectedSuite> accept_response(const Proposal& answer,
                                             const std::vector<ProposalSpec>& ours)
{
    // We number our proposals 1, 2, ... in order (to_proposal's caller does).
    if (answer.number == 0 || answer.number > ours.size()) return std::nullopt;
    const ProposalSpec& spec = ours[answer.number - 1];
    if (answer.protocol != spec.protocol || !spi_size_ok(answer)) return std::nullopt;

    SelectedSuite s;
    for (TransformType type : all_types) {
        std::vector<Transform> want = *list_of(spec, type);
        if (type == TransformType::esn) {
            if (spec.protocol == ProtocolId::esp && want.empty()) want.push_back({type, 0, 0});
            if (spec.protocol != ProtocolId::esp) want.clear();
        }
        const Transform* got = nullptr;
        for (const Transform& t : answer.transforms) {
            if (t.type != type) continue;
            if (got) return std::nullopt;   // two of one type
            got = &t;
        }
        if (want.empty()) {
            if (got) return std::nullopt;   // a type we did not offer
            continue;
        }
        if (!got || std::find(want.begin(), want.end(), *got) == want.end()) return std::nullopt;
        set_field(s, *got);
    }
    // Transform types outside 1..5 are nothing we offered.
    for (const Transform& t : answer.transforms)
        if (std::find(all_types.begin(), all_types.end(), t.type) == all_types.end())
            return std::nullopt;
    s.spi = answer.spi;
    s.number = answer.number;
    return s;
}

std::optional<SelectedSuite> sole_suite(const std::vector<ProposalSpec>& ours)
{
    if (ours.size() != 1) return std::nullopt;
    // accept_response refuses an answer with two transforms of one type.
    Bytes spi(ours[0].protocol == ProtocolId::ike ? 0 : 4, 0);
    auto s = accept_response(ours[0].to_proposal(1, spi), ours);
    if (s) s->spi.clear();
    return s;
}

std::string describe(const SelectedSuite& suite, ProtocolId protocol)
{
    std::string out = encr_label(suite.encr);
    if (suite.encr_key_bits != 0) out += "_" + std::to_string(suite.encr_key_bits);
    if (suite.integ != 0) out += "/" + integ_label(suite.integ);
    if (suite.prf != 0) out += "/" + prf_label(suite.prf);
    if (suite.dh != 0) out += "/" + dh_label(suite.dh);
    if (protocol == ProtocolId::esp) out += suite.esn ? "/EXT_SEQ" : "/NO_EXT_SEQ";
    return out;
}

// --- proposals as keywords -----------------------------------------------------

namespace {

// Spellings parse_proposal accepts but that are not the usual name.
bool alias_keyword(std::string_view name)
{
    return name == "aes" || name == "curve25519" || name.ends_with("gcm128");
}

std::string transform_keyword(const Transform& t)
{
    for (const Keyword& k : keywords)
        if (k.type == t.type && k.id == t.id && k.key_bits == t.key_bits && !alias_keyword(k.name))
            return std::string(k.name);
    switch (t.type) {
    case TransformType::encr:
        return encr_label(t.id) + (t.key_bits ? "_" + std::to_string(t.key_bits) : std::string());
    case TransformType::prf: return prf_label(t.id);
    case TransformType::integ: return integ_label(t.id);
    case TransformType::dh: return dh_label(t.id);
    case TransformType::esn: return t.id ? "esn" : "noesn";
    }
    return "?";
}

} // namespace

std::string proposal_keywords(const Proposal& p)
{
    std::vector<Transform> of[5];
    for (const auto& t : p.transforms) {
        auto i = std::size_t(t.type) - 1;   // encr = 1 ... esn = 5
        if (i < 5) of[i].push_back(t);
    }
    auto& encrs = of[std::size_t(TransformType::encr) - 1];
    auto& prfs = of[std::size_t(TransformType::prf) - 1];
    auto& integs = of[std::size_t(TransformType::integ) - 1];
    auto& dhs = of[std::size_t(TransformType::dh) - 1];
    auto& esns = of[std::size_t(TransformType::esn) - 1];
    // The PRFs the integrity keywords bring, in order: then prf* is implied.
    std::vector<uint16_t> implied;
    for (const auto& t : integs)
        for (const Keyword& k : keywords)
            if (k.type == I && k.id == t.id && k.implied_prf) implied.push_back(k.implied_prf);
    std::vector<uint16_t> prf_ids;
    for (const auto& t : prfs) prf_ids.push_back(t.id);
    bool prf_implied = !integs.empty() && prf_ids == implied;

    std::string out;
    auto add = [&](const Transform& t) { out += (out.empty() ? "" : "-") + transform_keyword(t); };
    for (const auto& t : encrs) add(t);
    for (const auto& t : integs) add(t);
    if (p.protocol == ProtocolId::ike && !prf_implied)
        for (const auto& t : prfs) add(t);
    for (const auto& t : dhs)
        if (t.id != 0) add(t);
    if (p.protocol != ProtocolId::ike && !(esns.size() == 1 && esns[0].id == 0))
        for (const auto& t : esns) add(t);
    return out;
}

std::string proposals_keywords(const std::vector<Proposal>& v)
{
    std::string out;
    for (const auto& p : v) out += (out.empty() ? "" : ", ") + proposal_keywords(p);
    return out;
}

} // namespace ravelin::ike

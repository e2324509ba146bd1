// IKEv2 message codec (RFC 7296 §3): the fixed header and every payload the
// engine speaks, parsed into plain structs and written back.
//
// The parser never trusts a length field: every read is bounded by the
// datagram, payload and substructure counts are capped, and it reports the
// first problem it finds instead of throwing. Unknown non-critical payloads
// are kept as opaque bytes; an unknown payload with the critical bit set is
// reported (the caller answers UNSUPPORTED_CRITICAL_PAYLOAD).
//
// SK and SKF payloads stay encrypted here: the engine decrypts their body
// and calls parse_payloads() again on the plaintext.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

#include "ravelin/types.hh"

namespace ravelin::ike {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

enum class ExchangeType : uint8_t {
    ike_sa_init = 34,
    ike_auth = 35,
    create_child_sa = 36,
    informational = 37,
};

enum class PayloadType : uint8_t {
    none = 0,
    sa = 33,
    ke = 34,
    idi = 35,
    idr = 36,
    cert = 37,
    certreq = 38,
    auth = 39,
    nonce = 40,
    notify = 41,
    delete_ = 42,
    vendor = 43,
    tsi = 44,
    tsr = 45,
    sk = 46,
    cp = 47,
    eap = 48,
    skf = 53,
};

namespace header_flags {
inline constexpr uint8_t initiator = 0x08;
inline constexpr uint8_t version = 0x10;
inline constexpr uint8_t response = 0x20;
} // namespace header_flags

inline constexpr std::size_t header_len = 28;
inline constexpr std::size_t generic_header_len = 4;
// Largest datagram the codec accepts or produces (RFC 7296 §2 allows 64 KiB).
inline constexpr std::size_t max_message_len = 65535;

struct Header {
    uint64_t spi_i = 0;
    uint64_t spi_r = 0;
    uint8_t next_payload = 0;
    uint8_t version = 0x20;         // major 2, minor 0
    ExchangeType exchange = ExchangeType::ike_sa_init;
    uint8_t flags = 0;
    uint32_t message_id = 0;
    uint32_t length = 0;

    bool is_response() const { return flags & header_flags::response; }
    bool from_initiator() const { return flags & header_flags::initiator; }
};

// --- SA payload ------------------------------------------------------------

enum class TransformType : uint8_t { encr = 1, prf = 2, integ = 3, dh = 4, esn = 5 };
enum class ProtocolId : uint8_t { none = 0, ike = 1, ah = 2, esp = 3 };

struct Transform {
    TransformType type = TransformType::encr;
    uint16_t id = 0;
    uint16_t key_bits = 0;          // Key Length attribute (14); 0 = absent
    bool operator==(const Transform&) const = default;
};

struct Proposal {
    uint8_t number = 1;
    ProtocolId protocol = ProtocolId::ike;
    Bytes spi;                      // 0 (IKE_SA_INIT), 8 (IKE rekey) or 4 (ESP) bytes
    std::vector<Transform> transforms;
};

struct SaPayload {
    std::vector<Proposal> proposals;
};

// --- the others ----------------------------------------------------------------

struct KePayload {
    uint16_t group = 0;
    Bytes data;
};

enum class IdType : uint8_t {
    ipv4 = 1,
    fqdn = 2,
    rfc822 = 3,
    ipv6 = 5,
    der_asn1_dn = 9,
    der_asn1_gn = 10,
    key_id = 11,
};

struct IdPayload {
    IdType type = IdType::fqdn;
    Bytes data;
};

enum class CertEncoding : uint8_t { x509_signature = 4, crl = 7 };

struct CertPayload {
    uint8_t encoding = 4;
    Bytes data;
};

struct CertReqPayload {
    uint8_t encoding = 4;
    Bytes data;                     // concatenated SHA-1 hashes of CA public keys
};

enum class AuthMethod : uint8_t {
    rsa_signature = 1,
    shared_key = 2,
    dss = 3,
    ecdsa_p256 = 9,
    ecdsa_p384 = 10,
    ecdsa_p521 = 11,
    digital_signature = 14,        // RFC 7427
};

struct AuthPayload {
    AuthMethod method = AuthMethod::shared_key;
    Bytes data;
};

struct NoncePayload {
    Bytes data;
};

// Notify message types this project names (RFC 7296 §3.10.1 and later RFCs).
namespace notify {
inline constexpr uint16_t unsupported_critical_payload = 1;
inline constexpr uint16_t invalid_ike_spi = 4;
inline constexpr uint16_t invalid_major_version = 5;
inline constexpr uint16_t invalid_syntax = 7;
inline constexpr uint16_t invalid_message_id = 9;
inline constexpr uint16_t invalid_spi = 11;
inline constexpr uint16_t no_proposal_chosen = 14;
inline constexpr uint16_t invalid_ke_payload = 17;
inline constexpr uint16_t authentication_failed = 24;
inline constexpr uint16_t single_pair_required = 34;
inline constexpr uint16_t no_additional_sas = 35;
inline constexpr uint16_t internal_address_failure = 36;
inline constexpr uint16_t failed_cp_required = 37;
inline constexpr uint16_t ts_unacceptable = 38;
inline constexpr uint16_t invalid_selectors = 39;
inline constexpr uint16_t temporary_failure = 43;
inline constexpr uint16_t child_sa_not_found = 44;
// Status types (>= 16384).
inline constexpr uint16_t initial_contact = 16384;
inline constexpr uint16_t set_window_size = 16385;
inline constexpr uint16_t additional_ts_possible = 16386;
inline constexpr uint16_t ipcomp_supported = 16387;
inline constexpr uint16_t nat_detection_source_ip = 16388;
inline constexpr uint16_t nat_detection_destination_ip = 16389;
inline constexpr uint16_t cookie = 16390;
inline constexpr uint16_t use_transport_mode = 16391;
inline constexpr uint16_t rekey_sa = 16393;
inline constexpr uint16_t esp_tfc_padding_not_supported = 16394;
inline constexpr uint16_t non_first_fragments_also = 16395;
inline constexpr uint16_t mobike_supported = 16396;
inline constexpr uint16_t ikev2_fragmentation_supported = 16430;
inline constexpr uint16_t signature_hash_algorithms = 16431;
} // namespace notify

inline bool is_error_notify(uint16_t type) { return type < 16384; }

struct NotifyPayload {
    ProtocolId protocol = ProtocolId::none;
    Bytes spi;
    uint16_t type = 0;
    Bytes data;
};

struct DeletePayload {
    ProtocolId protocol = ProtocolId::ike;
    std::vector<uint32_t> spis;     // ESP/AH SPIs in host order; empty for IKE
};

enum class TsType : uint8_t { ipv4_range = 7, ipv6_range = 8 };

struct TrafficSelector {
    uint8_t protocol = 0;           // 0 = any
    uint16_t start_port = 0;
    uint16_t end_port = 65535;
    IpAddress start;                // family decides the TS type
    IpAddress end;
    bool operator==(const TrafficSelector&) const = default;
};

struct TsPayload {
    std::vector<TrafficSelector> selectors;
};

struct VendorPayload {
    Bytes data;
};

// Configuration payload: kept as raw attributes (type, value).
struct CpPayload {
    uint8_t cfg_type = 0;
    std::vector<std::pair<uint16_t, Bytes>> attributes;
};

// SK: IV || ciphertext || ICV, still encrypted. `first_inner` is the type of
// the first payload inside (the SK generic header's Next Payload).
struct EncryptedPayload {
    uint8_t first_inner = 0;
    Bytes body;
};

// SKF (RFC 7383): one fragment of an SK payload.
struct FragmentPayload {
    uint8_t first_inner = 0;        // meaningful in fragment 1 only
    uint16_t number = 0;
    uint16_t total = 0;
    Bytes body;                     // IV || ciphertext || ICV
};

// A payload type the codec does not know, without the critical bit.
struct UnknownPayload {
    uint8_t type = 0;
    Bytes data;
};

using PayloadBody = std::variant<SaPayload, KePayload, IdPayload, CertPayload,
                                 CertReqPayload, AuthPayload, NoncePayload,
                                 NotifyPayload, DeletePayload, TsPayload,
                                 VendorPayload, CpPayload, EncryptedPayload,
                                 FragmentPayload, UnknownPayload>;

struct Payload {
    PayloadType type = PayloadType::none;   // IDi/IDr and TSi/TSr share a body type
    bool critical = false;
    PayloadBody body;
};

struct Message {
    Header header;
    std::vector<Payload> payloads;
};

// --- parsing ---------------------------------------------------------------------

enum class ParseError : uint8_t {
    none,
    truncated,              // shorter than a length field says
    bad_length,             // header length != datagram length, or a length below its minimum
    bad_version,            // major version != 2 (answer INVALID_MAJOR_VERSION)
    unsupported_critical,   // unknown payload with the critical bit (see ParseStatus::payload_type)
    malformed,              // a payload's inner structure is inconsistent
    too_many,               // a payload or substructure count above the caps below
    sk_not_last,            // SK/SKF must be the last payload (RFC 7296 §3.14, RFC 7383 §2.5)
};

std::string_view to_string(ParseError);

struct ParseStatus {
    ParseError error = ParseError::none;
    uint8_t payload_type = 0;       // the payload at fault, when there is one
    explicit operator bool() const { return error == ParseError::none; }
};

// Bounds that stop a hostile message from costing much.
inline constexpr std::size_t max_payloads = 64;
inline constexpr std::size_t max_proposals = 64;
inline constexpr std::size_t max_transforms = 64;
inline constexpr std::size_t max_selectors = 64;
inline constexpr std::size_t max_delete_spis = 256;

// The 28-byte header; checks the version and that `length` equals the datagram size.
ParseStatus parse_header(ByteView datagram, Header& out);

// A payload chain starting with `first` (a Next Payload value) that must use
// up `data` exactly. Used on a message body and on decrypted SK plaintext.
ParseStatus parse_payloads(uint8_t first, ByteView data, std::vector<Payload>& out);

// Header plus the outer payload chain. SK/SKF bodies stay encrypted.
ParseStatus parse_message(ByteView datagram, Message& out);

// --- writing -------------------------------------------------------------------

// Appends the encoded chain and returns the Next Payload value of its first
// payload (0 for an empty chain). Writes each payload's generic header with
// the right next-payload links and lengths.
uint8_t encode_payloads(const std::vector<Payload>& payloads, Bytes& out);

// Appends the 28-byte header as given (the caller fills `length`).
void encode_header(const Header& h, Bytes& out);

// A whole unencrypted message; sets next_payload and length in the header.
Bytes encode_message(Header h, const std::vector<Payload>& payloads);

// Helpers for the engine's lookups.
template <typename T>
const T* find_payload(const std::vector<Payload>& payloads, PayloadType type)
{
    for (const auto& p : payloads)
        if (p.type == type)
            if (const T* body = std::get_if<T>(&p.body)) return body;
    return nullptr;
}

const NotifyPayload* find_notify(const std::vector<Payload>& payloads, uint16_t type);

} // namespace ravelin::ike

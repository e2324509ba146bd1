// ESP algorithm identifiers and their fixed parameters.
//
// The numeric values are the IKEv2 transform ids (IANA "Transform Type 1 -
// Encryption Algorithm" and "Transform Type 3 - Integrity Algorithm"), so the
// control plane can hand negotiated ids through unchanged.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace ravelin {

enum class EspCipher : uint16_t {
    null = 11,              // ENCR_NULL (only with an integrity algorithm)
    des3_cbc = 3,           // ENCR_3DES (legacy)
    aes_cbc = 12,           // ENCR_AES_CBC, key 128 or 256
    aes_gcm16 = 20,         // ENCR_AES_GCM_16 (RFC 4106), ICV 16
    null_aes_gmac = 21,     // ENCR_NULL_AUTH_AES_GMAC (RFC 4543)
    chacha20_poly1305 = 28, // ENCR_CHACHA20_POLY1305 (RFC 7634)
};

enum class EspInteg : uint16_t {
    none = 0,
    hmac_sha1_96 = 2,       // AUTH_HMAC_SHA1_96 (legacy)
    hmac_sha256_128 = 12,   // AUTH_HMAC_SHA2_256_128 (RFC 4868)
    hmac_sha384_192 = 13,   // AUTH_HMAC_SHA2_384_192
    hmac_sha512_256 = 14,   // AUTH_HMAC_SHA2_512_256
};

constexpr bool is_aead(EspCipher c)
{
    return c == EspCipher::aes_gcm16 || c == EspCipher::null_aes_gmac ||
           c == EspCipher::chacha20_poly1305;
}

constexpr bool is_legacy(EspCipher c) { return c == EspCipher::des3_cbc; }
constexpr bool is_legacy(EspInteg i) { return i == EspInteg::hmac_sha1_96; }

// Bytes of salt taken from the end of the keying material (RFC 4106 §8.1,
// RFC 4543 §3.2, RFC 7634 §2).
constexpr unsigned salt_len(EspCipher c) { return is_aead(c) ? 4 : 0; }

// Explicit IV carried in each ESP packet.
constexpr unsigned iv_len(EspCipher c)
{
    switch (c) {
    case EspCipher::aes_cbc: return 16;
    case EspCipher::des3_cbc: return 8;
    case EspCipher::aes_gcm16:
    case EspCipher::null_aes_gmac:
    case EspCipher::chacha20_poly1305: return 8;
    case EspCipher::null: return 0;
    }
    return 0;
}

// Cipher block size used for padding (RFC 4303 §2.4: at least 4).
constexpr unsigned block_len(EspCipher c)
{
    switch (c) {
    case EspCipher::aes_cbc: return 16;
    case EspCipher::des3_cbc: return 8;
    default: return 4;
    }
}

constexpr unsigned icv_len(EspCipher c, EspInteg i)
{
    if (is_aead(c)) return 16;
    switch (i) {
    case EspInteg::hmac_sha1_96: return 12;
    case EspInteg::hmac_sha256_128: return 16;
    case EspInteg::hmac_sha384_192: return 24;
    case EspInteg::hmac_sha512_256: return 32;
    case EspInteg::none: return 0;
    }
    return 0;
}

constexpr unsigned integ_key_len(EspInteg i)
{
    switch (i) {
    case EspInteg::hmac_sha1_96: return 20;
    case EspInteg::hmac_sha256_128: return 32;
    case EspInteg::hmac_sha384_192: return 48;
    case EspInteg::hmac_sha512_256: return 64;
    case EspInteg::none: return 0;
    }
    return 0;
}

// Is `bytes` a valid cipher key length (without salt)?
constexpr bool valid_cipher_key_len(EspCipher c, unsigned bytes)
{
    switch (c) {
    case EspCipher::aes_cbc:
    case EspCipher::aes_gcm16:
    case EspCipher::null_aes_gmac: return bytes == 16 || bytes == 32;
    case EspCipher::chacha20_poly1305: return bytes == 32;
    case EspCipher::des3_cbc: return bytes == 24;
    case EspCipher::null: return bytes == 0;
    }
    return false;
}

} // namespace ravelin

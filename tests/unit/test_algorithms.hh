// Every ESP algorithm combination the crypto and ESP tests sweep, in one
// place so a new algorithm is tested everywhere at once.
#pragma once

#include "ravelin/algorithms.hh"

namespace ravelin::test {

struct Alg {
    const char* name;
    EspCipher c;
    unsigned key;   // cipher key bytes, without salt
    EspInteg i;
};

inline const Alg all_algs[] = {
    {"gcm128", EspCipher::aes_gcm16, 16, EspInteg::none},
    {"gcm256", EspCipher::aes_gcm16, 32, EspInteg::none},
    {"gmac128", EspCipher::null_aes_gmac, 16, EspInteg::none},
    {"gmac256", EspCipher::null_aes_gmac, 32, EspInteg::none},
    {"chacha", EspCipher::chacha20_poly1305, 32, EspInteg::none},
    {"cbc128-sha1", EspCipher::aes_cbc, 16, EspInteg::hmac_sha1_96},
    {"cbc128-sha256", EspCipher::aes_cbc, 16, EspInteg::hmac_sha256_128},
    {"cbc256-sha384", EspCipher::aes_cbc, 32, EspInteg::hmac_sha384_192},
    {"cbc256-sha512", EspCipher::aes_cbc, 32, EspInteg::hmac_sha512_256},
    {"3des-sha1", EspCipher::des3_cbc, 24, EspInteg::hmac_sha1_96},
    {"null-sha256", EspCipher::null, 0, EspInteg::hmac_sha256_128},
};

} // namespace ravelin::test

// Loading test vectors from $RAVELIN_VECTORS (tests/vectors, set by Meson's
// test environment). A missing variable or file throws, so the test fails
// instead of silently running nothing.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ravelin/sa_descriptor.hh"

namespace ravelin::test {

using Bytes = std::vector<uint8_t>;

inline Bytes unhex(std::string_view s)
{
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    Bytes out;
    int hi = -1;
    for (char c : s) {
        int v = nibble(c);
        if (v < 0) continue;   // spaces and line breaks
        if (hi < 0) {
            hi = v;
        } else {
            out.push_back(uint8_t(hi << 4 | v));
            hi = -1;
        }
    }
    if (hi >= 0) throw std::runtime_error("odd number of hex digits");
    return out;
}

inline nlohmann::json load_vectors(const std::string& relative)
{
    const char* dir = std::getenv("RAVELIN_VECTORS");
    if (!dir || !*dir) throw std::runtime_error("RAVELIN_VECTORS is not set (point it at tests/vectors)");
    const std::string path = std::string(dir) + "/" + relative;
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open test vector file " + path);
    return nlohmann::json::parse(in);
}

inline EspCipher cipher_from_name(std::string_view n)
{
    if (n == "aes_gcm16") return EspCipher::aes_gcm16;
    if (n == "null_aes_gmac") return EspCipher::null_aes_gmac;
    if (n == "chacha20_poly1305") return EspCipher::chacha20_poly1305;
    if (n == "aes_cbc") return EspCipher::aes_cbc;
    if (n == "des3_cbc") return EspCipher::des3_cbc;
    if (n == "null") return EspCipher::null;
    throw std::runtime_error("unknown cipher " + std::string(n));
}

inline EspInteg integ_from_name(std::string_view n)
{
    if (n == "none") return EspInteg::none;
    if (n == "hmac_sha1_96") return EspInteg::hmac_sha1_96;
    if (n == "hmac_sha256_128") return EspInteg::hmac_sha256_128;
    if (n == "hmac_sha384_192") return EspInteg::hmac_sha384_192;
    if (n == "hmac_sha512_256") return EspInteg::hmac_sha512_256;
    throw std::runtime_error("unknown integrity algorithm " + std::string(n));
}

// Descriptor for one case of tests/vectors/esp/*.json. `integ_override`
// replaces "none" for CBC cases (RFC 3602 has no ICV, but Ravelin only
// builds CBC transforms with an integrity algorithm).
inline SaDescriptor descriptor_from_case(const nlohmann::json& c, SaDirection dir,
                                         EspInteg integ_override = EspInteg::none)
{
    SaDescriptor d;
    d.spi = Spi(c.at("spi").get<uint32_t>());
    d.direction = dir;
    d.cipher = cipher_from_name(c.at("cipher").get<std::string>());
    d.integ = integ_from_name(c.at("integ").get<std::string>());
    if (d.integ == EspInteg::none && integ_override != EspInteg::none) d.integ = integ_override;
    const Bytes ck = unhex(c.at("cipher_key").get<std::string>());
    Bytes ik = unhex(c.at("integ_key").get<std::string>());
    if (ik.empty()) ik.assign(integ_key_len(d.integ), 0x5a);
    if (ck.size() > d.cipher_key.size() || ik.size() > d.integ_key.size())
        throw std::runtime_error("key too long in vector");
    d.cipher_key_len = uint8_t(ck.size() - salt_len(d.cipher));
    d.integ_key_len = uint8_t(ik.size());
    std::copy(ck.begin(), ck.end(), d.cipher_key.begin());
    std::copy(ik.begin(), ik.end(), d.integ_key.begin());
    d.esn = c.at("esn").get<bool>();
    d.local = IpAddress::v4(0xc0000201);
    d.remote = IpAddress::v4(0xc0000202);
    return d;
}

} // namespace ravelin::test

// Text forms ravelin-iked shows to operators and tools: addresses, traffic
// selectors, and algorithm names in strongSwan's spelling ("AES_GCM_16",
// "PRF_HMAC_SHA2_256", "CURVE_25519"), so `ravelinctl list-sas` reads like
// `swanctl --list-sas` and the JSON SA sink names ESP algorithms the same way.
//
// These strings are part of the control protocol and the SA sink's format:
// tests and scripts match them, so change them only on purpose.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "config.hh"
#include "message.hh"
#include "proposal.hh"
#include "ravelin/algorithms.hh"
#include "ravelin/types.hh"

namespace ravelin::iked {

std::string format_address(const IpAddress& a);

// "198.19.1.0/24" when the range is a prefix, "198.19.1.5-198.19.1.9"
// otherwise; "[udp/53]", "[tcp]", "[17/1000-2000]" appended when the
// selector limits protocol or ports, as swanctl prints them.
std::string format_ts(const ike::TrafficSelector& ts);

// A configured selector: format_ts(), or "dynamic" with the same suffix.
std::string format_ts_config(const ike::TsConfig& ts);

// Lower-case hex of bytes (keys for the SA sink and the key log).
std::string hex_string(const uint8_t* data, std::size_t len);

// IKEv2 transform ids to strongSwan's names; "UNKNOWN_<id>" for others.
std::string encr_name(uint16_t id);
std::string prf_name(uint16_t id);
std::string integ_name(uint16_t id);
std::string dh_name(uint16_t id);

// ESP algorithms of an SA descriptor (same ids, same names).
inline std::string esp_cipher_name(EspCipher c) { return encr_name(uint16_t(c)); }
inline std::string esp_integ_name(EspInteg i) { return integ_name(uint16_t(i)); }

// swanctl's suite line: "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519" for
// IKE, "AES_CBC-128/HMAC_SHA2_256_128/MODP_2048/ESN" for ESP (absent
// transforms are left out).
std::string describe_suite(const ike::SelectedSuite& s, bool ike);

// A configured proposal with all its alternatives:
// "AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519,ECP_256".
std::string describe_proposal(const ike::ProposalSpec& p);

} // namespace ravelin::iked

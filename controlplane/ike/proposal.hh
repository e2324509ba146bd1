// Proposals: strongSwan's proposal strings ("aes256gcm16-prfsha256-x25519",
// "aes128-sha256-modp2048", "aes256gcm16-x25519-esn") turned into IKEv2
// SA payload proposals, and proposal selection (RFC 7296 §2.7, §3.3.6).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "message.hh"

namespace ravelin::ike {

// One configured proposal: for each transform type, the acceptable ids in
// preference order (strongSwan lets one string list several of a type).
struct ProposalSpec {
    ProtocolId protocol = ProtocolId::ike;
    std::vector<Transform> encr;
    std::vector<Transform> prf;
    std::vector<Transform> integ;
    std::vector<Transform> dh;      // for ESP: PFS groups; empty = no PFS
    std::vector<Transform> esn;     // ESP only; ids 0 (no ESN) / 1 (ESN); default {0}

    // The SA payload proposal offering all of these, with `number` and `spi`.
    Proposal to_proposal(uint8_t number, Bytes spi) const;
};

// What was agreed: one transform of each type (0 where absent).
struct SelectedSuite {
    uint16_t encr = 0;
    uint16_t encr_key_bits = 0;
    uint16_t prf = 0;
    uint16_t integ = 0;
    uint16_t dh = 0;
    bool esn = false;
    Bytes spi;                      // the peer's SPI from the chosen proposal
    uint8_t number = 0;             // proposal number to echo back

    // The single-proposal SA payload a responder sends back (RFC 7296 §3.3.6).
    Proposal to_proposal(ProtocolId protocol, Bytes our_spi) const;
};

// Parses one proposal string for `protocol` (ike or esp). Keywords follow
// strongSwan: aes128/192/256, aes128gcm16/aes256gcm16 (also gcm16 aliases
// "aes128gcm128"), chacha20poly1305, aes*gmac (ESP), 3des (legacy), null (ESP
// with integrity only, legacy); sha256/sha384/sha512 (integrity and, for IKE
// without an explicit prf, the PRF), sha1 (legacy), prfsha256/384/512,
// prfsha1 (legacy); modp2048/3072/4096, ecp256/384/521, x25519 (alias
// curve25519), modp1024 (legacy); esn/noesn. "default" expands to this
// project's defaults. Returns nullopt with `error` naming the bad token or the
// missing transform.
std::optional<ProposalSpec> parse_proposal(std::string_view text, ProtocolId protocol,
                                           bool allow_legacy, std::string& error);

// Comma-separated list of proposal strings.
std::optional<std::vector<ProposalSpec>> parse_proposals(std::string_view text,
                                                         ProtocolId protocol,
                                                         bool allow_legacy,
                                                         std::string& error);

std::vector<ProposalSpec> default_ike_proposals();
std::vector<ProposalSpec> default_esp_proposals();

// Responder side: walk our configured proposals in order and take the first
// offered proposal that has, for each type our spec constrains, an id we
// accept (our preference order decides which). Offered proposals with an
// unknown protocol or a bad SPI size are skipped. nullopt = NO_PROPOSAL_CHOSEN.
std::optional<SelectedSuite> select_proposal(const std::vector<Proposal>& offered,
                                             const std::vector<ProposalSpec>& ours);

// Initiator side: is the responder's single answer one of the proposals we
// offered, with exactly one transform per type and nothing we did not offer?
std::optional<SelectedSuite> accept_response(const Proposal& answer,
                                             const std::vector<ProposalSpec>& ours);

// The answer a responder must give when `ours` leaves it one choice: one
// proposal with one transform of each type (nullopt when there are more).
std::optional<SelectedSuite> sole_suite(const std::vector<ProposalSpec>& ours);

// "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519" as swanctl --list-sas prints it.
std::string describe(const SelectedSuite& suite, ProtocolId protocol);

// A proposal as the proposal string that would configure it, for operators
// comparing what a peer sent with their own `proposals`/`esp_proposals`:
// "aes128-sha1-modp1024", "aes256gcm16-prfsha256-x25519", "aes128-sha256-esn".
// An IKE PRF is left out when the integrity keywords imply exactly it; ESP's
// default noesn is left out. A transform without a keyword shows its IANA
// name ("AES_CTR_128", "DH_31") so nothing the peer offered is hidden.
std::string proposal_keywords(const Proposal& p);
// Several, comma-separated ("aes256gcm16-prfsha256-x25519, aes128-sha256-modp2048").
std::string proposals_keywords(const std::vector<Proposal>& v);

} // namespace ravelin::ike

// The generator as the gateway's ESP peer, with the SAs of a gateway's own
// TOML configuration (dataplane/config.hh parses it; nothing is re-parsed
// here).
//
// The file is read from the gateway's point of view, so the generator
// mirrors it:
//
//   gateway SA "in"  (gateway decrypts) -> we seal with it: outer source =
//                    its remote, destination = its local, UDP ports swapped
//   gateway SA "out" (gateway encrypts) -> we open what it sends
//
// A file written for the other end (the peer gateway's) works too: its
// "out" SAs are used for sealing as they are, its "in" SAs for opening.
// Where an SPI exists in both directions, the mirrored one wins.
//
// Sealing and opening are the data plane's own esp_encap()/esp_decap() on
// data-plane SAs built by sa_create() (IPsec-MB, the same transforms), so
// sequence numbers increase from --esp-seq-start with ESN carried in the
// ICV, and the receive side infers ESN high bits the way the gateway does.
// The receive SAs have their replay window off: the generator's own stamps
// count duplicates and reordering.
//
// One writer per SA: TX SAs belong to the TX lcore, RX SAs to the RX lcore.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <intel-ipsec-mb.h>

#include "config.hh"
#include "sa.hh"

namespace ravelin::pktgen {

class EspPeer {
public:
    // After rte_eal_init (SAs live in hugepage memory). `seq_start` is the
    // first sequence number each sealing SA uses (1 normally; near 2^32 to
    // cross into ESN's high half early).
    // `open`: also build the opening SAs (not needed when received ESP is
    // only counted).
    static std::unique_ptr<EspPeer> load(const std::string& path, uint64_t seq_start, bool open, std::string& error);
    ~EspPeer();
    EspPeer(const EspPeer&) = delete;
    EspPeer& operator=(const EspPeer&) = delete;

    // Set-up time only (may build the SA): nullptr if the file has no SA
    // with that SPI.
    dp::DpSa* sealing_sa(uint32_t spi, std::string& error);
    // Fast path: the SA that opens packets with this SPI, or nullptr.
    dp::DpSa* opening_sa(uint32_t spi) const noexcept
    {
        auto it = open_.find(spi);
        return it == open_.end() ? nullptr : it->second;
    }

    const std::string& path() const noexcept { return path_; }
    std::size_t sa_count() const noexcept { return descriptors_.size(); }
    std::vector<dp::DpSa*> sealing_sas() const;
    std::vector<dp::DpSa*> opening_sas() const;

private:
    EspPeer() = default;
    dp::DpSa* build(const SaDescriptor& d, bool mirror, SaDirection as, std::string& error);

    std::string path_;
    uint64_t seq_start_ = 1;
    IMB_MGR* mgr_ = nullptr;
    std::vector<dp::SaConfig> descriptors_;   // keys wiped once every SA is built
    std::unordered_map<uint32_t, dp::DpSa*> seal_, open_;
    std::vector<dp::DpSa*> owned_;
};

// Mirror a gateway's SA descriptor: our local is its remote.
SaDescriptor mirror_descriptor(const SaDescriptor& d, SaDirection as);

} // namespace ravelin::pktgen

#include "esp_peer.hh"

#include <cstdio>

#include "crypto.hh"

namespace ravelin::pktgen {

SaDescriptor mirror_descriptor(const SaDescriptor& d, SaDirection as)
{
    SaDescriptor m = d;
    m.direction = as;
    std::swap(m.local, m.remote);
    std::swap(m.encap_local_port, m.encap_remote_port);
    // The generator never stops at a lifetime: it is there to load the
    // gateway for as long as asked.
    m.lifetime = SaLifetime{};
    return m;
}

std::unique_ptr<EspPeer> EspPeer::load(const std::string& path, uint64_t seq_start, bool open, std::string& error)
{
    auto parsed = dp::load_config(path);
    if (!parsed) {
        error = parsed.error().to_string();
        return nullptr;
    }
    std::unique_ptr<EspPeer> p(new EspPeer);
    p->path_ = path;
    p->seq_start_ = seq_start == 0 ? 1 : seq_start;
    p->descriptors_ = std::move(parsed.value().sas);
    p->mgr_ = dp::crypto_manager_create();
    if (!p->mgr_) {
        error = "cannot initialise Intel IPsec-MB";
        return nullptr;
    }
    // Opening SAs: every SA the gateway sends with, then the ones a peer's
    // file lists as inbound (only for SPIs not taken).
    for (int pass = 0; pass < (open ? 2 : 0); ++pass) {
        for (auto& c : p->descriptors_) {
            const SaDescriptor& d = c.sa;
            const bool mirror = d.direction == SaDirection::outbound;
            if ((pass == 0) != mirror || p->open_.count(d.spi.value)) continue;
            dp::DpSa* sa = p->build(d, mirror, SaDirection::inbound, error);
            if (!sa) return nullptr;
            p->open_[d.spi.value] = sa;
        }
    }
    return p;
}

EspPeer::~EspPeer()
{
    for (auto* sa : owned_) dp::sa_free(sa);
    for (auto& c : descriptors_) wipe_keys(c.sa);
    if (mgr_) dp::crypto_manager_free(mgr_);
}

dp::DpSa* EspPeer::build(const SaDescriptor& d, bool mirror, SaDirection as, std::string& error)
{
    SaDescriptor x = mirror ? mirror_descriptor(d, as) : d;
    x.direction = as;
    x.lifetime = SaLifetime{};
    if (as == SaDirection::inbound) x.replay_window = 0;
    const char* why = nullptr;
    dp::DpSa* sa = dp::sa_create(mgr_, x, 9000, WorkerId(0), &why);
    wipe_keys(x);
    if (!sa) {
        error = "SA 0x" + [&] {
            char b[16];
            std::snprintf(b, sizeof b, "%x", d.spi.value);
            return std::string(b);
        }() + ": " + (why ? why : "cannot build");
        return nullptr;
    }
    if (as == SaDirection::outbound) sa->state.seq = seq_start_ - 1;   // seq is the last one used
    owned_.push_back(sa);
    return sa;
}

dp::DpSa* EspPeer::sealing_sa(uint32_t spi, std::string& error)
{
    if (auto it = seal_.find(spi); it != seal_.end()) return it->second;
    const dp::SaConfig* in = nullptr;
    const dp::SaConfig* out = nullptr;
    for (auto& c : descriptors_) {
        if (c.sa.spi.value != spi) continue;
        (c.sa.direction == SaDirection::inbound ? in : out) = &c;
    }
    if (!in && !out) {
        char b[16];
        std::snprintf(b, sizeof b, "%x", spi);
        error = path_ + ": no SA with SPI 0x" + b;
        return nullptr;
    }
    dp::DpSa* sa = in ? build(in->sa, true, SaDirection::outbound, error)
                      : build(out->sa, false, SaDirection::outbound, error);
    if (sa) seal_[spi] = sa;
    return sa;
}

std::vector<dp::DpSa*> EspPeer::sealing_sas() const
{
    std::vector<dp::DpSa*> v;
    for (auto& [spi, sa] : seal_) v.push_back(sa);
    return v;
}

std::vector<dp::DpSa*> EspPeer::opening_sas() const
{
    std::vector<dp::DpSa*> v;
    for (auto& [spi, sa] : open_) v.push_back(sa);
    return v;
}

} // namespace ravelin::pktgen

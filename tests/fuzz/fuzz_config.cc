// libFuzzer target: parse_config() on arbitrary bytes.
//
// Beyond "no crash, no leak, no UB", it checks what the loader promises on
// success (config.hh: nothing downstream re-validates these), so a check
// the loader forgot shows up here as a crash.
#include "config.hh"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

using namespace ravelin;
using namespace ravelin::dp;

void require(bool ok)
{
    if (!ok) std::abort();
}

void check_sa(const SaConfig& c, const DataplaneConfig& cfg)
{
    const SaDescriptor& sa = c.sa;
    require(sa.spi.value >= 256);
    require(valid_cipher_key_len(sa.cipher, sa.cipher_key_len));
    require(is_aead(sa.cipher) == (sa.integ == EspInteg::none));
    require(sa.integ_key_len == integ_key_len(sa.integ));
    require(cfg.legacy_algorithms || (!is_legacy(sa.cipher) && !is_legacy(sa.integ)));
    require(sa.replay_window <= max_replay_window);
    require(sa.local.family == sa.remote.family);
    require(c.mtu && *c.mtu >= 576 && *c.mtu <= 9000);
    require(!c.worker || *c.worker < cfg.workers);
    for (auto& other : cfg.sas)
        require(&other == &c || other.sa.spi != sa.spi || other.sa.direction != sa.direction);
}

void check_policy(const PolicyDescriptor& p, const DataplaneConfig& cfg)
{
    require(p.local.addr.family == p.remote.addr.family);
    for (const IpPrefix* px : {&p.local, &p.remote}) {
        unsigned bits = px->addr.family == IpFamily::v4 ? 32 : 128;
        require(px->len <= bits);
        for (unsigned b = px->len; b < bits; ++b)   // host bits are clear
            require(!(px->addr.bytes[b / 8] & (0x80u >> (b % 8))));
    }
    require(p.local_ports.lo <= p.local_ports.hi && p.remote_ports.lo <= p.remote_ports.hi);
    bool has_sa = false;
    for (auto& c : cfg.sas) has_sa |= c.sa.spi == p.sa && c.sa.direction == p.direction;
    require(has_sa == (p.action == PolicyAction::protect));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size)
{
    std::string_view text(reinterpret_cast<const char*>(data), size);
    auto r = parse_config(text, "fuzz.toml");
    if (!r) {
        require(!r.error().to_string().empty());
        return 0;
    }
    const DataplaneConfig& cfg = r.value();
    require(cfg.workers >= 1 && cfg.workers + 1 == cfg.lcores.size());
    require(!cfg.ports.empty());
    for (auto& sa : cfg.sas) check_sa(sa, cfg);
    for (auto& p : cfg.policies) check_policy(p.policy, cfg);
    require(eal_argv(cfg).size() >= 5);
    for (auto& sa : r.value().sas) wipe_keys(sa.sa);
    return 0;
}

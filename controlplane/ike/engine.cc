// Being written; see engine.hh.
#include "engine.hh"

namespace ravelin::ike {

struct Engine::Impl {
    IkeConfig config;
    EngineStats stats;
};

Engine::Engine(IkeConfig config, Transport&, SaSink&, Rng&, EngineHooks)
    : impl_(std::make_unique<Impl>())
{
    impl_->config = std::move(config);
}
Engine::~Engine() = default;
void Engine::receive(TimePoint, const Endpoint&, const Endpoint&, ByteView) {}
TimePoint Engine::tick(TimePoint now) { return now + std::chrono::seconds(1); }
bool Engine::initiate(TimePoint, std::string_view, std::string_view, std::string& e) { e = "not implemented yet"; return false; }
bool Engine::terminate(TimePoint, std::string_view, std::string& e) { e = "not implemented yet"; return false; }
bool Engine::rekey_ike(TimePoint, std::string_view, std::string& e) { e = "not implemented yet"; return false; }
bool Engine::rekey_child(TimePoint, std::string_view, std::string_view, std::string& e) { e = "not implemented yet"; return false; }
void Engine::acquire(TimePoint, uint32_t) {}
void Engine::sa_expired(TimePoint, uint32_t, bool) {}
std::vector<std::string> Engine::reload(TimePoint, IkeConfig c) { impl_->config = std::move(c); return {}; }
std::vector<IkeSaInfo> Engine::list_sas(TimePoint) const { return {}; }
std::vector<Diagnosis> Engine::diagnose() const { return {}; }
const EngineStats& Engine::stats() const { return impl_->stats; }
const IkeConfig& Engine::config() const { return impl_->config; }

} // namespace ravelin::ike

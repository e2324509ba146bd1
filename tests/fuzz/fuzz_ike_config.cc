// ravelin-iked's config parser on arbitrary bytes: it must answer with a
// config or a "file:line: reason", never crash, loop or allocate without
// bound. The identity, selector and proposal parsers get the same bytes.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "../../controlplane/ike/config.hh"  // not dataplane/config.hh
#include "../../controlplane/ike/proposal.hh"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    std::string_view text(reinterpret_cast<const char*>(data), size);
    std::string error;
    auto cfg = ravelin::ike::parse_ike_config(text, "fuzz.conf", error);
    // Every failure says why (with the file and line; an `include` may name
    // another file than fuzz.conf).
    if (!cfg && error.empty()) std::abort();
    if (size < 256) {
        (void)ravelin::ike::parse_identity(text, error);
        (void)ravelin::ike::parse_ts(text, error);
        (void)ravelin::ike::parse_proposals(text, ravelin::ike::ProtocolId::ike, true, error);
        (void)ravelin::ike::parse_proposals(text, ravelin::ike::ProtocolId::esp, false, error);
    }
    return 0;
}

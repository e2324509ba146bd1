// Proposal strings, selection and response checks (controlplane/ike/proposal.hh).
#include <gtest/gtest.h>

#include "crypto.hh"
#include "proposal.hh"

namespace ravelin::ike {
namespace {

using TT = TransformType;

Transform T(TT type, uint16_t id, uint16_t bits = 0) { return {type, id, bits}; }

ProposalSpec parse_ok(std::string_view text, ProtocolId proto = ProtocolId::ike,
                      bool legacy = false)
{
    std::string err;
    auto spec = parse_proposal(text, proto, legacy, err);
    EXPECT_TRUE(spec) << text << ": " << err;
    return spec.value_or(ProposalSpec{});
}

std::string parse_err(std::string_view text, ProtocolId proto = ProtocolId::ike,
                      bool legacy = false)
{
    std::string err;
    auto spec = parse_proposal(text, proto, legacy, err);
    EXPECT_FALSE(spec) << text << " parsed";
    return err;
}

TEST(IkeProposal, GcmWithExplicitPrfAndX25519)
{
    auto s = parse_ok("aes256gcm16-prfsha256-x25519");
    EXPECT_EQ(s.protocol, ProtocolId::ike);
    EXPECT_EQ(s.encr, std::vector{T(TT::encr, encr::aes_gcm_16, 256)});
    EXPECT_EQ(s.prf, std::vector{T(TT::prf, prf::hmac_sha2_256)});
    EXPECT_TRUE(s.integ.empty());
    EXPECT_EQ(s.dh, std::vector{T(TT::dh, dh::curve25519)});
    EXPECT_TRUE(s.esn.empty());
}

TEST(IkeProposal, CbcDerivesPrfFromIntegrity)
{
    auto s = parse_ok("aes128-sha256-modp2048");
    EXPECT_EQ(s.encr, std::vector{T(TT::encr, encr::aes_cbc, 128)});
    EXPECT_EQ(s.integ, std::vector{T(TT::integ, integ::hmac_sha2_256_128)});
    EXPECT_EQ(s.prf, std::vector{T(TT::prf, prf::hmac_sha2_256)});
    EXPECT_EQ(s.dh, std::vector{T(TT::dh, dh::modp2048)});
}

TEST(IkeProposal, ExplicitPrfWinsOverDerived)
{
    auto s = parse_ok("aes256-sha256-prfsha512-ecp256");
    EXPECT_EQ(s.prf, std::vector{T(TT::prf, prf::hmac_sha2_512)});
    EXPECT_EQ(s.integ, std::vector{T(TT::integ, integ::hmac_sha2_256_128)});
}

TEST(IkeProposal, SeveralIntegritiesDeriveSeveralPrfsInOrder)
{
    auto s = parse_ok("aes256-sha512-sha256-ecp256");
    EXPECT_EQ(s.prf, (std::vector{T(TT::prf, prf::hmac_sha2_512), T(TT::prf, prf::hmac_sha2_256)}));
}

TEST(IkeProposal, ChachaHasNoKeyLength)
{
    auto s = parse_ok("chacha20poly1305-prfsha256-ecp384");
    EXPECT_EQ(s.encr, std::vector{T(TT::encr, encr::chacha20_poly1305, 0)});
    EXPECT_EQ(s.prf, std::vector{T(TT::prf, prf::hmac_sha2_256)});
    EXPECT_EQ(s.dh, std::vector{T(TT::dh, dh::ecp384)});
}

TEST(IkeProposal, AeadDropsIntegrityAfterLendingItsPrf)
{
    // strongSwan derives the PRF first, then removes integrity for AEAD.
    auto s = parse_ok("aes256gcm16-sha384-ecp256");
    EXPECT_TRUE(s.integ.empty());
    EXPECT_EQ(s.prf, std::vector{T(TT::prf, prf::hmac_sha2_384)});
}

TEST(IkeProposal, EspGcmWithPfsAndEsn)
{
    auto s = parse_ok("aes256gcm16-x25519-esn", ProtocolId::esp);
    EXPECT_EQ(s.protocol, ProtocolId::esp);
    EXPECT_EQ(s.encr, std::vector{T(TT::encr, encr::aes_gcm_16, 256)});
    EXPECT_TRUE(s.prf.empty());
    EXPECT_TRUE(s.integ.empty());
    EXPECT_EQ(s.dh, std::vector{T(TT::dh, dh::curve25519)});
    EXPECT_EQ(s.esn, std::vector{T(TT::esn, 1)});
}

TEST(IkeProposal, EspDefaultsToNoEsnAndNoPfs)
{
    auto s = parse_ok("aes128-sha256", ProtocolId::esp);
    EXPECT_EQ(s.esn, std::vector{T(TT::esn, 0)});
    EXPECT_TRUE(s.dh.empty());
    EXPECT_TRUE(s.prf.empty());
    EXPECT_EQ(s.integ, std::vector{T(TT::integ, integ::hmac_sha2_256_128)});
}

TEST(IkeProposal, EspBothEsnKeywordsOfferBothInOrder)
{
    EXPECT_EQ(parse_ok("aes256gcm16-esn-noesn", ProtocolId::esp).esn,
              (std::vector{T(TT::esn, 1), T(TT::esn, 0)}));
    EXPECT_EQ(parse_ok("aes256gcm16-noesn-esn", ProtocolId::esp).esn,
              (std::vector{T(TT::esn, 0), T(TT::esn, 1)}));
}

TEST(IkeProposal, EspPrfIsDroppedAsStrongSwanDoes)
{
    EXPECT_TRUE(parse_ok("aes256gcm16-prfsha256", ProtocolId::esp).prf.empty());
}

TEST(IkeProposal, EveryKeyword)
{
    struct Case {
        const char* text;
        ProtocolId proto;
        bool legacy;
        Transform expect;
    };
    const auto I = ProtocolId::ike;
    const auto S = ProtocolId::esp;
    const Case cases[] = {
        {"aes-sha256-x25519", I, false, T(TT::encr, encr::aes_cbc, 128)},
        {"aes128-sha256-x25519", I, false, T(TT::encr, encr::aes_cbc, 128)},
        {"aes192-sha256-x25519", I, false, T(TT::encr, encr::aes_cbc, 192)},
        {"aes256-sha256-x25519", I, false, T(TT::encr, encr::aes_cbc, 256)},
        {"aes128gcm16-prfsha256-x25519", I, false, T(TT::encr, encr::aes_gcm_16, 128)},
        {"aes192gcm16-prfsha256-x25519", I, false, T(TT::encr, encr::aes_gcm_16, 192)},
        {"aes256gcm16-prfsha256-x25519", I, false, T(TT::encr, encr::aes_gcm_16, 256)},
        {"aes128gcm128-prfsha256-x25519", I, false, T(TT::encr, encr::aes_gcm_16, 128)},
        {"aes192gcm128-prfsha256-x25519", I, false, T(TT::encr, encr::aes_gcm_16, 192)},
        {"aes256gcm128-prfsha256-x25519", I, false, T(TT::encr, encr::aes_gcm_16, 256)},
        {"chacha20poly1305-prfsha256-x25519", I, false, T(TT::encr, encr::chacha20_poly1305)},
        {"aes128gmac", S, false, T(TT::encr, encr::null_aes_gmac, 128)},
        {"aes192gmac", S, false, T(TT::encr, encr::null_aes_gmac, 192)},
        {"aes256gmac", S, false, T(TT::encr, encr::null_aes_gmac, 256)},
        {"3des-sha256-x25519", I, true, T(TT::encr, encr::des3, 0)},
        {"null-sha256", S, true, T(TT::encr, encr::null_, 0)},
        {"aes128-sha256-x25519", I, false, T(TT::integ, integ::hmac_sha2_256_128)},
        {"aes128-sha384-x25519", I, false, T(TT::integ, integ::hmac_sha2_384_192)},
        {"aes128-sha512-x25519", I, false, T(TT::integ, integ::hmac_sha2_512_256)},
        {"aes128-sha1-x25519", I, true, T(TT::integ, integ::hmac_sha1_96)},
        {"aes128-sha256-x25519", I, false, T(TT::prf, prf::hmac_sha2_256)},
        {"aes128-sha384-x25519", I, false, T(TT::prf, prf::hmac_sha2_384)},
        {"aes128-sha512-x25519", I, false, T(TT::prf, prf::hmac_sha2_512)},
        {"aes128-sha1-x25519", I, true, T(TT::prf, prf::hmac_sha1)},
        {"aes128gcm16-prfsha256-x25519", I, false, T(TT::prf, prf::hmac_sha2_256)},
        {"aes128gcm16-prfsha384-x25519", I, false, T(TT::prf, prf::hmac_sha2_384)},
        {"aes128gcm16-prfsha512-x25519", I, false, T(TT::prf, prf::hmac_sha2_512)},
        {"aes128gcm16-prfsha1-x25519", I, true, T(TT::prf, prf::hmac_sha1)},
        {"aes128gcm16-prfsha256-modp2048", I, false, T(TT::dh, dh::modp2048)},
        {"aes128gcm16-prfsha256-modp3072", I, false, T(TT::dh, dh::modp3072)},
        {"aes128gcm16-prfsha256-modp4096", I, false, T(TT::dh, dh::modp4096)},
        {"aes128gcm16-prfsha256-ecp256", I, false, T(TT::dh, dh::ecp256)},
        {"aes128gcm16-prfsha256-ecp384", I, false, T(TT::dh, dh::ecp384)},
        {"aes128gcm16-prfsha256-ecp521", I, false, T(TT::dh, dh::ecp521)},
        {"aes128gcm16-prfsha256-x25519", I, false, T(TT::dh, dh::curve25519)},
        {"aes128gcm16-prfsha256-curve25519", I, false, T(TT::dh, dh::curve25519)},
        {"aes128gcm16-prfsha256-modp1024", I, true, T(TT::dh, dh::modp1024)},
        {"aes128gcm16-esn", S, false, T(TT::esn, 1)},
        {"aes128gcm16-noesn", S, false, T(TT::esn, 0)},
        {"aes128gcm16-modp2048", S, false, T(TT::dh, dh::modp2048)},
        {"AES256GCM16-PRFSHA256-X25519", I, false, T(TT::encr, encr::aes_gcm_16, 256)},
    };
    for (const Case& c : cases) {
        std::string err;
        auto spec = parse_proposal(c.text, c.proto, c.legacy, err);
        ASSERT_TRUE(spec) << c.text << ": " << err;
        auto p = spec->to_proposal(1, {});
        EXPECT_NE(std::find(p.transforms.begin(), p.transforms.end(), c.expect), p.transforms.end())
            << c.text << " lacks transform type " << int(c.expect.type) << " id " << c.expect.id;
    }
}

TEST(IkeProposal, Errors)
{
    struct Case {
        const char* text;
        ProtocolId proto;
        const char* error;
    };
    const auto I = ProtocolId::ike;
    const auto S = ProtocolId::esp;
    const Case cases[] = {
        {"aes256-shaa256-x25519", I, "unknown algorithm 'shaa256' in proposal 'aes256-shaa256-x25519'"},
        {"aes256gcm16-x25519", I,
         "no PRF in IKE proposal 'aes256gcm16-x25519' (add prfsha256/384/512, or an integrity "
         "algorithm to derive it from)"},
        {"aes256gcm16-prfsha256", I, "no DH group in IKE proposal 'aes256gcm16-prfsha256'"},
        {"sha256-x25519", I, "no encryption algorithm in IKE proposal 'sha256-x25519'"},
        {"aes256-prfsha256-x25519", I,
         "no integrity algorithm for the classic cipher in IKE proposal 'aes256-prfsha256-x25519'"},
        {"aes256", S, "no integrity algorithm for the classic cipher in ESP proposal 'aes256'"},
        {"x25519", S, "no encryption algorithm in ESP proposal 'x25519'"},
        {"aes256gcm16-aes256-sha256-x25519", I,
         "AEAD and classic ciphers cannot share a proposal: 'aes256gcm16-aes256-sha256-x25519'"},
        {"aes256-sha1", S, "'sha1' is a legacy algorithm: it needs allow_legacy = yes"},
        {"3des-sha256", S, "'3des' is a legacy algorithm: it needs allow_legacy = yes"},
        {"aes256-sha256-modp1024", I, "'modp1024' is a legacy algorithm: it needs allow_legacy = yes"},
        {"aes256-sha256-prfsha1-ecp256", I,
         "'prfsha1' is a legacy algorithm: it needs allow_legacy = yes"},
        {"null-sha256", S, "'null' is a legacy algorithm: it needs allow_legacy = yes"},
        {"null-sha256-x25519", I, "'null' is only valid in ESP proposals"},
        {"aes128gmac-prfsha256-x25519", I, "'aes128gmac' is only valid in ESP proposals"},
        {"aes256gcm16-prfsha256-x25519-esn", I, "'esn' is only valid in ESP proposals"},
        {"aes256gcm16-prfsha256-x25519-noesn", I, "'noesn' is only valid in ESP proposals"},
        {"aes256--sha256", S, "empty algorithm in proposal 'aes256--sha256'"},
        {"aes256-sha256-", S, "empty algorithm in proposal 'aes256-sha256-'"},
        {"", S, "empty proposal"},
        {"   ", I, "empty proposal"},
        {"default", I, "'default' stands for several proposals: use it in a proposal list"},
    };
    for (const Case& c : cases) EXPECT_EQ(parse_err(c.text, c.proto), c.error) << c.text;

    std::string err;
    EXPECT_FALSE(parse_proposal("aes256gcm16", ProtocolId::ah, false, err));
    EXPECT_EQ(err, "proposals are for IKE or ESP only");
}

TEST(IkeProposal, LegacyAllowedWithFlag)
{
    auto s = parse_ok("3des-sha1-modp1024", ProtocolId::ike, true);
    EXPECT_EQ(s.encr, std::vector{T(TT::encr, encr::des3, 0)});
    EXPECT_EQ(s.prf, std::vector{T(TT::prf, prf::hmac_sha1)});
    EXPECT_EQ(s.dh, std::vector{T(TT::dh, dh::modp1024)});
}

TEST(IkeProposal, DuplicatesAreOfferedOnce)
{
    auto s = parse_ok("aes256-aes256-sha256-sha256-x25519-x25519");
    EXPECT_EQ(s.encr.size(), 1u);
    EXPECT_EQ(s.integ.size(), 1u);
    EXPECT_EQ(s.prf.size(), 1u);
    EXPECT_EQ(s.dh.size(), 1u);
}

TEST(IkeProposal, ListsAndDefault)
{
    std::string err;
    auto list = parse_proposals("aes256gcm16-prfsha256-x25519, aes128-sha256-modp2048",
                                ProtocolId::ike, false, err);
    ASSERT_TRUE(list) << err;
    ASSERT_EQ(list->size(), 2u);
    EXPECT_EQ((*list)[1].encr, std::vector{T(TT::encr, encr::aes_cbc, 128)});

    auto with_default = parse_proposals("aes256gcm16-prfsha256-x25519,default",
                                        ProtocolId::ike, false, err);
    ASSERT_TRUE(with_default) << err;
    const auto defaults = default_ike_proposals();
    ASSERT_EQ(with_default->size(), 1 + defaults.size());
    EXPECT_EQ((*with_default)[1].encr, defaults[0].encr);
    EXPECT_EQ((*with_default)[2].integ, defaults[1].integ);

    auto esp = parse_proposals("default", ProtocolId::esp, false, err);
    ASSERT_TRUE(esp) << err;
    EXPECT_EQ(esp->size(), default_esp_proposals().size());

    EXPECT_FALSE(parse_proposals("aes256gcm16-prfsha256-x25519,,default", ProtocolId::ike, false, err));
    EXPECT_EQ(err, "empty proposal in list 'aes256gcm16-prfsha256-x25519,,default'");
    EXPECT_FALSE(parse_proposals("aes256gcm16-prfsha256-x25519, bogus", ProtocolId::ike, false, err));
    EXPECT_EQ(err, "unknown algorithm 'bogus' in proposal 'bogus'");

    std::string many;
    for (int i = 0; i < 65; ++i) many += i ? ",aes256gcm16" : "aes256gcm16";
    EXPECT_FALSE(parse_proposals(many, ProtocolId::esp, false, err));
    EXPECT_EQ(err, "more than 64 proposals");
}

TEST(IkeProposal, DefaultsAreWellFormed)
{
    for (const auto& s : default_ike_proposals()) {
        EXPECT_EQ(s.protocol, ProtocolId::ike);
        EXPECT_FALSE(s.encr.empty());
        EXPECT_FALSE(s.prf.empty());
        EXPECT_FALSE(s.dh.empty());
        EXPECT_TRUE(s.esn.empty());
    }
    for (const auto& s : default_esp_proposals()) {
        EXPECT_EQ(s.protocol, ProtocolId::esp);
        EXPECT_FALSE(s.encr.empty());
        EXPECT_TRUE(s.prf.empty());
        EXPECT_TRUE(s.dh.empty());
        EXPECT_EQ(s.esn, std::vector{T(TT::esn, 0)});
    }
    // AEAD first, and no legacy algorithm among the defaults.
    EXPECT_EQ(default_ike_proposals()[0].encr[0], T(TT::encr, encr::aes_gcm_16, 256));
    for (const auto& s : default_ike_proposals()) {
        for (const auto& t : s.dh) EXPECT_NE(t.id, dh::modp1024);
        for (const auto& t : s.prf) EXPECT_NE(t.id, prf::hmac_sha1);
    }
}

TEST(IkeProposal, ToProposalOrdersTypesAndCarriesSpi)
{
    auto s = parse_ok("aes256-aes128-sha256-x25519-ecp256");
    auto p = s.to_proposal(3, {});
    EXPECT_EQ(p.number, 3);
    EXPECT_EQ(p.protocol, ProtocolId::ike);
    EXPECT_TRUE(p.spi.empty());
    const std::vector<Transform> expect{
        T(TT::encr, encr::aes_cbc, 256), T(TT::encr, encr::aes_cbc, 128),
        T(TT::prf, prf::hmac_sha2_256), T(TT::integ, integ::hmac_sha2_256_128),
        T(TT::dh, dh::curve25519), T(TT::dh, dh::ecp256)};
    EXPECT_EQ(p.transforms, expect);

    auto e = parse_ok("aes256gcm16-esn-noesn", ProtocolId::esp).to_proposal(1, {1, 2, 3, 4});
    EXPECT_EQ(e.spi, (Bytes{1, 2, 3, 4}));
    EXPECT_EQ(e.transforms, (std::vector{T(TT::encr, encr::aes_gcm_16, 256), T(TT::esn, 1),
                                         T(TT::esn, 0)}));

    // An ESP spec built by hand without ESN still offers "no ESN".
    ProposalSpec bare;
    bare.protocol = ProtocolId::esp;
    bare.encr = {T(TT::encr, encr::aes_gcm_16, 128)};
    EXPECT_EQ(bare.to_proposal(1, {0, 0, 0, 1}).transforms.back(), T(TT::esn, 0));
}

// --- selection (responder) ----------------------------------------------------

std::vector<ProposalSpec> specs(std::string_view list, ProtocolId proto = ProtocolId::ike)
{
    std::string err;
    auto out = parse_proposals(list, proto, true, err);
    EXPECT_TRUE(out) << err;
    return out.value_or(std::vector<ProposalSpec>{});
}

std::vector<Proposal> offer(std::string_view list, ProtocolId proto, Bytes spi)
{
    std::vector<Proposal> out;
    uint8_t n = 1;
    for (const auto& s : specs(list, proto)) out.push_back(s.to_proposal(n++, spi));
    return out;
}

TEST(IkeProposal, SelectsFirstOfOursThatIsOffered)
{
    auto offered = offer("aes128-sha256-modp2048, aes256gcm16-prfsha256-x25519", ProtocolId::ike, {});
    auto ours = specs("aes256gcm16-prfsha256-x25519, aes128-sha256-modp2048");
    auto s = select_proposal(offered, ours);
    ASSERT_TRUE(s);
    // Our first proposal wins although the peer listed it second.
    EXPECT_EQ(s->number, 2);
    EXPECT_EQ(s->encr, encr::aes_gcm_16);
    EXPECT_EQ(s->encr_key_bits, 256);
    EXPECT_EQ(s->prf, prf::hmac_sha2_256);
    EXPECT_EQ(s->integ, 0);
    EXPECT_EQ(s->dh, dh::curve25519);
    EXPECT_TRUE(s->spi.empty());
    EXPECT_EQ(describe(*s, ProtocolId::ike), "AES_GCM_16_256/PRF_HMAC_SHA2_256/CURVE_25519");

    auto r = s->to_proposal(ProtocolId::ike, {});
    EXPECT_EQ(r.number, 2);
    EXPECT_EQ(r.transforms, (std::vector{T(TT::encr, encr::aes_gcm_16, 256),
                                         T(TT::prf, prf::hmac_sha2_256), T(TT::dh, dh::curve25519)}));
}

TEST(IkeProposal, OurOrderPicksWithinAProposal)
{
    auto offered = offer("aes128-aes256-sha256-sha512-modp2048-ecp256-x25519", ProtocolId::ike, {});
    auto ours = specs("aes256-aes128-sha512-sha256-x25519-ecp256");
    auto s = select_proposal(offered, ours);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->encr, encr::aes_cbc);
    EXPECT_EQ(s->encr_key_bits, 256);
    EXPECT_EQ(s->integ, integ::hmac_sha2_512_256);
    EXPECT_EQ(s->prf, prf::hmac_sha2_512);
    EXPECT_EQ(s->dh, dh::curve25519);
    EXPECT_EQ(describe(*s, ProtocolId::ike),
              "AES_CBC_256/HMAC_SHA2_512_256/PRF_HMAC_SHA2_512/CURVE_25519");
}

TEST(IkeProposal, KeyLengthMustMatch)
{
    auto offered = offer("aes128gcm16-prfsha256-x25519", ProtocolId::ike, {});
    EXPECT_FALSE(select_proposal(offered, specs("aes256gcm16-prfsha256-x25519")));
    // AES without a Key Length attribute matches nothing.
    offered[0].transforms[0].key_bits = 0;
    EXPECT_FALSE(select_proposal(offered, specs("aes128gcm16-prfsha256-x25519")));
}

TEST(IkeProposal, MismatchIsNoProposalChosen)
{
    auto offered = offer("aes256gcm16-prfsha256-x25519", ProtocolId::ike, {});
    EXPECT_FALSE(select_proposal(offered, specs("aes256gcm16-prfsha256-ecp256")));
    EXPECT_FALSE(select_proposal(offered, specs("aes256gcm16-prfsha384-x25519")));
    EXPECT_FALSE(select_proposal(offered, specs("chacha20poly1305-prfsha256-x25519")));
    EXPECT_FALSE(select_proposal({}, specs("aes256gcm16-prfsha256-x25519")));
    EXPECT_FALSE(select_proposal(offered, {}));
    // A proposal missing a type we constrain.
    auto no_dh = offered;
    no_dh[0].transforms.pop_back();
    EXPECT_FALSE(select_proposal(no_dh, specs("aes256gcm16-prfsha256-x25519")));
}

TEST(IkeProposal, SpiSizesAndProtocols)
{
    auto ours = specs("aes256gcm16-prfsha256-x25519");
    auto offered = offer("aes256gcm16-prfsha256-x25519", ProtocolId::ike, {});
    EXPECT_TRUE(select_proposal(offered, ours));   // IKE_SA_INIT: no SPI

    const Bytes spi8{1, 2, 3, 4, 5, 6, 7, 8};
    offered[0].spi = spi8;                          // IKE rekey: 8 bytes
    auto s = select_proposal(offered, ours);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->spi, spi8);

    for (std::size_t bad : {1u, 4u, 7u, 9u, 16u}) {
        offered[0].spi.assign(bad, 0xaa);
        EXPECT_FALSE(select_proposal(offered, ours)) << bad;
    }

    auto esp_ours = specs("aes256gcm16", ProtocolId::esp);
    auto esp = offer("aes256gcm16", ProtocolId::esp, {0xc0, 0xff, 0xee, 0x01});
    auto e = select_proposal(esp, esp_ours);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->spi, (Bytes{0xc0, 0xff, 0xee, 0x01}));
    EXPECT_FALSE(e->esn);
    EXPECT_EQ(describe(*e, ProtocolId::esp), "AES_GCM_16_256/NO_EXT_SEQ");
    for (std::size_t bad : {0u, 3u, 5u, 8u}) {
        esp[0].spi.assign(bad, 0xaa);
        EXPECT_FALSE(select_proposal(esp, esp_ours)) << bad;
    }

    // Wrong or unknown protocol is skipped; a later good proposal still wins.
    auto mixed = offer("aes256gcm16, aes256gcm16", ProtocolId::esp, {1, 2, 3, 4});
    mixed[0].protocol = ProtocolId::ah;
    auto m = select_proposal(mixed, esp_ours);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->number, 2);
    mixed[1].protocol = ProtocolId::ike;
    mixed[1].spi.clear();
    EXPECT_FALSE(select_proposal(mixed, esp_ours));
}

TEST(IkeProposal, EspEsnAndPfs)
{
    auto ours = specs("aes256gcm16-x25519-esn", ProtocolId::esp);
    auto offered = offer("aes256gcm16-x25519-noesn-esn", ProtocolId::esp, {0, 0, 0, 9});
    auto s = select_proposal(offered, ours);
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->esn);
    EXPECT_EQ(s->dh, dh::curve25519);
    EXPECT_EQ(describe(*s, ProtocolId::esp), "AES_GCM_16_256/CURVE_25519/EXT_SEQ");
    auto r = s->to_proposal(ProtocolId::esp, {0, 0, 0, 7});
    EXPECT_EQ(r.spi, (Bytes{0, 0, 0, 7}));
    EXPECT_EQ(r.transforms, (std::vector{T(TT::encr, encr::aes_gcm_16, 256),
                                         T(TT::dh, dh::curve25519), T(TT::esn, 1)}));

    // Peer without ESN while we demand it: no match.
    EXPECT_FALSE(select_proposal(offer("aes256gcm16-x25519", ProtocolId::esp, {0, 0, 0, 9}), ours));
    // We want PFS, the peer offers none.
    EXPECT_FALSE(select_proposal(offer("aes256gcm16-esn", ProtocolId::esp, {0, 0, 0, 9}), ours));
    // We do not constrain DH: the peer's groups are not our concern here.
    auto no_pfs = select_proposal(offer("aes256gcm16-ecp256", ProtocolId::esp, {0, 0, 0, 9}),
                                  specs("aes256gcm16", ProtocolId::esp));
    ASSERT_TRUE(no_pfs);
    EXPECT_EQ(no_pfs->dh, 0);
}

TEST(IkeProposal, CbcEspDescription)
{
    auto s = select_proposal(offer("aes128-sha256", ProtocolId::esp, {1, 1, 1, 1}),
                             specs("aes128-sha256", ProtocolId::esp));
    ASSERT_TRUE(s);
    EXPECT_EQ(describe(*s, ProtocolId::esp), "AES_CBC_128/HMAC_SHA2_256_128/NO_EXT_SEQ");
    SelectedSuite legacy;
    legacy.encr = encr::des3;
    legacy.integ = integ::hmac_sha1_96;
    legacy.prf = prf::hmac_sha1;
    legacy.dh = dh::modp1024;
    EXPECT_EQ(describe(legacy, ProtocolId::ike), "3DES_CBC/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024");
    SelectedSuite chacha;
    chacha.encr = encr::chacha20_poly1305;
    chacha.prf = prf::hmac_sha2_384;
    chacha.dh = dh::ecp384;
    EXPECT_EQ(describe(chacha, ProtocolId::ike), "CHACHA20_POLY1305/PRF_HMAC_SHA2_384/ECP_384");
    SelectedSuite gmac;
    gmac.encr = encr::null_aes_gmac;
    gmac.encr_key_bits = 128;
    EXPECT_EQ(describe(gmac, ProtocolId::esp), "NULL_AES_GMAC_128/NO_EXT_SEQ");
}

// --- accepting the responder's answer (initiator) ------------------------------------

TEST(IkeProposal, SoleSuiteOnlyWhenThePeerHasNoChoice)
{
    auto one = sole_suite(specs("aes256gcm16-esn", ProtocolId::esp));
    ASSERT_TRUE(one);
    EXPECT_EQ(one->encr, encr::aes_gcm_16);
    EXPECT_EQ(one->encr_key_bits, 256);
    EXPECT_EQ(one->integ, 0);
    EXPECT_TRUE(one->esn);
    EXPECT_EQ(one->number, 1);
    auto cbc = sole_suite(specs("aes128-sha512", ProtocolId::esp));
    ASSERT_TRUE(cbc);
    EXPECT_EQ(cbc->integ, integ::hmac_sha2_512_256);
    EXPECT_FALSE(cbc->esn);
    // Two proposals, two ciphers in one, integrity or ESN either way: the peer picks.
    EXPECT_FALSE(sole_suite(specs("aes256gcm16, aes128gcm16", ProtocolId::esp)));
    EXPECT_FALSE(sole_suite(specs("aes256gcm16-aes128gcm16", ProtocolId::esp)));
    EXPECT_FALSE(sole_suite(specs("aes256-sha256-sha512", ProtocolId::esp)));
    EXPECT_FALSE(sole_suite(specs("aes256gcm16-esn-noesn", ProtocolId::esp)));
    EXPECT_FALSE(sole_suite({}));
}

TEST(IkeProposal, AcceptResponse)
{
    auto ours = specs("aes256gcm16-prfsha256-x25519-ecp256, aes128-sha256-modp2048");
    Proposal answer{2, ProtocolId::ike, {},
                    {T(TT::encr, encr::aes_cbc, 128), T(TT::prf, prf::hmac_sha2_256),
                     T(TT::integ, integ::hmac_sha2_256_128), T(TT::dh, dh::modp2048)}};
    auto s = accept_response(answer, ours);
    ASSERT_TRUE(s);
    EXPECT_EQ(s->number, 2);
    EXPECT_EQ(s->encr, encr::aes_cbc);
    EXPECT_EQ(s->encr_key_bits, 128);
    EXPECT_EQ(s->integ, integ::hmac_sha2_256_128);
    EXPECT_EQ(s->prf, prf::hmac_sha2_256);
    EXPECT_EQ(s->dh, dh::modp2048);

    Proposal gcm{1, ProtocolId::ike, {},
                 {T(TT::encr, encr::aes_gcm_16, 256), T(TT::prf, prf::hmac_sha2_256),
                  T(TT::dh, dh::ecp256)}};
    ASSERT_TRUE(accept_response(gcm, ours));
    EXPECT_EQ(accept_response(gcm, ours)->dh, dh::ecp256);

    // The same transforms under the other proposal number were not offered there.
    Proposal wrong_number = gcm;
    wrong_number.number = 2;
    EXPECT_FALSE(accept_response(wrong_number, ours));
    wrong_number.number = 0;
    EXPECT_FALSE(accept_response(wrong_number, ours));
    wrong_number.number = 3;
    EXPECT_FALSE(accept_response(wrong_number, ours));

    // Two of one type.
    Proposal two_dh = gcm;
    two_dh.transforms.push_back(T(TT::dh, dh::curve25519));
    EXPECT_FALSE(accept_response(two_dh, ours));
    // Missing type.
    Proposal no_prf = gcm;
    no_prf.transforms.erase(no_prf.transforms.begin() + 1);
    EXPECT_FALSE(accept_response(no_prf, ours));
    // Something we did not offer: other group, other key size, extra type.
    Proposal other_dh = gcm;
    other_dh.transforms[2] = T(TT::dh, dh::modp2048);
    EXPECT_FALSE(accept_response(other_dh, ours));
    Proposal other_size = gcm;
    other_size.transforms[0].key_bits = 128;
    EXPECT_FALSE(accept_response(other_size, ours));
    Proposal with_integ = gcm;
    with_integ.transforms.push_back(T(TT::integ, integ::hmac_sha2_256_128));
    EXPECT_FALSE(accept_response(with_integ, ours));
    Proposal with_esn = gcm;
    with_esn.transforms.push_back(T(TT::esn, 0));
    EXPECT_FALSE(accept_response(with_esn, ours));
    Proposal unknown_type = gcm;
    unknown_type.transforms.push_back(T(TransformType(6), 1));
    EXPECT_FALSE(accept_response(unknown_type, ours));
    // Bad SPI size or protocol.
    Proposal bad_spi = gcm;
    bad_spi.spi = {1, 2, 3, 4};
    EXPECT_FALSE(accept_response(bad_spi, ours));
    Proposal bad_proto = gcm;
    bad_proto.protocol = ProtocolId::esp;
    EXPECT_FALSE(accept_response(bad_proto, ours));
}

TEST(IkeProposal, AcceptEspResponseNeedsEsn)
{
    auto ours = specs("aes256gcm16-esn-noesn", ProtocolId::esp);
    Proposal answer{1, ProtocolId::esp, {9, 8, 7, 6},
                    {T(TT::encr, encr::aes_gcm_16, 256), T(TT::esn, 1)}};
    auto s = accept_response(answer, ours);
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->esn);
    EXPECT_EQ(s->spi, (Bytes{9, 8, 7, 6}));

    Proposal no_esn = answer;
    no_esn.transforms.pop_back();
    EXPECT_FALSE(accept_response(no_esn, ours));
    Proposal both_esn = answer;
    both_esn.transforms.push_back(T(TT::esn, 0));
    EXPECT_FALSE(accept_response(both_esn, ours));
    Proposal pfs = answer;
    pfs.transforms.push_back(T(TT::dh, dh::curve25519));   // we offered no PFS
    EXPECT_FALSE(accept_response(pfs, ours));
    Proposal spi8 = answer;
    spi8.spi.assign(8, 1);
    EXPECT_FALSE(accept_response(spi8, ours));

    auto ours_noesn = specs("aes256gcm16", ProtocolId::esp);
    EXPECT_FALSE(accept_response(answer, ours_noesn));   // ESN we never offered
    answer.transforms.back() = T(TT::esn, 0);
    EXPECT_TRUE(accept_response(answer, ours_noesn));
}

// Proposals rendered as the string that configures them (diagnose's hints).
TEST(IkeProposal, KeywordsRoundTripConfiguredProposals)
{
    for (std::string_view text : {"aes256gcm16-prfsha256-x25519", "aes128-sha256-modp2048",
                                  "aes128-aes256-sha256-sha384-ecp256-modp3072",
                                  "aes256-sha256-prfsha512-ecp384", "chacha20poly1305-prfsha384-x25519"}) {
        auto spec = parse_ok(text);
        EXPECT_EQ(proposal_keywords(spec.to_proposal(1, {})), text);
    }
    for (std::string_view text : {"aes256gcm16-x25519", "aes128-sha256", "aes256gcm16-esn",
                                  "aes128gmac", "aes256-sha512-modp4096-esn-noesn"}) {
        auto spec = parse_ok(text, ProtocolId::esp);
        EXPECT_EQ(proposal_keywords(spec.to_proposal(1, {})), text);
    }
    // Legacy keywords are named too (a peer offering them must be recognisable).
    EXPECT_EQ(proposal_keywords(parse_ok("aes128-sha1-modp1024", ProtocolId::ike, true).to_proposal(1, {})),
              "aes128-sha1-modp1024");
}

TEST(IkeProposal, KeywordsOfWhatAPeerOffers)
{
    // AES-CTR (13) and Curve448 (32) have no keyword here: they show by number.
    Proposal p;
    p.protocol = ProtocolId::ike;
    p.transforms = {T(TT::encr, 13, 128), T(TT::integ, integ::hmac_sha2_256_128), T(TT::prf, prf::hmac_sha2_256),
                    T(TT::dh, 32), T(TT::dh, dh::modp2048)};
    EXPECT_EQ(proposal_keywords(p), "ENCR_13_128-sha256-DH_32-modp2048");   // prfsha256 implied by sha256
    // An IKE PRF the integrity does not imply is spelled out.
    p.transforms = {T(TT::encr, encr::aes_cbc, 128), T(TT::integ, integ::hmac_sha1_96), T(TT::prf, prf::hmac_sha2_256),
                    T(TT::dh, dh::modp2048)};
    EXPECT_EQ(proposal_keywords(p), "aes128-sha1-prfsha256-modp2048");
    // ESP offered with and without PFS (DH NONE is no keyword).
    Proposal e;
    e.protocol = ProtocolId::esp;
    e.transforms = {T(TT::encr, encr::aes_gcm_16, 256), T(TT::dh, dh::curve25519), T(TT::dh, 0), T(TT::esn, 0)};
    EXPECT_EQ(proposal_keywords(e), "aes256gcm16-x25519");
    EXPECT_EQ(proposals_keywords({e, e}), "aes256gcm16-x25519, aes256gcm16-x25519");
}

} // namespace
} // namespace ravelin::ike

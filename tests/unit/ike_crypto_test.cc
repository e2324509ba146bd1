#include <gtest/gtest.h>

TEST(Ike_crypto, NotWrittenYet) { GTEST_FAIL() << "placeholder: tests for crypto.cc are being written"; }

#include <gtest/gtest.h>

TEST(Ike_config, NotWrittenYet) { GTEST_FAIL() << "placeholder: tests for config.cc are being written"; }

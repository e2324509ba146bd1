#include <gtest/gtest.h>

TEST(Ike_proposal, NotWrittenYet) { GTEST_FAIL() << "placeholder: tests for proposal.cc are being written"; }

#include <gtest/gtest.h>

TEST(Ike_message, NotWrittenYet) { GTEST_FAIL() << "placeholder: tests for message.cc are being written"; }

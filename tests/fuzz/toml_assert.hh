// Force-included (-include) before toml++ in the fuzz build, so that the
// fuzzed parser behaves like the libtomlplusplus.so the binary links.
//
// That library is built with NDEBUG by gcc, where toml++'s assertions vanish
// and TOML_ASSERT_ASSUME becomes a no-op (gcc 12 has no __builtin_assume).
// toml++ 3.3.0 has precondition assertions that malformed input does break,
// with a normal parse error following in the release build:
//   "[#" and "[[[1]]]"  parse_key(): is_bare_key_character(*cp) || ...
//                       (marzer/tomlplusplus#301)
//   "x = [}"            parse_value(): !is_value_terminator(*cp)
// Aborting on them would stop every fuzz run at the first such input and
// find nothing else, so they are not fatal here. Memory errors and UB
// (including toml++'s TOML_UNREACHABLE) still are, through ASan and UBSan.
#pragma once

#define TOML_ASSERT(expr) static_cast<void>(sizeof(static_cast<bool>(expr)))

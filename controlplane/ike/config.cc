// ravelin-iked's configuration; see config.hh.
//
// Two stages. The reader turns strongSwan's "settings" syntax into a tree of
// sections and keys (same-named sections merge, a repeated key keeps its last
// value, include pulls files in where it stands); every key remembers the
// file and line it came from. The interpreter then walks that tree against
// the schema below, so every unknown name and every bad value is reported
// with file:line. Values run to the end of the line (or a '#' or '}') as in
// strongSwan; "quoted strings" keep '#', '}' and escapes.
#include "config.hh"

#include <arpa/inet.h>
#include <glob.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>

#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

namespace ravelin::ike {

namespace {

// Bounds on what a configuration may cost to read.
constexpr std::size_t max_file_bytes = 1 << 20;
constexpr int max_files = 64;
constexpr int max_include_depth = 8;
constexpr int max_section_depth = 16;
constexpr std::size_t max_identity_len = 1024;

std::string_view trim(std::string_view s)
{
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

// strchr() also "finds" the terminating NUL; a NUL byte is never in `set`.
bool one_of(char c, const char* set) { return c != '\0' && std::strchr(set, c) != nullptr; }

std::string where(const std::string& file, int line) { return file + ":" + std::to_string(line) + ": "; }

std::string dir_of(const std::string& file)
{
    const auto slash = file.rfind('/');
    return slash == std::string::npos ? std::string() : file.substr(0, slash + 1);
}

// --- the settings tree --------------------------------------------------------------

struct Value {
    std::string text;
    std::string file;
    int line = 0;
};

// Secrets pass through the tree as text: wipe them with it.
void wipe(std::string& s) { OPENSSL_cleanse(s.data(), s.size()); }

struct Section {
    std::string name;
    std::string path;               // "connections.gw.local", for messages
    std::string file;
    int line = 0;
    std::vector<std::pair<std::string, Value>> keys;
    std::vector<std::unique_ptr<Section>> children;

    Section() = default;
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;
    ~Section()
    {
        for (auto& kv : keys) wipe(kv.second.text);
    }

    Section& child(const std::string& n, const std::string& f, int l)
    {
        for (auto& c : children)
            if (c->name == n) return *c;
        auto s = std::make_unique<Section>();
        s->name = n;
        s->path = path.empty() ? n : path + "." + n;
        s->file = f;
        s->line = l;
        children.push_back(std::move(s));
        return *children.back();
    }
    void set(const std::string& k, Value v)
    {
        for (auto& [name, old] : keys)
            if (name == k) {
                wipe(old.text);
                old = std::move(v);
                return;
            }
        keys.emplace_back(k, std::move(v));
    }
    const Value* key(std::string_view k) const
    {
        for (const auto& [name, v] : keys)
            if (name == k) return &v;
        return nullptr;
    }
};

// --- lexer ---------------------------------------------------------------------------

enum class Tok : uint8_t { name, lbrace, rbrace, equals, newline, include, eof, error };

struct Token {
    Tok kind = Tok::eof;
    std::string text;               // name, include pattern, or error message
    int line = 0;
};

class Lexer {
public:
    explicit Lexer(std::string_view text) : s_(text) {}

    Token next()
    {
        if (peeked_) {
            peeked_ = false;
            return peek_;
        }
        return scan();
    }
    const Token& peek()
    {
        if (!peeked_) {
            peek_ = scan();
            peeked_ = true;
        }
        return peek_;
    }
    // The value after '=': parts up to the end of the line, '#' or '}',
    // joined by single spaces. False with `err` for a bad quoted string.
    bool value(std::string& out, std::string& err)
    {
        out.clear();
        while (pos_ < s_.size()) {
            const char c = s_[pos_];
            if (c == ' ' || c == '\t' || c == '\r') {
                ++pos_;
                continue;
            }
            if (c == '\n' || c == '#' || c == '}') break;
            std::string part;
            if (c == '"') {
                if (!quoted(part, err)) return false;
            } else {
                while (pos_ < s_.size() && !one_of(s_[pos_], "#}\"\r\n\t ")) part += s_[pos_++];
            }
            if (!out.empty()) out += ' ';
            out += part;
        }
        return true;
    }

private:
    Token make(Tok k, std::string text = {}) { return Token{k, std::move(text), line_}; }

    Token scan()
    {
        while (pos_ < s_.size()) {
            const char c = s_[pos_];
            if (c == ' ' || c == '\t' || c == '\r') {
                ++pos_;
            } else if (c == '#') {
                while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
            } else if (c == '\n') {
                ++pos_;
                Token t = make(Tok::newline);
                ++line_;
                return t;
            } else if (c == '{' || c == '}' || c == '=') {
                ++pos_;
                return make(c == '{' ? Tok::lbrace : c == '}' ? Tok::rbrace : Tok::equals);
            } else if (c == '"') {
                return make(Tok::error, "unexpected quoted string (only values may be quoted)");
            } else {
                return name();
            }
        }
        return make(Tok::eof);
    }

    Token name()
    {
        std::string n;
        while (pos_ < s_.size() && !one_of(s_[pos_], "#{}=\"\r\n\t ")) n += s_[pos_++];
        if (n == "include" && pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) {
            std::size_t p = pos_;
            while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t')) ++p;
            if (p < s_.size() && s_[p] != '=') {
                pos_ = p;
                return include_pattern();
            }
        }
        return make(Tok::name, std::move(n));
    }

    // `include <pattern>`: one word; quotes and backslash escapes allowed.
    Token include_pattern()
    {
        std::string pattern, err;
        while (pos_ < s_.size() && !one_of(s_[pos_], "#}\r\n\t ")) {
            if (s_[pos_] == '"') {
                std::string part;
                if (!quoted(part, err)) return make(Tok::error, err);
                pattern += part;
            } else if (s_[pos_] == '\\' && pos_ + 1 < s_.size() && one_of(s_[pos_ + 1], "\"#} ")) {
                pattern += s_[pos_ + 1];
                pos_ += 2;
            } else {
                pattern += s_[pos_++];
            }
        }
        return make(Tok::include, std::move(pattern));
    }

    bool quoted(std::string& out, std::string& err)
    {
        const int start = line_;
        ++pos_;   // opening quote
        while (pos_ < s_.size()) {
            const char c = s_[pos_++];
            if (c == '"') return true;
            if (c == '\n') ++line_;
            if (c == '\r') continue;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (pos_ >= s_.size()) break;
            const char e = s_[pos_++];
            switch (e) {
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case '\n': ++line_; break;   // escaped line break joins lines
            case '\r':
                if (pos_ < s_.size() && s_[pos_] == '\n') {
                    ++pos_;
                    ++line_;
                } else {
                    out += '\r';
                }
                break;
            default: out += e; break;
            }
        }
        err = "unterminated string";
        line_ = start;
        return false;
    }

    std::string_view s_;
    std::size_t pos_ = 0;
    int line_ = 1;
    Token peek_;
    bool peeked_ = false;
};

// --- reader: text and includes into the tree ---------------------------------------

class Reader {
public:
    explicit Reader(std::string& error) : error_(error) {}

    bool read_text(std::string_view text, const std::string& file, Section& into, int include_depth)
    {
        if (text.size() > max_file_bytes)
            return fail(file, 1, "file is larger than " + std::to_string(max_file_bytes) + " bytes");
        if (++files_ > max_files)
            return fail(file, 1, "more than " + std::to_string(max_files) + " configuration files");
        if (const auto nul = text.find('\0'); nul != std::string_view::npos)
            return fail(file, 1 + int(std::count(text.begin(), text.begin() + long(nul), '\n')),
                        "NUL byte in a text file");
        Lexer lex(text);
        return block(lex, file, into, 0, include_depth);
    }

    bool read_file(const std::string& path, Section& into, int include_depth,
                   const std::string& from_file, int from_line)
    {
        std::error_code ec;
        std::ifstream in;
        if (std::filesystem::is_regular_file(path, ec)) in.open(path, std::ios::binary);
        if (!in.is_open()) {
            if (from_file.empty()) {
                error_ = path + ": cannot open (not a readable file)";
                return false;
            }
            return fail(from_file, from_line, "cannot open include file '" + path + "'");
        }
        std::string text;
        char buf[8192];
        while (in.read(buf, sizeof buf) || in.gcount() > 0) {
            text.append(buf, std::size_t(in.gcount()));
            if (text.size() > max_file_bytes)
                return fail(path, 1, "file is larger than " + std::to_string(max_file_bytes) + " bytes");
        }
        const bool ok = read_text(text, path, into, include_depth);
        wipe(text);
        return ok;
    }

private:
    bool fail(const std::string& file, int line, const std::string& msg)
    {
        error_ = where(file, line) + msg;
        return false;
    }

    // Statements until the closing '}' (depth > 0) or the end of the file.
    bool block(Lexer& lex, const std::string& file, Section& into, int depth, int include_depth)
    {
        for (;;) {
            Token t = lex.next();
            switch (t.kind) {
            case Tok::newline: continue;
            case Tok::eof:
                if (depth > 0) return fail(file, into.line, "section '" + into.name + "' has no closing '}'");
                return true;
            case Tok::rbrace:
                if (depth == 0) return fail(file, t.line, "unexpected '}'");
                return true;
            case Tok::error: return fail(file, t.line, t.text);
            case Tok::equals: return fail(file, t.line, "unexpected '=' (a key name must come first)");
            case Tok::lbrace: return fail(file, t.line, "unexpected '{' (a section name must come first)");
            case Tok::include:
                if (!include(t.text, file, t.line, into, include_depth)) return false;
                continue;
            case Tok::name:
                if (!statement(lex, t, file, into, depth, include_depth)) return false;
                continue;
            }
        }
    }

    bool statement(Lexer& lex, const Token& name, const std::string& file, Section& into, int depth,
                   int include_depth)
    {
        while (lex.peek().kind == Tok::newline) {
            // "name\n{" opens a section; "name\n= x" is not a key.
            lex.next();
            if (lex.peek().kind != Tok::newline && lex.peek().kind != Tok::lbrace)
                return fail(file, name.line, "expected '=' or '{' after '" + name.text + "'");
        }
        Token t = lex.next();
        if (t.kind == Tok::equals) {
            Value v{{}, file, name.line};
            std::string err;
            if (!lex.value(v.text, err)) return fail(file, name.line, err);
            into.set(name.text, std::move(v));
            return true;
        }
        if (t.kind == Tok::lbrace) {
            if (depth + 1 > max_section_depth) return fail(file, name.line, "sections nested too deeply");
            return block(lex, file, into.child(name.text, file, name.line), depth + 1, include_depth);
        }
        if (t.kind == Tok::error) return fail(file, t.line, t.text);
        return fail(file, name.line, "expected '=' or '{' after '" + name.text + "'");
    }

    bool include(const std::string& pattern, const std::string& file, int line, Section& into,
                 int include_depth)
    {
        if (pattern.empty()) return fail(file, line, "include needs a file name");
        if (include_depth + 1 > max_include_depth) return fail(file, line, "includes nested too deeply");
        const std::string full = pattern[0] == '/' ? pattern : dir_of(file) + pattern;
        glob_t g{};
        const int rc = ::glob(full.c_str(), 0, nullptr, &g);
        std::vector<std::string> paths;
        if (rc == 0)
            for (std::size_t i = 0; i < g.gl_pathc; ++i) paths.emplace_back(g.gl_pathv[i]);
        globfree(&g);
        const bool wildcard = full.find_first_of("*?[") != std::string::npos;
        if (rc == GLOB_NOMATCH && wildcard) return true;   // an empty conf.d is fine
        if (rc != 0) return fail(file, line, "cannot open include file '" + full + "'");
        for (const std::string& p : paths)
            if (!read_file(p, into, include_depth + 1, file, line)) return false;
        return true;
    }

    std::string& error_;
    int files_ = 0;
};

// --- value parsers: false with a message for "<key>: <message>" -----------------------

bool as_bool(std::string_view v, bool& out, std::string& msg)
{
    if (v == "yes" || v == "true") out = true;
    else if (v == "no" || v == "false") out = false;
    else {
        msg = "bad boolean '" + std::string(v) + "' (yes, no, true, false)";
        return false;
    }
    return true;
}

bool digits_to_u64(std::string_view d, uint64_t& out)
{
    if (d.empty() || d.size() > 20) return false;
    uint64_t n = 0;
    for (char c : d) {
        if (c < '0' || c > '9') return false;
        if (n > (std::numeric_limits<uint64_t>::max() - uint64_t(c - '0')) / 10) return false;
        n = n * 10 + uint64_t(c - '0');
    }
    out = n;
    return true;
}

bool scaled(std::string_view v, uint64_t unit, uint64_t& out)
{
    uint64_t n = 0;
    if (!digits_to_u64(v, n) || (n != 0 && n > std::numeric_limits<uint64_t>::max() / unit)) return false;
    out = n * unit;
    return true;
}

// "30", "30s", "10m", "4h", "1d" -> seconds.
bool as_duration(std::string_view v, uint64_t& out, std::string& msg)
{
    uint64_t unit = 1;
    std::string_view d = v;
    if (!d.empty()) {
        switch (d.back()) {
        case 's': unit = 1; d.remove_suffix(1); break;
        case 'm': unit = 60; d.remove_suffix(1); break;
        case 'h': unit = 3600; d.remove_suffix(1); break;
        case 'd': unit = 86400; d.remove_suffix(1); break;
        default: break;
        }
    }
    // Ten years is plenty, and keeps now + duration far from overflowing.
    constexpr uint64_t max_duration_s = 10ull * 366 * 86400;
    if (scaled(d, unit, out)) {
        if (out <= max_duration_s) return true;
        msg = "duration '" + std::string(v) + "' too long (at most 10 years)";
        return false;
    }
    msg = "bad duration '" + std::string(v) + "' (30, 30s, 10m, 4h, 1d)";
    return false;
}

// Byte and packet counts: "1000", "64k", "512M", "4G" (binary multiples, as strongSwan).
bool as_count(std::string_view v, uint64_t& out, std::string& msg)
{
    uint64_t unit = 1;
    std::string_view d = v;
    if (!d.empty()) {
        switch (d.back()) {
        case 'k': case 'K': unit = 1ull << 10; d.remove_suffix(1); break;
        case 'm': case 'M': unit = 1ull << 20; d.remove_suffix(1); break;
        case 'g': case 'G': unit = 1ull << 30; d.remove_suffix(1); break;
        default: break;
        }
    }
    if (scaled(d, unit, out)) return true;
    msg = "bad count '" + std::string(v) + "' (1000, 64k, 512M, 4G)";
    return false;
}

bool as_u32(std::string_view v, uint32_t lo, uint32_t hi, uint32_t& out, std::string& msg)
{
    uint64_t n = 0;
    if (!digits_to_u64(v, n) || n < lo || n > hi) {
        msg = "bad number '" + std::string(v) + "' (" + std::to_string(lo) + ".." + std::to_string(hi) + ")";
        return false;
    }
    out = uint32_t(n);
    return true;
}

bool as_port(std::string_view v, uint16_t& out, std::string& msg)
{
    uint32_t n = 0;
    if (!as_u32(v, 1, 65535, n, msg)) {
        msg = "bad port '" + std::string(v) + "' (1..65535)";
        return false;
    }
    out = uint16_t(n);
    return true;
}

// "4", "4s", "2.5" (seconds) or "500ms" -> milliseconds, at least 1 ms.
bool as_millis(std::string_view v, uint32_t& out, std::string& msg)
{
    msg = "bad time '" + std::string(v) + "' (4, 4s, 2.5, 500ms)";
    uint64_t ms = 0;
    if (v.size() > 2 && v.substr(v.size() - 2) == "ms") {
        if (!digits_to_u64(v.substr(0, v.size() - 2), ms)) return false;
    } else {
        std::string_view d = v;
        if (!d.empty() && d.back() == 's') d.remove_suffix(1);
        const auto dot = d.find('.');
        uint64_t whole = 0, frac = 0;
        std::string_view f = dot == std::string_view::npos ? "" : d.substr(dot + 1);
        if (!digits_to_u64(d.substr(0, dot), whole) || f.size() > 3 || (dot != std::string_view::npos && !digits_to_u64(f, frac)))
            return false;
        for (std::size_t i = f.size(); i < 3; ++i) frac *= 10;
        if (whole > 86400) return false;
        ms = whole * 1000 + frac;
    }
    if (ms == 0 || ms > 86400000) return false;
    out = uint32_t(ms);
    return true;
}

std::vector<std::string> split_list(std::string_view v)
{
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos <= v.size()) {
        auto comma = v.find(',', pos);
        if (comma == std::string_view::npos) comma = v.size();
        out.emplace_back(trim(v.substr(pos, comma - pos)));
        pos = comma + 1;
    }
    return out;
}

bool as_list(std::string_view v, std::vector<std::string>& out, std::string& msg)
{
    out = split_list(v);
    for (const auto& item : out)
        if (item.empty()) {
            msg = "empty entry in list '" + std::string(v) + "'";
            return false;
        }
    return true;
}

std::optional<IpAddress> parse_ip(std::string_view text)
{
    const std::string s(text);
    IpAddress a;
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
        a.family = IpFamily::v4;
        return a;
    }
    if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
        a.family = IpFamily::v6;
        return a;
    }
    return std::nullopt;
}

bool as_addresses(std::string_view v, bool allow_any, std::vector<std::string>& out, std::string& msg)
{
    if (!as_list(v, out, msg)) return false;
    for (const auto& a : out) {
        if (a == "%any" && allow_any) continue;
        if (!parse_ip(a)) {
            msg = "bad address '" + a + "' (literal IPv4 or IPv6 address" +
                  (allow_any ? std::string(" or %any)") : std::string(")"));
            return false;
        }
    }
    return true;
}

// A file name relative to the file it was written in.
std::string resolve_path(const std::string& name, const std::string& file)
{
    if (name.empty() || name[0] == '/') return name;
    return dir_of(file) + name;
}

bool as_paths(const Value& v, std::vector<std::string>& out, std::string& msg)
{
    if (!as_list(v.text, out, msg)) return false;
    for (auto& p : out) p = resolve_path(p, v.file);
    return true;
}

std::optional<Bytes> decode_hex(std::string_view s)
{
    if (s.size() % 2) return std::nullopt;
    Bytes out;
    for (std::size_t i = 0; i < s.size(); i += 2) {
        int v = 0;
        for (char c : s.substr(i, 2)) {
            v <<= 4;
            if (c >= '0' && c <= '9') v |= c - '0';
            else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
            else return std::nullopt;
        }
        out.push_back(uint8_t(v));
    }
    return out;
}

std::optional<Bytes> decode_base64(std::string_view s)
{
    static constexpr std::string_view alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (s.size() % 4) return std::nullopt;
    Bytes out;
    uint32_t acc = 0;
    std::size_t pad = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        uint32_t v = 0;
        if (s[i] == '=') {
            if (i + 2 < s.size()) return std::nullopt;   // '=' only in the last two places
            ++pad;
        } else {
            const auto p = alphabet.find(s[i]);
            if (p == std::string_view::npos || pad) return std::nullopt;
            v = uint32_t(p);
        }
        acc = acc << 6 | v;
        if (i % 4 == 3) {
            out.push_back(uint8_t(acc >> 16));
            if (pad < 2) out.push_back(uint8_t(acc >> 8));
            if (pad < 1) out.push_back(uint8_t(acc));
            acc = 0;
        }
    }
    return out;
}

// "0x<hex>", "0s<base64>", otherwise the text itself.
bool as_secret(std::string_view v, Bytes& out, std::string& msg)
{
    std::optional<Bytes> b;
    if (v.substr(0, 2) == "0x") {
        b = decode_hex(v.substr(2));
        if (!b) msg = "bad hex after 0x";
    } else if (v.substr(0, 2) == "0s") {
        b = decode_base64(v.substr(2));
        if (!b) msg = "bad base64 after 0s";
    } else {
        b = Bytes(v.begin(), v.end());
    }
    if (b && b->empty()) {
        msg = "empty secret";
        b.reset();
    }
    if (!b) return false;
    out = std::move(*b);
    return true;
}

// --- identities -----------------------------------------------------------------------

// strongSwan encodes a DN value as PrintableString where it can, else UTF8String.
bool printable(std::string_view v)
{
    return std::all_of(v.begin(), v.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || one_of(c, " '()+,-./:=?");
    });
}

std::optional<Bytes> encode_dn(std::string_view text, std::string& error)
{
    // "C=DE, O=Ravelin, CN=gw", or OpenSSL's "/C=DE/O=Ravelin/CN=gw".
    const char sep = text.front() == '/' ? '/' : ',';
    if (sep == '/') text.remove_prefix(1);
    std::unique_ptr<X509_NAME, decltype(&X509_NAME_free)> name(X509_NAME_new(), X509_NAME_free);
    if (!name) {
        error = "out of memory";
        return std::nullopt;
    }
    std::size_t pos = 0;
    while (pos <= text.size()) {
        auto end = text.find(sep, pos);
        if (end == std::string_view::npos) end = text.size();
        const std::string_view rdn = trim(text.substr(pos, end - pos));
        pos = end + 1;
        const auto eq = rdn.find('=');
        const std::string attr(trim(rdn.substr(0, eq == std::string_view::npos ? 0 : eq)));
        const std::string value(eq == std::string_view::npos ? "" : trim(rdn.substr(eq + 1)));
        if (eq == std::string_view::npos || attr.empty() || value.empty()) {
            error = "bad DN component '" + std::string(rdn) + "' (want ATTR=value)";
            return std::nullopt;
        }
        if (OBJ_txt2nid(attr.c_str()) == NID_undef &&
            attr.find_first_not_of("0123456789.") != std::string::npos) {
            error = "unknown DN attribute '" + attr + "'";
            return std::nullopt;
        }
        const int type = printable(value) ? V_ASN1_PRINTABLESTRING : V_ASN1_UTF8STRING;
        if (!X509_NAME_add_entry_by_txt(name.get(), attr.c_str(), type,
                                        reinterpret_cast<const unsigned char*>(value.data()),
                                        int(value.size()), -1, 0)) {
            error = "bad DN attribute '" + attr + "'";
            return std::nullopt;
        }
    }
    unsigned char* der = nullptr;
    const int len = i2d_X509_NAME(name.get(), &der);
    if (len <= 0) {
        error = "cannot encode DN";
        return std::nullopt;
    }
    Bytes out(der, der + len);
    OPENSSL_free(der);
    return out;
}

bool has_space(std::string_view s)
{
    return std::any_of(s.begin(), s.end(), [](char c) {
        return std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c));
    });
}

} // namespace

std::optional<Identity> parse_identity(std::string_view text, std::string& error)
{
    text = trim(text);
    Identity id;
    id.text = std::string(text);
    if (text.empty()) {
        error = "empty identity";
        return std::nullopt;
    }
    if (text.size() > max_identity_len) {
        error = "identity longer than " + std::to_string(max_identity_len) + " characters";
        return std::nullopt;
    }
    if (text == "%any") {
        id.any = true;
        return id;
    }
    if (auto ip = parse_ip(text)) {
        id.id.type = ip->family == IpFamily::v4 ? IdType::ipv4 : IdType::ipv6;
        id.id.data.assign(ip->bytes.begin(), ip->bytes.begin() + long(ip->size()));
        return id;
    }
    if (text.find('=') != std::string_view::npos) {
        auto der = encode_dn(text, error);
        if (!der) {
            error = "identity '" + id.text + "': " + error;
            return std::nullopt;
        }
        id.id.type = IdType::der_asn1_dn;
        id.id.data = std::move(*der);
        return id;
    }
    if (text.substr(0, 2) == "@#") {   // strongSwan's key id notation
        auto raw = decode_hex(text.substr(2));
        if (!raw || raw->empty()) {
            error = "identity '" + id.text + "': bad hex key id";
            return std::nullopt;
        }
        id.id.type = IdType::key_id;
        id.id.data = std::move(*raw);
        return id;
    }
    if (has_space(text)) {
        error = "identity '" + id.text + "' contains white space (a DN needs ATTR=value)";
        return std::nullopt;
    }
    std::string_view value = text;
    if (value.front() == '@') {
        value.remove_prefix(1);
        id.id.type = IdType::fqdn;
    } else {
        id.id.type = value.find('@') != std::string_view::npos ? IdType::rfc822 : IdType::fqdn;
    }
    if (value.empty()) {
        error = "identity '@' names nothing";
        return std::nullopt;
    }
    id.id.data.assign(value.begin(), value.end());
    return id;
}

// --- traffic selectors -------------------------------------------------------------------

namespace {

bool parse_proto(std::string_view p, uint8_t& out)
{
    static constexpr std::pair<std::string_view, uint8_t> names[] = {
        {"any", 0}, {"%any", 0}, {"icmp", 1}, {"tcp", 6}, {"udp", 17},
        {"gre", 47}, {"esp", 50}, {"icmpv6", 58}, {"ipv6-icmp", 58}, {"sctp", 132}};
    for (const auto& [n, v] : names)
        if (p == n) {
            out = v;
            return true;
        }
    uint64_t n = 0;
    if (!digits_to_u64(p, n) || n > 255) return false;
    out = uint8_t(n);
    return true;
}

bool parse_port(std::string_view p, uint16_t& out)
{
    static constexpr std::pair<std::string_view, uint16_t> names[] = {
        {"ssh", 22}, {"domain", 53}, {"bootps", 67}, {"bootpc", 68}, {"http", 80},
        {"ntp", 123}, {"snmp", 161}, {"bgp", 179}, {"https", 443}, {"isakmp", 500},
        {"ipsec-nat-t", 4500}};
    for (const auto& [n, v] : names)
        if (p == n) {
            out = v;
            return true;
        }
    uint64_t n = 0;
    if (!digits_to_u64(p, n) || n > 65535) return false;
    out = uint16_t(n);
    return true;
}

// "[proto]", "[proto/port]", "[proto/lo-hi]", "[/port]", with %any for either.
bool parse_ts_suffix(std::string_view spec, TrafficSelector& ts, std::string& error)
{
    const auto slash = spec.find('/');
    const std::string_view proto = trim(spec.substr(0, slash));
    const std::string_view port =
        slash == std::string_view::npos ? std::string_view() : trim(spec.substr(slash + 1));
    if (!proto.empty() && !parse_proto(proto, ts.protocol)) {
        error = "bad protocol '" + std::string(proto) + "'";
        return false;
    }
    const bool any_port = port.empty() || port == "%any" || port == "any";
    if (ts.protocol == 0 && !any_port) {
        error = "a port needs a protocol";
        return false;
    }
    if (any_port) {
        if (slash != std::string_view::npos && port.empty()) {
            error = "empty port after '/'";
            return false;
        }
        return true;
    }
    const auto dash = port.find('-');
    uint16_t lo = 0, hi = 0;
    if (!parse_port(port.substr(0, dash), lo) ||
        !parse_port(dash == std::string_view::npos ? port : port.substr(dash + 1), hi) || lo > hi) {
        error = "bad port '" + std::string(port) + "'";
        return false;
    }
    if ((ts.protocol == 1 || ts.protocol == 58) && dash == std::string_view::npos) {
        // ICMP: type in the high byte, any code (RFC 4301 §4.4.1.1).
        if (lo > 255) {
            error = "bad ICMP type '" + std::string(port) + "'";
            return false;
        }
        ts.start_port = uint16_t(lo << 8);
        ts.end_port = uint16_t(lo << 8 | 0xff);
        return true;
    }
    ts.start_port = lo;
    ts.end_port = hi;
    return true;
}

bool parse_prefix(std::string_view addr, std::string_view len_text, TrafficSelector& ts,
                  std::string& error)
{
    auto a = parse_ip(addr);
    uint64_t len = 0;
    if (!a || !digits_to_u64(len_text, len) || len > a->size() * 8) {
        error = "bad subnet '" + std::string(addr) + "/" + std::string(len_text) + "'";
        return false;
    }
    ts.start = *a;
    ts.end = *a;
    for (std::size_t bit = len; bit < a->size() * 8; ++bit) {
        const uint8_t mask = uint8_t(0x80 >> (bit % 8));
        if (a->bytes[bit / 8] & mask) {
            error = "host bits set in '" + std::string(addr) + "/" + std::string(len_text) + "'";
            return false;
        }
        ts.end.bytes[bit / 8] |= mask;
    }
    return true;
}

} // namespace

std::optional<TsConfig> parse_ts(std::string_view text, std::string& error)
{
    text = trim(text);
    TsConfig out;
    std::string_view base = text;
    if (const auto open = text.find('['); open != std::string_view::npos) {
        if (text.back() != ']') {
            error = "bad traffic selector '" + std::string(text) + "' (missing ']')";
            return std::nullopt;
        }
        base = trim(text.substr(0, open));
        if (!parse_ts_suffix(text.substr(open + 1, text.size() - open - 2), out.ts, error)) {
            error = "traffic selector '" + std::string(text) + "': " + error;
            return std::nullopt;
        }
    }
    if (base == "dynamic" || base == "%dynamic") {
        out.dynamic = true;
        return out;
    }
    bool ok = true;
    if (const auto slash = base.find('/'); slash != std::string_view::npos) {
        ok = parse_prefix(base.substr(0, slash), base.substr(slash + 1), out.ts, error);
    } else if (const auto dash = base.find('-'); dash != std::string_view::npos) {
        auto lo = parse_ip(base.substr(0, dash));
        auto hi = parse_ip(base.substr(dash + 1));
        if (!lo || !hi || lo->family != hi->family ||
            std::memcmp(lo->bytes.data(), hi->bytes.data(), lo->size()) > 0) {
            error = "bad address range '" + std::string(base) + "'";
            ok = false;
        } else {
            out.ts.start = *lo;
            out.ts.end = *hi;
        }
    } else if (auto a = parse_ip(base)) {
        out.ts.start = out.ts.end = *a;
    } else {
        error = "bad traffic selector '" + std::string(base) + "'";
        ok = false;
    }
    if (!ok) return std::nullopt;
    return out;
}

// --- interpreting the tree ----------------------------------------------------------------

namespace {

using Handler = std::function<bool(const Value&, std::string& msg)>;

// A key and what to do with it; a name ending in '*' matches by prefix
// (secrets' id-<suffix>).
struct KeyRule {
    std::string_view name;
    Handler fn;
};

bool rule_matches(std::string_view rule, std::string_view key)
{
    if (!rule.empty() && rule.back() == '*') return key.substr(0, rule.size() - 1) == rule.substr(0, rule.size() - 1);
    return rule == key;
}

// One lifetime triple (time, bytes or packets) while a child is read.
struct Lifetime {
    const Value* rekey = nullptr;
    const Value* life = nullptr;
    const Value* rand = nullptr;
};

class Interpreter {
public:
    Interpreter(IkeConfig& cfg, std::string& error) : cfg_(cfg), error_(error) {}

    bool run(const Section& root)
    {
        if (!keys(root, {}, {"iked", "connections", "secrets", "authorities"})) return false;
        for (const auto& c : root.children)
            if (c->name != "iked" && c->name != "connections" && c->name != "secrets" &&
                c->name != "authorities")
                return fail(*c, "unknown section '" + c->path + "'");
        // iked first: allow_legacy decides how proposals parse.
        for (const auto& c : root.children)
            if (c->name == "iked" && !iked(*c)) return false;
        for (const auto& c : root.children) {
            if (c->name == "authorities" && !each(*c, [&](const Section& s) { return authority(s); }))
                return false;
            if (c->name == "secrets" && !each(*c, [&](const Section& s) { return secret(s); }))
                return false;
        }
        for (const auto& c : root.children)
            if (c->name == "connections" && !each(*c, [&](const Section& s) { return connection(s); }))
                return false;
        return true;
    }

private:
    bool fail(const std::string& file, int line, const std::string& msg)
    {
        error_ = where(file, line) + msg;
        return false;
    }
    bool fail(const Section& s, const std::string& msg) { return fail(s.file, s.line, msg); }
    bool fail(const Value& v, const std::string& msg) { return fail(v.file, v.line, msg); }

    // Applies `rules` to every key of `s`; anything else is an error.
    bool keys(const Section& s, std::initializer_list<KeyRule> rules,
              std::initializer_list<std::string_view> sections = {})
    {
        for (const auto& [k, v] : s.keys) {
            const std::string path = s.path.empty() ? k : s.path + "." + k;
            if (std::find(sections.begin(), sections.end(), k) != sections.end())
                return fail(v, "'" + path + "' must be a section, not a key");
            const KeyRule* rule = nullptr;
            for (const KeyRule& r : rules)
                if (rule_matches(r.name, k)) rule = &r;
            if (!rule) return fail(v, "unknown key '" + path + "'");
            std::string msg;
            if (!rule->fn(v, msg)) return fail(v, k + ": " + msg);
        }
        return true;
    }

    // Section `c` is not one its parent knows: maybe a key written as one.
    bool bad_section(const Section& c, std::initializer_list<KeyRule> rules)
    {
        for (const KeyRule& r : rules)
            if (rule_matches(r.name, c.name))
                return fail(c, "'" + c.path + "' must be a key = value, not a section");
        return fail(c, "unknown section '" + c.path + "'");
    }

    // Only keys (`rules`) are allowed in `s`.
    bool no_sections(const Section& s, std::initializer_list<KeyRule> rules)
    {
        return s.children.empty() || bad_section(*s.children.front(), rules);
    }

    // A container section (connections, secrets, ...): only named subsections.
    bool each(const Section& s, const std::function<bool(const Section&)>& fn)
    {
        if (!s.keys.empty())
            return fail(s.keys.front().second, "unknown key '" + s.path + "." + s.keys.front().first + "'");
        for (const auto& c : s.children)
            if (!fn(*c)) return false;
        return true;
    }

    bool iked(const Section& s);
    bool log_levels(const Section& s);
    bool metrics(const Section& s);
    bool authority(const Section& s);
    bool secret(const Section& s);
    bool connection(const Section& s);
    bool connection_sections(const Section& s, ConnectionConfig& c, std::initializer_list<KeyRule> rules);
    bool auth_round(const Section& s, AuthConfig& auth, bool local, bool& id_set);
    bool child(const Section& s, ChildConfig& c);
    bool lifetime(const Lifetime& l, const char* what, uint64_t default_rekey,
                  bool (*parse)(std::string_view, uint64_t&, std::string&), uint64_t& rekey,
                  uint64_t& life, uint64_t& rand);

    IkeConfig& cfg_;
    std::string& error_;
};

// Small adapters from value parsers to key handlers.
Handler set_bool(bool& out) { return [&out](const Value& v, std::string& m) { return as_bool(v.text, out, m); }; }
Handler set_duration(uint64_t& out) { return [&out](const Value& v, std::string& m) { return as_duration(v.text, out, m); }; }
Handler set_u32(uint32_t& out, uint32_t lo = 0, uint32_t hi = std::numeric_limits<uint32_t>::max())
{
    return [&out, lo, hi](const Value& v, std::string& m) { return as_u32(v.text, lo, hi, out, m); };
}
Handler set_port(uint16_t& out) { return [&out](const Value& v, std::string& m) { return as_port(v.text, out, m); }; }
Handler set_text(std::string& out, bool allow_empty)
{
    return [&out, allow_empty](const Value& v, std::string& m) {
        if (v.text.empty() && !allow_empty) {
            m = "needs a value";
            return false;
        }
        out = v.text;
        return true;
    };
}
template <typename E>
Handler set_enum(E& out, std::initializer_list<std::pair<std::string_view, E>> names)
{
    std::vector<std::pair<std::string_view, E>> copy(names);
    return [&out, copy](const Value& v, std::string& m) {
        for (const auto& [n, e] : copy)
            if (n == v.text) {
                out = e;
                return true;
            }
        std::string list;
        for (const auto& [n, e] : copy) list += (list.empty() ? "" : ", ") + std::string(n);
        m = "bad value '" + v.text + "' (" + list + ")";
        return false;
    };
}
Handler keep(const Value*& out) { return [&out](const Value& v, std::string&) { out = &v; return true; }; }

// Addresses where "%any" may stand alone (= any).
Handler set_addresses(std::vector<std::string>& out, bool keep_any)
{
    return [&out, keep_any](const Value& v, std::string& m) {
        if (!as_addresses(v.text, true, out, m)) return false;
        const bool any = std::find(out.begin(), out.end(), "%any") != out.end();
        if (any && out.size() > 1) {
            m = "%any cannot be combined with addresses";
            return false;
        }
        if (any && !keep_any) out.clear();
        return true;
    };
}

bool Interpreter::iked(const Section& s)
{
    DaemonConfig& d = cfg_.daemon;
    std::initializer_list<KeyRule> rules = {
        {"listen", [&](const Value& v, std::string& m) { return as_addresses(v.text, false, d.listen, m); }},
        {"port", set_port(d.port)},
        {"port_nat_t", set_port(d.port_nat_t)},
        {"control_socket", set_text(d.control_socket, false)},
        {"allow_legacy", set_bool(d.allow_legacy)},
        {"cookie_threshold", set_u32(d.cookie_threshold)},
        {"half_open_limit", set_u32(d.half_open_limit, 1)},
        {"retransmit_timeout", [&](const Value& v, std::string& m) { return as_millis(v.text, d.retransmit_timeout_ms, m); }},
        {"retransmit_base", [&](const Value& v, std::string& m) {
             std::istringstream in(v.text);
             double x = 0;
             if (!(in >> x) || !in.eof() || !(x >= 1.0 && x <= 10.0)) {
                 m = "bad number '" + v.text + "' (1.0..10.0)";
                 return false;
             }
             d.retransmit_base = x;
             return true;
         }},
        {"retransmit_tries", set_u32(d.retransmit_tries, 0, 100)},
        {"fragment_size", set_u32(d.fragment_size, 576, 65535)},
        {"keepalive", [&](const Value& v, std::string& m) {
             uint64_t sec = 0;
             if (!as_duration(v.text, sec, m)) return false;
             if (sec > 86400) {
                 m = "keepalive longer than a day";
                 return false;
             }
             d.keepalive_s = uint32_t(sec);
             return true;
         }},
        {"keylog", set_text(d.keylog, true)},
        {"sa_sink", set_text(d.sa_sink, true)},
    };
    if (!keys(s, rules, {"log", "metrics"})) return false;
    for (const auto& c : s.children) {
        if (c->name == "metrics") {
            if (!metrics(*c)) return false;
            continue;
        }
        if (c->name != "log") return bad_section(*c, rules);
        if (!log_levels(*c)) return false;
    }
    return true;
}

bool Interpreter::metrics(const Section& s)
{
    MetricsConfig& m = cfg_.daemon.metrics;
    std::initializer_list<KeyRule> rules = {
        {"enabled", set_bool(m.enabled)},
        {"listen", [&](const Value& v, std::string& msg) {
             unsigned char buf[16];
             if (inet_pton(AF_INET, v.text.c_str(), buf) != 1 && inet_pton(AF_INET6, v.text.c_str(), buf) != 1) {
                 msg = "'" + v.text + "' is not a numeric IPv4 or IPv6 address";
                 return false;
             }
             m.listen = v.text;
             return true;
         }},
        {"port", set_port(m.port)},
        {"dataplane", [&](const Value& v, std::string& msg) {
             // A DPDK file prefix: it names files under /run/ravelin.
             bool ok = v.text.size() <= 64 && std::all_of(v.text.begin(), v.text.end(), [](char c) {
                 return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
             }) && v.text.find("..") == std::string::npos;
             if (!ok) {
                 msg = "bad file prefix '" + v.text + "' (up to 64 of A-Z a-z 0-9 _ - .)";
                 return false;
             }
             m.dataplane = v.text;
             return true;
         }},
    };
    return keys(s, rules) && no_sections(s, rules);
}

bool Interpreter::log_levels(const Section& s)
{
    static constexpr std::string_view levels[] = {"trace", "debug", "info", "warning", "error",
                                                  "critical", "off"};
    // strongSwan's subsystem names, as far as the engine logs them.
    static constexpr std::string_view subsystems[] = {"dmn", "mgr", "ike", "chd", "job", "cfg",
                                                      "knl", "net", "asn", "enc", "lib", "esp", "tls"};
    auto level = [](std::string& out) {
        return [&out](const Value& v, std::string& m) {
            if (std::find(std::begin(levels), std::end(levels), v.text) == std::end(levels)) {
                m = "bad level '" + v.text + "' (trace, debug, info, warning, error, critical, off)";
                return false;
            }
            out = v.text;
            return true;
        };
    };
    LogLevels& log = cfg_.daemon.log;
    for (const auto& [k, v] : s.keys) {
        std::string msg;
        std::string* target = nullptr;
        if (k == "default") target = &log.default_level;
        else if (std::find(std::begin(subsystems), std::end(subsystems), k) != std::end(subsystems))
            target = &log.subsystems[k];
        else return fail(v, "unknown key '" + s.path + "." + k + "' (default or a subsystem: ike, chd, cfg, net, enc, ...)");
        if (!level(*target)(v, msg)) return fail(v, k + ": " + msg);
    }
    return no_sections(s, {});
}

bool Interpreter::authority(const Section& s)
{
    Authority a;
    a.name = s.name;
    std::initializer_list<KeyRule> rules = {
        {"cacert", [&](const Value& v, std::string& m) {
             if (v.text.empty()) {
                 m = "needs a file name";
                 return false;
             }
             a.cacert = resolve_path(v.text, v.file);
             return true;
         }},
        {"crl", [&](const Value& v, std::string& m) { return as_paths(v, a.crls, m); }},
    };
    if (!keys(s, rules) || !no_sections(s, rules)) return false;
    if (a.cacert.empty()) return fail(s, "authority '" + s.name + "' has no cacert");
    cfg_.authorities.push_back(std::move(a));
    return true;
}

bool Interpreter::secret(const Section& s)
{
    if (s.name.rfind("private", 0) == 0) {
        PrivateKeyConfig k;
        k.name = s.name;
        k.line = s.line;
        std::initializer_list<KeyRule> rules = {
            {"file", [&](const Value& v, std::string& m) {
                 if (v.text.empty()) {
                     m = "needs a file name";
                     return false;
                 }
                 k.file = resolve_path(v.text, v.file);
                 return true;
             }},
            {"secret", [&](const Value& v, std::string& m) { return as_secret(v.text, k.passphrase, m); }},
        };
        if (!keys(s, rules) || !no_sections(s, rules)) return false;
        if (k.file.empty()) return fail(s, "'" + s.path + "' has no file");
        cfg_.private_keys.push_back(std::move(k));
        return true;
    }
    if (s.name.rfind("ike", 0) != 0)
        return fail(s, "unsupported secret type '" + s.path + "' (ike<suffix> or private<suffix>)");
    SharedSecret sec;
    sec.line = s.line;
    bool have_secret = false;
    std::initializer_list<KeyRule> rules = {
        {"secret", [&](const Value& v, std::string& m) {
             have_secret = true;
             return as_secret(v.text, sec.secret, m);
         }},
        {"id*", [&](const Value& v, std::string& m) {
             auto id = parse_identity(v.text, m);
             if (id) sec.ids.push_back(std::move(*id));
             return bool(id);
         }},
    };
    if (!keys(s, rules) || !no_sections(s, rules)) return false;
    if (!have_secret) return fail(s, "'" + s.path + "' has no secret");
    cfg_.secrets.push_back(std::move(sec));
    return true;
}

bool Interpreter::auth_round(const Section& s, AuthConfig& a, bool local, bool& id_set)
{
    std::initializer_list<KeyRule> rules = {
        {"auth", set_enum(a.auth, {{"psk", AuthKind::psk}, {"pubkey", AuthKind::pubkey}})},
        {"id", [&](const Value& v, std::string& m) {
             auto id = parse_identity(v.text, m);
             if (!id) return false;
             if (local && id->any) {
                 m = "our own identity cannot be %any";
                 return false;
             }
             a.id = std::move(*id);
             id_set = true;
             return true;
         }},
        {"certs", [&](const Value& v, std::string& m) {
             if (!local) m = "only valid in local (our certificates); use cacerts to restrict the peer";
             return local && as_paths(v, a.certs, m);
         }},
        {"cacerts", [&](const Value& v, std::string& m) {
             if (local) m = "only valid in remote";
             return !local && as_paths(v, a.cacerts, m);
         }},
        {"private_key", [&](const Value& v, std::string& m) {
             if (!local) m = "only valid in local";
             if (local && v.text.empty()) m = "needs a file name";
             if (!local || v.text.empty()) return false;
             a.private_key = resolve_path(v.text, v.file);
             return true;
         }},
    };
    if (!keys(s, rules) || !no_sections(s, rules)) return false;
    if (local && a.auth == AuthKind::pubkey && a.certs.empty())
        return fail(s, "'" + s.path + "': auth = pubkey needs certs");
    return true;
}

bool Interpreter::connection(const Section& s)
{
    ConnectionConfig c;
    c.name = s.name;
    c.line = s.line;
    bool have_proposals = false;
    const bool legacy = cfg_.daemon.allow_legacy;
    std::initializer_list<KeyRule> rules = {
        {"version", [&](const Value& v, std::string& m) {
             if (v.text == "0" || v.text == "2") return true;
             m = v.text == "1" ? "IKEv1 is not supported" : "bad value '" + v.text + "' (0 or 2)";
             return false;
         }},
        {"local_addrs", set_addresses(c.local_addrs, false)},
        {"remote_addrs", set_addresses(c.remote_addrs, true)},
        {"local_port", set_port(c.local_port)},
        {"remote_port", set_port(c.remote_port)},
        {"proposals", [&](const Value& v, std::string& m) {
             auto p = parse_proposals(v.text, ProtocolId::ike, legacy, m);
             if (p) c.proposals = std::move(*p);
             have_proposals = true;
             return bool(p);
         }},
        {"encap", set_bool(c.encap)},
        {"mobike", [&](const Value& v, std::string& m) {
             if (!as_bool(v.text, c.mobike, m)) return false;
             if (c.mobike) m = "MOBIKE is not supported (set mobike = no)";
             return !c.mobike;
         }},
        {"fragmentation", set_enum(c.fragmentation, {{"yes", Fragmentation::yes}, {"no", Fragmentation::no},
                                                     {"accept", Fragmentation::accept}, {"force", Fragmentation::force}})},
        {"dpd_delay", set_duration(c.dpd_delay_s)},
        {"dpd_timeout", set_duration(c.dpd_timeout_s)},
        {"rekey_time", set_duration(c.rekey_time_s)},
        {"reauth_time", set_duration(c.reauth_time_s)},
        {"over_time", set_duration(c.over_time_s)},
        {"rand_time", set_duration(c.rand_time_s)},
        {"keyingtries", set_u32(c.keyingtries)},
        {"send_certreq", set_bool(c.send_certreq)},
        {"send_cert", set_enum(c.send_cert, {{"ifasked", ConnectionConfig::SendCert::ifasked},
                                             {"always", ConnectionConfig::SendCert::always},
                                             {"never", ConnectionConfig::SendCert::never}})},
        {"unique", [](const Value& v, std::string& m) {
             m = "only unique = no is supported";
             return v.text == "no";
         }},
    };
    if (!keys(s, rules, {"local", "remote", "children"}) || !connection_sections(s, c, rules))
        return false;
    if (!have_proposals) c.proposals = default_ike_proposals();
    cfg_.connections.push_back(std::move(c));
    return true;
}

// local, remote (one round each) and children; then the identity defaults.
bool Interpreter::connection_sections(const Section& s, ConnectionConfig& c,
                                      std::initializer_list<KeyRule> rules)
{
    const Section* rounds[2] = {nullptr, nullptr};   // local, remote
    bool id_set[2] = {false, false};
    for (const auto& sub : s.children) {
        const std::string& n = sub->name;
        if (n == "children") {
            if (!each(*sub, [&](const Section& cs) {
                    ChildConfig ch;
                    if (!child(cs, ch)) return false;
                    c.children.push_back(std::move(ch));
                    return true;
                }))
                return false;
            continue;
        }
        int side = -1;
        for (int i = 0; i < 2; ++i) {
            const std::string base = i == 0 ? "local" : "remote";
            if (n == base || n.rfind(base + "-", 0) == 0) side = i;
        }
        if (side < 0) return bad_section(*sub, rules);
        if (rounds[side])
            return fail(*sub, "more than one " + std::string(side == 0 ? "local" : "remote") +
                                  " authentication round ('" + rounds[side]->name + "' and '" + n +
                                  "'): not supported");
        rounds[side] = sub.get();
        if (!auth_round(*sub, side == 0 ? c.local : c.remote, side == 0, id_set[side])) return false;
    }
    if (!id_set[0]) {
        // Our address, when there is exactly one to speak of; else the
        // engine uses the address the SA runs on.
        std::string ignored;
        if (c.local_addrs.size() == 1) c.local.id = *parse_identity(c.local_addrs[0], ignored);
        else c.local.id = Identity{true, {}, "%any"};
    }
    if (!id_set[1]) c.remote.id = Identity{true, {}, "%any"};
    return true;
}

// strongSwan's rule: rekey defaults as given, life = 110 % of rekey, rand =
// life - rekey; a hard limit at or below the soft one is an error.
bool Interpreter::lifetime(const Lifetime& l, const char* what, uint64_t default_rekey,
                           bool (*parse)(std::string_view, uint64_t&, std::string&),
                           uint64_t& rekey, uint64_t& life, uint64_t& rand)
{
    const std::string w(what);
    std::string msg;
    rekey = default_rekey;
    if (l.rekey && !parse(l.rekey->text, rekey, msg)) return fail(*l.rekey, "rekey_" + w + ": " + msg);
    if (l.life) {
        if (!parse(l.life->text, life, msg)) return fail(*l.life, "life_" + w + ": " + msg);
    } else {
        life = uint64_t(std::min<unsigned __int128>((unsigned __int128)rekey * 110 / 100,
                                                    std::numeric_limits<uint64_t>::max()));
    }
    if (rekey != 0 && life != 0 && life <= rekey)
        return fail(l.life ? *l.life : *l.rekey, "life_" + w + " (" + std::to_string(life) +
                                                   ") must be greater than rekey_" + w + " (" +
                                                   std::to_string(rekey) + ")");
    if (l.rand) {
        if (!parse(l.rand->text, rand, msg)) return fail(*l.rand, "rand_" + w + ": " + msg);
        if (rekey != 0 && rand >= rekey)
            return fail(*l.rand, "rand_" + w + " (" + std::to_string(rand) +
                                     ") must be less than rekey_" + w + " (" + std::to_string(rekey) + ")");
    } else {
        rand = rekey != 0 && life > rekey ? life - rekey : 0;
    }
    return true;
}

bool Interpreter::child(const Section& s, ChildConfig& c)
{
    c.name = s.name;
    c.line = s.line;
    bool have_proposals = false;
    Lifetime t, b, p;
    auto ts_list = [](std::vector<TsConfig>& out) {
        return [&out](const Value& v, std::string& m) {
            std::vector<std::string> items;
            if (!as_list(v.text, items, m)) return false;
            out.clear();
            for (const auto& item : items) {
                auto ts = parse_ts(item, m);
                if (!ts) return false;
                out.push_back(*ts);
            }
            return true;
        };
    };
    std::initializer_list<KeyRule> rules = {
        {"local_ts", ts_list(c.local_ts)},
        {"remote_ts", ts_list(c.remote_ts)},
        {"esp_proposals", [&](const Value& v, std::string& m) {
             auto pr = parse_proposals(v.text, ProtocolId::esp, cfg_.daemon.allow_legacy, m);
             if (pr) c.esp_proposals = std::move(*pr);
             have_proposals = true;
             return bool(pr);
         }},
        {"mode", set_enum(c.mode, {{"tunnel", ChildMode::tunnel}, {"transport", ChildMode::transport}})},
        {"start_action", set_enum(c.start_action, {{"none", StartAction::none}, {"trap", StartAction::trap},
                                                   {"start", StartAction::start}})},
        {"close_action", set_enum(c.close_action, {{"none", CloseAction::none}, {"trap", CloseAction::trap},
                                                   {"start", CloseAction::start}})},
        {"dpd_action", set_enum(c.dpd_action, {{"clear", DpdAction::clear}, {"trap", DpdAction::trap},
                                               {"restart", DpdAction::restart}})},
        {"rekey_time", keep(t.rekey)}, {"life_time", keep(t.life)}, {"rand_time", keep(t.rand)},
        {"rekey_bytes", keep(b.rekey)}, {"life_bytes", keep(b.life)}, {"rand_bytes", keep(b.rand)},
        {"rekey_packets", keep(p.rekey)}, {"life_packets", keep(p.life)}, {"rand_packets", keep(p.rand)},
        {"replay_window", set_u32(c.replay_window, 0, 1u << 20)},
        {"copy_dscp", set_bool(c.copy_dscp)},
        {"reqid", set_u32(c.reqid)},
    };
    if (!keys(s, rules) || !no_sections(s, rules)) return false;
    if (!lifetime(t, "time", 3600, as_duration, c.rekey_time_s, c.life_time_s, c.rand_time_s) ||
        !lifetime(b, "bytes", 0, as_count, c.rekey_bytes, c.life_bytes, c.rand_bytes) ||
        !lifetime(p, "packets", 0, as_count, c.rekey_packets, c.life_packets, c.rand_packets))
        return false;
    if (c.local_ts.empty()) c.local_ts.push_back(TsConfig{true, {}});
    if (c.remote_ts.empty()) c.remote_ts.push_back(TsConfig{true, {}});
    if (!have_proposals) c.esp_proposals = default_esp_proposals();
    return true;
}

// --- equality for reload (line numbers and spelling of identities do not matter) -----

bool same(const ProposalSpec& a, const ProposalSpec& b)
{
    return a.protocol == b.protocol && a.encr == b.encr && a.prf == b.prf && a.integ == b.integ &&
           a.dh == b.dh && a.esn == b.esn;
}

template <typename T, typename Eq>
bool same_list(const std::vector<T>& a, const std::vector<T>& b, Eq eq)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), eq);
}

bool same(const Identity& a, const Identity& b)
{
    if (a.any || b.any) return a.any == b.any;
    return a.id.type == b.id.type && a.id.data == b.id.data;
}

bool same(const AuthConfig& a, const AuthConfig& b)
{
    return a.auth == b.auth && same(a.id, b.id) && a.certs == b.certs && a.cacerts == b.cacerts &&
           a.private_key == b.private_key;
}

bool same(const TsConfig& a, const TsConfig& b)
{
    if (a.dynamic || b.dynamic)
        return a.dynamic == b.dynamic && a.ts.protocol == b.ts.protocol &&
               a.ts.start_port == b.ts.start_port && a.ts.end_port == b.ts.end_port;
    return a.ts == b.ts;
}

bool same(const ChildConfig& a, const ChildConfig& b)
{
    auto ts = [](const TsConfig& x, const TsConfig& y) { return same(x, y); };
    auto pr = [](const ProposalSpec& x, const ProposalSpec& y) { return same(x, y); };
    return a.name == b.name && same_list(a.local_ts, b.local_ts, ts) &&
           same_list(a.remote_ts, b.remote_ts, ts) && same_list(a.esp_proposals, b.esp_proposals, pr) &&
           a.mode == b.mode && a.start_action == b.start_action && a.close_action == b.close_action &&
           a.dpd_action == b.dpd_action && a.rekey_time_s == b.rekey_time_s &&
           a.life_time_s == b.life_time_s && a.rand_time_s == b.rand_time_s &&
           a.rekey_bytes == b.rekey_bytes && a.life_bytes == b.life_bytes &&
           a.rand_bytes == b.rand_bytes && a.rekey_packets == b.rekey_packets &&
           a.life_packets == b.life_packets && a.rand_packets == b.rand_packets &&
           a.replay_window == b.replay_window && a.copy_dscp == b.copy_dscp && a.reqid == b.reqid;
}

} // namespace

const ConnectionConfig* IkeConfig::find(std::string_view name) const
{
    for (const auto& c : connections)
        if (c.name == name) return &c;
    return nullptr;
}

std::optional<IkeConfig> parse_ike_config(std::string_view text, const std::string& name,
                                          std::string& error)
{
    Section root;
    Reader reader(error);
    if (!reader.read_text(text, name, root, 0)) return std::nullopt;
    IkeConfig cfg;
    cfg.path = name;
    if (!Interpreter(cfg, error).run(root)) return std::nullopt;
    return cfg;
}

std::optional<IkeConfig> load_ike_config(const std::string& path, std::string& error)
{
    Section root;
    Reader reader(error);
    if (!reader.read_file(path, root, 0, {}, 0)) return std::nullopt;
    IkeConfig cfg;
    cfg.path = path;
    if (!Interpreter(cfg, error).run(root)) return std::nullopt;
    return cfg;
}

bool same_connection(const ConnectionConfig& a, const ConnectionConfig& b)
{
    auto pr = [](const ProposalSpec& x, const ProposalSpec& y) { return same(x, y); };
    auto ch = [](const ChildConfig& x, const ChildConfig& y) { return same(x, y); };
    return a.name == b.name && a.local_addrs == b.local_addrs && a.remote_addrs == b.remote_addrs &&
           a.local_port == b.local_port && a.remote_port == b.remote_port &&
           same_list(a.proposals, b.proposals, pr) && same(a.local, b.local) &&
           same(a.remote, b.remote) && same_list(a.children, b.children, ch) && a.encap == b.encap &&
           a.fragmentation == b.fragmentation && a.dpd_delay_s == b.dpd_delay_s &&
           a.dpd_timeout_s == b.dpd_timeout_s && a.rekey_time_s == b.rekey_time_s &&
           a.reauth_time_s == b.reauth_time_s && a.over_time_s == b.over_time_s &&
           a.rand_time_s == b.rand_time_s && a.keyingtries == b.keyingtries &&
           a.send_certreq == b.send_certreq && a.send_cert == b.send_cert && a.mobike == b.mobike;
}

} // namespace ravelin::ike

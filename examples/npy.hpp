// A small reader and writer of NumPy's .npy files, for float32 and float64 arrays in C order:
// what bnorm_npy needs, with an error naming the file and the reason for anything else.
//
// Format (numpy.lib.format): the magic "\x93NUMPY", a major and a minor version byte, the header
// length (2 bytes little-endian in version 1.0, 4 bytes in 2.0 and 3.0), then the header: a
// Python dict literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and a newline so the data starts at a multiple of 64 bytes; then the
// elements in C order. The reader accepts little- and big-endian float32/float64 ('<f4', '>f8',
// ...), versions 1.0 to 3.0, and rejects Fortran order, other dtypes, malformed headers,
// truncated data and trailing bytes. The writer writes version 1.0 (2.0 for huge headers),
// little-endian.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <istream>
#include <limits>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace npy {

/// Any problem with a .npy file: the message starts with the file's name.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What a .npy header says.
struct Header {
  std::string descr;                ///< as written, e.g. "<f4"
  int itemsize = 0;                 ///< 4 (float32) or 8 (float64)
  bool little_endian = true;        ///< byte order of the data
  bool fortran_order = false;       ///< always false once accepted
  std::vector<std::int64_t> shape;  ///< () for a scalar

  /// "float32" or "float64".
  std::string dtype_name() const { return itemsize == 4 ? "float32" : "float64"; }
  /// Number of elements: the product of the shape (1 for a scalar).
  std::int64_t count() const {
    std::int64_t n = 1;
    for (std::int64_t d : shape) n *= d;
    return n;
  }
};

/// "(2, 3, 4)", "(5,)" or "()", as Python writes a tuple.
inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + (shape.size() == 1 ? ",)" : ")");
}

namespace detail {

inline bool host_is_little_endian() {
  const std::uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

template <class T>
constexpr const char* descr_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "npy: float or double only");
  return std::is_same_v<T, float> ? "f4" : "f8";
}

/// Parses the header's dict literal: keys 'descr' (a string), 'fortran_order' (True or False)
/// and 'shape' (a tuple of non-negative ints), each exactly once, nothing else.
class DictParser {
 public:
  DictParser(const std::string& text, const std::string& name) : s_(text), name_(name) {}

  Header parse() {
    Header h;
    bool seen_descr = false, seen_order = false, seen_shape = false;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = string_literal();
      expect(':');
      if (key == "descr") {
        once(seen_descr, key);
        h.descr = string_literal();
      } else if (key == "fortran_order") {
        once(seen_order, key);
        h.fortran_order = boolean();
      } else if (key == "shape") {
        once(seen_shape, key);
        h.shape = tuple();
      } else {
        fail("unexpected key '" + key + "' in the header");
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') fail("expected ',' or '}' in the header");
    }
    ++pos_;
    skip_space();
    if (pos_ != s_.size()) fail("unexpected text after the header's dict");
    if (!seen_descr || !seen_order || !seen_shape)
      fail("the header lacks one of 'descr', 'fortran_order', 'shape'");
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw error(name_ + ": malformed .npy header: " + what + ": " + s_);
  }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n')) ++pos_;
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void expect(char c) {
    skip_space();
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  void once(bool& seen, const std::string& key) {
    if (seen) fail("key '" + key + "' appears twice");
    seen = true;
  }
  std::string string_literal() {
    skip_space();
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail("expected a quoted string");
    const std::size_t end = s_.find(quote, pos_ + 1);
    if (end == std::string::npos) fail("unterminated string");
    std::string out = s_.substr(pos_ + 1, end - pos_ - 1);
    pos_ = end + 1;
    return out;
  }
  bool boolean() {
    skip_space();
    if (s_.compare(pos_, 4, "True") == 0) {
      pos_ += 4;
      return true;
    }
    if (s_.compare(pos_, 5, "False") == 0) {
      pos_ += 5;
      return false;
    }
    fail("expected True or False");
  }
  std::vector<std::int64_t> tuple() {
    std::vector<std::int64_t> out;
    expect('(');
    while (true) {
      skip_space();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') fail("expected a non-negative integer in the shape");
      std::int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        const int digit = s_[pos_++] - '0';
        if (v > (std::numeric_limits<std::int64_t>::max() - digit) / 10)
          fail("a dimension of the shape is too large");
        v = v * 10 + digit;
      }
      if (peek() == 'L') ++pos_;  // Python 2 longs
      out.push_back(v);
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != ')') fail("expected ',' or ')' in the shape");
    }
    ++pos_;
    return out;
  }

  const std::string& s_;
  const std::string& name_;
  std::size_t pos_ = 0;
};

inline std::uint32_t little_endian_uint(const unsigned char* p, int bytes) {
  std::uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace detail

/// Parses a header's dict text and checks it: float32 or float64, C order, a shape whose
/// element count fits. `name` prefixes error messages.
inline Header parse_header(const std::string& dict, const std::string& name) {
  Header h = detail::DictParser(dict, name).parse();
  const std::string& d = h.descr;
  if (d.size() != 3 || (d[0] != '<' && d[0] != '>' && d[0] != '=') || d[1] != 'f' ||
      (d[2] != '4' && d[2] != '8'))
    throw error(name + ": dtype '" + d + "' is not supported: float32 ('<f4') or float64 ('<f8')");
  h.itemsize = d[2] - '0';
  h.little_endian = d[0] == '<' || (d[0] == '=' && detail::host_is_little_endian());
  if (h.fortran_order)
    throw error(name +
                ": the array is in Fortran order; only C order is supported (save "
                "numpy.ascontiguousarray(a))");
  std::int64_t n = 1;
  for (std::int64_t dim : h.shape) {
    if (dim != 0 && n > std::numeric_limits<std::int64_t>::max() / h.itemsize / dim)
      throw error(name + ": shape " + shape_string(h.shape) + " is too large");
    n *= dim;
  }
  return h;
}

/// Reads and checks the magic, version and header; leaves `in` at the first data byte.
inline Header read_header(std::istream& in, const std::string& name) {
  unsigned char pre[8];
  if (!in.read(reinterpret_cast<char*>(pre), 8))
    throw error(name + ": not a .npy file (shorter than its magic)");
  if (std::memcmp(pre, "\x93NUMPY", 6) != 0)
    throw error(name + ": not a .npy file (no \\x93NUMPY magic)");
  const int major = pre[6], minor = pre[7];
  if (major < 1 || major > 3 || minor != 0)
    throw error(name + ": unsupported .npy version " + std::to_string(major) + "." +
                std::to_string(minor) + " (1.0, 2.0 and 3.0 are)");
  const int len_bytes = major == 1 ? 2 : 4;
  unsigned char len[4];
  if (!in.read(reinterpret_cast<char*>(len), len_bytes))
    throw error(name + ": truncated .npy header");
  const std::uint32_t header_len = detail::little_endian_uint(len, len_bytes);
  if (header_len > (1u << 24)) throw error(name + ": .npy header length is implausible");
  std::string dict(header_len, '\0');
  if (!in.read(dict.data(), header_len)) throw error(name + ": truncated .npy header");
  if (dict.empty() || dict.back() != '\n')
    throw error(name + ": malformed .npy header: it does not end with a newline");
  return parse_header(dict, name);
}

/// Reads the header's count() elements that follow it, converted to the host's byte order.
/// T must be the header's type (float for float32, double for float64).
template <class T>
std::vector<T> read_data(std::istream& in, const Header& h, const std::string& name) {
  if (h.itemsize != static_cast<int>(sizeof(T)))
    throw error(name + ": expected " + (sizeof(T) == 4 ? "float32" : "float64") +
                ", the file has " + h.dtype_name());
  const auto n = static_cast<std::size_t>(h.count());
  std::vector<T> data(n);
  const std::streamsize bytes = static_cast<std::streamsize>(n * sizeof(T));
  in.read(reinterpret_cast<char*>(data.data()), bytes);
  if (in.gcount() != bytes)
    throw error(name + ": truncated data: shape " + shape_string(h.shape) + " needs " +
                std::to_string(bytes) + " bytes, the file has " + std::to_string(in.gcount()));
  if (in.peek() != std::char_traits<char>::eof())
    throw error(name + ": unexpected bytes after the data of shape " + shape_string(h.shape));
  if (h.little_endian != detail::host_is_little_endian()) {
    for (T& v : data) {
      unsigned char b[sizeof(T)];
      std::memcpy(b, &v, sizeof(T));
      for (std::size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(b[i], b[sizeof(T) - 1 - i]);
      std::memcpy(&v, b, sizeof(T));
    }
  }
  return data;
}

/// An array read from a .npy file.
template <class T>
struct Array {
  std::vector<std::int64_t> shape;
  std::vector<T> data;  ///< C order
};

/// Opens `path` and reads its header only.
inline Header peek_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw error(path + ": cannot open for reading");
  return read_header(in, path);
}

/// Reads a whole float32 (T = float) or float64 (T = double) array.
template <class T>
Array<T> load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw error(path + ": cannot open for reading");
  const Header h = read_header(in, path);
  Array<T> a;
  a.data = read_data<T>(in, h, path);
  a.shape = h.shape;
  return a;
}

/// Writes a header and `data` (the product of `shape` elements, C order) to `out`.
template <class T>
void write(std::ostream& out, const std::vector<std::int64_t>& shape, const T* data) {
  std::string dict = std::string("{'descr': '<") + detail::descr_of<T>() +
                     "', 'fortran_order': False, 'shape': " + shape_string(shape) + ", }";
  // Pad with spaces and end with a newline so that the data starts at a multiple of 64.
  std::size_t prefix = 10;  // magic, version, 2-byte length
  if (dict.size() + 1 + prefix > 65535) prefix = 12;
  dict.append((64 - (prefix + dict.size() + 1) % 64) % 64, ' ');
  dict += '\n';
  const auto len = static_cast<std::uint32_t>(dict.size());
  out.write("\x93NUMPY", 6);
  out.put(prefix == 10 ? 1 : 2);
  out.put(0);
  for (std::size_t i = 0; i < prefix - 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xff));
  out.write(dict.data(), static_cast<std::streamsize>(dict.size()));
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  if (detail::host_is_little_endian()) {
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(T)));
  } else {
    for (std::int64_t i = 0; i < n; ++i) {
      unsigned char b[sizeof(T)];
      std::memcpy(b, data + i, sizeof(T));
      for (std::size_t k = sizeof(T); k-- > 0;) out.put(static_cast<char>(b[k]));
    }
  }
}

/// Writes `data` with `shape` to the file `path`.
template <class T>
void save(const std::string& path, const std::vector<std::int64_t>& shape, const T* data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw error(path + ": cannot open for writing");
  write(out, shape, data);
  out.flush();
  if (!out) throw error(path + ": write failed");
}

}  // namespace npy

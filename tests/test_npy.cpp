// examples/npy.hpp, the .npy reader and writer of bnorm_npy: files written by NumPy itself
// (tests/npy, made by generate_npy.py) read back with the values NumPy wrote, the writer's
// output is byte-for-byte NumPy's, round trips, header parsing, and every rejected input with its
// message.
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../examples/npy.hpp"
#include "test_support.hpp"

namespace bnorm_test {
namespace {

const std::string kDir = BNORM_NPY_DIR;

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The values of generate_npy.py's grid: x[n, c, h, w] = (60n + 20c + 5h + w) / 4 - 7.
template <class T>
std::vector<T> grid() {
  std::vector<T> v(120);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(static_cast<double>(i) / 4 - 7);
  return v;
}

/// The message of the npy::error that `f` throws ("" if none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const npy::error& e) {
    return e.what();
  }
  return "";
}

/// A .npy file from parts: version byte, header dict (padded to 64 like NumPy) and raw data.
std::string npy_file(const std::string& dict, const std::string& data, int major = 1) {
  const std::size_t prefix = major == 1 ? 10 : 12;
  std::string d = dict;
  d.append((64 - (prefix + d.size() + 1) % 64) % 64, ' ');
  d += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  for (std::size_t i = 0; i < prefix - 8; ++i)
    out += static_cast<char>((d.size() >> (8 * i)) & 0xff);
  return out + d + data;
}

std::string parse_error(const std::string& dict) {
  return error_of([&] { npy::parse_header(dict, "h.npy"); });
}

TEST(Npy, ReadsFilesWrittenByNumPy) {
  const auto f32 = npy::load<float>(kDir + "/f32_2x3x4x5.npy");
  EXPECT_EQ(f32.shape, (std::vector<std::int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(f32.data, grid<float>());

  const auto v2 = npy::load<double>(kDir + "/f64_2x3x4x5_v2.npy");  // format version 2.0
  EXPECT_EQ(v2.shape, (std::vector<std::int64_t>{2, 3, 4, 5}));
  EXPECT_EQ(v2.data, grid<double>());

  const auto be = npy::load<double>(kDir + "/f64_be_1x2x3x1.npy");  // big-endian '>f8'
  EXPECT_EQ(be.shape, (std::vector<std::int64_t>{1, 2, 3, 1}));
  EXPECT_EQ(be.data, (std::vector<double>{0, 0.5, 1, 1.5, 2, 2.5}));

  const auto vec = npy::load<double>(kDir + "/f64_vec3.npy");
  EXPECT_EQ(vec.shape, (std::vector<std::int64_t>{3}));
  EXPECT_EQ(vec.data, (std::vector<double>{1.5, -2.25, 1e-300}));

  const auto scalar = npy::load<double>(kDir + "/f64_scalar.npy");
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.data, (std::vector<double>{2.5}));
}

TEST(Npy, WritesWhatNumPyWrites) {
  const std::string tmp = ::testing::TempDir() + "bnorm_npy_writer.npy";
  const auto values = grid<float>();
  npy::save<float>(tmp, {2, 3, 4, 5}, values.data());
  EXPECT_EQ(file_bytes(tmp), file_bytes(kDir + "/f32_2x3x4x5.npy"));
  const double vec[] = {1.5, -2.25, 1e-300};
  npy::save<double>(tmp, {3}, vec);
  EXPECT_EQ(file_bytes(tmp), file_bytes(kDir + "/f64_vec3.npy"));
  const double scalar = 2.5;
  npy::save<double>(tmp, {}, &scalar);
  EXPECT_EQ(file_bytes(tmp), file_bytes(kDir + "/f64_scalar.npy"));
}

template <class T>
class NpyRoundTrip : public ::testing::Test {};
TYPED_TEST_SUITE(NpyRoundTrip, FloatTypes, );  // the empty argument: -Wpedantic

TYPED_TEST(NpyRoundTrip, ShapesAndValuesSurvive) {
  using T = TypeParam;
  const std::vector<std::vector<std::int64_t>> shapes{
      {}, {0}, {7}, {3, 0, 2}, {2, 3, 4, 5}, {1, 1, 1, 1, 1, 1}, {4, 9, 11, 3}};
  std::uint64_t seed = 1;
  for (const auto& shape : shapes) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<T> values = random_values<T>({1, 1, 1, n}, seed++, 0.0, 1e3);
    if (n >= 3) values[2] = std::numeric_limits<T>::infinity();
    std::stringstream file;
    npy::write<T>(file, shape, values.data());
    EXPECT_EQ(file.str().size() % 64, (values.size() * sizeof(T)) % 64) << "data starts at 64k";
    const npy::Header h = npy::read_header(file, "mem.npy");
    EXPECT_EQ(h.shape, shape);
    EXPECT_EQ(h.itemsize, static_cast<int>(sizeof(T)));
    EXPECT_EQ(npy::read_data<T>(file, h, "mem.npy"), values);
  }
}

TEST(Npy, HeaderParsing) {
  npy::Header h =
      npy::parse_header("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", "h");
  EXPECT_EQ(h.itemsize, 8);
  EXPECT_TRUE(h.little_endian);
  EXPECT_EQ(h.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(h.dtype_name(), "float64");
  // Any key order, double quotes, no trailing comma, other spacing, Python 2 longs.
  h = npy::parse_header("{\"shape\":(4L,),\"fortran_order\":False,\"descr\":\">f4\"}\n", "h");
  EXPECT_EQ(h.itemsize, 4);
  EXPECT_FALSE(h.little_endian);
  EXPECT_EQ(h.shape, (std::vector<std::int64_t>{4}));
  EXPECT_EQ(h.count(), 4);
  EXPECT_EQ(npy::parse_header("{'descr':'<f4','fortran_order':False,'shape':()}", "h").count(), 1);
  EXPECT_EQ(npy::shape_string({}), "()");
  EXPECT_EQ(npy::shape_string({5}), "(5,)");
  EXPECT_EQ(npy::shape_string({2, 3}), "(2, 3)");
}

TEST(Npy, RejectsOtherDtypesAndFortranOrder) {
  EXPECT_EQ(error_of([] { npy::load<float>(kDir + "/i32_vec4.npy"); }),
            kDir +
                "/i32_vec4.npy: dtype '<i4' is not supported: float32 ('<f4') or float64 "
                "('<f8')");
  EXPECT_EQ(error_of([] { npy::load<float>(kDir + "/f16_vec4.npy"); }),
            kDir +
                "/f16_vec4.npy: dtype '<f2' is not supported: float32 ('<f4') or float64 "
                "('<f8')");
  EXPECT_EQ(error_of([] { npy::load<float>(kDir + "/f32_fortran_2x3.npy"); }),
            kDir +
                "/f32_fortran_2x3.npy: the array is in Fortran order; only C order is "
                "supported (save numpy.ascontiguousarray(a))");
  EXPECT_EQ(error_of([] { npy::load<double>(kDir + "/f32_2x3x4x5.npy"); }),
            kDir + "/f32_2x3x4x5.npy: expected float64, the file has float32");
  EXPECT_NE(parse_error("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }"), "");
  EXPECT_NE(parse_error("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }"), "");
}

TEST(Npy, RejectsMalformedHeaders) {
  const char* bad[] = {
      "",
      "{'descr': '<f4', 'fortran_order': False}",                             // no shape
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",  // unknown key
      "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}",
      "{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} trailing",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
      "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
  };
  for (const char* dict : bad) {
    const std::string e = parse_error(dict);
    EXPECT_EQ(e.rfind("h.npy: ", 0), 0u) << "accepted: " << dict << " -> " << e;
  }
  EXPECT_EQ(parse_error("{'descr': '<f4', 'fortran_order': False}"),
            "h.npy: malformed .npy header: the header lacks one of 'descr', 'fortran_order', "
            "'shape': {'descr': '<f4', 'fortran_order': False}");
}

TEST(Npy, RejectsBrokenFiles) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  const std::string data(24, '\0');
  auto read = [](const std::string& bytes) {
    return error_of([&] {
      std::istringstream in(bytes);
      const npy::Header h = npy::read_header(in, "f.npy");
      npy::read_data<float>(in, h, "f.npy");
    });
  };
  EXPECT_EQ(read(npy_file(dict, data)), "");
  EXPECT_EQ(read(npy_file(dict, data, 2)), "");  // version 2.0: 4-byte header length
  EXPECT_EQ(read(npy_file(dict, data, 3)), "");  // version 3.0: utf-8 header, same layout
  EXPECT_EQ(read("\x93NUM"), "f.npy: not a .npy file (shorter than its magic)");
  EXPECT_EQ(read("PK\x03\x04 a zip file, say"), "f.npy: not a .npy file (no \\x93NUMPY magic)");
  EXPECT_EQ(read(npy_file(dict, data, 4)),
            "f.npy: unsupported .npy version 4.0 (1.0, 2.0 and "
            "3.0 are)");
  EXPECT_EQ(read(npy_file(dict, data).substr(0, 40)), "f.npy: truncated .npy header");
  EXPECT_EQ(read(npy_file(dict, data.substr(0, 20))),
            "f.npy: truncated data: shape (2, 3) needs 24 bytes, the file has 20");
  EXPECT_EQ(read(npy_file(dict, data + "xy")),
            "f.npy: unexpected bytes after the data of shape (2, 3)");
  std::string no_newline = npy_file(dict, data);
  no_newline[no_newline.size() - data.size() - 1] = ' ';
  EXPECT_EQ(read(no_newline), "f.npy: malformed .npy header: it does not end with a newline");
  EXPECT_EQ(error_of([] { npy::load<float>("/nonexistent/x.npy"); }),
            "/nonexistent/x.npy: cannot open for reading");
}

}  // namespace
}  // namespace bnorm_test

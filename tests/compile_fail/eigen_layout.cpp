// Compiled by the ctest eigen.compile_error.* with one of the macros below defined: each use of
// bnorm::nchw_view must fail to compile with bnorm's own message (the test matches it), never
// with a pile of template errors or not at all.
#include <bnorm/eigen.hpp>

int main() {
#if defined(BNORM_CASE_COLMAJOR_TENSOR)
  Eigen::Tensor<float, 4> x(2, 3, 4, 5);  // ColMajor, Eigen's default
  return static_cast<int>(bnorm::nchw_view(x).size());
#elif defined(BNORM_CASE_COLMAJOR_MAP)
  float data[120] = {};
  Eigen::TensorMap<Eigen::Tensor<const float, 4, Eigen::ColMajor> > x(data, 2, 3, 4, 5);
  return static_cast<int>(bnorm::nchw_view(x).size());
#elif defined(BNORM_CASE_RANK3)
  Eigen::Tensor<double, 3, Eigen::RowMajor> x(3, 4, 5);
  return static_cast<int>(bnorm::nchw_view(x).size());
#else
#error "define one of the BNORM_CASE_* macros"
#endif
}

/// @file detail/instances.hpp
/// @brief The list of the public function templates' instances (float, double, and the 16-bit
/// Eigen::bfloat16 and Eigen::half), as a macro.
///
/// BNORM_DETAIL_INSTANCES(KIND, T) expands to one explicit instantiation per public free
/// function of bnorm::fused (and of bnorm::staged unless BNORM_NO_STAGED) for T = float or
/// double, BNORM_DETAIL_INSTANCES_16BIT(KIND, T) for the 16-bit T (whose parameter_gradients is
/// float's: it takes the parameters' arrays alone), where KIND is
/// `template` (a definition: <bnorm/instantiate.hpp>) or `extern template` (a declaration:
/// <bnorm/bnorm.hpp> with BNORM_EXTERN_TEMPLATES). Keep it in step with fused.hpp, activation.hpp
/// and staged.hpp: a signature that no longer matches fails to compile in tests/instances_*.cpp.
#pragma once

#include <Eigen/Core>

#include "../activation.hpp"
#include "../fused.hpp"
#include "../nchw_view.hpp"
#ifndef BNORM_NO_STAGED
#include "../staged.hpp"
#endif

#define BNORM_DETAIL_ARRAY(T) const bnorm::detail::ParameterArray<T>&
#define BNORM_DETAIL_OUT_ARRAY(T) bnorm::detail::ParameterArray<T>&

#define BNORM_DETAIL_FUSED_INSTANCES(KIND, T)                                                      \
  KIND bnorm::fused::BatchStatistics bnorm::fused::forward_training<T>(                            \
      bnorm::NCHWView<const T>, BNORM_DETAIL_ARRAY(T), BNORM_DETAIL_ARRAY(T), double,              \
      bnorm::NCHWView<T>);                                                                         \
  KIND void bnorm::fused::forward_inference<T>(bnorm::NCHWView<const T>, BNORM_DETAIL_ARRAY(T),    \
                                               BNORM_DETAIL_ARRAY(T), BNORM_DETAIL_ARRAY(T),       \
                                               BNORM_DETAIL_ARRAY(T), double, bnorm::NCHWView<T>); \
  KIND void bnorm::fused::backward<T>(bnorm::NCHWView<const T>, bnorm::NCHWView<const T>,          \
                                      BNORM_DETAIL_ARRAY(T), const bnorm::fused::BatchStatistics&, \
                                      bnorm::NCHWView<T>, BNORM_DETAIL_OUT_ARRAY(T),               \
                                      BNORM_DETAIL_OUT_ARRAY(T));                                  \
  KIND void bnorm::fused::backward_inference<T>(                                                   \
      bnorm::NCHWView<const T>, bnorm::NCHWView<const T>, BNORM_DETAIL_ARRAY(T),                   \
      BNORM_DETAIL_ARRAY(T), BNORM_DETAIL_ARRAY(T), double, bnorm::NCHWView<T>,                    \
      BNORM_DETAIL_OUT_ARRAY(T), BNORM_DETAIL_OUT_ARRAY(T));                                       \
  KIND bnorm::fused::LocalStatistics bnorm::fused::local_statistics<T>(bnorm::NCHWView<const T>);  \
  KIND void bnorm::fused::normalize<T>(                                                            \
      bnorm::NCHWView<const T>, const bnorm::fused::BatchStatistics&, BNORM_DETAIL_ARRAY(T),       \
      BNORM_DETAIL_ARRAY(T), bnorm::NCHWView<T>);                                                  \
  KIND bnorm::fused::GradientSums bnorm::fused::local_gradient_sums<T>(                            \
      bnorm::NCHWView<const T>, bnorm::NCHWView<const T>, const bnorm::fused::BatchStatistics&);   \
  KIND void bnorm::fused::backward_input<T>(                                                       \
      bnorm::NCHWView<const T>, bnorm::NCHWView<const T>, BNORM_DETAIL_ARRAY(T),                   \
      const bnorm::fused::BatchStatistics&, const bnorm::fused::GradientSums&,                     \
      bnorm::NCHWView<T>);                                                                         \
  KIND void bnorm::detail::update_running<T>(BNORM_DETAIL_OUT_ARRAY(T), BNORM_DETAIL_OUT_ARRAY(T), \
                                             const Eigen::ArrayXd&, const Eigen::ArrayXd&, double, \
                                             double);                                              \
  KIND bnorm::fused::BatchStatistics bnorm::fused::forward_training<T>(                            \
      bnorm::NCHWView<const T>, bnorm::NCHWView<const T>, BNORM_DETAIL_ARRAY(T),                   \
      BNORM_DETAIL_ARRAY(T), double, bnorm::NCHWView<T>, bnorm::Activation);                       \
  KIND bnorm::fused::BatchStatistics bnorm::fused::forward_training<T>(                            \
      bnorm::NCHWView<const T>, BNORM_DETAIL_ARRAY(T), BNORM_DETAIL_ARRAY(T), double,              \
      bnorm::NCHWView<T>, bnorm::Activation);                                                      \
  KIND void bnorm::fused::forward_inference<T>(bnorm::NCHWView<const T>, bnorm::NCHWView<const T>, \
                                               BNORM_DETAIL_ARRAY(T), BNORM_DETAIL_ARRAY(T),       \
                                               BNORM_DETAIL_ARRAY(T), BNORM_DETAIL_ARRAY(T),       \
                                               double, bnorm::NCHWView<T>, bnorm::Activation);     \
  KIND void bnorm::fused::forward_inference<T>(bnorm::NCHWView<const T>, BNORM_DETAIL_ARRAY(T),    \
                                               BNORM_DETAIL_ARRAY(T), BNORM_DETAIL_ARRAY(T),       \
                                               BNORM_DETAIL_ARRAY(T), double, bnorm::NCHWView<T>,  \
                                               bnorm::Activation);                                 \
  KIND void bnorm::fused::relu_backward<T>(bnorm::NCHWView<const T>, bnorm::NCHWView<const T>,     \
                                           bnorm::NCHWView<T>);                                    \
  KIND void bnorm::fused::backward<T>(bnorm::NCHWView<const T>, bnorm::NCHWView<const T>,          \
                                      BNORM_DETAIL_ARRAY(T), const bnorm::fused::BatchStatistics&, \
                                      bnorm::NCHWView<T>, BNORM_DETAIL_OUT_ARRAY(T),               \
                                      BNORM_DETAIL_OUT_ARRAY(T), const bnorm::fused::Relu<T>&);    \
  KIND void bnorm::fused::backward_inference<T>(                                                   \
      bnorm::NCHWView<const T>, bnorm::NCHWView<const T>, BNORM_DETAIL_ARRAY(T),                   \
      BNORM_DETAIL_ARRAY(T), BNORM_DETAIL_ARRAY(T), double, bnorm::NCHWView<T>,                    \
      BNORM_DETAIL_OUT_ARRAY(T), BNORM_DETAIL_OUT_ARRAY(T), const bnorm::fused::Relu<T>&);

#ifndef BNORM_NO_STAGED
#define BNORM_DETAIL_STAGED_INSTANCES(KIND, T)                                                   \
  KIND bnorm::staged::Cache<T> bnorm::staged::forward_training<T>(                               \
      bnorm::NCHWView<const T>, BNORM_DETAIL_ARRAY(T), BNORM_DETAIL_ARRAY(T), double,            \
      bnorm::NCHWView<T>);                                                                       \
  KIND bnorm::staged::Cache<T> bnorm::staged::forward_inference<T>(                              \
      bnorm::NCHWView<const T>, BNORM_DETAIL_ARRAY(T), BNORM_DETAIL_ARRAY(T),                    \
      BNORM_DETAIL_ARRAY(T), BNORM_DETAIL_ARRAY(T), double, bnorm::NCHWView<T>);                 \
  KIND void bnorm::staged::backward<T>(const bnorm::staged::Cache<T>&, bnorm::NCHWView<const T>, \
                                       bnorm::NCHWView<T>, BNORM_DETAIL_OUT_ARRAY(T),            \
                                       BNORM_DETAIL_OUT_ARRAY(T));                               \
  KIND void bnorm::staged::backward<T>(const bnorm::staged::Cache<T>&, BNORM_DETAIL_ARRAY(T),    \
                                       bnorm::NCHWView<const T>, bnorm::NCHWView<T>,             \
                                       BNORM_DETAIL_OUT_ARRAY(T), BNORM_DETAIL_OUT_ARRAY(T));
#else
#define BNORM_DETAIL_STAGED_INSTANCES(KIND, T)
#endif

#define BNORM_DETAIL_INSTANCES_16BIT(KIND, T) \
  BNORM_DETAIL_FUSED_INSTANCES(KIND, T)       \
  BNORM_DETAIL_STAGED_INSTANCES(KIND, T)

#define BNORM_DETAIL_INSTANCES(KIND, T)                                              \
  BNORM_DETAIL_INSTANCES_16BIT(KIND, T)                                              \
  KIND void bnorm::fused::parameter_gradients<T>(                                    \
      const bnorm::fused::BatchStatistics&, const bnorm::fused::GradientSums&, bool, \
      Eigen::Array<T, Eigen::Dynamic, 1>&, Eigen::Array<T, Eigen::Dynamic, 1>&);

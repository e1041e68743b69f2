/// @file isa.hpp
/// @brief Which instruction set the fused kernels run on: chosen at run time, the same bits on
/// every one.
///
/// The kernels are compiled into every program three times (x86-64 with GCC >= 9 or Clang >= 14):
/// for the x86-64 baseline ("sse2"), for AVX2 with FMA ("avx2", x86-64-v3) and for AVX-512
/// F/BW/DQ/VL ("avx512"), whatever flags the program is built with. At the first call the widest
/// one this CPU (CPUID) and its operating system (XGETBV) run is chosen, unless the environment
/// variable BNORM_ISA names one. Other compilers and targets compile the portable kernels alone
/// ("sse2" on x86-64, "generic" elsewhere). Results are bitwise identical whichever runs
/// (docs/numerics.md): the choice changes speed only. A unit built with BNORM_MAX_ISA=sse2 or
/// avx2 compiles the sets up to that one, and runs the widest it has where the program's choice
/// is wider (the choice, which isa() names, is the program's).
#pragma once

#include <string_view>

#include "config.hpp"
#include "detail/cpu_features.hpp"

namespace bnorm {

/// The name of the kernels in use: "sse2", "avx2" or "avx512" ("generic" off x86-64). The first
/// call chooses them; a BNORM_ISA value that names no kernels of this build, or kernels this CPU
/// cannot run, makes it (and every kernel call) throw bnorm::invalid_argument until set_isa.
inline std::string_view isa() {
  return detail::isa_name(detail::selected_isa());
}

/// Runs the kernels called `name` from now on, in the whole program. Throws
/// bnorm::invalid_argument, changing nothing, for an unknown name or one this CPU cannot run;
/// the message names the choices. Not for use while another thread runs a kernel.
inline void set_isa(std::string_view name) {
  const detail::Isa isa = detail::parse_isa(name, "set_isa");
  detail::isa_choice().store(static_cast<int>(isa), std::memory_order_relaxed);
}

/// True when this CPU runs the kernels called `name` (false for an unknown name).
inline bool isa_supported(std::string_view name) {
  for (int i = 0; i < detail::kIsaCount; ++i)
    if (name == detail::kIsaNames[i]) return detail::cpu_runs(static_cast<detail::Isa>(i));
  return false;
}

}  // namespace bnorm

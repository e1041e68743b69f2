/// @file detail/cpu_features.hpp
/// @brief What this CPU and its operating system can run (CPUID and XGETBV), and which of the
/// kernel sets runs: chosen at first use, from BNORM_ISA or the best the CPU has.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "../config.hpp"

#if defined(__x86_64__) && ((defined(__clang__) && __clang_major__ >= 14) || \
                            (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 9))
#define BNORM_DETAIL_X86_DISPATCH 1  // the AVX2 and AVX-512 kernel sets are compiled too
#include <cpuid.h>
#endif

namespace bnorm::detail {

/// The kernel sets, narrowest first. `baseline` is SSE2 on x86-64, portable C++ elsewhere.
enum class Isa : int { baseline = 0, avx2 = 1, avx512 = 2 };

#if defined(BNORM_DETAIL_X86_DISPATCH)
inline constexpr int kIsaCount = 3;
inline constexpr const char* kIsaNames[] = {"sse2", "avx2", "avx512"};
#else
inline constexpr int kIsaCount = 1;
#if defined(__x86_64__)
inline constexpr const char* kIsaNames[] = {"sse2"};
#else
inline constexpr const char* kIsaNames[] = {"generic"};
#endif
#endif

inline const char* isa_name(Isa isa) {
  return kIsaNames[static_cast<int>(isa)];
}

#if defined(BNORM_DETAIL_X86_DISPATCH)
/// XCR0, the register states the operating system saves on a context switch.
inline std::uint64_t xcr0() {
  std::uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (std::uint64_t{hi} << 32) | lo;
}
#endif

/// True when this CPU has every instruction the kernel set may use and the OS saves the
/// registers it uses: AVX2, FMA, F16C, BMI1/2, LZCNT, MOVBE with YMM state (x86-64-v3); and
/// AVX-512 F, CD, BW, DQ, VL with opmask and ZMM state.
inline bool cpu_runs(Isa isa) {
  if (isa == Isa::baseline) return true;
#if defined(BNORM_DETAIL_X86_DISPATCH)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool osxsave = c >> 27 & 1;
  const bool v3_leaf1 =
      (c >> 12 & 1) && (c >> 22 & 1) && (c >> 28 & 1) && (c >> 29 & 1);  // FMA MOVBE AVX F16C
  if (!osxsave || !v3_leaf1) return false;
  const std::uint64_t xcr = xcr0();
  if ((xcr & 0x6) != 0x6) return false;  // SSE and AVX state
  unsigned a7 = 0, b7 = 0, c7 = 0, d7 = 0;
  if (!__get_cpuid_count(7, 0, &a7, &b7, &c7, &d7)) return false;
  unsigned ax = 0, bx = 0, cx = 0, dx = 0;
  const bool lzcnt = __get_cpuid(0x80000001, &ax, &bx, &cx, &dx) && (cx >> 5 & 1);
  const bool v3 = (b7 >> 3 & 1) && (b7 >> 5 & 1) && (b7 >> 8 & 1) && lzcnt;  // BMI1 AVX2 BMI2
  if (!v3) return false;
  if (isa == Isa::avx2) return true;
  const bool avx512 = (b7 >> 16 & 1) && (b7 >> 17 & 1) && (b7 >> 28 & 1) && (b7 >> 30 & 1) &&
                      (b7 >> 31 & 1);     // F DQ CD BW VL
  return avx512 && (xcr & 0xE0) == 0xE0;  // opmask, upper ZMM0-15, ZMM16-31
#else
  return false;
#endif
}

/// The widest kernel set this CPU runs.
inline Isa best_isa() {
  for (int i = kIsaCount - 1; i > 0; --i)
    if (cpu_runs(static_cast<Isa>(i))) return static_cast<Isa>(i);
  return Isa::baseline;
}

/// "a", "b", "c" over the kernel sets, those this CPU runs only when `runnable`.
inline std::string isa_list(bool runnable) {
  std::string s;
  for (int i = 0; i < kIsaCount; ++i) {
    if (runnable && !cpu_runs(static_cast<Isa>(i))) continue;
    if (!s.empty()) s += ", ";
    s += concat('"', kIsaNames[i], '"');
  }
  return s;
}

/// The kernel set called `name` (how: "BNORM_ISA" or "set_isa", for the message); throws
/// bnorm::invalid_argument for an unknown name or one this CPU cannot run.
inline Isa parse_isa(std::string_view name, const char* how) {
  for (int i = 0; i < kIsaCount; ++i) {
    if (name != kIsaNames[i]) continue;
    require(cpu_runs(static_cast<Isa>(i)), how, " asks for \"", name,
            "\", which this CPU cannot run (expected one of ", isa_list(true), ")");
    return static_cast<Isa>(i);
  }
  throw invalid_argument(concat("bnorm: ", how, " asks for \"", name,
                                "\", an unknown instruction set (expected one of ", isa_list(false),
                                ")"));
}

/// The program's choice, -1 until the first use. One object for the whole program (an inline
/// function's static), whatever unit reads it.
inline std::atomic<int>& isa_choice() {
  static std::atomic<int> choice{-1};
  return choice;
}

/// The kernel set in use: at first use BNORM_ISA if it is set (a bad value throws, now and at
/// every use until set_isa), else the widest one this CPU runs.
inline Isa selected_isa() {
  const int chosen = isa_choice().load(std::memory_order_relaxed);
  if (chosen >= 0) return static_cast<Isa>(chosen);
  const char* env = std::getenv("BNORM_ISA");
  const Isa isa = env != nullptr && *env != '\0' ? parse_isa(env, "BNORM_ISA") : best_isa();
  int expected = -1;
  isa_choice().compare_exchange_strong(expected, static_cast<int>(isa));
  return static_cast<Isa>(isa_choice().load(std::memory_order_relaxed));
}

}  // namespace bnorm::detail

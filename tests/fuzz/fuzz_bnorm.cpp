// libFuzzer target: views, options and modules built from the fuzz input, driven through
// sequences of training and eval steps, forward and backward, on the staged and the fused
// variant side by side, and through the free functions.
//
// Every call must either throw bnorm::invalid_argument ("bnorm: ...") having written nothing, or
// return results that agree with a long-double reference within a tolerance derived from the
// data's conditioning, and must not change any byte outside its output views: every buffer has
// guard bytes on both sides, and the padding inside a buffer holds a pattern. An independent
// oracle (brute-force enumeration of elements) says which calls must be rejected (a non-unique
// output, a partial overlap, a mismatched shape, ...) and which must be accepted; the staged
// and the fused module must agree on both, with the same message.
//
// Input format (see make_corpus.py): a reader takes bytes front to back (zeros once the input
// is exhausted); a header picks the type (bit 3 of the first byte: the 16-bit types, checked
// against float and double: float16_differential.hpp), the module's options and num_features;
// then steps,
// each an op byte followed by its arguments. Allocation is bounded: views of at most
// kMaxElements elements spread over at most kMaxSpan elements, at most kMaxChannels channels.
#include <bnorm/bnorm.hpp>

#include "activation_free_functions.hpp"
#include "activation_module.hpp"
#include "float16_differential.hpp"
#include "session.hpp"
#include "session_backward.hpp"
#include "session_forward.hpp"
#include "session_free_functions.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  const std::uint8_t head = in.byte();
  // Bits 1-2 of the first byte pick the kernel set among those this CPU runs (the same bits are
  // expected from each; the digest tests compare them).
  std::vector<const char*> isas;
  for (const char* isa : {"sse2", "avx2", "avx512", "generic"})
    if (bnorm::isa_supported(isa)) isas.push_back(isa);
  bnorm::set_isa(isas[static_cast<std::size_t>(head >> 1 & 3) % isas.size()]);
  if (head & 8) {  // the 16-bit types against float and double (float16_differential.hpp)
    if (head & 1)
      Float16Differential<Eigen::half>(in).run();
    else
      Float16Differential<Eigen::bfloat16>(in).run();
  } else if (head & 1) {
    Session<double>(in).run();
  } else {
    Session<float>(in).run();
  }
  return 0;
}

/// @file detail/mpi_exchange.hpp
/// @brief How SyncBatchNorm2d's ranks exchange their records (one MPI_Allgather of doubles) and
/// agree that every rank throws when one rank's local phase failed (mpi.hpp).
#pragma once

#include <mpi.h>

#include <cstddef>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "../config.hpp"

namespace bnorm::mpi {

namespace detail {

/// Throws std::runtime_error when an MPI call failed. Only reachable when the communicator's
/// error handler returns errors (MPI_ERRORS_RETURN); the default handler aborts the job.
inline void check_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw std::runtime_error(bnorm::detail::concat(
      "bnorm: ", call, " failed: ", std::string(text, static_cast<std::size_t>(length))));
}

/// How a rank's local phase (validation and local reductions, before the exchange) ended.
/// Sent in the first word of the rank's record: its count (>= 0) when `status` is 0, else
/// -status.
struct LocalOutcome {
  int status = 0;  ///< 0 ok, 1 bnorm::invalid_argument, 2 any other exception
  std::exception_ptr error;
  std::string message;
};

/// Runs f, catching what it throws so that this rank still takes part in the exchange.
template <class F>
LocalOutcome run_local(F&& f) {
  try {
    f();
    return {};
  } catch (const bnorm::invalid_argument& e) {
    return {1, std::current_exception(), e.what()};
  } catch (const std::exception& e) {
    return {2, std::current_exception(), e.what()};
  } catch (...) {
    return {2, std::current_exception(), "unknown exception"};
  }
}

/// Every rank's `send` (all of the same size), concatenated in rank order, on every rank.
inline std::vector<double> allgather(const std::vector<double>& send, MPI_Comm comm, int ranks) {
  std::vector<double> recv(send.size() * static_cast<std::size_t>(ranks));
  const int n = static_cast<int>(send.size());
  check_mpi(MPI_Allgather(send.data(), n, MPI_DOUBLE, recv.data(), n, MPI_DOUBLE, comm),
            "MPI_Allgather");
  return recv;
}

/// The status of each rank from the first word of its record of `width` doubles.
inline std::vector<int> statuses(const std::vector<double>& all, std::size_t width) {
  std::vector<int> s(all.size() / width);
  for (std::size_t r = 0; r < s.size(); ++r) {
    const double head = all[r * width];
    s[r] = head < 0 ? static_cast<int>(-head) : 0;
  }
  return s;
}

/// After an exchange: when some rank's local phase failed, every rank throws, so none is left
/// waiting in a later collective. A failing rank rethrows its own exception; the others throw
/// one naming the lowest failing rank with its message, which that rank broadcasts (two
/// MPI_Bcast, on this error path only). Returns when every rank succeeded.
inline void raise_if_any_failed(const LocalOutcome& mine, const std::vector<int>& status,
                                MPI_Comm comm, int rank, const char* call) {
  int first = -1;
  for (std::size_t r = 0; r < status.size() && first < 0; ++r)
    if (status[r] != 0) first = static_cast<int>(r);
  if (first < 0) return;
  int length = rank == first ? static_cast<int>(mine.message.size()) : 0;
  check_mpi(MPI_Bcast(&length, 1, MPI_INT, first, comm), "MPI_Bcast");
  std::string text =
      rank == first ? mine.message : std::string(static_cast<std::size_t>(length), ' ');
  check_mpi(MPI_Bcast(text.data(), length, MPI_CHAR, first, comm), "MPI_Bcast");
  if (mine.status != 0) std::rethrow_exception(mine.error);
  const std::string prefix = "bnorm: ";
  if (text.compare(0, prefix.size(), prefix) == 0) text.erase(0, prefix.size());
  const std::string what = bnorm::detail::concat("bnorm: rank ", first, " of ", status.size(),
                                                 " rejected ", call, ": ", text);
  if (status[static_cast<std::size_t>(first)] == 1) throw bnorm::invalid_argument(what);
  throw std::runtime_error(what);
}

}  // namespace detail

}  // namespace bnorm::mpi

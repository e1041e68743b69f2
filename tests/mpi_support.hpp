// What the MPI test binaries share: the ranks, the batch splits they test, comparisons across
// ranks, and the count of the module's collectives (test_mpi.cpp defines the counters, through
// MPI's profiling interface).
#pragma once

#include <mpi.h>

#include <cstring>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace bnorm_test {

/// Collectives made so far (test_mpi.cpp counts them; other binaries never read them).
extern long g_allgathers, g_allgather_doubles, g_other_collectives;

inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
inline int world_size() {
  int p = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  return p;
}

/// Collectives made by the module during one call.
struct Traffic {
  long allgathers = 0, doubles = 0, other = 0;
};
template <class F>
Traffic traffic_of(const F& f) {
  const long a = g_allgathers, d = g_allgather_doubles, o = g_other_collectives;
  f();
  return {g_allgathers - a, g_allgather_doubles - d, g_other_collectives - o};
}

/// Batch sizes of the ranks: uneven, with a rank holding nothing where there are several.
inline std::vector<std::vector<index_t>> splits(int ranks) {
  switch (ranks) {
    case 1:
      return {{7}};
    case 2:
      return {{5, 2}, {0, 7}, {1, 6}};
    case 3:
      return {{3, 0, 4}, {1, 5, 1}, {0, 0, 7}};
    default: {
      std::vector<index_t> s(static_cast<std::size_t>(ranks));
      for (int r = 0; r < ranks; ++r) s[static_cast<std::size_t>(r)] = r == 0 ? 3 : r % 3;
      return {s};
    }
  }
}

inline std::string to_string(const std::vector<index_t>& split) {
  std::string s;
  for (const index_t n : split) s += (s.empty() ? "" : "+") + std::to_string(n);
  return s;
}

/// True when `a` holds the same bits on every rank.
template <class A>
bool same_on_all_ranks(const A& a) {
  const int p = world_size();
  std::vector<double> mine(static_cast<std::size_t>(a.size()));
  for (std::size_t i = 0; i < mine.size(); ++i) mine[i] = static_cast<double>(a[i]);
  std::vector<double> all(mine.size() * static_cast<std::size_t>(p));
  PMPI_Allgather(mine.data(), static_cast<int>(mine.size()), MPI_DOUBLE, all.data(),
                 static_cast<int>(mine.size()), MPI_DOUBLE, MPI_COMM_WORLD);
  bool same = true;
  for (int r = 1; r < p; ++r)
    same = same && (mine.empty() ||  // (memcmp of an empty vector's null data() is undefined)
                    std::memcmp(all.data() + static_cast<std::size_t>(r) * mine.size(), all.data(),
                                mine.size() * sizeof(double)) == 0);
  return same;
}

/// Sum over the ranks, added in rank order.
template <class T>
Eigen::ArrayXd sum_over_ranks(const Eigen::Array<T, Eigen::Dynamic, 1>& a) {
  const int p = world_size();
  const auto n = static_cast<std::size_t>(a.size());
  std::vector<double> mine(n), all(n * static_cast<std::size_t>(p));
  for (std::size_t i = 0; i < n; ++i)
    mine[i] = static_cast<double>(a[static_cast<Eigen::Index>(i)]);
  PMPI_Allgather(mine.data(), static_cast<int>(n), MPI_DOUBLE, all.data(), static_cast<int>(n),
                 MPI_DOUBLE, MPI_COMM_WORLD);
  Eigen::ArrayXd sum = Eigen::ArrayXd::Zero(static_cast<Eigen::Index>(n));
  for (int r = 0; r < p; ++r)
    for (std::size_t i = 0; i < n; ++i)
      sum[static_cast<Eigen::Index>(i)] += all[static_cast<std::size_t>(r) * n + i];
  return sum;
}

}  // namespace bnorm_test

// The main of the MPI test programs: GoogleTest on every rank, only rank 0 printing the usual
// report (the others print their failures, prefixed with the rank), and one verdict for all.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

/// On ranks other than 0: prints only failures, prefixed with the rank.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::printf("[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                  r.line_number(), r.summary());
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Failed())
      std::printf("[rank %d] FAILED %s.%s\n", rank_, info.test_suite_name(), info.name());
    std::fflush(stdout);
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (rank != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(rank));
  }
  const int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  // PMPI: the tests may intercept MPI_Allgather to fail it; the verdict must not be.
  std::vector<int> all(static_cast<std::size_t>(ranks));
  PMPI_Allgather(&failed, 1, MPI_INT, all.data(), 1, MPI_INT, MPI_COMM_WORLD);
  int any = 0;
  std::string which;
  for (int r = 0; r < ranks; ++r)
    if (all[static_cast<std::size_t>(r)]) {
      any = 1;
      which += " " + std::to_string(r);
    }
  if (rank == 0)
    std::printf("[mpi] %d rank%s: %s%s\n", ranks, ranks == 1 ? "" : "s",
                any ? "FAILED on rank" : "passed on every rank", which.c_str());
  MPI_Finalize();
  return any;
}

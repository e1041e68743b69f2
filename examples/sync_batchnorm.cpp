// SyncBatchNorm2d over MPI: one global batch of 7 samples spread unevenly over the ranks
// (-np 2: 5 + 2 samples; -np 3: 4 + 0 + 3), three training steps then one eval step, every rank
// comparing its part with a single-process BatchNorm2d run on the whole batch. Rank 0 prints,
// per rank, the largest differences; every rank exits non-zero when one exceeds 1e-12 relative
// to the reference's largest magnitude (double).
//
//   mpirun -np 3 ./sync_batchnorm              the check
//   mpirun -np 3 ./sync_batchnorm --time [N]   step times of 8x64x56x56 float split over the
//                                              ranks, N steps per round (default 10)
#include <mpi.h>

#include <algorithm>
#include <bnorm/bnorm.hpp>
#include <bnorm/mpi.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using bnorm::index_t;

/// Samples per rank: uneven, and on 3 ranks one rank holds none.
std::vector<index_t> split_of(index_t n, int ranks) {
  if (n == 7 && ranks == 2) return {5, 2};
  if (n == 7 && ranks == 3) return {4, 0, 3};
  std::vector<index_t> s(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) s[static_cast<std::size_t>(r)] = n / ranks + (r < n % ranks);
  return s;
}

template <class T>
std::vector<T> random_vector(std::size_t size, unsigned seed, double offset, double scale) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> normal(offset, scale);
  std::vector<T> v(size);
  for (auto& e : v) e = static_cast<T>(normal(gen));
  return v;
}

template <class A, class B>
double max_diff(const A& a, const B& b, std::size_t size) {
  double d = 0;
  for (std::size_t i = 0; i < size; ++i)
    d = std::max(d, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return d;
}
template <class A>
double max_abs(const A& a, std::size_t size) {
  double m = 0;
  for (std::size_t i = 0; i < size; ++i) m = std::max(m, std::abs(static_cast<double>(a[i])));
  return m;
}

int check(int rank, int ranks) {
  constexpr index_t N = 7, C = 5, H = 6, W = 7, per_sample = C * H * W;
  const auto split = split_of(N, ranks);
  index_t offset = 0;
  for (int r = 0; r < rank; ++r) offset += split[static_cast<std::size_t>(r)];
  const index_t n = split[static_cast<std::size_t>(rank)];
  const auto whole = static_cast<std::size_t>(N * per_sample);
  const auto mine = static_cast<std::size_t>(n * per_sample);
  const auto first = static_cast<std::size_t>(offset * per_sample);

  bnorm::mpi::SyncBatchNorm2d<double> sync(C, MPI_COMM_WORLD);
  bnorm::BatchNorm2d<double> ref(C);  // the whole batch on one process
  enum { kY, kDx, kMean, kVar, kWeightGrad, kCount };
  double diff[kCount] = {}, scale[kCount] = {};
  auto note = [&](int what, double d, double s) {
    diff[what] = std::max(diff[what], d);
    scale[what] = std::max(scale[what], s);
  };
  for (int step = 0; step < 4; ++step) {
    const bool training = step < 3;
    sync.train(training);
    ref.train(training);
    const auto seed = static_cast<unsigned>(100 + 10 * step);
    const auto x = random_vector<double>(whole, seed, 1.0 + step, 2.0);
    const auto dy = random_vector<double>(whole, seed + 1, 0.0, 1.0);
    sync.weight() = ref.weight() = 1.0 + 0.1 * Eigen::ArrayXd::LinSpaced(C, 0, C - 1) * step;
    sync.bias() = ref.bias() = 0.2 * Eigen::ArrayXd::LinSpaced(C, -2, 2);

    std::vector<double> y(whole), dx(whole), y_part(mine), dx_part(mine);
    const auto saved_ref = ref.forward({x.data(), N, C, H, W}, {y.data(), N, C, H, W});
    ref.backward(saved_ref, {dy.data(), N, C, H, W}, {dx.data(), N, C, H, W});
    // This rank's part: samples [offset, offset + n) of the batch, here in place.
    const auto saved = sync.forward({x.data() + first, n, C, H, W}, {y_part.data(), n, C, H, W});
    sync.backward(saved, {dy.data() + first, n, C, H, W}, {dx_part.data(), n, C, H, W});

    note(kY, max_diff(y_part, y.data() + first, mine), max_abs(y, whole));
    note(kDx, max_diff(dx_part, dx.data() + first, mine), max_abs(dx, whole));
    note(kMean, max_diff(sync.running_mean(), ref.running_mean(), C),
         max_abs(ref.running_mean(), C));
    note(kVar, max_diff(sync.running_var(), ref.running_var(), C), max_abs(ref.running_var(), C));
    // weight_grad is this rank's contribution; the ranks' contributions add up to the whole's.
    Eigen::ArrayXd total(C);
    MPI_Allreduce(sync.weight_grad().data(), total.data(), C, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    note(kWeightGrad, max_diff(total, ref.weight_grad(), C), max_abs(ref.weight_grad(), C));
  }

  // Every rank merged the same gathered statistics in the same order: the same bits.
  std::vector<double> stats(sync.running_var().data(), sync.running_var().data() + C);
  stats.insert(stats.end(), sync.running_mean().data(), sync.running_mean().data() + C);
  std::vector<double> every(stats.size() * static_cast<std::size_t>(ranks));
  MPI_Allgather(stats.data(), 2 * C, MPI_DOUBLE, every.data(), 2 * C, MPI_DOUBLE, MPI_COMM_WORLD);
  bool bitwise = true;
  for (int r = 1; r < ranks; ++r)
    bitwise = bitwise && std::memcmp(every.data() + static_cast<std::size_t>(r) * stats.size(),
                                     every.data(), stats.size() * sizeof(double)) == 0;

  double record[kCount + 2];
  int ok = 1;
  for (int i = 0; i < kCount; ++i) {
    record[i] = diff[i];
    ok = ok && diff[i] <= 1e-12 * std::max(1.0, scale[i]);
  }
  record[kCount] = static_cast<double>(n);
  record[kCount + 1] = ok;
  std::vector<double> all(static_cast<std::size_t>(ranks) * (kCount + 2));
  MPI_Gather(record, kCount + 2, MPI_DOUBLE, all.data(), kCount + 2, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  int all_ok = 0;
  ok = ok && bitwise;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (rank == 0) {
    std::printf(
        "SyncBatchNorm2d<double> on %d rank%s, global batch %lldx%lldx%lldx%lld, "
        "3 training steps + 1 eval step,\n"
        "largest |difference| to BatchNorm2d on the whole batch:\n\n",
        ranks, ranks == 1 ? "" : "s", static_cast<long long>(N), static_cast<long long>(C),
        static_cast<long long>(H), static_cast<long long>(W));
    std::printf(
        "rank   N   y          dx         running_mean  running_var  "
        "weight_grad (sum over ranks)\n");
    for (int r = 0; r < ranks; ++r) {
      const double* rec = all.data() + static_cast<std::size_t>(r) * (kCount + 2);
      std::printf("%4d %3d   %.3e  %.3e  %.3e     %.3e    %.3e   %s\n", r,
                  static_cast<int>(rec[kCount]), rec[kY], rec[kDx], rec[kMean], rec[kVar],
                  rec[kWeightGrad], rec[kCount + 1] != 0 ? "ok" : "FAILED (> 1e-12)");
    }
    std::printf("\nrunning statistics bitwise identical on every rank: %s\n",
                bitwise ? "yes" : "NO (FAILED)");
    std::printf("%s\n", all_ok ? "all ranks agree with the single-process BatchNorm2d"
                               : "FAILED: a difference exceeds 1e-12");
  }
  return all_ok ? 0 : 1;
}

double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/// The slowest rank's time of `steps` calls of f, from a common start.
template <class F>
double timed(int steps, const F& f) {
  MPI_Barrier(MPI_COMM_WORLD);
  const double start = seconds();
  for (int i = 0; i < steps; ++i) f();
  double mine = seconds() - start, slowest = 0;
  MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest / steps;
}

int time_steps(int rank, int ranks, int steps) {
  constexpr index_t N = 8, C = 64, H = 56, W = 56, per_sample = C * H * W;
  constexpr int kRounds = 11;
  const auto split = split_of(N, ranks);
  const index_t n = split[static_cast<std::size_t>(rank)];
  const auto size = static_cast<std::size_t>(n * per_sample);
  const auto x = random_vector<float>(size, 7 + static_cast<unsigned>(rank), 0.5, 2.0);
  const auto dy = random_vector<float>(size, 17 + static_cast<unsigned>(rank), 0.0, 1.0);
  std::vector<float> y(size), dx(size);
  const bnorm::NCHWView<const float> xv(x.data(), n, C, H, W), dyv(dy.data(), n, C, H, W);
  const bnorm::NCHWView<float> yv(y.data(), n, C, H, W), dxv(dx.data(), n, C, H, W);

  bnorm::mpi::SyncBatchNorm2d<float> sync(C, MPI_COMM_WORLD);
  bnorm::BatchNorm2d<float> local(C);
  auto sync_step = [&] { sync.backward(sync.forward(xv, yv), dyv, dxv); };
  auto local_step = [&] { local.backward(local.forward(xv, yv), dyv, dxv); };
  // The step's communication alone: two MPI_Allgather of 2C + 1 doubles per rank.
  std::vector<double> send(2 * C + 1, 1.0), recv(send.size() * static_cast<std::size_t>(ranks));
  auto exchange_step = [&] {
    for (int i = 0; i < 2; ++i)
      MPI_Allgather(send.data(), 2 * C + 1, MPI_DOUBLE, recv.data(), 2 * C + 1, MPI_DOUBLE,
                    MPI_COMM_WORLD);
  };
  std::vector<double> sync_ms, local_ms, exchange_ms;
  for (int i = 0; i < 3; ++i) sync_step(), local_step();  // warm up: first touch, caches
  for (int round = 0; round < kRounds; ++round) {
    sync_ms.push_back(1e3 * timed(steps, sync_step));
    local_ms.push_back(1e3 * timed(steps, local_step));
    exchange_ms.push_back(1e3 * timed(steps, exchange_step));
  }
  std::sort(sync_ms.begin(), sync_ms.end());
  std::sort(local_ms.begin(), local_ms.end());
  std::sort(exchange_ms.begin(), exchange_ms.end());
  if (rank == 0) {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    std::string parts;
    for (const index_t s : split) parts += (parts.empty() ? "" : "+") + std::to_string(s);
    const double sent = 8.0 * 2 * (2 * C + 1), received = sent * (ranks - 1);
    std::printf(
        "SyncBatchNorm2d<float>, forward + backward of %lldx%lldx%lldx%lld split over "
        "the ranks; slowest rank, median (min) of %d rounds of %d steps\n\n",
        static_cast<long long>(N), static_cast<long long>(C), static_cast<long long>(H),
        static_cast<long long>(W), kRounds, steps);
    std::printf(
        "| ranks | samples per rank | threads per rank | SyncBatchNorm2d step, ms "
        "| BatchNorm2d on own part, ms | the 2 allgathers alone, ms | bytes sent / "
        "received per rank per step |\n");
    std::printf("| --- | --- | --- | --- | --- | --- | --- |\n");
    std::printf("| %d | %s | %d | %.2f (%.2f) | %.2f (%.2f) | %.3f (%.3f) | %.0f / %.0f |\n", ranks,
                parts.c_str(), threads, sync_ms[kRounds / 2], sync_ms[0], local_ms[kRounds / 2],
                local_ms[0], exchange_ms[kRounds / 2], exchange_ms[0], sent, received);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  int status = 0;
  if (argc > 1 && std::strcmp(argv[1], "--time") == 0)
    status = time_steps(rank, ranks, argc > 2 ? std::max(1, std::atoi(argv[2])) : 10);
  else
    status = check(rank, ranks);
  MPI_Finalize();
  return status;
}

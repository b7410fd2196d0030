// The group of training processes: MPI's world when the engine is built with MPI
// (PG_MPI) and the process was launched by mpirun / srun, otherwise a single rank.
// Data parallelism needs only a sum over ranks (allreduce) and a barrier.
#pragma once

#include <cstdint>
#include <string>

namespace pg::train {

class Comm {
 public:
  // The process group. allow_mpi = false (or no launcher in the environment) gives a
  // single rank. MPI is initialised on first use and finalised at process exit.
  static Comm& get(bool allow_mpi);

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool distributed() const { return size_ > 1; }
  // In-place sums over ranks (every rank gets the same result).
  void allreduce_sum(float* data, int64_t n) const;
  void allreduce_sum(double* data, int64_t n) const;
  void barrier() const;
  // Whether this build has MPI, and a one-line description ("MPI (Open MPI 4.1.4), 2 ranks").
  static bool built_with_mpi();
  std::string describe() const;

 private:
  Comm(int rank, int size, bool mpi) : rank_(rank), size_(size), mpi_(mpi) {}
  int rank_ = 0;
  int size_ = 1;
  bool mpi_ = false;
};

}  // namespace pg::train

// Comm over MPI (Open MPI from Debian) when PG_HAVE_MPI is defined; a single rank otherwise.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "train/comm.h"

#ifdef PG_HAVE_MPI
#include <mpi.h>
#endif

namespace pg::train {
namespace {

// Whether a launcher (mpirun, srun, hydra) started this process as one rank of a job.
bool launched_by_mpi() {
  for (const char* v :
       {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  return false;
}

#ifdef PG_HAVE_MPI
// Finalises MPI at process exit (static destruction) if this process initialised it.
struct MpiSession {
  bool initialised = false;
  ~MpiSession() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (initialised && !finalized) MPI_Finalize();
  }
};
#endif

constexpr int64_t kChunk = int64_t{1} << 28;  // elements per MPI call (int counts)

}  // namespace

Comm& Comm::get(bool allow_mpi) {
#ifdef PG_HAVE_MPI
  if (allow_mpi && launched_by_mpi()) {
    static MpiSession session;
    static Comm* world = [] {
      int inited = 0;
      MPI_Initialized(&inited);
      if (!inited) {
        int provided = 0;
        MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
        session.initialised = true;
      }
      int rank = 0, size = 1;
      MPI_Comm_rank(MPI_COMM_WORLD, &rank);
      MPI_Comm_size(MPI_COMM_WORLD, &size);
      return new Comm(rank, size, true);
    }();
    return *world;
  }
#else
  (void)allow_mpi;
  (void)launched_by_mpi;
#endif
  static Comm single(0, 1, false);
  return single;
}

void Comm::allreduce_sum(float* data, int64_t n) const {
#ifdef PG_HAVE_MPI
  if (!mpi_ || size_ == 1) return;
  for (int64_t i = 0; i < n; i += kChunk) {
    MPI_Allreduce(MPI_IN_PLACE, data + i, static_cast<int>(std::min(kChunk, n - i)), MPI_FLOAT,
                  MPI_SUM, MPI_COMM_WORLD);
  }
#else
  (void)data;
  (void)n;
#endif
}

void Comm::allreduce_sum(double* data, int64_t n) const {
#ifdef PG_HAVE_MPI
  if (!mpi_ || size_ == 1) return;
  for (int64_t i = 0; i < n; i += kChunk) {
    MPI_Allreduce(MPI_IN_PLACE, data + i, static_cast<int>(std::min(kChunk, n - i)), MPI_DOUBLE,
                  MPI_SUM, MPI_COMM_WORLD);
  }
#else
  (void)data;
  (void)n;
#endif
}

void Comm::barrier() const {
#ifdef PG_HAVE_MPI
  if (mpi_ && size_ > 1) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

bool Comm::built_with_mpi() {
#ifdef PG_HAVE_MPI
  return true;
#else
  return false;
#endif
}

std::string Comm::describe() const {
  if (!mpi_) return "single process";
  return "MPI, " + std::to_string(size_) + " ranks";
}

}  // namespace pg::train

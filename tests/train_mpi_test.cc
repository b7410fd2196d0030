// Data parallelism over MPI. Run as `mpirun -np 2 train_mpi_test`: both ranks train the
// tiny model with global batch 2 (one example each per step, gradients summed with
// allreduce); then rank 0 trains alone with batch 2 from the same start, and the weights
// must agree within 1e-5 relative (max |a - b| / max |a| per tensor).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "base/parallel.h"
#include "runtime/session.h"
#include "train/comm.h"
#include "train/params.h"
#include "train/trainer.h"

namespace {

namespace fs = std::filesystem;
using namespace pg;

int fail(const std::string& what) {
  std::fprintf(stderr, "train_mpi_test: FAILED: %s\n", what.c_str());
  return 1;
}

// Writes a JSONL of golden images with answers of different lengths into dir.
std::string write_data(const std::string& dir) {
  const std::string golden = std::string(PG_TESTDATA_DIR) + "/golden/tiny-pg1/";
  for (const char* img : {"image.png", "image2.png", "image.jpg"}) {
    fs::copy_file(golden + img, dir + "/" + img, fs::copy_options::overwrite_existing);
  }
  std::ofstream f(dir + "/data.jsonl");
  f << "{\"image\": \"image.png\", \"prefix\": \"caption en\", \"suffix\": \"a red square\"}\n"
       "{\"image\": \"image2.png\", \"prefix\": \"caption en\", \"suffix\": \"a blue circle and a "
       "green one\"}\n"
       "{\"image\": \"image.jpg\", \"prefix\": \"describe en\", \"suffix\": \"red\"}\n"
       "{\"image\": \"image2.png\", \"prefix\": \"answer en what colour\", \"suffix\": \"blue\"}\n";
  return dir + "/data.jsonl";
}

}  // namespace

int main() {
  set_num_threads(1);
  train::Comm& comm = train::Comm::get(true);
  const int rank = comm.rank();
  if (comm.size() != 2)
    return fail("expected 2 ranks, got " + std::to_string(comm.size()) +
                " (run under mpirun -np 2)");

  std::string tmpl = (fs::temp_directory_path() / "pgmpi-XXXXXX").string();
  const std::string dir = mkdtemp(tmpl.data());
  train::TrainConfig c;
  c.data = write_data(dir);
  c.steps = 5;
  c.batch = 2;
  c.lr = 1e-2;
  c.warmup_steps = 1;
  c.clip_norm = 0.5;  // clipping on: the global norm must be of the summed gradient
  auto session = runtime::Session::load(std::string(PG_TESTDATA_DIR) + "/golden/tiny-pg1", nullptr);
  if (!session.ok()) return fail(session.status().message());

  c.distributed = true;
  std::unique_ptr<train::ModelParams> parallel;
  auto r = train::run_training_on((*session)->model(), (*session)->tokenizer(), "", c, nullptr,
                                  &parallel);
  if (!r.ok()) return fail(r.status().message());
  if (r->world_size != 2) return fail("the run did not see 2 ranks");

  int status = 0;
  if (rank == 0) {
    c.distributed = false;
    std::unique_ptr<train::ModelParams> single;
    auto s = train::run_training_on((*session)->model(), (*session)->tokenizer(), "", c, nullptr,
                                    &single);
    if (!s.ok()) return fail(s.status().message());
    std::printf("[mpi] loss: 2 ranks %.6f -> %.6f, 1 process %.6f -> %.6f\n", r->first_loss,
                r->last_loss, s->first_loss, s->last_loss);
    if (std::fabs(r->first_loss - s->first_loss) > 1e-9 * s->first_loss)
      status = fail("first losses differ");
    double worst = 0;
    std::string worst_name;
    bool moved = false;
    for (train::Param* p : single->trainable()) {
      const train::Param* q = parallel->find(p->name);
      double m = 0, e = 0;
      for (int64_t i = 0; i < p->numel(); ++i) {
        m = std::max(m, std::fabs(static_cast<double>(p->data()[i])));
        e = std::max(e, std::fabs(static_cast<double>(p->data()[i]) - q->data()[i]));
      }
      const double rel = m > 0 ? e / m : e;
      if (rel > worst) {
        worst = rel;
        worst_name = p->name;
      }
    }
    // The weights moved away from the checkpoint (training happened).
    auto fresh = train::ModelParams::create((*session)->model(), 0);
    for (train::Param* p : single->trainable()) {
      const Tensor init = train::param_f32(*(*fresh)->find(p->name));
      for (int64_t i = 0; i < p->numel() && !moved; ++i) moved = init.data()[i] != p->data()[i];
    }
    std::printf("[mpi] max relative weight difference %.3g (%s), tolerance 1e-5\n", worst,
                worst_name.c_str());
    if (!moved) status = fail("the weights did not change");
    if (worst > 1e-5)
      status = fail("weights differ by " + std::to_string(worst) + " in " + worst_name);
  }
  comm.barrier();
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (rank == 0 && status == 0) std::printf("[mpi] PASSED\n");
  return status;
}

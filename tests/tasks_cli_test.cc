// The task commands of build/paligemma as users and outside tools run them: caption, ask, ocr,
// detect, segment (--json, --draw, several images, --video), parse (exact boxes, every
// malformed case), decode-mask (golden), run-batch (a bad record does not stop the batch).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "image/image.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using pg::testing::TempDir;
using pg::testing::testdata;
using ::testing::HasSubstr;

struct CliRun {
  int exit_code = -1;
  bool signaled = false;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// Single-quotes an argument for the shell.
std::string q(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

CliRun run_cli(const std::string& args) {
  TempDir tmp;
  const std::string cmd = std::string(PG_CLI_PATH) + " " + args + " >" + tmp.file("out") + " 2>" +
                          tmp.file("err") + " </dev/null";
  const int status = std::system(cmd.c_str());
  CliRun r;
  r.signaled = WIFSIGNALED(status);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(tmp.file("out"));
  r.err = slurp(tmp.file("err"));
  return r;
}

json run_json(const std::string& args) {
  CliRun r = run_cli(args);
  EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.err;
  const json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}

const std::string kPg1 = testdata("golden/tiny-pg1");
const std::string kImage = kPg1 + "/image.png";  // 97x61
const std::string kVae = testdata("golden/tiny-vae/vae.npz");
const std::string kClip = testdata("tasks/ramp10.avi");
const std::string kModel = "--model " + kPg1 + " --threads 2 ";

json golden() { return json::parse(slurp(kPg1 + "/expected.json")); }

// Golden prompt i: generated ids with 12 greedy tokens.
const json& golden_prompt(int i) {
  static const json g = golden();
  return g["prompts"][i];
}

void expect_task_document(const json& j, const std::string& task, const std::string& prompt) {
  EXPECT_EQ(j["task"], task);
  EXPECT_EQ(j["prompt"], prompt);
  EXPECT_TRUE(j["text"].is_string());
  EXPECT_TRUE(j["objects"].is_array());
  EXPECT_TRUE(j["ids"].is_array());
  EXPECT_TRUE(j["timings"]["ttft_s"].is_number());
  EXPECT_EQ(j["image"]["width"], 97);
  EXPECT_EQ(j["image"]["height"], 61);
}

// --- Task commands on the tiny model (its text is random: structure, and the golden ids) ---

TEST(TaskCli, CaptionMatchesTheGoldenPrompt) {
  const json j = run_json("caption " + kModel + "--image " + kImage + " --json --max-tokens 12");
  expect_task_document(j, "caption", "caption en");
  EXPECT_EQ(golden_prompt(0)["prompt"], "caption en");
  EXPECT_EQ(j["ids"], golden_prompt(0)["generated_ids"]);
  EXPECT_EQ(j["text"], golden_prompt(0)["generated_text"]);
  EXPECT_TRUE(j["objects"].empty());
  const json l = run_json("caption " + kModel + "--image " + kImage +
                          " --json --long --lang de --max-tokens 2");
  expect_task_document(l, "caption", "describe de");
  EXPECT_EQ(l["ids"].size(), 2u);
}

TEST(TaskCli, CaptionStreamsTextWithoutJson) {
  CliRun r = run_cli("caption " + kModel + "--image " + kImage + " --max-tokens 12");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, golden_prompt(0)["generated_text"].get<std::string>() + "\n");
  EXPECT_THAT(r.err, HasSubstr("[caption: 12 tokens"));
}

TEST(TaskCli, AskMatchesTheGoldenPrompt) {
  const json j = run_json("ask " + kModel + "--image " + kImage +
                          " --question 'what is in the image?' --json "
                          "--max-tokens 12");
  expect_task_document(j, "ask", "answer en what is in the image?");
  EXPECT_EQ(golden_prompt(1)["prompt"], "answer en what is in the image?");
  EXPECT_EQ(j["ids"], golden_prompt(1)["generated_ids"]);
}

TEST(TaskCli, Ocr) {
  const json j = run_json("ocr " + kModel + "--image " + kImage + " --json --max-tokens 3");
  expect_task_document(j, "ocr", "ocr");
  EXPECT_EQ(j["ids"].size(), 3u);
}

TEST(TaskCli, DetectMatchesTheGoldenPromptAndParsesWhatItGot) {
  const json j = run_json("detect " + kModel + "--image " + kImage +
                          " --objects 'square;circle' --json --max-tokens 12");
  expect_task_document(j, "detect", "detect square ; circle");
  EXPECT_EQ(golden_prompt(2)["prompt"], "detect square ; circle");
  EXPECT_EQ(j["ids"], golden_prompt(2)["generated_ids"]);
  // The random model's "((((..." has no box: one entry, with an error, never a crash.
  ASSERT_EQ(j["objects"].size(), 1u);
  EXPECT_THAT(j["objects"][0]["error"].get<std::string>(), HasSubstr("text without a box"));
}

TEST(TaskCli, SegmentMatchesTheGoldenPrompt) {
  const json j = run_json("segment " + kModel + "--image " + kImage + " --objects circle --vae " +
                          kVae + " --json --max-tokens 12");
  expect_task_document(j, "segment", "segment circle");
  EXPECT_EQ(golden_prompt(3)["prompt"], "segment circle");
  EXPECT_EQ(j["ids"], golden_prompt(3)["generated_ids"]);
  for (const json& o : j["objects"]) EXPECT_TRUE(o.contains("error") || o.contains("mask"));
}

TEST(TaskCli, DrawWritesThePicture) {
  TempDir tmp;
  for (const std::string cmd : {"caption", "detect --objects cat"}) {
    const std::string out = tmp.file("d.png");
    CliRun r = run_cli(cmd + " " + kModel + "--image " + kImage + " --max-tokens 2 --draw " + out);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto img = pg::image::load_image(out);
    ASSERT_TRUE(img.ok()) << img.status().message();
    EXPECT_EQ(img->width, 97);
    EXPECT_EQ(img->height, 61);
  }
}

TEST(TaskCli, SeveralImagesAreConsecutiveBlocks) {
  const json g = golden();
  const json j = run_json("caption " + kModel + "--image " + kImage + " --image " + kPg1 +
                          "/image2.png --json "
                          "--max-tokens 12");
  EXPECT_EQ(j["image"]["count"], 2);
  EXPECT_EQ(g["multi_image"]["prompt"], "caption en");
  EXPECT_EQ(j["ids"], g["multi_image"]["generated_ids"]);
  EXPECT_EQ(j["prompt_tokens"], g["multi_image"]["input_ids"].size());
  EXPECT_EQ(j["image"]["width"], 97);  // boxes are framed by the first image
}

TEST(TaskCli, VideoFramesAreConsecutiveBlocks) {
  const json j =
      run_json("caption " + kModel + "--video " + kClip + " --frames 3 --json --max-tokens 2");
  EXPECT_EQ(j["image"]["count"], 3);
  EXPECT_EQ(j["image"]["width"], 32);
  EXPECT_EQ(j["image"]["height"], 24);
  // 3 blocks of 16 image tokens, then BOS and "caption en\n" as in the golden prompt 0.
  const size_t text_tokens = golden_prompt(0)["input_ids"].size() - 16;
  EXPECT_EQ(j["prompt_tokens"], 3 * 16 + text_tokens);
}

TEST(TaskCli, UsageErrors) {
  CliRun no_objects = run_cli("detect " + kModel + "--image " + kImage);
  EXPECT_EQ(no_objects.exit_code, 2);
  EXPECT_THAT(no_objects.err, HasSubstr("--objects"));

  CliRun empty_objects = run_cli("detect " + kModel + "--image " + kImage + " --objects ' ; '");
  EXPECT_EQ(empty_objects.exit_code, 1);
  EXPECT_THAT(empty_objects.err, HasSubstr("paligemma: error: --objects: an object name is empty"));

  CliRun both = run_cli("caption " + kModel + "--image " + kImage + " --video " + kClip);
  EXPECT_EQ(both.exit_code, 2);
  CliRun neither = run_cli("caption " + kModel);
  EXPECT_EQ(neither.exit_code, 2);
  CliRun frames = run_cli("caption " + kModel + "--image " + kImage + " --frames 4");
  EXPECT_EQ(frames.exit_code, 2);
  EXPECT_THAT(frames.err, HasSubstr("--video"));

  CliRun no_vae = run_cli("segment " + kModel + "--image " + kImage +
                          " --objects cat --vae /nonexistent/v.npz");
  EXPECT_EQ(no_vae.exit_code, 1);
  EXPECT_THAT(no_vae.err, HasSubstr("/nonexistent/v.npz"));

  CliRun bad_video = run_cli("caption " + kModel + "--video " + kPg1 + "/config.json");
  EXPECT_EQ(bad_video.exit_code, 1);
  EXPECT_THAT(bad_video.err, HasSubstr(kPg1 + "/config.json: cannot open as a video"));

  CliRun bad_image = run_cli("ocr " + kModel + "--image " + kPg1 + "/config.json");
  EXPECT_EQ(bad_image.exit_code, 1);
  EXPECT_THAT(bad_image.err, HasSubstr("not a JPEG or PNG image"));

  CliRun bad_lang = run_cli("caption " + kModel + "--image " + kImage + " --lang 'e n'");
  EXPECT_EQ(bad_lang.exit_code, 1);
  EXPECT_THAT(bad_lang.err, HasSubstr("--lang: language code 'e n'"));

  CliRun bad_question = run_cli("ask " + kModel + "--image " + kImage + " --question ' '");
  EXPECT_EQ(bad_question.exit_code, 1);
  EXPECT_THAT(bad_question.err, HasSubstr("the question is empty"));
}

// --- parse: exact boxes and every malformed case ---

json parse_cli(const std::string& task, const std::string& text,
               const std::string& extra = "--width 640 --height 480") {
  return run_json("parse --task " + task + " " + extra + " --text " + q(text));
}

std::string segs(const std::vector<int>& codes) {
  std::string s;
  char buf[16];
  for (int c : codes) {
    std::snprintf(buf, sizeof(buf), "<seg%03d>", c);
    s += buf;
  }
  return s;
}

TEST(ParseCli, ExactBoxes) {
  const json j = parse_cli(
      "detect",
      "<loc0256><loc0128><loc0768><loc0896> cat ; <loc0100><loc0100><loc0500><loc0500> dog");
  ASSERT_EQ(j["objects"].size(), 2u);
  const json& cat = j["objects"][0];
  EXPECT_EQ(cat["label"], "cat");
  EXPECT_EQ(cat["box"], json({{"x0", 80.0}, {"y0", 120.0}, {"x1", 560.0}, {"y1", 360.0}}));
  EXPECT_EQ(cat["loc"], json({256, 128, 768, 896}));
  EXPECT_FALSE(cat.contains("error"));
  const json& dog = j["objects"][1];
  EXPECT_EQ(dog["label"], "dog");
  EXPECT_EQ(dog["box"], json({{"x0", 62.5}, {"y0", 46.875}, {"x1", 312.5}, {"y1", 234.375}}));
}

TEST(ParseCli, EveryMalformedCaseIsReportedPerEntry) {
  const std::string good = "<loc0100><loc0100><loc0500><loc0500> dog";
  const std::vector<int> codes(16, 7);
  struct Case {
    std::string task, bad, error;
  };
  const std::vector<Case> cases = {
      {"detect", "<loc0001><loc0002><loc0003> cat", "expected 4 <loc> tokens (y0 x0 y1 x1), got 3"},
      {"detect", "<loc0500><loc0100><loc0100><loc0500> cat",
       "empty box: y1 (<loc100>) is not below y0 (<loc500>)"},
      {"detect", "%% garbage %%", "text without a box: '%% garbage %%'"},
      {"detect", "<loc1024><loc0000><loc0100><loc0100> cat",
       "loc value 1024 in '<loc1024>' is out of range 0..1023"},
      {"segment", "<loc0256><loc0128><loc0768><loc0896>" + segs(std::vector<int>(15, 7)) + " cat",
       "expected 16 <seg> tokens after the box, got 15"},
      {"segment",
       "<loc0256><loc0128><loc0768><loc0896><seg128>" + segs(std::vector<int>(15, 7)) + " cat",
       "seg value 128 in '<seg128>' is out of range 0..127"},
  };
  for (const Case& c : cases) {
    const std::string ok =
        c.task == "segment" ? "<loc0100><loc0100><loc0500><loc0500>" + segs(codes) + " dog" : good;
    const json j = parse_cli(c.task, ok + " ; " + c.bad + " ; " + ok);
    ASSERT_EQ(j["objects"].size(), 3u) << c.bad;
    EXPECT_EQ(j["objects"][1]["error"], c.error) << c.bad;
    EXPECT_EQ(j["objects"][1]["text"], c.bad);
    for (int i : {0, 2}) {
      EXPECT_FALSE(j["objects"][i].contains("error")) << c.bad;
      EXPECT_EQ(j["objects"][i]["box"]["x1"], 312.5) << c.bad;
    }
  }
}

TEST(ParseCli, EmptyAndHostileText) {
  EXPECT_TRUE(parse_cli("detect", "")["objects"].empty());
  // Stray text, a malformed token with a stray label, a cut token: three entries, each with
  // its error; invalid UTF-8 is replaced in the JSON.
  const json j =
      parse_cli("segment", std::string("\xff<seg<loc>>;;<loc0001\xc3"), "--width 1 --height 1");
  ASSERT_EQ(j["objects"].size(), 3u);
  for (const json& o : j["objects"]) EXPECT_TRUE(o.contains("error")) << o.dump();
  EXPECT_EQ(j["objects"][1]["error"], "malformed token '<loc>'");
}

TEST(ParseCli, SegmentMasksAgainstTheGoldenLogits) {
  auto want = pg::io::SafetensorsFile::open(testdata("golden/tiny-vae/expected.safetensors"));
  ASSERT_TRUE(want.ok());
  std::vector<int32_t> codes(48);
  std::memcpy(codes.data(), want->tensors().at("codes").data, 48 * sizeof(int32_t));
  std::vector<float> logits(4096);
  std::memcpy(logits.data(), want->tensors().at("mask_logits").data, 4096 * sizeof(float));
  // A 64x64-pixel box at (0, 0) of a 128x128 image: pixel centres land on the 64x64 grid's
  // centres, so the mask is exactly logits > 0.
  const std::string text = "<loc0000><loc0000><loc0512><loc0512>" +
                           segs(std::vector<int>(codes.begin(), codes.begin() + 16)) + " circle";
  for (const std::string format : {"rle", "png"}) {
    const json j = parse_cli("segment", text,
                             "--width 128 --height 128 --vae " + kVae + " --mask-format " + format);
    ASSERT_EQ(j["objects"].size(), 1u);
    const json& o = j["objects"][0];
    EXPECT_FALSE(o.contains("error")) << o.dump();
    EXPECT_EQ(o["box"], json({{"x0", 0.0}, {"y0", 0.0}, {"x1", 64.0}, {"y1", 64.0}}));
    const json& m = o["mask"];
    ASSERT_EQ(m["width"], 64);
    ASSERT_EQ(m["height"], 64);
    EXPECT_EQ(m["x0"], 0);
    EXPECT_EQ(m["y0"], 0);
    std::vector<uint8_t> bits;
    if (format == "rle") {
      uint8_t v = 0;
      for (const json& run : m["rle"]) {
        bits.insert(bits.end(), run.get<size_t>(), v);
        v ^= 1;
      }
    } else {
      // base64 -> PNG -> grey levels 0 / 255
      static const std::string kB64 =
          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
      std::string png;
      uint32_t acc = 0;
      int nbits = 0;
      for (char c : m["png_base64"].get<std::string>()) {
        if (c == '=') break;
        acc = (acc << 6) | static_cast<uint32_t>(kB64.find(c));
        nbits += 6;
        if (nbits >= 8) {
          nbits -= 8;
          png += static_cast<char>((acc >> nbits) & 0xff);
        }
      }
      auto img = pg::image::decode_image(reinterpret_cast<const uint8_t*>(png.data()), png.size(),
                                         "mask.png");
      ASSERT_TRUE(img.ok()) << img.status().message();
      ASSERT_EQ(img->width, 64);
      for (size_t i = 0; i < 4096; ++i) bits.push_back(img->rgb[i * 3] > 127 ? 1 : 0);
    }
    ASSERT_EQ(bits.size(), 4096u);
    int64_t area = 0;
    for (size_t i = 0; i < 4096; ++i) {
      area += bits[i];
      if (std::fabs(logits[i]) > 1e-4) {
        EXPECT_EQ(bits[i], logits[i] > 0 ? 1 : 0) << format << " pixel " << i;
      }
    }
    EXPECT_EQ(m["area"], area);
  }
}

TEST(ParseCli, DrawOnTheImage) {
  TempDir tmp;
  const std::string out = tmp.file("boxes.png");
  // Box (x 24.25..72.75, y 15.25..45.75) on the 97x61 image.
  const json j = run_json("parse --task detect --image " + kImage + " --draw " + out +
                          " --text '<loc0256><loc0256><loc0768><loc0768> thing'");
  EXPECT_EQ(j["image"]["width"], 97);
  EXPECT_EQ(j["objects"][0]["box"]["x0"], 24.25);
  auto in = pg::image::load_image(kImage);
  auto drawn = pg::image::load_image(out);
  ASSERT_TRUE(in.ok() && drawn.ok());
  auto pixel = [](const pg::image::Image& im, int x, int y) {
    const uint8_t* p = &im.rgb[(static_cast<size_t>(y) * im.width + x) * 3];
    return std::vector<int>{p[0], p[1], p[2]};
  };
  EXPECT_NE(pixel(*in, 25, 40), pixel(*drawn, 25, 40));  // left border
  EXPECT_NE(pixel(*in, 50, 45), pixel(*drawn, 50, 45));  // bottom border
  EXPECT_EQ(pixel(*in, 90, 55), pixel(*drawn, 90, 55));  // far away
  EXPECT_EQ(pixel(*in, 3, 58), pixel(*drawn, 3, 58));
}

TEST(ParseCli, Errors) {
  CliRun bad_task = run_cli("parse --task caption --width 10 --height 10 --text x");
  EXPECT_EQ(bad_task.exit_code, 2);
  CliRun zero = run_cli("parse --task detect --width 0 --height 10 --text x");
  EXPECT_EQ(zero.exit_code, 2);
  CliRun no_size = run_cli("parse --task detect --text x");
  EXPECT_EQ(no_size.exit_code, 1);
  EXPECT_THAT(no_size.err, HasSubstr("--width and --height"));
  CliRun bad_vae =
      run_cli("parse --task segment --width 9 --height 9 --vae " + kPg1 + "/config.json --text x");
  EXPECT_EQ(bad_vae.exit_code, 1);
  EXPECT_THAT(bad_vae.err, HasSubstr(kPg1 + "/config.json: not a readable .npz"));
}

// --- decode-mask ---

TEST(DecodeMaskCli, MatchesTheGolden) {
  auto want = pg::io::SafetensorsFile::open(testdata("golden/tiny-vae/expected.safetensors"));
  ASSERT_TRUE(want.ok());
  std::vector<int32_t> codes(48);
  std::memcpy(codes.data(), want->tensors().at("codes").data, 48 * sizeof(int32_t));
  std::vector<float> logits(3 * 4096);
  std::memcpy(logits.data(), want->tensors().at("mask_logits").data, logits.size() * sizeof(float));
  TempDir tmp;
  for (int r = 0; r < 3; ++r) {
    std::string list;
    for (int i = 0; i < 16; ++i) {
      if (i > 0) list += ',';
      list += std::to_string(codes[r * 16 + i]);
    }
    CliRun run =
        run_cli("decode-mask --vae " + kVae + " --codes " + list + " --out " + tmp.file("m.npy"));
    ASSERT_EQ(run.exit_code, 0) << run.err;
    auto npy = pg::io::read_npy(tmp.file("m.npy"));
    ASSERT_TRUE(npy.ok()) << npy.status().message();
    ASSERT_EQ(npy->shape, (pg::Shape{64, 64}));
    EXPECT_TRUE(pg::testing::all_close(
        &logits[r * 4096], reinterpret_cast<const float*>(npy->data.data()), 4096, 1e-4));
  }
}

TEST(DecodeMaskCli, Errors) {
  TempDir tmp;
  const std::string out = " --out " + tmp.file("m.npy");
  CliRun fifteen =
      run_cli("decode-mask --vae " + kVae + " --codes 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15" + out);
  EXPECT_EQ(fifteen.exit_code, 1);
  EXPECT_THAT(fifteen.err, HasSubstr("--codes: expected 16 mask codes, got 15"));
  CliRun big = run_cli("decode-mask --vae " + kVae +
                       " --codes 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,128" + out);
  EXPECT_EQ(big.exit_code, 1);
  EXPECT_THAT(big.err,
              HasSubstr("mask code 128 (position 15) is outside the codebook of 128 entries"));
  CliRun word = run_cli("decode-mask --vae " + kVae + " --codes 1,2,x,4" + out);
  EXPECT_EQ(word.exit_code, 1);
  EXPECT_THAT(word.err, HasSubstr("--codes: 'x' (item 2) is not an integer"));
  CliRun missing = run_cli("decode-mask --vae /nonexistent/vae.npz --codes 1" + out);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("/nonexistent/vae.npz"));
  EXPECT_FALSE(missing.signaled);
}

// --- run-batch ---

TEST(BatchCli, BadRecordsBecomeErrorLinesAndTheBatchGoesOn) {
  TempDir tmp;
  std::filesystem::copy_file(kImage, tmp.file("a.png"));
  std::filesystem::copy_file(kPg1 + "/image2.png", tmp.file("b.png"));
  std::ofstream(tmp.file("tasks.jsonl"))
      << R"({"image": "a.png", "prompt": "caption en", "id": "first", "max_tokens": 12})"
      << "\n"
      << R"({"image": "missing.png", "prompt": "caption en"})"
      << "\n"
      << "\n"
      << "this is not json\n"
      << R"({"images": ["a.png", "b.png"], "prompt": "caption en", "max_tokens": 12})"
      << "\n"
      << R"({"image": "a.png"})"
      << "\n"
      << R"({"image": ")" << tmp.file("a.png")
      << R"(", "prompt": "detect square ; circle", "max_tokens": 3})"
      << "\n";
  CliRun r = run_cli("run-batch " + kModel + "--input " + tmp.file("tasks.jsonl") + " --output " +
                     tmp.file("results.jsonl") + " --progress");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("records/s"));
  EXPECT_THAT(r.err, HasSubstr("ETA"));
  EXPECT_THAT(r.err, HasSubstr("6 records, 3 errors"));

  std::ifstream in(tmp.file("results.jsonl"));
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  ASSERT_EQ(lines.size(), 6u);
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(lines[i]["index"], i);
  EXPECT_EQ(lines[0]["id"], "first");
  EXPECT_EQ(lines[0]["text"], golden_prompt(0)["generated_text"]);
  EXPECT_EQ(lines[0]["ids"], golden_prompt(0)["generated_ids"]);
  EXPECT_THAT(lines[1]["error"].get<std::string>(), HasSubstr("missing.png"));
  EXPECT_EQ(lines[2]["line"], 4);
  EXPECT_EQ(lines[2]["error"], "line 4 is not valid JSON");
  EXPECT_EQ(lines[3]["ids"], golden()["multi_image"]["generated_ids"]);
  EXPECT_EQ(lines[4]["error"], "the record has no \"prompt\" string");
  EXPECT_EQ(lines[5]["ids"].size(), 3u);
  EXPECT_TRUE(lines[5]["objects"].is_array());
}

TEST(BatchCli, Errors) {
  TempDir tmp;
  CliRun missing = run_cli("run-batch " + kModel + "--input /nonexistent/t.jsonl --output " +
                           tmp.file("o.jsonl"));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("/nonexistent/t.jsonl: cannot open the batch input"));
  std::ofstream(tmp.file("t.jsonl")) << "{}\n";
  CliRun no_progress = run_cli("run-batch " + kModel + "--input " + tmp.file("t.jsonl") +
                               " --output " + tmp.file("o.jsonl"));
  EXPECT_EQ(no_progress.exit_code, 0) << no_progress.err;
  EXPECT_THAT(no_progress.err, ::testing::Not(HasSubstr("ETA")));  // stderr is not a terminal
  EXPECT_THAT(slurp(tmp.file("o.jsonl")), HasSubstr("has no \\\"image\\\""));
}

}  // namespace

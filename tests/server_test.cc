// The HTTP server (apps/server) over real sockets on loopback: the OpenAI-compatible chat
// completions against `generate --greedy`, streaming, every error case with its status and
// JSON body, the queue (503 + Retry-After), timeouts, client disconnects, API keys, the
// metrics and the web page; plus the real `paligemma serve` binary.
#include "server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "media.h"
#include "openai.h"
#include "test_util.h"

namespace {

using nlohmann::json;
using pg::testing::testdata;
using ::testing::HasSubstr;

const std::string kPg1 = testdata("golden/tiny-pg1");

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::string data_url(const std::string& path) {
  return "data:image/png;base64," + pgserve::base64_encode(slurp(path));
}

// The tiny model, loaded once for the whole file.
std::shared_ptr<const paligemma::Model> tiny_model() {
  static std::shared_ptr<const paligemma::Model> model = [] {
    auto m = paligemma::Model::load(kPg1);
    EXPECT_TRUE(m.ok()) << m.status().message();
    return std::make_shared<const paligemma::Model>(std::move(*m));
  }();
  return model;
}

// A server on a free loopback port, serving from a thread; stopped on destruction.
class TestServer {
 public:
  explicit TestServer(pgserve::ServerOptions o = {}, bool with_model = true) {
    o.host = "127.0.0.1";
    o.port = 0;
    // One thread per generation: the machine's cores are shared with whatever else runs.
    if (o.compute_threads == 0) o.compute_threads = 1;
    o.log_requests = false;
    server_ = std::make_unique<pgserve::Server>(o);
    std::string error;
    EXPECT_TRUE(server_->bind(&error)) << error;
    thread_ = std::thread([this] { server_->run(); });
    if (with_model) server_->set_model(tiny_model());
    // Wait until the listener answers.
    httplib::Client c = client();
    for (int i = 0; i < 200 && !c.Get("/health"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~TestServer() {
    server_->stop();
    thread_.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(60);
    return c;
  }
  pgserve::Server& server() { return *server_; }

 private:
  std::unique_ptr<pgserve::Server> server_;
  std::thread thread_;
};

// A chat completion request body: the prompt and images as OpenAI clients send them.
json chat_body(const std::string& prompt, const std::vector<std::string>& images,
               json extra = json::object()) {
  if (extra.is_null()) extra = json::object();
  json content = json::array({{{"type", "text"}, {"text", prompt}}});
  for (const std::string& img : images) {
    content.push_back({{"type", "image_url"}, {"image_url", {{"url", data_url(img)}}}});
  }
  json body = {{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", content}}}}};
  body.update(extra);
  return body;
}

httplib::Result post(httplib::Client& c, const std::string& path, const json& body,
                     const httplib::Headers& headers = {}) {
  return c.Post(path.c_str(), headers, body.dump(), "application/json");
}

// `paligemma generate ... --json` as the reference.
json cli_generate(const std::string& args) {
  pg::testing::TempDir tmp;
  const std::string cmd = std::string(PG_CLI_PATH) + " generate --model " + kPg1 + " " + args +
                          " --json >" + tmp.file("out") + " 2>/dev/null";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return json::parse(slurp(tmp.file("out")));
}

// Joins the content deltas of an SSE chat stream; checks the framing on the way.
std::string stream_text(const std::string& body, std::string* finish = nullptr) {
  std::string text;
  size_t pos = 0;
  bool done = false;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    const std::string data = body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      done = true;
      break;
    }
    const json j = json::parse(data);
    EXPECT_EQ(j["object"], "chat.completion.chunk");
    if (j["choices"].empty()) continue;  // the usage chunk
    const json& choice = j["choices"][0];
    if (choice["delta"].contains("content")) text += choice["delta"]["content"].get<std::string>();
    if (finish && !choice["finish_reason"].is_null()) *finish = choice["finish_reason"];
  }
  EXPECT_TRUE(done) << "no data: [DONE] in " << body;
  return text;
}

// Asserts an OpenAI-shaped error body with the given code.
void expect_error(const httplib::Result& r, int status, const std::string& code) {
  ASSERT_TRUE(r) << "no response";
  EXPECT_EQ(r->status, status) << r->body;
  const json j = json::parse(r->body, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r->body;
  ASSERT_TRUE(j.contains("error")) << r->body;
  EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
  EXPECT_TRUE(j["error"]["type"].is_string());
  if (!code.empty()) {
    EXPECT_EQ(j["error"]["code"], code) << r->body;
  }
  EXPECT_THAT(r->get_header_value("Content-Type"), HasSubstr("application/json"));
}

std::string metric(httplib::Client& c, const std::string& name) {
  auto r = c.Get("/metrics");
  if (!r) return "";
  const size_t p = r->body.find("\n" + name + " ");
  if (p == std::string::npos) return "";
  return r->body.substr(p + name.size() + 2, r->body.find('\n', p + 1) - p - name.size() - 2);
}

// --- completions against generate --------------------------------------------------------

TEST(Server, GreedyCompletionMatchesGenerate) {
  const json want = cli_generate("--image " + kPg1 +
                                 "/image.png --prompt \"caption en\" --max-tokens 12 --greedy");
  TestServer s;
  auto c = s.client();
  for (json extra : {json{{"max_tokens", 12}}, json{{"max_tokens", 12}, {"temperature", 0}}}) {
    auto r = post(c, "/v1/chat/completions", chat_body("caption en", {kPg1 + "/image.png"}, extra));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json j = json::parse(r->body);
    EXPECT_EQ(j["object"], "chat.completion");
    EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
    EXPECT_EQ(j["choices"][0]["message"]["content"], want["text"]);
    EXPECT_EQ(j["usage"]["completion_tokens"], want["ids"].size());
    EXPECT_EQ(j["usage"]["prompt_tokens"], want["prompt_tokens"]);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_THAT(j["id"].get<std::string>(), HasSubstr("chatcmpl-"));
  }
}

TEST(Server, StreamedCompletionMatchesGenerate) {
  const json want = cli_generate("--image " + kPg1 +
                                 "/image.png --prompt \"caption en\" --max-tokens 12 --greedy");
  TestServer s;
  auto c = s.client();
  auto r = post(
      c, "/v1/chat/completions",
      chat_body(
          "caption en", {kPg1 + "/image.png"},
          {{"max_tokens", 12}, {"stream", true}, {"stream_options", {{"include_usage", true}}}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_THAT(r->get_header_value("Content-Type"), HasSubstr("text/event-stream"));
  std::string finish;
  EXPECT_EQ(stream_text(r->body, &finish), want["text"]);
  EXPECT_EQ(finish, "length");
  EXPECT_THAT(r->body, HasSubstr("\"role\":\"assistant\""));
  EXPECT_THAT(r->body, HasSubstr("\"usage\":{\"completion_tokens\":12"));
}

TEST(Server, SamplingAndTwoImagesMatchGenerate) {
  TestServer s;
  auto c = s.client();
  const json sampled = cli_generate("--image " + kPg1 +
                                    "/image.png --prompt \"caption en\" --max-tokens 8 "
                                    "--temperature 1.3 --top-k 40 --top-p 0.9 --seed 9");
  auto r = post(
      c, "/v1/chat/completions",
      chat_body(
          "caption en", {kPg1 + "/image.png"},
          {{"max_tokens", 8}, {"temperature", 1.3}, {"top_k", 40}, {"top_p", 0.9}, {"seed", 9}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["choices"][0]["message"]["content"], sampled["text"]);

  const json two = cli_generate("--image " + kPg1 + "/image.png --image " + kPg1 +
                                "/image2.png --prompt \"caption en\" --max-tokens 6 --greedy");
  r = post(
      c, "/v1/chat/completions",
      chat_body("caption en", {kPg1 + "/image.png", kPg1 + "/image2.png"}, {{"max_tokens", 6}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["choices"][0]["message"]["content"], two["text"]);
  EXPECT_EQ(json::parse(r->body)["usage"]["prompt_tokens"], two["prompt_tokens"]);
}

TEST(Server, StopSequencesCutTheText) {
  TestServer s;
  auto c = s.client();
  // The tiny model answers "((((((((((((": stop at the third "(".
  const json extra = {{"max_tokens", 12}, {"stop", json::array({"xyz", "((("})}};
  auto r = post(c, "/v1/chat/completions", chat_body("caption en", {kPg1 + "/image.png"}, extra));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["message"]["content"], "");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  json streamed = extra;
  streamed["stream"] = true;
  streamed["stop"] = "((((((((((";  // ten: the first two pieces may show, never part of the stop
  r = post(c, "/v1/chat/completions", chat_body("caption en", {kPg1 + "/image.png"}, streamed));
  ASSERT_TRUE(r);
  std::string finish;
  EXPECT_EQ(stream_text(r->body, &finish), "");
  EXPECT_EQ(finish, "stop");
}

TEST(Server, ModelsHealthAndMetrics) {
  TestServer s;
  auto c = s.client();
  auto r = c.Get("/v1/models");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["data"][0]["id"], "paligemma");
  EXPECT_EQ(c.Get("/v1/models/paligemma")->status, 200);
  expect_error(c.Get("/v1/models/other"), 404, "model_not_found");
  r = c.Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["status"], "ok");
  ASSERT_EQ(post(c, "/v1/chat/completions", chat_body("caption en", {kPg1 + "/image.png"}))->status,
            200);
  post(c, "/v1/chat/completions", json{{"messages", 1}});
  // The logger counts a request after its last byte went out, on whichever pool thread
  // served it: wait (up to 2 s) until every expected line is there, then check them all.
  const std::vector<std::string> lines = {
      "pg_http_requests_total{route=\"/v1/chat/completions\",code=\"200\"} 1",
      "pg_http_requests_total{route=\"/v1/chat/completions\",code=\"400\"} 1",
      "pg_http_errors_total{code=\"400\"} 1",
      "pg_queue_depth 0",
      "pg_model_ready 1",
      "pg_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1",
      "pg_time_to_first_token_seconds_count 1",
      "pg_completion_tokens_total 32",
      "# TYPE pg_decode_tokens_per_second gauge",
      "pg_request_duration_seconds_count"};
  for (int i = 0; i < 200; ++i) {
    r = c.Get("/metrics");
    ASSERT_TRUE(r);
    bool all = true;
    for (const std::string& line : lines) all = all && r->body.find(line) != std::string::npos;
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_THAT(r->get_header_value("Content-Type"), HasSubstr("text/plain"));
  for (const std::string& line : lines) {
    EXPECT_THAT(r->body, HasSubstr(line));
  }
}

TEST(Server, HealthIsNotReadyUntilTheModelIsLoaded) {
  TestServer s({}, /*with_model=*/false);
  auto c = s.client();
  auto r = c.Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_TRUE(r->has_header("Retry-After"));
  expect_error(post(c, "/v1/chat/completions", chat_body("caption en", {kPg1 + "/image.png"})), 503,
               "model_loading");
  s.server().set_model(tiny_model());
  EXPECT_EQ(c.Get("/health")->status, 200);
}

// --- bad input -------------------------------------------------------------------------

TEST(Server, BadRequestsGetJsonErrors) {
  TestServer s;
  auto c = s.client();
  const std::string png = kPg1 + "/image.png";
  expect_error(c.Post("/v1/chat/completions", "this is not json", "application/json"), 400,
               "invalid_json");
  expect_error(c.Post("/v1/chat/completions", "[1,2]", "application/json"), 400, "invalid_json");
  expect_error(c.Post("/v1/chat/completions", std::string(100000, '['), "application/json"), 400,
               "invalid_json");
  expect_error(post(c, "/v1/chat/completions", json{{"model", "x"}}), 400, "missing_messages");
  expect_error(
      post(c, "/v1/chat/completions", chat_body("caption en", {png}, {{"max_tokens", 100000}})),
      400, "max_tokens_too_large");
  expect_error(post(c, "/v1/chat/completions", chat_body("caption en", {png}, {{"max_tokens", 0}})),
               400, "out_of_range");
  expect_error(
      post(c, "/v1/chat/completions", chat_body("caption en", {png}, {{"temperature", "hot"}})),
      400, "invalid_type");
  expect_error(post(c, "/v1/chat/completions", chat_body("caption en", {png}, {{"n", 2}})), 400,
               "out_of_range");
  expect_error(post(c, "/v1/chat/completions", chat_body(std::string(5000, 'a'), {png})), 400,
               "prompt_too_long");
  expect_error(post(c, "/v1/chat/completions", chat_body("   ", {png})), 400, "empty_prompt");

  json remote = chat_body("caption en", {});
  remote["messages"][0]["content"].push_back(
      {{"type", "image_url"}, {"image_url", {{"url", "http://127.0.0.1/x.png"}}}});
  expect_error(post(c, "/v1/chat/completions", remote), 400, "unsupported_image_url");
  json not_image = chat_body("caption en", {});
  not_image["messages"][0]["content"].push_back(
      {{"type", "image_url"},
       {"image_url", {{"url", "data:image/png;base64," + pgserve::base64_encode("hello")}}}});
  expect_error(post(c, "/v1/chat/completions", not_image), 400, "invalid_image");
  json bad_b64 = chat_body("caption en", {});
  bad_b64["messages"][0]["content"].push_back(
      {{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64,@@@"}}}});
  expect_error(post(c, "/v1/chat/completions", bad_b64), 400, "invalid_image");

  // A truncated PNG passes the header check and fails in the decoder: still a 400.
  json truncated = chat_body("caption en", {});
  const std::string bytes = slurp(png).substr(0, 60);
  truncated["messages"][0]["content"].push_back(
      {{"type", "image_url"},
       {"image_url", {{"url", "data:image/png;base64," + pgserve::base64_encode(bytes)}}}});
  expect_error(post(c, "/v1/chat/completions", truncated), 400, "invalid_input");

  expect_error(c.Get("/no/such/route"), 404, "not_found");
  expect_error(c.Delete("/v1/chat/completions"), 404, "not_found");
}

// A PNG or JPEG header that claims a huge image, with no pixel data behind it.
std::string bomb_png(uint32_t w, uint32_t h) {
  std::string s("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
  for (uint32_t v : {w, h}) {
    for (int shift = 24; shift >= 0; shift -= 8)
      s.push_back(static_cast<char>((v >> shift) & 0xFF));
  }
  s += std::string("\x08\x02\0\0\0\0\0\0\0", 9);
  return s;
}
std::string bomb_jpeg(uint16_t w, uint16_t h) {
  std::string s("\xFF\xD8\xFF\xC0\x00\x11\x08", 7);
  s += {static_cast<char>(h >> 8), static_cast<char>(h & 0xFF), static_cast<char>(w >> 8),
        static_cast<char>(w & 0xFF)};
  s += std::string(12, '\0');
  return s;
}

TEST(Server, DecompressionBombsAreRefusedFromTheHeader) {
  TestServer s;
  auto c = s.client();
  for (const std::string& bytes : {bomb_png(40000, 40000), bomb_jpeg(65000, 65000)}) {
    json body = chat_body("caption en", {});
    body["messages"][0]["content"].push_back(
        {{"type", "image_url"},
         {"image_url", {{"url", "data:image/png;base64," + pgserve::base64_encode(bytes)}}}});
    auto r = post(c, "/v1/chat/completions", body);
    expect_error(r, 400, "image_too_large");
    EXPECT_THAT(r->body, HasSubstr("pixels"));
  }
}

TEST(Server, PromptBeyondTheContextIsRefused) {
  pgserve::ServerOptions o;
  o.limits.max_prompt_chars = 1 << 20;
  TestServer s(o);
  auto c = s.client();
  std::string prompt;
  for (int i = 0; i < 12000; ++i) prompt += "x7 ";
  auto r = post(c, "/v1/chat/completions", chat_body(prompt, {kPg1 + "/image.png"}));
  expect_error(r, 400, "prompt_too_long");
  EXPECT_THAT(r->body, HasSubstr("context"));
}

TEST(Server, BodyLargerThanTheLimitGets413) {
  pgserve::ServerOptions o;
  o.max_body_bytes = 64 << 10;
  TestServer s(o);
  auto c = s.client();
  json body = chat_body("caption en", {kPg1 + "/image.png"});
  body["padding"] = std::string(200 << 10, 'x');
  expect_error(post(c, "/v1/chat/completions", body), 413, "payload_too_large");
  // curl -d sends url-encoded bodies, which cpp-httplib caps at 8192 bytes: the message says so.
  auto r = c.Post("/v1/chat/completions",
                  chat_body("caption en", {kPg1 + "/image.png"}).dump() + std::string(10000, ' '),
                  "application/x-www-form-urlencoded");
  expect_error(r, 413, "payload_too_large");
  EXPECT_THAT(r->body, HasSubstr("application/json"));
  // The server is still there and serves the next request.
  EXPECT_EQ(post(c, "/v1/chat/completions", chat_body("caption en", {kPg1 + "/image.png"}))->status,
            200);
}

TEST(Server, ApiKeyIsRequiredOnTheApi) {
  pgserve::ServerOptions o;
  o.api_key = "sekret-123";
  TestServer s(o);
  auto c = s.client();
  const json body = chat_body("caption en", {kPg1 + "/image.png"});
  auto r = post(c, "/v1/chat/completions", body);
  expect_error(r, 401, "invalid_api_key");
  EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
  expect_error(post(c, "/v1/chat/completions", body, {{"Authorization", "Bearer wrong"}}), 401,
               "invalid_api_key");
  expect_error(c.Get("/v1/models"), 401, "invalid_api_key");
  EXPECT_EQ(post(c, "/v1/chat/completions", body, {{"Authorization", "Bearer sekret-123"}})->status,
            200);
  EXPECT_EQ(c.Get("/health")->status, 200);  // probes need no key
}

// --- load, timeouts, disconnects ---------------------------------------------------------

TEST(Server, FullQueueGets503WithRetryAfter) {
  pgserve::ServerOptions o;
  o.threads = 1;
  o.max_queue = 1;
  o.retry_after_s = 3;
  o.limits.max_tokens = 1000;
  TestServer s(o);
  // Long generations (the tiny model never says EOS), sent together: 1 runs, 1 waits.
  const json body = chat_body("caption en", {kPg1 + "/image.png"}, {{"max_tokens", 1000}});
  std::vector<std::future<std::pair<int, std::string>>> replies;
  std::vector<std::string> retry_after(8);
  for (int i = 0; i < 8; ++i) {
    replies.push_back(std::async(std::launch::async, [&, i] {
      auto c = s.client();
      auto r = post(c, "/v1/chat/completions", body);
      if (!r) return std::make_pair(-1, std::string());
      retry_after[i] = r->get_header_value("Retry-After");
      return std::make_pair(r->status, r->body);
    }));
  }
  int ok = 0, busy = 0;
  for (int i = 0; i < 8; ++i) {
    auto [status, text] = replies[i].get();
    if (status == 200) ++ok;
    if (status == 503) {
      ++busy;
      EXPECT_EQ(retry_after[i], "3");
      EXPECT_EQ(json::parse(text)["error"]["code"], "queue_full");
    }
    EXPECT_TRUE(status == 200 || status == 503) << status << " " << text;
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1);
  // (Counted once the 503's last byte went out: allow the pool thread up to 2 s.)
  auto c = s.client();
  std::string metrics;
  for (int i = 0;
       i < 200 && metrics.find("pg_http_errors_total{code=\"503\"}") == std::string::npos; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto r = c.Get("/metrics");
    ASSERT_TRUE(r);
    metrics = r->body;
  }
  EXPECT_THAT(metrics, HasSubstr("pg_http_errors_total{code=\"503\"}"));
}

TEST(Server, RequestsPastTheTimeoutGet504) {
  pgserve::ServerOptions o;
  o.timeout_s = 0.05;
  o.limits.max_tokens = 2000;
  TestServer s(o);
  auto c = s.client();
  const json body = chat_body("caption en", {kPg1 + "/image.png"}, {{"max_tokens", 2000}});
  expect_error(post(c, "/v1/chat/completions", body), 504, "timeout");
  json streamed = body;
  streamed["stream"] = true;
  auto r = post(c, "/v1/chat/completions", streamed);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);  // the headers went out before the time ran out
  // "timeout", or "queue_timeout" while the worker still finishes the token it was on for
  // the previous (cancelled) request.
  EXPECT_THAT(r->body, ::testing::ContainsRegex("\"code\":\"(queue_)?timeout\""));
  EXPECT_THAT(r->body, HasSubstr("data: [DONE]"));
}

TEST(Server, ClientDisconnectStopsTheGeneration) {
  pgserve::ServerOptions o;
  o.limits.max_tokens = 2000;  // long enough (a second or two) to hang up in the middle
  TestServer s(o);
  auto c = s.client();
  const json body =
      chat_body("caption en", {kPg1 + "/image.png"}, {{"max_tokens", 2000}, {"stream", true}});
  int chunks = 0;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char*, size_t, uint64_t, uint64_t) {
    return ++chunks < 2;
  };  // then hang up
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  c.send(req, res, err);
  EXPECT_GE(chunks, 2);
  // The generation notices at its next token and stops: counted as cancelled, not finished.
  std::string cancelled;
  for (int i = 0; i < 100 && cancelled.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    cancelled = metric(c, "pg_generations_cancelled_total{reason=\"disconnect\"}");
  }
  EXPECT_EQ(cancelled, "1");
  std::string active;
  for (int i = 0; i < 100 && active != "0"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    active = metric(c, "pg_active_generations");
  }
  EXPECT_EQ(active, "0");
}

TEST(Server, ConcurrentGenerationsAgree) {
  // generate() is const and may run on several threads at once, each with its own KV cache.
  auto model = tiny_model();
  const std::string png = slurp(kPg1 + "/image.png");
  paligemma::GenerateOptions opt;
  opt.max_tokens = 12;
  auto want = model->generate_from_bytes({png}, "caption en", opt);
  ASSERT_TRUE(want.ok());
  std::vector<std::thread> threads;
  std::atomic<int> same{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        auto got = model->generate_from_bytes({png}, "caption en", opt);
        if (got.ok() && got->ids == want->ids) ++same;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(same.load(), 30);

  // The same through the server with 4 workers.
  pgserve::ServerOptions o;
  o.threads = 4;
  TestServer s(o);
  std::vector<std::future<std::string>> texts;
  for (int i = 0; i < 12; ++i) {
    texts.push_back(std::async(std::launch::async, [&] {
      auto c = s.client();
      auto r = post(c, "/v1/chat/completions",
                    chat_body("caption en", {kPg1 + "/image.png"}, {{"max_tokens", 12}}));
      return r && r->status == 200
                 ? json::parse(r->body)["choices"][0]["message"]["content"].get<std::string>()
                 : std::string("failed");
    }));
  }
  for (auto& f : texts) EXPECT_EQ(f.get(), want->text);
}

// --- web page and tasks ------------------------------------------------------------------

TEST(Server, ServesTheWebPage) {
  TestServer s;
  auto c = s.client();
  auto r = c.Get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_THAT(r->get_header_value("Content-Type"), HasSubstr("text/html"));
  EXPECT_THAT(r->body, HasSubstr("<script src=\"/app.js\"></script>"));
  EXPECT_THAT(r->get_header_value("Content-Security-Policy"), HasSubstr("default-src 'self'"));
  r = c.Get("/app.js");
  ASSERT_TRUE(r);
  EXPECT_THAT(r->get_header_value("Content-Type"), HasSubstr("javascript"));
  EXPECT_THAT(r->body, HasSubstr("drawObjects"));
  EXPECT_EQ(c.Get("/style.css")->status, 200);
  // Nothing from another origin.
  EXPECT_THAT(c.Get("/")->body, ::testing::Not(HasSubstr("http")));
}

TEST(Server, TaskEndpoints) {
  TestServer s;
  auto c = s.client();
  const std::string png = slurp(kPg1 + "/image.png");
  const std::string b64 = pgserve::base64_encode(png);
  paligemma::GenerateOptions opt;
  opt.max_tokens = 8;
  auto want = tiny_model()->generate_from_bytes({png}, "caption en", opt);
  ASSERT_TRUE(want.ok());

  auto r = post(c, "/v1/caption", json{{"image", b64}, {"max_tokens", 8}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["text"], want->text);

  // The same as a multipart upload.
  httplib::MultipartFormDataItems form = {{"image", png, "image.png", "image/png"},
                                          {"max_tokens", "8", "", ""}};
  r = c.Post("/v1/caption", form);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["text"], want->text);

  for (const char* path : {"/v1/detect", "/v1/segment"}) {
    r = post(c, path,
             json{{"image", "data:image/png;base64," + b64},
                  {"objects", {"cat", "dog"}},
                  {"max_tokens", 8}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json j = json::parse(r->body);
    EXPECT_TRUE(j.contains("text"));
    EXPECT_TRUE(j["objects"].is_array()) << r->body;
  }
  r = post(
      c, "/v1/ask",
      json{{"image", b64}, {"question", "what is this?"}, {"max_tokens", 4}, {"stream", true}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_THAT(r->body, HasSubstr("data: {\"result\":"));
  EXPECT_THAT(r->body, HasSubstr("data: [DONE]"));

  expect_error(post(c, "/v1/caption", json{{"max_tokens", 8}}), 400, "missing_image");
  expect_error(post(c, "/v1/ask", json{{"image", b64}}), 400, "missing_question");
  expect_error(post(c, "/v1/detect", json{{"image", b64}, {"objects", " ; "}}), 400,
               "missing_objects");
  expect_error(
      post(c, "/v1/detect",
           json{{"image", pgserve::base64_encode(bomb_png(50000, 50000))}, {"objects", "a"}}),
      400, "image_too_large");
  expect_error(c.Post("/v1/caption", "{", "application/json"), 400, "invalid_json");
}

// --- the real binary ---------------------------------------------------------------------

TEST(ServeCommand, StartsAnswersAndStopsOnSigterm) {
  pg::testing::TempDir tmp;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string err = tmp.file("err");
    freopen(err.c_str(), "w", stderr);
    execl(PG_CLI_PATH, PG_CLI_PATH, "serve", "--model", kPg1.c_str(), "--port", "0", "--threads",
          "2", static_cast<char*>(nullptr));
    _exit(127);
  }
  int port = 0;
  for (int i = 0; i < 300 && port == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const std::string log = slurp(tmp.file("err"));
    const size_t p = log.find("\"port\":");
    if (p != std::string::npos && log.find('\n', p) != std::string::npos)
      port = std::atoi(log.c_str() + p + 7);
  }
  ASSERT_GT(port, 0) << slurp(tmp.file("err"));
  httplib::Client c("127.0.0.1", port);
  int health = 0;
  for (int i = 0; i < 300 && health != 200; ++i) {
    auto r = c.Get("/health");
    health = r ? r->status : 0;
    if (health != 200) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(health, 200);
  auto r = post(c, "/v1/chat/completions",
                chat_body("caption en", {kPg1 + "/image.png"}, {{"max_tokens", 12}}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  expect_error(c.Post("/v1/chat/completions", "not json", "application/json"), 400, "invalid_json");
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status)) << "ended by a signal";
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const std::string log = slurp(tmp.file("err"));
  // One JSON log line per request.
  int request_lines = 0;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    const json j = json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("msg", "") == "request") ++request_lines;
  }
  EXPECT_GE(request_lines, 3) << log;
}

TEST(ServeCommand, BadFlagsAndBusyPortFail) {
  EXPECT_EQ(WEXITSTATUS(std::system((std::string(PG_CLI_PATH) + " serve >/dev/null 2>&1").c_str())),
            2);
  EXPECT_EQ(WEXITSTATUS(std::system((std::string(PG_CLI_PATH) + " serve --model " + kPg1 +
                                     " --port 99999 >/dev/null 2>&1")
                                        .c_str())),
            2);
  TestServer s;
  const std::string cmd = std::string(PG_CLI_PATH) + " serve --model " + kPg1 + " --port " +
                          std::to_string(s.server().port()) + " >/dev/null 2>&1";
  EXPECT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 1);
  EXPECT_EQ(WEXITSTATUS(std::system(
                (std::string(PG_CLI_PATH) + " serve --model /nonexistent --port 0 >/dev/null 2>&1")
                    .c_str())),
            1);
}

// --- the pure parts ----------------------------------------------------------------------

TEST(Protocol, Base64AndDataUrls) {
  EXPECT_EQ(pgserve::base64_encode("hello!?"), "aGVsbG8hPw==");
  EXPECT_EQ(*pgserve::base64_decode("aGVsbG8hPw=="), "hello!?");
  EXPECT_EQ(*pgserve::base64_decode("aGVs\nbG8hPw"), "hello!?");
  EXPECT_FALSE(pgserve::base64_decode("a"));
  EXPECT_FALSE(pgserve::base64_decode("aGVs*"));
  EXPECT_FALSE(pgserve::base64_decode("aG==Vs"));
  auto d = pgserve::parse_data_url("DATA:Image/PNG;name=x;base64,QUJD");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->mime, "image/png");
  EXPECT_EQ(d->payload, "QUJD");
  EXPECT_FALSE(pgserve::parse_data_url("data:image/png,QUJD"));
  EXPECT_FALSE(pgserve::parse_data_url("https://example.com/x.png"));
}

TEST(Protocol, ImageHeaders) {
  auto h = pgserve::probe_image(slurp(kPg1 + "/image.png"));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->format, "png");
  EXPECT_EQ(h->width, 97);
  EXPECT_EQ(h->height, 61);
  h = pgserve::probe_image(slurp(kPg1 + "/image.jpg"));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->format, "jpeg");
  EXPECT_EQ(h->width, 97);
  EXPECT_EQ(h->height, 61);
  h = pgserve::probe_image(bomb_jpeg(1000, 2000));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->width, 1000);
  EXPECT_EQ(h->height, 2000);
  EXPECT_FALSE(pgserve::probe_image("GIF89a"));
  EXPECT_FALSE(pgserve::probe_image(std::string("\xFF\xD8\xFF\xE0\x00\x10", 6)));
}

TEST(Protocol, StopMatcherHoldsBackPartialMatches) {
  pgserve::StopMatcher m({"END", "##"});
  EXPECT_EQ(m.push("hello E"), "hello ");
  EXPECT_EQ(m.push("N"), "");
  EXPECT_EQ(m.push("x #"), "ENx ");
  EXPECT_EQ(m.push("#tail"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.finish(), "");
  pgserve::StopMatcher n({"zz"});
  EXPECT_EQ(n.push("abz"), "ab");
  EXPECT_EQ(n.finish(), "z");
}

TEST(Protocol, SamplingFollowsTheCli) {
  pgserve::Limits l;
  auto parse = [&](json extra) {
    auto p = pgserve::parse_chat_request(chat_body("caption en", {}, extra).dump(), l);
    return std::get<pgserve::ChatRequest>(p).sampling;
  };
  EXPECT_TRUE(parse({}).greedy);
  EXPECT_EQ(parse({}).max_tokens, 32);
  EXPECT_TRUE(parse({{"temperature", 0}}).greedy);
  EXPECT_FALSE(parse({{"temperature", 0.7}}).greedy);
  EXPECT_FALSE(parse({{"seed", 3}}).greedy);
  EXPECT_EQ(parse({{"max_completion_tokens", 7}}).max_tokens, 7);
  EXPECT_EQ(parse({{"max_tokens", 9.0}}).max_tokens, 9);
}

}  // namespace

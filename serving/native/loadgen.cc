// tfrec-native-load: a closed-loop gRPC load generator (bench/serving_grpc.py --load-generator
// native). N client threads each send unary calls back to back for --seconds, after one
// warm-up call per client (connection + first answer, as the bench's Python clients do).
// The requests are pre-serialised bytes (tfrec.serving.native.write_requests: each preceded by
// its length, 4 bytes little-endian); client i starts at request i * count / N and goes round
// them in turn. With --invalid F and --invalid-requests FILE (each record preceded by the status
// code it must be refused with, 4 bytes little-endian), a fraction F of each client's calls are
// bad ones, spread evenly (call n is bad when floor((n + 1) F) > floor(n F)), going round the
// bad list the same way. --calls N: each client makes N calls instead of calling for --seconds.
// Calls go through grpc++'s generic stub (raw bytes, no protobuf), each thread waiting on its
// own completion queue. Prints one JSON line: calls answered in the window, bad ones among them,
// those refused with their code, failures (a good call not OK, a bad one answered OK or with
// another code), QPS and p50/p95/p99 latency of the OK good ones, and this process's CPU
// seconds over the window.

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

using Clock = std::chrono::steady_clock;

[[noreturn]] static void Die(const std::string& message) {
  fprintf(stderr, "tfrec-native-load: %s\n", message.c_str());
  exit(2);
}

struct Request {
  grpc::ByteBuffer bytes;
  int code = 0;  // a bad request's expected status code
};

// The requests of `path`; `coded`: each record starts with its expected status code.
static std::vector<Request> ReadRequests(const std::string& path, bool coded) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Die("cannot read " + path);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<Request> requests;
  size_t header = coded ? 8 : 4, at = 0;
  while (data.size() - at >= header) {
    uint32_t code = 0, size;
    if (coded) memcpy(&code, data.data() + at, 4);
    memcpy(&size, data.data() + at + header - 4, 4);
    at += header;
    if (size > data.size() - at) break;
    grpc::Slice slice(data.data() + at, size);
    requests.push_back({grpc::ByteBuffer(&slice, 1), static_cast<int>(code)});
    at += size;
  }
  if (at != data.size() || requests.empty())
    Die(path + " is not a list of " + (coded ? "code- and " : "") + "length-prefixed requests");
  return requests;
}

static double ProcessCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

struct Client {
  std::unique_ptr<grpc::GenericStub> stub;
  grpc::CompletionQueue queue;
  // Filled by Run: calls answered in the window, bad ones among them and those refused with
  // their code, failures, the OK good ones' latencies, the first failure.
  int64_t requests = 0, invalid = 0, refused = 0, failures = 0;
  std::vector<double> ok_ms;
  std::string first_failure;

  void Fail(const std::string& what) {
    if (failures++ == 0) first_failure = what;
  }

  // One blocking call: sends `request`, waits for its status on this client's queue.
  grpc::Status Call(const std::string& method, const grpc::ByteBuffer& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::ByteBuffer response;
    grpc::Status status;
    auto call = stub->PrepareUnaryCall(&context, method, request, &queue);
    call->StartCall();
    call->Finish(&response, &status, this);
    void* tag;
    bool ok;
    if (!queue.Next(&tag, &ok) || tag != this) Die("completion queue shut down");
    return status;
  }

  // Calls until `end` (or `calls` of them), good ones from good[first_good] on, a fraction
  // `ppm` / 1e6 of bad ones from bad[first_bad] on.
  void Run(const std::string& method, const std::vector<Request>& good, size_t first_good,
           const std::vector<Request>& bad, size_t first_bad, int64_t ppm, int64_t calls,
           Clock::time_point end) {
    for (int64_t n = 0; !calls || n < calls; ++n) {
      Clock::time_point start = Clock::now();
      if (!calls && start >= end) break;
      bool is_bad = (n + 1) * ppm / 1000000 > n * ppm / 1000000;
      const Request& request = is_bad ? bad[(first_bad + invalid) % bad.size()]
                                      : good[(first_good + n - invalid) % good.size()];
      grpc::Status status = Call(method, request.bytes);
      ++requests;
      std::string answer = status.ok() ? "OK" : std::to_string(status.error_code()) + ": " +
                                                    status.error_message();
      if (is_bad) {
        ++invalid;
        if (status.error_code() == request.code) ++refused;
        else Fail("bad request answered " + answer + " (expected " +
                  std::to_string(request.code) + ")");
      } else if (status.ok()) {
        ok_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      } else {
        Fail(answer);
      }
    }
  }
};

static std::string JsonString(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20) out += ' ';
    else out += c;
  }
  return out + "\"";
}

static void Usage() {
  fprintf(stderr,
          "usage: tfrec-native-load --target HOST:PORT --requests FILE [--clients N (default "
          "8)] [--seconds S (default 10)] [--channels own|shared (default own: one connection "
          "per client)] [--method /package.Service/Method (default TF Serving's Predict)] "
          "[--invalid FRACTION --invalid-requests FILE] [--calls N (per client, instead of "
          "--seconds)]\n");
  exit(2);
}

int main(int argc, char** argv) {
  std::string target, path, bad_path, channels = "own";
  std::string method = "/tensorflow.serving.PredictionService/Predict";
  int clients = 8;
  double seconds = 10, fraction = 0;
  int64_t calls = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) Usage();
    std::string value = argv[++i];
    if (arg == "--target") target = value;
    else if (arg == "--requests") path = value;
    else if (arg == "--clients") clients = atoi(value.c_str());
    else if (arg == "--seconds") seconds = atof(value.c_str());
    else if (arg == "--channels") channels = value;
    else if (arg == "--method") method = value;
    else if (arg == "--invalid") fraction = atof(value.c_str());
    else if (arg == "--invalid-requests") bad_path = value;
    else if (arg == "--calls") calls = atoll(value.c_str());
    else Usage();
  }
  if (target.empty() || path.empty() || clients < 1 || calls < 0 || !(fraction >= 0) ||
      fraction > 1 || (fraction > 0 && bad_path.empty()) ||
      (channels != "own" && channels != "shared"))
    Usage();
  std::vector<Request> requests = ReadRequests(path, false);
  std::vector<Request> bad;
  if (fraction > 0) bad = ReadRequests(bad_path, true);
  int64_t ppm = std::llround(fraction * 1e6);

  // Own channels: a local subchannel pool each, so each really opens its own connection.
  std::shared_ptr<grpc::Channel> shared;
  std::vector<std::unique_ptr<Client>> pool;
  for (int i = 0; i < clients; ++i) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    if (channels == "own") args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    if (channels == "own" || !shared)
      shared = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    pool.push_back(std::make_unique<Client>());
    pool.back()->stub = std::make_unique<grpc::GenericStub>(shared);
    pool.back()->Call(method, requests[0].bytes);  // warm-up: connect (its status is not counted)
  }

  double cpu_start = ProcessCpuSeconds();
  Clock::time_point start = Clock::now();
  Clock::time_point end = start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(seconds));
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back(&Client::Run, pool[i].get(), std::cref(method), std::cref(requests),
                         i * requests.size() / clients, std::cref(bad),
                         bad.empty() ? 0 : i * bad.size() / clients, ppm, calls, end);
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  double cpu = ProcessCpuSeconds() - cpu_start;

  int64_t answered = 0, invalid = 0, refused = 0, failures = 0;
  std::vector<double> ms;
  std::string first_failure;
  for (auto& c : pool) {
    answered += c->requests;
    invalid += c->invalid;
    refused += c->refused;
    failures += c->failures;
    ms.insert(ms.end(), c->ok_ms.begin(), c->ok_ms.end());
    if (first_failure.empty()) first_failure = c->first_failure;
  }
  std::sort(ms.begin(), ms.end());
  auto percentile = [&ms](double q) {  // nearest rank
    if (ms.empty()) return 0.0;
    size_t rank = static_cast<size_t>(std::ceil(q * ms.size()));
    return ms[std::max<size_t>(rank, 1) - 1];
  };
  printf("{\"requests\": %lld, \"invalid\": %lld, \"refused\": %lld, \"failures\": %lld, "
         "\"seconds\": %.3f, \"qps\": %.1f, \"p50_ms\": %.3f, \"p95_ms\": %.3f, "
         "\"p99_ms\": %.3f, \"cpu_seconds\": %.3f, \"clients\": %d, \"channels\": \"%s\", "
         "\"first_failure\": %s}\n",
         static_cast<long long>(answered), static_cast<long long>(invalid),
         static_cast<long long>(refused), static_cast<long long>(failures), elapsed,
         ms.size() / elapsed, percentile(0.50), percentile(0.95), percentile(0.99), cpu, clients,
         channels.c_str(), JsonString(first_failure).c_str());
  return 0;
}

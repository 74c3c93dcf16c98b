// tfrec-native-load: a closed-loop gRPC load generator (bench/serving_grpc.py --load-generator
// native). N client threads each send unary calls back to back for --seconds, after one
// warm-up call per client (connection + first answer, as the bench's Python clients do).
// The requests are pre-serialised bytes (tfrec.serving.native.write_requests: each preceded by
// its length, 4 bytes little-endian); client i starts at request i * count / N and goes round
// them in turn. Calls go through grpc++'s generic stub (raw bytes, no protobuf), each thread
// waiting on its own completion queue. Prints one JSON line: requests answered in the timed
// window, failures (non-OK status) among them, QPS and p50/p95/p99 latency of the OK ones,
// and this process's CPU seconds over the window.

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

static std::vector<grpc::ByteBuffer> ReadRequests(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Die("cannot read " + path);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<grpc::ByteBuffer> requests;
  size_t at = 0;
  while (data.size() - at >= 4) {
    uint32_t size;
    memcpy(&size, data.data() + at, 4);
    at += 4;
    if (size > data.size() - at) break;
    grpc::Slice slice(data.data() + at, size);
    requests.emplace_back(&slice, 1);
    at += size;
  }
  if (at != data.size() || requests.empty())
    Die(path + " is not a list of length-prefixed requests");
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
  // Filled by Run: calls answered in the window, the OK ones' latencies, the first failure.
  int64_t requests = 0, failures = 0;
  std::vector<double> ok_ms;
  std::string first_failure;

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

  void Run(const std::string& method, const std::vector<grpc::ByteBuffer>& requests_,
           size_t first, Clock::time_point end) {
    for (size_t i = first;; ++i) {
      Clock::time_point start = Clock::now();
      if (start >= end) break;
      grpc::Status status = Call(method, requests_[i % requests_.size()]);
      ++requests;
      if (status.ok()) {
        ok_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      } else if (failures++ == 0) {
        first_failure = std::to_string(status.error_code()) + ": " + status.error_message();
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
          "per client)] [--method /package.Service/Method (default TF Serving's Predict)]\n");
  exit(2);
}

int main(int argc, char** argv) {
  std::string target, path, channels = "own";
  std::string method = "/tensorflow.serving.PredictionService/Predict";
  int clients = 8;
  double seconds = 10;
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
    else Usage();
  }
  if (target.empty() || path.empty() || clients < 1 || (channels != "own" && channels != "shared"))
    Usage();
  std::vector<grpc::ByteBuffer> requests = ReadRequests(path);

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
    pool.back()->Call(method, requests[0]);  // warm-up: connect (its status is not counted)
  }

  double cpu_start = ProcessCpuSeconds();
  Clock::time_point start = Clock::now();
  Clock::time_point end = start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(seconds));
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back(&Client::Run, pool[i].get(), std::cref(method), std::cref(requests),
                         i * requests.size() / clients, end);
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  double cpu = ProcessCpuSeconds() - cpu_start;

  int64_t answered = 0, failures = 0;
  std::vector<double> ms;
  std::string first_failure;
  for (auto& c : pool) {
    answered += c->requests;
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
  printf("{\"requests\": %lld, \"failures\": %lld, \"seconds\": %.3f, \"qps\": %.1f, "
         "\"p50_ms\": %.3f, \"p95_ms\": %.3f, \"p99_ms\": %.3f, \"cpu_seconds\": %.3f, "
         "\"clients\": %d, \"channels\": \"%s\", \"first_failure\": %s}\n",
         static_cast<long long>(answered), static_cast<long long>(failures), elapsed,
         (answered - failures) / elapsed, percentile(0.50), percentile(0.95), percentile(0.99),
         cpu, clients, channels.c_str(), JsonString(first_failure).c_str());
  return 0;
}

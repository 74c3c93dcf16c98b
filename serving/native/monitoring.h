// tfrec-native-serve's request metrics and access log, with the names, labels, buckets and
// closed label sets of tfrec serve's tfrec/serving/monitoring.py:
//   tfrec_requests_total{model, api, method, signature, code}    counter
//   tfrec_request_latency_seconds{model, api, method, signature}  histogram
//   tfrec_served_versions{model}                                  gauge
// Each label set's series is found under a shared lock and counted with relaxed atomics (no
// lock is held while counting); the text is Prometheus' exposition format.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <shared_mutex>
#include <string>

#include <grpcpp/grpcpp.h>

// What one request is recorded under, before Monitor::Record closes the label sets.
struct RequestLabels {
  std::string api = "grpc";  // "rest" for a call of the REST gateway (tfrec serve --native)
  std::string method, model, signature, peer;
};

class Monitor {
 public:
  static constexpr int kCodes = 17;  // grpc::StatusCode OK .. UNAUTHENTICATED
  static constexpr int kBuckets = 16;

  Monitor(std::string model, bool access_log) : model_(std::move(model)), log_(access_log) {}

  // Counts one answered request taking `seconds` (and logs it with --access-log). A signature
  // the newest version does not have (`signature_served` false) counts as "unknown", as do
  // another model's name and a method tfrec serve does not record.
  void Record(const RequestLabels& labels, int code, double seconds, bool signature_served);
  bool logs() const { return log_; }
  // The metrics in Prometheus' text format.
  std::string Exposition(size_t served_versions) const;

  static const char* CodeName(int code);
  static int CodeByName(const std::string& name);  // -1 if not a status code's name

 private:
  struct Series {
    std::atomic<uint64_t> codes[kCodes] = {};
    std::atomic<uint64_t> buckets[kBuckets + 1] = {};  // per bucket (not cumulative); +Inf last
    std::atomic<uint64_t> sum_ns{0};
  };
  Series* Find(const std::string& key);

  const std::string model_;
  const bool log_;
  mutable std::shared_mutex mutex_;  // guards the map; a Series is never removed
  std::map<std::string, std::unique_ptr<Series>> series_;  // labels joined by '\x1f'
};

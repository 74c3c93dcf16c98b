// See monitoring.h.
#include "monitoring.h"

#include <sys/time.h>
#include <time.h>

#include <cstdio>
#include <mutex>
#include <vector>

// tfrec/serving/monitoring.py's LATENCY_BUCKETS (seconds) and label names.
static const double kLatencyBuckets[Monitor::kBuckets] = {
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0};
static const char* const kBucketText[Monitor::kBuckets] = {  // as Python prints them
    "0.0005", "0.001", "0.002", "0.003", "0.005", "0.0075", "0.01", "0.02", "0.05", "0.1",
    "0.25", "0.5", "1.0", "2.5", "5.0", "10.0"};
static const char* const kLabels[] = {"model", "api", "method", "signature"};
static const char* const kCodeNames[Monitor::kCodes] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED"};
// Methods as tfrec serve records them (the REST verbs classify / regress included).
static const std::set<std::string> kMethods = {"Predict", "GetModelMetadata", "GetModelStatus",
                                               "classify", "regress"};
static const char kUnknown[] = "unknown";
static const char kSep = '\x1f';

const char* Monitor::CodeName(int code) {
  return code >= 0 && code < kCodes ? kCodeNames[code] : "UNKNOWN";
}

int Monitor::CodeByName(const std::string& name) {
  for (int i = 0; i < kCodes; ++i)
    if (name == kCodeNames[i]) return i;
  return -1;
}

Monitor::Series* Monitor::Find(const std::string& key) {
  {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    auto found = series_.find(key);
    if (found != series_.end()) return found->second.get();
  }
  std::unique_lock<std::shared_mutex> lock(mutex_);
  auto& slot = series_[key];
  if (!slot) slot = std::make_unique<Series>();
  return slot.get();
}

void Monitor::Record(const RequestLabels& labels, int code, double seconds,
                     bool signature_served) {
  const std::string& model = labels.model == model_ ? model_ : kUnknown;
  const std::string& method = kMethods.count(labels.method) ? labels.method : kUnknown;
  const std::string& signature =
      labels.signature.empty() || signature_served ? labels.signature
                                                                      : kUnknown;
  const std::string& api = labels.api == "rest" ? labels.api : "grpc";
  std::string key = model + kSep + api + kSep + method + kSep + signature;
  Series* series = Find(key);
  if (code < 0 || code >= kCodes) code = 2;  // UNKNOWN
  series->codes[code].fetch_add(1, std::memory_order_relaxed);
  int bucket = 0;
  while (bucket < kBuckets && seconds > kLatencyBuckets[bucket]) ++bucket;
  series->buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  series->sum_ns.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
  if (!log_) return;
  // As tfrec serve's access log: "<time> INFO peer api method model=M signature=S CODE 1.23ms".
  timeval now;
  gettimeofday(&now, nullptr);
  tm local;
  localtime_r(&now.tv_sec, &local);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &local);
  fprintf(stderr, "%s,%03d INFO %s %s %s model=%s signature=%s %s %.2fms\n", when,
          static_cast<int>(now.tv_usec / 1000), labels.peer.empty() ? "-" : labels.peer.c_str(),
          api.c_str(), method.c_str(), model.c_str(),
          signature.empty() ? "-" : signature.c_str(), kCodeNames[code], seconds * 1e3);
}

// A label value in the exposition format: backslash, double quote and newline escaped.
static std::string Escaped(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

static std::string Number(double value) {
  char text[40];
  snprintf(text, sizeof text, "%.17g", value);
  return text;
}

std::string Monitor::Exposition(size_t served_versions) const {
  std::string counts, latency;
  {
    std::shared_lock<std::shared_mutex> lock(mutex_);
    for (auto& [key, series] : series_) {
      std::string labels;
      size_t start = 0;
      for (int i = 0; i < 4; ++i) {
        size_t end = key.find(kSep, start);
        if (end == std::string::npos) end = key.size();
        labels += std::string(i ? "," : "") + kLabels[i] + "=\"" +
                  Escaped(key.substr(start, end - start)) + "\"";
        start = end + 1;
      }
      for (int code = 0; code < kCodes; ++code)
        if (uint64_t n = series->codes[code].load(std::memory_order_relaxed))
          counts += "tfrec_requests_total{" + labels + ",code=\"" + kCodeNames[code] + "\"} " +
                    std::to_string(n) + "\n";
      uint64_t cumulative = 0;
      for (int b = 0; b <= kBuckets; ++b) {
        cumulative += series->buckets[b].load(std::memory_order_relaxed);
        latency += "tfrec_request_latency_seconds_bucket{" + labels + ",le=\"" +
                   (b < kBuckets ? kBucketText[b] : "+Inf") + "\"} " +
                   std::to_string(cumulative) + "\n";
      }
      latency += "tfrec_request_latency_seconds_count{" + labels + "} " +
                 std::to_string(cumulative) + "\n";
      latency += "tfrec_request_latency_seconds_sum{" + labels + "} " +
                 Number(series->sum_ns.load(std::memory_order_relaxed) / 1e9) + "\n";
    }
  }
  return "# HELP tfrec_requests_total Requests answered, by status code.\n"
         "# TYPE tfrec_requests_total counter\n" + counts +
         "# HELP tfrec_request_latency_seconds Time from receiving a request to its answer.\n"
         "# TYPE tfrec_request_latency_seconds histogram\n" + latency +
         "# HELP tfrec_served_versions Versions of the model being served.\n"
         "# TYPE tfrec_served_versions gauge\n"
         "tfrec_served_versions{model=\"" + Escaped(model_) + "\"} " +
         std::to_string(served_versions) + "\n";
}

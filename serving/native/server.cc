// tfrec-native-serve: a small C++ front end answering TF Serving's PredictionService/Predict
// and GetModelMetadata and ModelService/GetModelStatus over gRPC for a tfrec SavedModel
// (tfrec/export/CONTRACT.md), without Python.
//
// - TensorFlow: the C API of the pip wheel's libtensorflow_cc.so.2, opened with
//   dlopen(RTLD_LOCAL | RTLD_DEEPBIND) and called through function pointers, so TF's own
//   protobuf and absl symbols never meet the system gRPC's; its framework library is then
//   made global for TF Text's op libraries (models.h).
// - gRPC: the system grpc++ (Debian libgrpc++-dev) through its generic callback API: requests
//   and answers are raw bytes, and the few PredictRequest / PredictResponse / TensorProto /
//   MetaGraphDef fields used are read and written by hand in protobuf's wire format (wire.h),
//   so no protobuf C++ library is linked at all.
//
// The newest --num-versions versions under --model-base, polled every --poll-seconds (and on
// SIGHUP) and swapped as tfrec serve does (models.h). Metrics and the access log as tfrec
// serve's (monitoring.h): Prometheus text from /tfrec.native.Monitoring/Metrics; a call from
// this machine with metadata "tfrec-api: rest" is the REST gateway's (tfrec serve --native
// --rest-port, tfrec/serving/native_backend.py), counted under api="rest" with the REST
// client's address from "tfrec-peer". No batching or warm-up.

#include <signal.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include "models.h"
#include "monitoring.h"
#include "wire.h"

namespace fs = std::filesystem;

static const char* DtypeName(int dtype) {
  switch (dtype) {
    case TF_FLOAT: return "DT_FLOAT";
    case TF_DOUBLE: return "DT_DOUBLE";
    case TF_INT32: return "DT_INT32";
    case TF_INT64: return "DT_INT64";
    case TF_STRING: return "DT_STRING";
    case TF_BOOL: return "DT_BOOL";
    default: return "another DataType";
  }
}


// === Predict ===

struct RpcError {
  grpc::StatusCode code;
  std::string message;
};

[[noreturn]] static void Invalid(const std::string& message) {
  throw RpcError{grpc::StatusCode::INVALID_ARGUMENT, message};
}

static std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) text += ", ";
    text += shape[i] < 0 ? "?" : std::to_string(shape[i]);
  }
  return text + "]";
}

// A request's TensorProto, as read (values point into the request's bytes).
struct InputTensor {
  int dtype = 0;
  std::vector<int64_t> shape;
  std::string_view content;                 // tensor_content
  std::vector<std::string_view> strings;    // string_val
  std::vector<int64_t> ints;                // int_val / int64_val
  std::vector<float> floats;                // float_val
};

// TensorProto {1 dtype, 2 tensor_shape, 4 tensor_content, 5 float_val, 7 int_val,
// 8 string_val, 10 int64_val}.
static InputTensor ParseTensor(wire::Reader proto) {
  InputTensor t;
  while (proto.Next()) {
    switch (proto.field) {
      case 1: t.dtype = static_cast<int>(proto.value); break;
      case 2: {
        wire::Reader shape = proto.Message();
        while (shape.Next()) {
          if (shape.field != 2) continue;
          int64_t size = 0;
          wire::Reader dim = shape.Message();
          while (dim.Next()) if (dim.field == 1) size = static_cast<int64_t>(dim.value);
          t.shape.push_back(size);
        }
        break;
      }
      case 4: t.content = proto.Bytes(); break;
      case 5: proto.Fixed32s(&t.floats); break;
      case 7: case 10: proto.Varints(&t.ints); break;
      case 8: t.strings.push_back(proto.Bytes()); break;
      default: break;
    }
  }
  return t;
}

struct TensorDeleter {
  void operator()(TF_Tensor* t) const {
    if (t == nullptr) return;
    if (tf.TF_TensorType(t) == TF_STRING) {  // free what TF_TString_Copy allocated
      auto* s = static_cast<TF_TString*>(tf.TF_TensorData(t));
      size_t n = tf.TF_TensorByteSize(t) / sizeof(TF_TString);
      for (size_t i = 0; i < n; ++i) TF_TString_Dealloc(&s[i]);
    }
    tf.TF_DeleteTensor(t);
  }
};
using TensorPtr = std::unique_ptr<TF_Tensor, TensorDeleter>;

// The TF_Tensor of a request input (its dtype already checked against the signature). As in
// TF's tensor_util: values may be fewer than the shape holds (the last is repeated).
static TF_Tensor* ToTensor(const std::string& name, const InputTensor& in, size_t count) {
  const int64_t* dims = in.shape.data();
  int rank = static_cast<int>(in.shape.size());
  if (in.dtype == TF_STRING) {
    if (in.strings.size() != count && !(in.strings.size() == 1 && count > 0))
      Invalid("input '" + name + "' is not a valid tensor: it holds " +
              std::to_string(in.strings.size()) + " strings for shape " + ShapeText(in.shape));
    TF_Tensor* t = tf.TF_AllocateTensor(TF_STRING, dims, rank, count * sizeof(TF_TString));
    auto* s = static_cast<TF_TString*>(tf.TF_TensorData(t));
    for (size_t i = 0; i < count; ++i) {
      std::string_view v = in.strings[in.strings.size() == 1 ? 0 : i];
      TF_TString_Init(&s[i]);
      TF_TString_Copy(&s[i], v.data(), v.size());
    }
    return t;
  }
  size_t width = in.dtype == TF_INT64 || in.dtype == TF_DOUBLE ? 8 : 4;
  if (in.dtype != TF_INT32 && in.dtype != TF_INT64 && in.dtype != TF_FLOAT)
    Invalid("input '" + name + "': " + DtypeName(in.dtype) + " is not supported here");
  TF_Tensor* t = tf.TF_AllocateTensor(static_cast<TF_DataType>(in.dtype), dims, rank,
                                      count * width);
  char* data = static_cast<char*>(tf.TF_TensorData(t));
  if (!in.content.empty()) {
    if (in.content.size() != count * width) {
      tf.TF_DeleteTensor(t);
      Invalid("input '" + name + "' is not a valid tensor: tensor_content of " +
              std::to_string(in.content.size()) + " bytes for shape " + ShapeText(in.shape));
    }
    memcpy(data, in.content.data(), in.content.size());
    return t;
  }
  size_t have = in.dtype == TF_FLOAT ? in.floats.size() : in.ints.size();
  if (count > 0 && have == 0) {
    memset(data, 0, count * width);  // TF fills a tensor without values with zeros
    return t;
  }
  if (have > count) {
    tf.TF_DeleteTensor(t);
    Invalid("input '" + name + "' is not a valid tensor: " + std::to_string(have) +
            " values for shape " + ShapeText(in.shape));
  }
  for (size_t i = 0; i < count; ++i) {
    size_t j = i < have ? i : have - 1;
    if (in.dtype == TF_INT32)
      reinterpret_cast<int32_t*>(data)[i] = static_cast<int32_t>(in.ints[j]);
    else if (in.dtype == TF_INT64) reinterpret_cast<int64_t*>(data)[i] = in.ints[j];
    else reinterpret_cast<float*>(data)[i] = in.floats[j];
  }
  return t;
}

// The first meaningful line of a TF error, as tfrec serve reports it (predict_service's
// graph_message): no node or stack lines; "assertion failed: [x]" becomes x, unescaped.
static std::string GraphMessage(const std::string& message) {
  std::string first;
  size_t start = 0;
  while (start <= message.size()) {
    size_t end = message.find('\n', start);
    if (end == std::string::npos) end = message.size();
    std::string line = message.substr(start, end - start);
    start = end + 1;
    size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || b > 0 || line == "Graph execution error:" ||
        line.rfind("Detected at node", 0) == 0 || line.rfind("<stack traces", 0) == 0)
      continue;
    first = line.substr(0, line.find_last_not_of(" \t\r") + 1);
    break;
  }
  const std::string prefix = "assertion failed: [";
  if (first.rfind(prefix, 0) == 0 && first.back() == ']' &&
      first.find("] [") == std::string::npos) {
    std::string inner = first.substr(prefix.size(), first.size() - prefix.size() - 1), out;
    for (size_t i = 0; i < inner.size(); ++i) {
      if (inner[i] == '\\' && i + 1 < inner.size() && (inner[i + 1] == '\'' || inner[i + 1] == '"'))
        continue;
      out += inner[i];
    }
    first = out;
  }
  return first;
}

static void WriteTensor(wire::Writer* w, const TF_Tensor* t) {
  int dtype = tf.TF_TensorType(t);
  w->Varint(1, dtype);
  int rank = tf.TF_NumDims(t);
  size_t count = 1;
  {
    wire::Writer shape;
    for (int d = 0; d < rank; ++d) {
      int64_t size = tf.TF_Dim(t, d);
      count *= static_cast<size_t>(size);
      wire::Writer dim;
      if (size) dim.Varint(1, static_cast<uint64_t>(size));
      shape.Message(2, dim);
    }
    w->Message(2, shape);
  }
  const char* data = static_cast<const char*>(tf.TF_TensorData(t));
  if (dtype == TF_STRING) {
    auto* s = reinterpret_cast<const TF_TString*>(data);
    for (size_t i = 0; i < count; ++i)
      w->Bytes(8, std::string_view(TF_TString_GetDataPointer(&s[i]), TF_TString_GetSize(&s[i])));
  } else if (size_t bytes = tf.TF_TensorByteSize(t)) {
    w->Bytes(4, std::string_view(data, bytes));  // little-endian on x86, as tfrec serve sends
  }
}

static int64_t ThreadCpuNs() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

// ModelSpec {1 name, 2 version {1 value}, 3 signature_name, 4 version_label}.
struct ModelSpec {
  std::string name, signature_name = "serving_default", label;
  bool has_version = false;
  int64_t version = 0;

  explicit ModelSpec(wire::Reader spec) {
    while (spec.Next()) {
      if (spec.field == 1) name = spec.String();
      else if (spec.field == 3 && !spec.Bytes().empty()) signature_name = spec.String();
      else if (spec.field == 4) label = spec.String();
      else if (spec.field == 2) {
        has_version = true;
        wire::Reader v = spec.Message();
        while (v.Next()) if (v.field == 1) version = static_cast<int64_t>(v.value);
      }
    }
  }
  ModelSpec() = default;
};

// ModelSpec {1 name, 2 version {1 value}} of an answer.
static void WriteSpec(wire::Writer* w, const std::string& name, int64_t version) {
  wire::Writer spec, value;
  spec.Bytes(1, name);
  value.Varint(1, static_cast<uint64_t>(version));
  spec.Message(2, value);
  w->Message(1, spec);
}

struct Server {
  static constexpr int64_t kMaxElements = 1 << 24;  // per input tensor, as tfrec serve
  ModelStore* store = nullptr;
  // Printed at shutdown: the CPU of the Predict handlers (parse, TF, encode) and of
  // TF_SessionRun alone, in the threads that ran them (all of TF's with --inter-op-threads -1).
  mutable std::atomic<int64_t> calls{0}, handler_cpu_ns{0}, tf_cpu_ns{0};
  int64_t max_batch = 1024;
  size_t max_answer_bytes = 16 << 20;
  Monitor* monitor = nullptr;
  std::string host;  // the address bound: a peer there is on this machine

  // Whether the newest version has this signature (else its metrics label is "unknown").
  bool Serves(const std::string& signature) const {
    std::shared_ptr<const Served> served = store->served();
    return !served->empty() && served->rbegin()->second->signatures.count(signature);
  }

  void CheckName(const ModelSpec& spec) const {
    if (spec.name != store->name())
      throw RpcError{grpc::StatusCode::NOT_FOUND, "model '" + spec.name + "' is not served "
                     "here (this server serves '" + store->name() + "')"};
  }

  // The model a ModelSpec asks for (name, then version or label; the newest if neither), as
  // tfrec serve's predict_service.resolve: it holds the model while the caller uses it.
  std::shared_ptr<const Model> Resolve(const ModelSpec& spec) const {
    CheckName(spec);
    if (!spec.label.empty())
      Invalid("Unrecognized servable version label: " + spec.label + " (tfrec serve has no "
              "version labels; give a version number or none for the latest)");
    std::shared_ptr<const Served> served = store->served();
    if (served->empty())
      throw RpcError{grpc::StatusCode::NOT_FOUND, "model '" + store->name() + "' has no "
                     "version to serve: no version folder is left under " + store->base()};
    if (!spec.has_version) return served->rbegin()->second;
    auto found = served->find(spec.version);
    if (found == served->end())
      throw RpcError{grpc::StatusCode::NOT_FOUND, "version " + std::to_string(spec.version) +
                     " of model '" + store->name() + "' is not available (serving " +
                     VersionsText(*served) + ")"};
    return found->second;
  }

  // RESOURCE_EXHAUSTED before computing when rows x k results could exceed the send limit (as
  // tfrec serve); k out of range is left to the graph's own message.
  void CheckAnswerSize(const Model& model, const std::map<std::string, InputTensor>& inputs,
                       int64_t rows) const {
    auto k = inputs.find("k");
    if (k == inputs.end() || model.bytes_per_result == 0 || k->second.dtype != TF_INT32) return;
    std::vector<int64_t> values = k->second.ints;
    const std::string_view content = k->second.content;
    for (size_t i = 0; i + 4 <= content.size(); i += 4) {
      int32_t v;
      memcpy(&v, content.data() + i, 4);
      values.push_back(v);
    }
    int64_t k_max = 0;
    for (int64_t v : values) {
      if (static_cast<int32_t>(v) < 1 || v > model.num_items) return;
      k_max = std::max(k_max, v);
    }
    double size = static_cast<double>(rows) * k_max * model.bytes_per_result;
    if (k_max == 0 || size <= static_cast<double>(max_answer_bytes)) return;
    char text[300];
    snprintf(text, sizeof text, "the answer to %lld rows x k=%lld could take %.1f MB, above "
             "this server's message limit of %g MB (tfrec serve --max-message-mb): ask for "
             "fewer rows or a smaller k", static_cast<long long>(rows),
             static_cast<long long>(k_max), size / (1 << 20),
             static_cast<double>(max_answer_bytes) / (1 << 20));
    throw RpcError{grpc::StatusCode::RESOURCE_EXHAUSTED, text};
  }

  [[noreturn]] void TooManyRows(int64_t rows) const {
    Invalid("batch of " + std::to_string(rows) + " rows is above this server's limit of " +
            std::to_string(max_batch) + " (tfrec serve --max-batch)");
  }

  // GetModelMetadataRequest {1 model_spec, 2 metadata_field} -> GetModelMetadataResponse
  // {1 model_spec, 2 metadata map<string, Any {1 type_url, 2 value}>}: "signature_def", the
  // MetaGraphDef's SignatureDefs as a SignatureDefMap.
  std::string GetModelMetadata(std::string_view bytes, RequestLabels* labels) const {
    wire::Reader request(bytes.data(), bytes.size());
    ModelSpec spec;
    std::vector<std::string> fields;
    while (request.Next()) {
      if (request.field == 1) spec = ModelSpec(request.Message());
      else if (request.field == 2) fields.push_back(request.String());
    }
    labels->model = spec.name;
    if (!request.ok()) Invalid("the request is not a valid GetModelMetadataRequest");
    std::shared_ptr<const Model> model = Resolve(spec);
    if (fields.empty())
      Invalid("GetModelMetadataRequest must name a metadata_field ('signature_def')");
    for (auto& field : fields)
      if (field != "signature_def")
        Invalid("metadata field '" + field + "' is not supported; only 'signature_def' is");
    wire::Writer response, entry, any;
    WriteSpec(&response, store->name(), model->version);
    any.Bytes(1, "type.googleapis.com/tensorflow.serving.SignatureDefMap");
    any.Bytes(2, model->signature_def_map);
    entry.Bytes(1, "signature_def");
    entry.Message(2, any);
    response.Message(2, entry);
    return std::move(response.bytes);
  }

  // GetModelStatusRequest {1 model_spec} -> GetModelStatusResponse {1 model_version_status
  // {1 version, 2 state, 3 status {1 error_code, 2 error_message}}}: the versions seen, newest
  // first (only model_spec.version if given), as tfrec serve answers.
  std::string GetModelStatus(std::string_view bytes, RequestLabels* labels) const {
    wire::Reader request(bytes.data(), bytes.size());
    ModelSpec spec;
    while (request.Next())
      if (request.field == 1) spec = ModelSpec(request.Message());
    labels->model = spec.name;
    if (!request.ok()) Invalid("the request is not a valid GetModelStatusRequest");
    CheckName(spec);
    if (!spec.label.empty()) Invalid("Unrecognized servable version label: " + spec.label);
    wire::Writer response;
    for (const VersionStatus& status : store->Statuses()) {
      if (spec.has_version && status.version != spec.version) continue;
      wire::Writer entry, error;
      entry.Varint(1, static_cast<uint64_t>(status.version));
      entry.Varint(2, static_cast<uint64_t>(status.state));
      if (!status.error.empty()) {
        error.Varint(1, 2);  // tensorflow.error.Code UNKNOWN
        error.Bytes(2, status.error);
      }
      entry.Message(3, error);  // present even when OK, as TF Serving sends it
      response.Message(1, entry);
    }
    if (spec.has_version && response.bytes.empty())
      throw RpcError{grpc::StatusCode::NOT_FOUND, "version " + std::to_string(spec.version) +
                     " of model '" + store->name() + "' was never loaded"};
    return std::move(response.bytes);
  }

  // PredictRequest {1 model_spec, 2 inputs map<string, TensorProto>, 3 output_filter} ->
  // PredictResponse {1 outputs map<string, TensorProto>, 2 model_spec {1 name, 2 version,
  // 3 signature_name}}.
  std::string Predict(std::string_view bytes, RequestLabels* labels) const {
    wire::Reader request(bytes.data(), bytes.size());
    ModelSpec model_spec;
    std::map<std::string, InputTensor> inputs;
    std::vector<std::string> filter;
    while (request.Next()) {
      if (request.field == 1) {
        model_spec = ModelSpec(request.Message());
      } else if (request.field == 2) {
        wire::Reader entry = request.Message();
        std::string key;
        InputTensor value;
        while (entry.Next()) {
          if (entry.field == 1) key = entry.String();
          else if (entry.field == 2) value = ParseTensor(entry.Message());
        }
        inputs[key] = std::move(value);
      } else if (request.field == 3) {
        filter.push_back(request.String());
      }
    }
    labels->model = model_spec.name;
    labels->signature = model_spec.signature_name;
    if (!request.ok()) Invalid("the request is not a valid PredictRequest");
    std::shared_ptr<const Model> held = Resolve(model_spec);  // until the answer is written
    const Model& model = *held;
    const std::string& signature_name = model_spec.signature_name;
    auto found = model.signatures.find(signature_name);
    if (found == model.signatures.end()) {
      std::string names;
      for (auto& [n, s] : model.signatures) names += (names.empty() ? "" : ", ") + n;
      Invalid("signature '" + signature_name + "' not found in model '" + store->name() +
              "' version " + std::to_string(model.version) + "; it has: " + names);
    }
    const Signature& sig = found->second;

    // Inputs: names, dtypes, shapes, batch sizes (as tfrec serve checks them).
    std::vector<std::string> problems;
    for (auto& spec : sig.inputs)
      if (!inputs.count(spec.name)) problems.push_back("missing input '" + spec.name + "'");
    for (auto& [n, t] : inputs) {
      bool known = false;
      for (auto& spec : sig.inputs) known = known || spec.name == n;
      if (!known) problems.push_back("unexpected input '" + n + "'");
    }
    if (!problems.empty()) {
      std::string names, text;
      for (auto& spec : sig.inputs) names += (names.empty() ? "" : ", ") + spec.name;
      for (auto& p : problems) text += (text.empty() ? "" : "; ") + p;
      Invalid("signature '" + sig.name + "' takes inputs " + names + ": " + text);
    }
    std::vector<TF_Output> feeds;
    std::vector<TensorPtr> owned;
    std::vector<TF_Tensor*> values;
    int64_t batch = -1;
    std::string batch_input;
    for (auto& spec : sig.inputs) {
      const InputTensor& in = inputs.at(spec.name);
      if (in.dtype != spec.dtype)
        Invalid("input '" + spec.name + "' must be " + DtypeName(spec.dtype) + ", got " +
                DtypeName(in.dtype));
      bool batched = !spec.unknown_rank && !spec.shape.empty() && spec.shape[0] == -1;
      if (batched && !in.shape.empty() && in.shape[0] > max_batch) TooManyRows(in.shape[0]);
      size_t count = 1;
      bool huge = false;
      for (int64_t d : in.shape) {
        huge = huge || d < 0 || d > kMaxElements;
        if (!huge) count *= static_cast<size_t>(d);
        huge = huge || count > static_cast<size_t>(kMaxElements);
      }
      if (huge) Invalid("input '" + spec.name + "' declares shape " + ShapeText(in.shape) +
                        ", which is negative or above " + std::to_string(kMaxElements) +
                        " values");
      if (!spec.unknown_rank) {
        bool fits = in.shape.size() == spec.shape.size();
        for (size_t d = 0; fits && d < in.shape.size(); ++d)
          fits = spec.shape[d] == -1 || spec.shape[d] == in.shape[d];
        if (!fits) Invalid("input '" + spec.name + "' must have shape " + ShapeText(spec.shape) +
                           ", got " + ShapeText(in.shape));
      }
      if (batched) {
        if (batch < 0) batch = in.shape[0], batch_input = spec.name;
        else if (in.shape[0] != batch)
          Invalid("inputs '" + batch_input + "' and '" + spec.name + "' have different batch "
                  "sizes (" + std::to_string(batch) + " and " + std::to_string(in.shape[0]) + ")");
      }
      owned.emplace_back(ToTensor(spec.name, in, count));
      feeds.push_back(spec.output);
      values.push_back(owned.back().get());
    }
    if (batch == 0) Invalid("empty batch: input '" + batch_input + "' has 0 rows");
    CheckAnswerSize(model, inputs, batch < 0 ? 1 : batch);

    // Outputs: all, or output_filter's (in its order, without repeats).
    std::vector<const TensorSpec*> wanted;
    if (filter.empty()) {
      for (auto& spec : sig.outputs) wanted.push_back(&spec);
    } else {
      for (auto& n : filter) {
        const TensorSpec* spec = nullptr;
        for (auto& s : sig.outputs) if (s.name == n) spec = &s;
        if (spec == nullptr) {
          std::string names;
          for (auto& s : sig.outputs) names += (names.empty() ? "" : ", ") + s.name;
          Invalid("output_filter names '" + n + "', which signature '" + sig.name +
                  "' does not output (it has: " + names + ")");
        }
        bool seen = false;
        for (auto* w : wanted) seen = seen || w == spec;
        if (!seen) wanted.push_back(spec);
      }
    }
    std::vector<TF_Output> fetches;
    for (auto* spec : wanted) fetches.push_back(spec->output);
    std::vector<TF_Tensor*> results(fetches.size(), nullptr);
    Status status;
    int64_t tf_start = ThreadCpuNs();
    tf.TF_SessionRun(model.session, nullptr, feeds.data(), values.data(),
                     static_cast<int>(feeds.size()), fetches.data(), results.data(),
                     static_cast<int>(fetches.size()), nullptr, 0, nullptr, status.s);
    tf_cpu_ns += ThreadCpuNs() - tf_start;
    if (!status.ok()) {
      int code = tf.TF_GetCode(status.s);  // TF and gRPC share the numbering
      throw RpcError{code > 0 && code <= 16 ? static_cast<grpc::StatusCode>(code)
                                            : grpc::StatusCode::INTERNAL,
                     GraphMessage(status.message())};
    }
    std::vector<TensorPtr> outputs;
    for (auto* t : results) outputs.emplace_back(t);

    wire::Writer response;
    for (size_t i = 0; i < wanted.size(); ++i) {
      wire::Writer entry, tensor;
      entry.Bytes(1, wanted[i]->name);
      WriteTensor(&tensor, outputs[i].get());
      entry.Message(2, tensor);
      response.Message(1, entry);
    }
    wire::Writer spec, version_value;
    spec.Bytes(1, store->name());
    version_value.Varint(1, static_cast<uint64_t>(model.version));
    spec.Message(2, version_value);
    spec.Bytes(3, signature_name);
    response.Message(2, spec);
    // Another model (or an answer CheckAnswerSize could not bound): refused after computing.
    if (response.bytes.size() > max_answer_bytes)
      throw RpcError{grpc::StatusCode::RESOURCE_EXHAUSTED,
                     "the answer takes " + std::to_string(response.bytes.size() >> 20) +
                     " MB, above this server's message limit of " +
                     std::to_string(max_answer_bytes >> 20) + " MB (--max-message-mb): ask "
                     "for fewer rows or a smaller k"};
    return std::move(response.bytes);
  }
};

// === gRPC: one generic callback reactor per call ===

static const std::string kService = "/tensorflow.serving.PredictionService/";
static const std::string kPredict = kService + "Predict";
static const std::string kMetadata = kService + "GetModelMetadata";
static const std::string kStatus = "/tensorflow.serving.ModelService/GetModelStatus";
// tfrec's own: Metrics answers the metrics' Prometheus text (a google.protobuf.BytesValue);
// Record counts and logs a request that the REST gateway refused itself (labels in metadata:
// tfrec-method, tfrec-model, tfrec-signature, tfrec-code, tfrec-seconds, tfrec-peer).
static const std::string kMonitoring = "/tfrec.native.Monitoring/";
static const std::string kMetrics = kMonitoring + "Metrics";
static const std::string kRecord = kMonitoring + "Record";

// Whether a gRPC peer ("ipv4:127.0.0.1:5678", "ipv6:[::1]:5678", "ipv6:%5B::1%5D:5678") is on
// this machine: a loopback address, or `host`, the address this server binds.
static bool IsLocal(const std::string& peer, const std::string& host) {
  std::string address = peer.substr(peer.find(':') + 1);
  address = address.substr(0, address.rfind(':'));
  for (const char* bracket : {"%5B", "%5D", "[", "]"})
    for (size_t at; (at = address.find(bracket)) != std::string::npos;)
      address.erase(at, strlen(bracket));
  return address.rfind("127.", 0) == 0 || address == "::1" ||
         address.rfind("::ffff:127.", 0) == 0 || address == host;
}

static std::string Metadata(grpc::GenericCallbackServerContext* context, const char* key) {
  const auto& metadata = context->client_metadata();
  auto found = metadata.find(key);
  return found == metadata.end() ? std::string()
                                 : std::string(found->second.data(), found->second.size());
}

class Call : public grpc::ServerGenericBidiReactor {
 public:
  Call(grpc::GenericCallbackServerContext* context, const Server* server)
      : context_(context), server_(server) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    auto started = std::chrono::steady_clock::now();
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::INTERNAL, "no request message"));
      return;
    }
    const std::string& method = context_->method();
    bool monitoring = method == kMetrics || method == kRecord;
    if (method != kPredict && method != kMetadata && method != kStatus && !monitoring) {
      Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                          method + " is not implemented by tfrec-native-serve; use Predict, "
                          "GetModelMetadata or GetModelStatus (or tfrec serve)"));
      return;
    }
    // The REST gateway tags its calls "tfrec-api: rest" (counted as REST) or "internal" (its
    // own look-ups: not counted); only a peer on this machine is believed.
    RequestLabels labels;
    std::string api = Metadata(context_, "tfrec-api");
    bool gateway = !api.empty() && IsLocal(context_->peer(), server_->host);
    if (gateway) labels.api = "rest", labels.peer = Metadata(context_, "tfrec-peer");
    else if (server_->monitor->logs()) labels.peer = context_->peer();
    if (monitoring) {
      Monitoring(method == kMetrics, gateway, &labels);
      return;
    }
    grpc::Slice slice;
    if (!request_.DumpToSingleSlice(&slice).ok()) {
      Finish(grpc::Status(grpc::StatusCode::INTERNAL, "cannot read the request"));
      return;
    }
    std::string_view bytes(reinterpret_cast<const char*>(slice.begin()), slice.size());
    labels.method = method.substr(method.rfind('/') + 1);
    struct Count {  // Predict's CPU, on every way out of this block
      const Server* server;
      int64_t start;
      ~Count() {
        if (server) server->calls++, server->handler_cpu_ns += ThreadCpuNs() - start;
      }
    } count{method == kPredict ? server_ : nullptr, ThreadCpuNs()};
    std::string answer;
    grpc::Status status;
    try {
      answer = method == kPredict    ? server_->Predict(bytes, &labels)
               : method == kMetadata ? server_->GetModelMetadata(bytes, &labels)
                                     : server_->GetModelStatus(bytes, &labels);
    } catch (const RpcError& e) {
      status = grpc::Status(e.code, e.message);
    } catch (const std::exception& e) {
      status = grpc::Status(grpc::StatusCode::INTERNAL, std::string("internal error: ") + e.what());
    }
    if (!(gateway && api == "internal")) {
      std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - started;
      server_->monitor->Record(labels, status.error_code(), seconds.count(),
                               labels.signature.empty() || server_->Serves(labels.signature));
    }
    if (status.ok()) Answer(std::move(answer));
    else Finish(status);
  }

  void OnDone() override { delete this; }

 private:
  void Answer(std::string bytes) {
    grpc::Slice out(std::move(bytes));
    response_ = grpc::ByteBuffer(&out, 1);
    StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
  }

  // Metrics: BytesValue {1 value} of the exposition text. Record: the gateway's refusal.
  void Monitoring(bool metrics, bool gateway, RequestLabels* labels) {
    if (metrics) {
      wire::Writer text;
      text.Bytes(1, server_->monitor->Exposition(server_->store->served()->size()));
      Answer(std::move(text.bytes));
      return;
    }
    if (!gateway) {
      Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "Record is only for the REST "
                          "gateway of tfrec serve --native, on this machine"));
      return;
    }
    labels->method = Metadata(context_, "tfrec-method");
    labels->model = Metadata(context_, "tfrec-model");
    labels->signature = Metadata(context_, "tfrec-signature");
    int code = Monitor::CodeByName(Metadata(context_, "tfrec-code"));
    double seconds = atof(Metadata(context_, "tfrec-seconds").c_str());
    if (code < 0) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "tfrec-code is not a status code"));
      return;
    }
    server_->monitor->Record(*labels, code, seconds,
                             labels->signature.empty() || server_->Serves(labels->signature));
    Answer(std::string());
  }

  grpc::GenericCallbackServerContext* context_;
  const Server* server_;
  grpc::ByteBuffer request_, response_;
};

class Service : public grpc::CallbackGenericService {
 public:
  explicit Service(const Server* server) : server_(server) {}
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override {
    return new Call(context, server_);
  }

 private:
  const Server* server_;
};

// === main ===

static void Usage() {
  fprintf(stderr,
          "usage: tfrec-native-serve --model-base BASE --tf-lib PATH/libtensorflow_cc.so.2 "
          "[--model-name NAME] [--host H] [--port P] [--poll-seconds S (default 1; 0: only "
          "on SIGHUP)] [--num-versions N (default 1)] [--max-batch N] [--max-message-mb MB] "
          "[--intra-op-threads N (default 1; 0: TF picks)] [--inter-op-threads N (default -1: "
          "ops run in the calling thread; 0: TF picks)] [--session-config-hex HEX (more of a "
          "serialized ConfigProto)] [--op-library PATH.so]... "
          "[--access-log (one line per request on stderr)]\n");
  exit(2);
}

int main(int argc, char** argv) {
  // SIGTERM / SIGINT (stop) and SIGHUP (poll now) are taken by sigwait at the end: blocked
  // before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::string base, name, host = "127.0.0.1", tf_lib;
  // TF threads: measured best on 2 cores with 8 concurrent clients (README): each request's
  // ops run in the gRPC thread that received it, one thread per op (SessionConfig's default).
  SessionConfig config;
  int port = 8500, max_message_mb = 16, num_versions = 1;
  double poll_seconds = 1.0;
  int64_t max_batch = 1024;
  std::vector<std::string> op_libraries;
  bool access_log = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--access-log") {
      access_log = true;
      continue;
    }
    if (i + 1 >= argc) Usage();
    std::string value = argv[++i];
    if (arg == "--model-base") base = value;
    else if (arg == "--model-name") name = value;
    else if (arg == "--host") host = value;
    else if (arg == "--port") port = atoi(value.c_str());
    else if (arg == "--poll-seconds") poll_seconds = atof(value.c_str());
    else if (arg == "--num-versions") num_versions = atoi(value.c_str());
    else if (arg == "--max-batch") max_batch = atoll(value.c_str());
    else if (arg == "--max-message-mb") max_message_mb = atoi(value.c_str());
    else if (arg == "--tf-lib") tf_lib = value;
    else if (arg == "--intra-op-threads") config.intra_op = atoi(value.c_str());
    else if (arg == "--inter-op-threads") config.inter_op = atoi(value.c_str());
    else if (arg == "--session-config-hex") {  // e.g. from ConfigProto(...).SerializeToString()
      for (size_t j = 0; j + 1 < value.size(); j += 2)
        config.extra.push_back(static_cast<char>(std::stoi(value.substr(j, 2), nullptr, 16)));
    }
    else if (arg == "--op-library") op_libraries.push_back(value);
    else Usage();
  }
  if (base.empty() || tf_lib.empty()) Usage();
  tf.Load(tf_lib);
  for (auto& library : op_libraries) {
    Status status;
    tf.TF_LoadLibrary(library.c_str(), status.s);  // registers its ops (kept loaded)
    if (!status.ok()) TfApi::Die("cannot load op library " + library + ": " + status.message());
  }

  if (name.empty()) name = fs::weakly_canonical(base).filename().string();
  ModelStore store(base, name, num_versions, config);
  store.LoadInitial();
  store.StartPolling(poll_seconds);
  Server server;
  server.store = &store;
  server.max_batch = max_batch;
  server.max_answer_bytes = static_cast<size_t>(max_message_mb) << 20;
  Monitor monitor(name, access_log);
  server.monitor = &monitor;
  server.host = host;

  Service service(&server);
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(host + ":" + std::to_string(port), grpc::InsecureServerCredentials(),
                           &bound);
  builder.SetMaxReceiveMessageSize(max_message_mb << 20);
  builder.SetMaxSendMessageSize(max_message_mb << 20);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> grpc_server = builder.BuildAndStart();
  if (!grpc_server || bound == 0)
    TfApi::Die("cannot listen on " + host + ":" + std::to_string(port));
  printf("tfrec-native-serve: model '%s' version %s on %s:%d (pid %d)\n", name.c_str(),
         VersionsText(*store.served()).c_str(), host.c_str(), bound, getpid());
  fflush(stdout);

  // SIGHUP: look for new versions now. SIGTERM / SIGINT: stop accepting, let running calls
  // finish (5 s at most), exit 0.
  int received = 0;
  while (sigwait(&signals, &received) == 0 && received == SIGHUP) store.PollSoon();
  grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  store.StopPolling();
  int64_t calls = std::max<int64_t>(server.calls, 1);
  printf("tfrec-native-serve: served %lld Predict calls; CPU per call: handler %.3f ms, of "
         "which TF_SessionRun %.3f ms\n", static_cast<long long>(server.calls.load()),
         server.handler_cpu_ns / 1e6 / calls, server.tf_cpu_ns / 1e6 / calls);
  fflush(stdout);
  return 0;
}

// tfrec-native-serve's models: TensorFlow's C API (opened with dlopen), one loaded version of
// a SavedModel (Model), and the versions served from a model base (ModelStore): polled, loaded,
// swapped and unloaded as tfrec serve's model_store.py does (TF Serving's file-system source
// with its `latest` version policy).
#pragma once

#include <dlfcn.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tensorflow/c/c_api.h"

// === TensorFlow's C API through dlopen ===

struct TfApi {
#define TF_FN(name) decltype(&::name) name = nullptr;
#define TF_FUNCTIONS(X)                                                                     \
  X(TF_NewStatus) X(TF_DeleteStatus) X(TF_GetCode) X(TF_Message) X(TF_NewGraph)             \
  X(TF_DeleteGraph) X(TF_NewSessionOptions) X(TF_DeleteSessionOptions) X(TF_SetConfig)      \
  X(TF_NewBuffer) X(TF_DeleteBuffer) X(TF_LoadSessionFromSavedModel) X(TF_CloseSession)     \
  X(TF_DeleteSession) X(TF_SessionRun) X(TF_GraphOperationByName)                           \
  X(TF_AllocateTensor) X(TF_DeleteTensor) X(TF_TensorData) X(TF_TensorByteSize)             \
  X(TF_NumDims) X(TF_Dim) X(TF_TensorType) X(TF_LoadLibrary) X(TF_NewOperation)             \
  X(TF_AddInput) X(TF_SetAttrType) X(TF_FinishOperation) X(TF_OperationOpType)
  TF_FUNCTIONS(TF_FN)
#undef TF_FN

  // Opens the C API `library` (libtensorflow_cc.so.2) privately, then moves the
  // libtensorflow_framework.so.2 it pulled in (beside it) to the global scope, as Python's
  // RTLD_GLOBAL import does. Op libraries opened later (TF_LoadLibrary: RTLD_LOCAL) bundle
  // their own protobuf and absl and export them: without TF's framework in the global scope
  // their calls bind to their own copies, e.g. TF Text's Map<string, AttrValue>::at, whose
  // absl hash seed is not TF's, so it looks in the wrong bucket of a NodeDef's attr map that
  // TF built ("key not found: N"). The framework itself keeps its bindings (made at load);
  // Debian's libraries (grpc++, absl in its own namespace) define none of the names involved.
  void Load(const std::string& library) {
    void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (handle == nullptr) Die("cannot open " + library + ": " + dlerror());
    std::string framework = library.substr(0, library.rfind('/') + 1) +
                            "libtensorflow_framework.so.2";
    if (dlopen(framework.c_str(), RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL) == nullptr)
      Die("cannot make " + framework + " global: " + dlerror());
#define TF_SYM(name)                                                          \
  name = reinterpret_cast<decltype(name)>(dlsym(handle, #name));              \
  if (name == nullptr) Die("no symbol " #name " in " + library);
    TF_FUNCTIONS(TF_SYM)
#undef TF_SYM
  }

  [[noreturn]] static void Die(const std::string& message) {
    fprintf(stderr, "tfrec-native-serve: %s\n", message.c_str());
    exit(2);
  }
};
extern TfApi tf;

// TF_Status owned for one scope.
struct Status {
  TF_Status* s = tf.TF_NewStatus();
  ~Status() { tf.TF_DeleteStatus(s); }
  bool ok() const { return tf.TF_GetCode(s) == TF_OK; }
  std::string message() const { return tf.TF_Message(s); }
};

// === One loaded version ===

struct TensorSpec {
  std::string name;        // the signature's key, e.g. "user_id"
  TF_Output output{};      // the graph tensor, e.g. "serving_default_user_id:0"
  int dtype = 0;           // tensorflow.DataType
  std::vector<int64_t> shape;  // -1 unknown; empty + unknown_rank: any
  bool unknown_rank = true;
};

struct Signature {
  std::string name;
  std::vector<TensorSpec> inputs, outputs;  // sorted by name
};

// Session options of every load: ConfigProto {2 intra_op_parallelism_threads, 5
// inter_op_parallelism_threads} (0 lets TF pick: the number of cores; a negative inter-op
// count runs every op in the caller's thread), then `extra`, more of a serialized ConfigProto
// (appended: its fields win, its messages merge).
struct SessionConfig {
  int intra_op = 1, inter_op = -1;
  std::string extra;
};

struct Model {
  int64_t version = 0;
  std::string identity;  // the folder on disk (see FolderIdentity)
  TF_Session* session = nullptr;
  TF_Graph* graph = nullptr;
  std::map<std::string, Signature> signatures;
  // The MetaGraphDef's signature_def entries as they are, i.e. a serialized SignatureDefMap
  // {1 signature_def map<string, SignatureDef>} (GetModelMetadata answers it).
  std::string signature_def_map;
  // A tfrec model's items and an upper bound on the bytes of one top-k result in an answer
  // (as tfrec serve's model_store._result_size); 0 for other models.
  int64_t num_items = 0, bytes_per_result = 0;

  Model() = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  ~Model();
};

// Loads the SavedModel in `dir` (tag "serve"); std::runtime_error saying why it cannot.
std::shared_ptr<Model> LoadModel(const std::string& dir, int64_t version,
                                       const SessionConfig& config);

// === The served versions ===

// ModelVersionStatus.State (tensorflow_serving/apis/get_model_status.proto).
enum State { LOADING = 20, AVAILABLE = 30, END = 50 };

struct VersionStatus {
  int64_t version = 0;
  int state = 0;
  std::string error;  // empty: OK
};

using Served = std::map<int64_t, std::shared_ptr<const Model>>;

std::string VersionsText(const Served& served);  // "3, 2": newest first

// The newest `num_versions` versions under `base` (integer-named folders holding a
// saved_model.pb; dot folders of an export in progress are not versions). Poll() builds a new
// served set (kept versions, new ones loaded) and swaps it in with one pointer assignment:
// requests in flight keep the set (and models) they took, freed when the last drops them.
// A version that fails to load is logged on one line and not retried until its files change;
// the current versions keep serving. A served version whose folder disappears is unloaded (none
// left: nothing is served), and a folder that reappears under a served number is loaded again.
class ModelStore {
 public:
  ModelStore(std::string base, std::string name, int num_versions, SessionConfig config)
      : base_(std::move(base)), name_(std::move(name)),
        num_versions_(std::max(1, num_versions)), config_(std::move(config)) {}
  ~ModelStore() { StopPolling(); }

  // Loads the newest version(s); exits with one line saying why when nothing can be served.
  void LoadInitial();
  // One look at the base folder; true if the served set changed.
  bool Poll();
  // A thread polling every `seconds` (0: only when PollSoon() asks).
  void StartPolling(double seconds);
  void PollSoon();
  void StopPolling();

  const std::string& name() const { return name_; }
  const std::string& base() const { return base_; }
  std::shared_ptr<const Served> served() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return served_;
  }
  std::vector<VersionStatus> Statuses() const;  // every version seen, newest first

 private:
  std::shared_ptr<const Model> Load(int64_t version, const std::string& dir);
  void Swap(std::shared_ptr<const Served> next);
  void SetStatus(VersionStatus status);  // with mutex_ held
  void ForgetOldestEnded();              // with mutex_ held

  const std::string base_, name_;
  const int num_versions_;
  const SessionConfig config_;
  mutable std::mutex mutex_;  // guards served_ (the pointer), status_ and the poll flags
  std::shared_ptr<const Served> served_ = std::make_shared<Served>();
  std::map<int64_t, VersionStatus> status_;
  std::map<int64_t, std::string> failed_;  // version -> files fingerprint at the failed load
  std::condition_variable wake_;
  bool stop_ = false, poll_asked_ = false;
  std::thread poller_;
};

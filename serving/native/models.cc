// Loading SavedModels with TensorFlow's C API, and the versions served (see models.h).

#include "models.h"

#include <malloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "wire.h"

namespace fs = std::filesystem;

TfApi tf;

static int64_t VarintSize(uint64_t n) {
  int64_t size = 1;
  while (n >= 0x80) n >>= 7, ++size;
  return size;
}

// num_items and bytes_per_result from the string variables item_ids and item_titles of a
// tfrec model (export/serving_module.py), read by ReadVariableOp nodes added to the graph.
static void ReadResultSize(Model* model) {
  std::vector<TF_Output> fetches;
  for (const char* name : {"item_ids", "item_titles"}) {
    TF_Operation* var = tf.TF_GraphOperationByName(model->graph, name);
    if (var == nullptr || strcmp(tf.TF_OperationOpType(var), "VarHandleOp") != 0) return;
    std::string read = std::string("tfrec_native/read_") + name;
    TF_OperationDescription* desc = tf.TF_NewOperation(model->graph, "ReadVariableOp",
                                                       read.c_str());
    tf.TF_AddInput(desc, TF_Output{var, 0});
    tf.TF_SetAttrType(desc, "dtype", TF_STRING);
    Status status;
    TF_Operation* op = tf.TF_FinishOperation(desc, status.s);
    if (!status.ok()) return;
    fetches.push_back(TF_Output{op, 0});
  }
  TF_Tensor* values[2] = {nullptr, nullptr};
  Status status;
  tf.TF_SessionRun(model->session, nullptr, nullptr, nullptr, 0, fetches.data(), values, 2,
                   nullptr, 0, nullptr, status.s);
  if (!status.ok()) return;
  int64_t bytes = 4;  // the score (tensor_content)
  for (TF_Tensor* t : values) {
    auto* s = static_cast<const TF_TString*>(tf.TF_TensorData(t));
    size_t n = tf.TF_TensorByteSize(t) / sizeof(TF_TString), longest = 0;
    for (size_t i = 0; i < n; ++i) longest = std::max(longest, TF_TString_GetSize(&s[i]));
    bytes += longest + 1 + VarintSize(longest);  // string_val: tag, length, bytes
    model->num_items = static_cast<int64_t>(n);
    tf.TF_DeleteTensor(t);
  }
  model->bytes_per_result = bytes;
}

static TF_Output ResolveTensor(TF_Graph* graph, const std::string& name) {
  std::string op = name;
  int index = 0;
  size_t colon = name.rfind(':');
  if (colon != std::string::npos) {
    op = name.substr(0, colon);
    index = atoi(name.c_str() + colon + 1);
  }
  TF_Operation* oper = tf.TF_GraphOperationByName(graph, op.c_str());
  if (oper == nullptr)
    throw std::runtime_error("tensor " + name + " of a signature is not in the graph");
  return TF_Output{oper, index};
}

// TensorInfo {1 name, 2 dtype, 3 tensor_shape {2 dim {1 size}, 3 unknown_rank}}.
static TensorSpec ParseTensorInfo(std::string key, wire::Reader info, TF_Graph* graph) {
  TensorSpec spec;
  spec.name = std::move(key);
  std::string tensor;
  while (info.Next()) {
    if (info.field == 1) tensor = info.String();
    else if (info.field == 2) spec.dtype = static_cast<int>(info.value);
    else if (info.field == 3) {
      spec.unknown_rank = false;
      wire::Reader shape = info.Message();
      while (shape.Next()) {
        if (shape.field == 2) {
          int64_t size = -1;
          wire::Reader dim = shape.Message();
          while (dim.Next()) if (dim.field == 1) size = static_cast<int64_t>(dim.value);
          spec.shape.push_back(size);
        } else if (shape.field == 3 && shape.value) {
          spec.unknown_rank = true;
        }
      }
    }
  }
  spec.output = ResolveTensor(graph, tensor);
  return spec;
}

// MetaGraphDef {5 signature_def map<string, SignatureDef {1 inputs, 2 outputs, 3 method}>}:
// the signatures (but __saved_model_init_op) and signature_def_map (all of them).
static void ReadSignatures(const TF_Buffer* meta_graph, Model* model) {
  wire::Reader meta(static_cast<const char*>(meta_graph->data), meta_graph->length);
  while (meta.Next()) {
    if (meta.field != 5) continue;
    wire::Writer kept;  // the entry as it is, for GetModelMetadata
    kept.Bytes(1, meta.Bytes());
    model->signature_def_map += kept.bytes;
    wire::Reader entry = meta.Message();
    Signature signature;
    wire::Reader def(nullptr, 0);
    while (entry.Next()) {
      if (entry.field == 1) signature.name = entry.String();
      else if (entry.field == 2) def = entry.Message();
    }
    if (signature.name == "__saved_model_init_op") continue;
    while (def.Next()) {
      if (def.field != 1 && def.field != 2) continue;
      wire::Reader item = def.Message();
      std::string key;
      wire::Reader info(nullptr, 0);
      while (item.Next()) {
        if (item.field == 1) key = item.String();
        else if (item.field == 2) info = item.Message();
      }
      (def.field == 1 ? signature.inputs : signature.outputs)
          .push_back(ParseTensorInfo(key, info, model->graph));
    }
    auto by_name = [](const TensorSpec& a, const TensorSpec& b) { return a.name < b.name; };
    std::sort(signature.inputs.begin(), signature.inputs.end(), by_name);
    std::sort(signature.outputs.begin(), signature.outputs.end(), by_name);
    model->signatures[signature.name] = std::move(signature);
  }
}

Model::~Model() {
  Status status;
  if (session != nullptr) {
    tf.TF_CloseSession(session, status.s);
    tf.TF_DeleteSession(session, status.s);
  }
  if (graph != nullptr) tf.TF_DeleteGraph(graph);
  malloc_trim(0);  // give the freed model's pages back (else glibc's arenas keep them)
}

std::shared_ptr<Model> LoadModel(const std::string& dir, int64_t version,
                                       const SessionConfig& config) {
  auto model = std::make_shared<Model>();
  model->version = version;
  Status status;
  wire::Writer proto;
  if (config.intra_op) proto.Varint(2, static_cast<uint64_t>(int64_t{config.intra_op}));
  if (config.inter_op) proto.Varint(5, static_cast<uint64_t>(int64_t{config.inter_op}));
  proto.bytes += config.extra;
  std::unique_ptr<TF_SessionOptions, decltype(tf.TF_DeleteSessionOptions)> options(
      tf.TF_NewSessionOptions(), tf.TF_DeleteSessionOptions);
  tf.TF_SetConfig(options.get(), proto.bytes.data(), proto.bytes.size(), status.s);
  if (!status.ok()) TfApi::Die("bad session config: " + status.message());
  std::unique_ptr<TF_Buffer, decltype(tf.TF_DeleteBuffer)> meta_graph(tf.TF_NewBuffer(),
                                                                        tf.TF_DeleteBuffer);
  model->graph = tf.TF_NewGraph();
  const char* tags[] = {"serve"};
  model->session = tf.TF_LoadSessionFromSavedModel(options.get(), nullptr, dir.c_str(), tags,
                                                   1, model->graph, meta_graph.get(), status.s);
  if (!status.ok()) {
    model->session = nullptr;
    throw std::runtime_error(status.message());
  }
  ReadSignatures(meta_graph.get(), model.get());
  ReadResultSize(model.get());
  return model;
}

// === The served versions ===

static constexpr size_t kMaxEnded = 100;  // statuses of unloaded versions kept (newest)

// {version: folder} of the integer-named subfolders of `base` holding a saved_model.pb.
static std::map<int64_t, std::string> ReadyVersions(const std::string& base) {
  std::map<int64_t, std::string> found;
  std::error_code error;
  for (fs::directory_iterator it(base, error), end; !error && it != end; it.increment(error)) {
    std::string name = it->path().filename();
    if (name.empty() || name.size() > 18 || name.find_first_not_of("0123456789") != name.npos)
      continue;
    if (fs::is_regular_file(it->path() / "saved_model.pb", error))
      found[atoll(name.c_str())] = it->path().string();
  }
  return found;
}

// What tells a version folder from another one later written under the same number: the
// inodes of the folder and its saved_model.pb, and the file's size and change time (as
// model_store.folder_identity). Empty when gone.
static std::string FolderIdentity(const std::string& dir) {
  struct stat folder, graph;
  if (stat(dir.c_str(), &folder) != 0 || stat((dir + "/saved_model.pb").c_str(), &graph) != 0)
    return "";
  char text[160];
  snprintf(text, sizeof text, "%llu %llu %llu %lld %lld.%09ld",
           static_cast<unsigned long long>(folder.st_ino),
           static_cast<unsigned long long>(graph.st_dev),
           static_cast<unsigned long long>(graph.st_ino), static_cast<long long>(graph.st_size),
           static_cast<long long>(graph.st_ctim.tv_sec), graph.st_ctim.tv_nsec);
  return text;
}

// The files of a folder with their sizes and modification times: a failed version is tried
// again when this changes.
static std::string Fingerprint(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code error;
  for (fs::recursive_directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    struct stat s;
    if (stat(it->path().c_str(), &s) == 0 && S_ISREG(s.st_mode))
      files.push_back(it->path().string() + " " + std::to_string(s.st_size) + " " +
                      std::to_string(s.st_mtim.tv_sec) + "." + std::to_string(s.st_mtim.tv_nsec));
  }
  std::sort(files.begin(), files.end());
  std::string all;
  for (auto& f : files) all += f + "\n";
  return all;
}

// The first sentence of the first line, without its final period (model_store._first_line).
static std::string FirstLine(const std::string& text) {
  size_t start = text.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) return "";
  std::string line = text.substr(start, text.find('\n', start) - start);
  line = line.substr(0, line.find(". "));
  while (!line.empty() && (line.back() == '.' || line.back() == ' ' || line.back() == '\r'))
    line.pop_back();
  return line;
}

std::string VersionsText(const Served& served) {
  std::string text;
  for (auto it = served.rbegin(); it != served.rend(); ++it)
    text += (text.empty() ? "" : ", ") + std::to_string(it->first);
  return text;
}

static std::string VersionList(const Served& served) { return "[" + VersionsText(served) + "]"; }

void ModelStore::LoadInitial() {
  if (!fs::is_directory(base_)) TfApi::Die("model base " + base_ + " is not a folder.");
  auto versions = ReadyVersions(base_);
  if (versions.empty())
    TfApi::Die("model base " + base_ + " has no version folder (an integer name holding a "
               "saved_model.pb), e.g. written by `tfrec export`.");
  auto [newest, dir] = *versions.rbegin();
  std::shared_ptr<const Model> model;
  try {
    model = Load(newest, dir);
  } catch (const std::exception& e) {
    TfApi::Die("version " + std::to_string(newest) + " of model base " + base_ +
               " failed to load: " + FirstLine(e.what()) + ".");
  }
  Swap(std::make_shared<Served>(Served{{newest, model}}));
  Poll();  // the older versions kept by --num-versions, if any
}

bool ModelStore::Poll() {
  auto versions = ReadyVersions(base_);
  std::vector<int64_t> wanted;
  for (auto it = versions.rbegin(); it != versions.rend() && wanted.size() < num_versions_; ++it)
    wanted.push_back(it->first);
  std::shared_ptr<const Served> served = this->served();
  std::vector<int64_t> stale;  // folder gone, or replaced by another export
  for (auto& [version, model] : *served) {
    auto found = versions.find(version);
    if (found == versions.end() || model->identity != FolderIdentity(found->second))
      stale.push_back(version);
  }
  auto is_stale = [&](int64_t v) { return std::count(stale.begin(), stale.end(), v) > 0; };
  auto next = std::make_shared<Served>();
  for (int64_t version : wanted)
    if (served->count(version) && !is_stale(version)) (*next)[version] = served->at(version);
  for (int64_t version : wanted) {
    if (next->count(version)) continue;
    const std::string& dir = versions[version];
    std::string fingerprint = Fingerprint(dir);
    auto failed = failed_.find(version);
    if (failed != failed_.end() && failed->second == fingerprint) continue;
    if (is_stale(version))
      fprintf(stderr, "tfrec-native-serve: version %lld of model %s was replaced on disk: "
              "reloading it\n", static_cast<long long>(version), name_.c_str());
    try {
      (*next)[version] = Load(version, dir);
    } catch (const std::exception& e) {  // a bad version must never stop the current ones
      failed_[version] = fingerprint;
      std::string error = FirstLine(e.what());
      {
        std::lock_guard<std::mutex> lock(mutex_);
        SetStatus({version, END, error.empty() ? "load failed" : error});
      }
      fprintf(stderr, "tfrec-native-serve: version %lld of model %s failed to load, still "
              "serving %s: %s\n", static_cast<long long>(version), name_.c_str(),
              VersionList(*served).c_str(), error.c_str());
    }
  }
  for (int64_t version : stale)
    if (!next->count(version))
      fprintf(stderr, "tfrec-native-serve: version %lld of model %s: its folder is gone or "
              "replaced, unloading it\n", static_cast<long long>(version), name_.c_str());
  fflush(stderr);
  if (next->empty() && stale.empty()) return false;  // nothing loadable, nothing removed
  if (*next == *served) return false;                 // same versions, same models
  Swap(next);
  return true;
}

std::shared_ptr<const Model> ModelStore::Load(int64_t version, const std::string& dir) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    SetStatus({version, LOADING, ""});
  }
  std::string identity = FolderIdentity(dir);  // read before loading: a later change reloads
  auto start = std::chrono::steady_clock::now();
  std::shared_ptr<Model> model = LoadModel(dir, version, config_);
  model->identity = identity;
  failed_.erase(version);
  fprintf(stderr, "tfrec-native-serve: model %s version %lld loaded in %.1f s from %s\n",
          name_.c_str(), static_cast<long long>(version),
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
          dir.c_str());
  return model;
}

void ModelStore::Swap(std::shared_ptr<const Served> next) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::shared_ptr<const Served> old = served_;
  served_ = next;  // from now on; requests in flight keep `old`
  for (auto& [version, model] : *next) {
    auto was = old->find(version);
    if (was == old->end() || was->second != model) SetStatus({version, AVAILABLE, ""});
  }
  for (auto& [version, model] : *old) {
    if (next->count(version)) continue;
    VersionStatus& status = status_[version];
    if (status.state != END) {  // keep a failed reload's error
      status = {version, END, ""};
      ForgetOldestEnded();
    }
  }
  fprintf(stderr, "tfrec-native-serve: model %s now serves version(s) %s\n", name_.c_str(),
          next->empty() ? "none" : VersionList(*next).c_str());
  fflush(stderr);
}

void ModelStore::SetStatus(VersionStatus status) {
  status_[status.version] = std::move(status);
  ForgetOldestEnded();
}

void ModelStore::ForgetOldestEnded() {
  std::vector<int64_t> ended;
  for (auto& [version, status] : status_)
    if (status.state == END) ended.push_back(version);  // ascending
  for (size_t i = 0; i + kMaxEnded < ended.size(); ++i) status_.erase(ended[i]);
}

std::vector<VersionStatus> ModelStore::Statuses() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<VersionStatus> all;
  for (auto it = status_.rbegin(); it != status_.rend(); ++it) all.push_back(it->second);
  return all;
}

void ModelStore::StartPolling(double seconds) {
  poller_ = std::thread([this, seconds] {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      auto asked = [this] { return stop_ || poll_asked_; };
      if (seconds > 0) wake_.wait_for(lock, std::chrono::duration<double>(seconds), asked);
      else wake_.wait(lock, asked);
      if (stop_) break;
      poll_asked_ = false;
      lock.unlock();
      try {
        Poll();
      } catch (const std::exception& e) {  // e.g. the base folder is briefly unreadable
        fprintf(stderr, "tfrec-native-serve: polling %s failed: %s\n", base_.c_str(), e.what());
      }
      lock.lock();
    }
  });
}

void ModelStore::PollSoon() {
  std::lock_guard<std::mutex> lock(mutex_);
  poll_asked_ = true;
  wake_.notify_all();
}

void ModelStore::StopPolling() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    wake_.notify_all();
  }
  if (poller_.joinable()) poller_.join();
}

// Protocol buffers' wire format, only what tfrec-native-serve reads and writes: varints,
// length-delimited fields (strings, bytes, messages, packed repeated numbers) and fixed32.
// https://protobuf.dev/programming-guides/encoding/
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace wire {

// Walks the fields of one message: while (r.Next()) { r.field, then r.value (varint) or
// r.Bytes() / r.String() / r.Message() (length-delimited) }. A malformed message ends the
// walk with ok() false.
class Reader {
 public:
  Reader(const char* data, size_t size) : p_(data), end_(data + size) {}

  bool Next() {
    if (p_ == end_ || failed_) return false;
    uint64_t key;
    if (!ReadVarint(&key)) return Fail();
    field = static_cast<uint32_t>(key >> 3);
    type = static_cast<int>(key & 7);
    switch (type) {
      case 0: return ReadVarint(&value) || Fail();
      case 1: if (end_ - p_ < 8) return Fail(); memcpy(&value, p_, 8); p_ += 8; return true;
      case 5: {
        if (end_ - p_ < 4) return Fail();
        uint32_t v; memcpy(&v, p_, 4); p_ += 4; value = v; return true;
      }
      case 2: {
        uint64_t size;
        if (!ReadVarint(&size) || size > static_cast<uint64_t>(end_ - p_)) return Fail();
        bytes_ = std::string_view(p_, size);
        p_ += size;
        return true;
      }
      default: return Fail();
    }
  }

  bool ok() const { return !failed_; }
  std::string_view Bytes() const { return bytes_; }
  std::string String() const { return std::string(bytes_); }
  Reader Message() const { return Reader(bytes_.data(), bytes_.size()); }

  // A repeated varint field, packed (length-delimited) or not; appended to `out`.
  void Varints(std::vector<int64_t>* out) {
    if (type == 0) { out->push_back(static_cast<int64_t>(value)); return; }
    if (type != 2) return;
    Reader packed(bytes_.data(), bytes_.size());
    uint64_t v;
    while (packed.p_ < packed.end_ && packed.ReadVarint(&v))
      out->push_back(static_cast<int64_t>(v));
  }

  // A repeated float field, packed or not.
  void Fixed32s(std::vector<float>* out) {
    if (type == 5) {
      uint32_t v = static_cast<uint32_t>(value);
      float f;
      memcpy(&f, &v, 4);
      out->push_back(f);
      return;
    }
    if (type != 2) return;
    for (size_t i = 0; i + 4 <= bytes_.size(); i += 4) {
      float f; memcpy(&f, bytes_.data() + i, 4); out->push_back(f);
    }
  }

  uint32_t field = 0;
  int type = 0;
  uint64_t value = 0;

 private:
  bool ReadVarint(uint64_t* out) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64 && p_ < end_; shift += 7) {
      uint8_t byte = static_cast<uint8_t>(*p_++);
      result |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) { *out = result; return true; }
    }
    return false;
  }
  bool Fail() { failed_ = true; return false; }

  const char* p_;
  const char* end_;
  std::string_view bytes_;
  bool failed_ = false;
};

// Appends fields to `bytes`, in the order written.
class Writer {
 public:
  void Varint(uint32_t field, uint64_t v) { Key(field, 0); Raw(v); }
  void Bytes(uint32_t field, std::string_view v) {
    Key(field, 2);
    Raw(v.size());
    bytes.append(v.data(), v.size());
  }
  void Message(uint32_t field, const Writer& m) { Bytes(field, m.bytes); }

  std::string bytes;

 private:
  void Key(uint32_t field, int type) { Raw((static_cast<uint64_t>(field) << 3) | type); }
  void Raw(uint64_t v) {
    while (v >= 0x80) { bytes.push_back(static_cast<char>(v | 0x80)); v >>= 7; }
    bytes.push_back(static_cast<char>(v));
  }
};

}  // namespace wire

// Writing restored files in batches (the restore's worker threads): one call
// writes one blob's plaintext into all the files it goes to, each with the
// system calls Node would make one JS call each for (open, pwrite, ftruncate,
// fchown, fchmod, futimens, close). A blob of a small-files batch goes to
// hundreds of files; per file, the six JS calls cost more than their system
// calls on ext4.
//
// writeFiles(dirFd, data, paths, starts, fields): for target i, the path
// paths[starts[i] .. starts[i + 1]) (a Uint8Array of the paths back to back,
// a Uint32Array of one more start than there are targets), opened beneath
// the folder dirFd without following any symlink (native/beneath.cc), and
// kFields numbers at fields[i * kFields] (src/sources/native.ts `WRITE_FIELDS`):
//   0 start   1 length   of its bytes in `data`
//   2 offset  in the file
//   3 flags   kWhole: create the file (O_EXCL) and finish it: size, owner,
//             mode, times. Something already at its name was put there while
//             the restore ran (the restore removed what was there before):
//             refused, never written into (it may be open by whoever put it).
//             Otherwise write only, into the descriptor of field 10: the
//             file the restore created, which it holds open until the file
//             is finished (a name can be swapped, and an inode number comes
//             back at once for a file the racer makes; the descriptor is
//             the file).
//             kChown: set uid:gid (skipped for a new file with kOwnedOnCreate)
//             kCreateMode: create with `mode` (no fchmod for a new file)
//   4 size  5 mode  6 uid  7 gid  8 mtime seconds  9 mtime nanoseconds
//   10 the descriptor of a file written in pieces (not closed here)
// All-zero 4 KiB blocks of the file are skipped (they stay holes); ftruncate
// only when the last bytes written end short of the size.
// Returns undefined, or for the targets that failed, index and message pairs
// (a message as Node's fs gives: "ENOSPC: no space left on device, write";
// a symlink on the way: "ELOOP: a symbolic link is on the way ...").
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <string>

namespace {

constexpr uint32_t kFields = 11;
constexpr uint32_t kWhole = 1;
constexpr uint32_t kChown = 2;
constexpr uint32_t kOwnedOnCreate = 4;
constexpr uint32_t kCreateMode = 8;
constexpr size_t kBlock = 4096;
const char kZeroBlock[kBlock] = {};

struct Failure {
  int error;
  const char* syscall;
  bool withPath;
  // Set instead of error when the file found is refused.
  const char* refused;
};

bool Fail(Failure* f, const char* syscall, bool withPath = false) {
  *f = {errno, syscall, withPath, nullptr};
  return false;
}

// The folder the paths are below, and the path of the target being written.
struct Place {
  int dir;
  const std::string& path;
};

constexpr const char* kNotOurs = "refused: something was put where the file goes while the restore ran (it is not written into)";

// pwrite of all of `length` bytes at `pos`.
bool WriteAll(int fd, const char* data, size_t length, off_t pos, Failure* f) {
  while (length > 0) {
    const ssize_t n = pwrite(fd, data, length, pos);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(f, "write");
    }
    if (n == 0) {
      errno = EIO;
      return Fail(f, "write");
    }
    data += n;
    length -= static_cast<size_t>(n);
    pos += n;
  }
  return true;
}

// Writes `data` at `pos`, skipping all-zero file-system blocks; *end is the
// file offset just past the last byte written (`pos` when none was).
bool WriteSparse(int fd, const char* data, size_t length, off_t pos, off_t* end, Failure* f) {
  *end = pos;
  size_t start = SIZE_MAX;
  for (size_t off = 0; off < length;) {
    const size_t next = std::min(length, off + kBlock - static_cast<size_t>((pos + off) % kBlock));
    const bool zero = next - off == kBlock && memcmp(data + off, kZeroBlock, kBlock) == 0;
    if (zero && start != SIZE_MAX) {
      if (!WriteAll(fd, data + start, off - start, pos + start, f)) return false;
      *end = pos + off;
      start = SIZE_MAX;
    } else if (!zero && start == SIZE_MAX) {
      start = off;
    }
    off = next;
  }
  if (start != SIZE_MAX) {
    if (!WriteAll(fd, data + start, length - start, pos + start, f)) return false;
    *end = pos + length;
  }
  return true;
}

bool WriteTarget(const Place& at, const char* data, const double* t, Failure* f) {
  const size_t length = static_cast<size_t>(t[1]);
  const off_t offset = static_cast<off_t>(t[2]);
  const uint32_t flags = static_cast<uint32_t>(t[3]);
  const bool whole = (flags & kWhole) != 0;
  const mode_t mode = static_cast<mode_t>(t[5]);
  int fd;
  if (whole) {
    fd = OpenBeneath(at.dir, at.path.data(), at.path.size(), O_WRONLY | O_CREAT | O_EXCL, (flags & kCreateMode) ? mode : 0600, false);
    if (fd < 0) {
      if (errno != EEXIST) return Fail(f, "open", true);
      *f = {0, "open", true, kNotOurs};
      return false;
    }
  } else if (t[10] >= 0 && t[10] <= INT32_MAX && t[10] == static_cast<double>(static_cast<int>(t[10]))) {
    fd = static_cast<int>(t[10]);
  } else {
    *f = {0, "write", false, "no descriptor of the file to write into"};
    return false;
  }
  bool ok = true;
  off_t end;
  if (!WriteSparse(fd, data + static_cast<size_t>(t[0]), length, offset, &end, f)) {
    ok = false;
  } else if (whole) {
    const off_t size = static_cast<off_t>(t[4]);
    const struct timespec times[2] = {{static_cast<time_t>(t[8]), static_cast<long>(t[9])}, {static_cast<time_t>(t[8]), static_cast<long>(t[9])}};
    if (end < size && ftruncate(fd, size) != 0) ok = Fail(f, "ftruncate");
    else if ((flags & kChown) && !(flags & kOwnedOnCreate) && fchown(fd, static_cast<uid_t>(t[6]), static_cast<gid_t>(t[7])) != 0) ok = Fail(f, "fchown");
    else if (!(flags & kCreateMode) && fchmod(fd, mode) != 0) ok = Fail(f, "fchmod");
    else if (futimens(fd, times) != 0) ok = Fail(f, "futime");
  }
  if (whole && close(fd) != 0 && ok) ok = Fail(f, "close");
  return ok;
}

Napi::Value WriteFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsNumber() || !info[1].IsTypedArray() || !info[2].IsTypedArray() || !info[3].IsTypedArray() || !info[4].IsTypedArray() ||
      info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
      info[4].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    Napi::TypeError::New(env, "writeFiles(dirFd: number, data: Uint8Array, paths: Uint8Array, starts: Uint32Array, fields: Float64Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int dir = info[0].As<Napi::Number>().Int32Value();
  auto data = info[1].As<Napi::Uint8Array>();
  auto paths = info[2].As<Napi::Uint8Array>();
  auto starts = info[3].As<Napi::Uint32Array>();
  auto fields = info[4].As<Napi::Float64Array>();
  if (starts.ElementLength() == 0 || fields.ElementLength() != (starts.ElementLength() - 1) * kFields) {
    Napi::TypeError::New(env, "writeFiles: fields must hold 11 numbers per path, starts one more than there are paths").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const uint32_t count = static_cast<uint32_t>(starts.ElementLength() - 1);
  const char* bytes = reinterpret_cast<const char*>(data.Data());
  const char* names = reinterpret_cast<const char*>(paths.Data());
  napi_value failures = nullptr;
  uint32_t failed = 0;
  std::string path;
  for (uint32_t i = 0; i < count; i++) {
    const double* t = fields.Data() + static_cast<size_t>(i) * kFields;
    const uint32_t from = starts[i];
    const uint32_t to = starts[i + 1];
    std::string message;
    if (from > to || to > paths.ByteLength()) {
      message = "path out of range of the paths";
    } else if (t[0] < 0 || t[1] < 0 || t[0] + t[1] > static_cast<double>(data.ByteLength())) {
      message = "bytes out of range of the data";
    } else {
      path.assign(names + from, to - from);
      Failure f{};
      if (path.find('\0') != std::string::npos) {
        message = "path must not contain a NUL byte";
      } else if (!WriteTarget(Place{dir, path}, bytes, t, &f)) {
        if (f.refused != nullptr) message = f.refused;
        else if (f.withPath) message = BeneathMessage(f.error, f.syscall, path);
        else message = std::string(uv_err_name(-f.error)) + ": " + uv_strerror(-f.error) + ", " + f.syscall;
      }
    }
    if (message.empty()) continue;
    napi_value index;
    napi_value text;
    if (napi_create_uint32(env, static_cast<uint32_t>(i), &index) != napi_ok ||
        napi_create_string_utf8(env, message.data(), message.size(), &text) != napi_ok || !AppendTo(env, &failures, failed++, index) ||
        !AppendTo(env, &failures, failed++, text)) {
      return Napi::Value();
    }
  }
  if (failures == nullptr) return env.Undefined();
  return Napi::Value(env, failures);
}

}  // namespace

void InitRestore(Napi::Env env, Napi::Object exports) {
  exports.Set("writeFiles", Napi::Function::New(env, WriteFiles, "writeFiles"));
}

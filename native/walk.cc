// The walk's folder listing (src/sources/file-tree.ts, listDirStats): a
// folder's names and the lstat of each in one call, with no JavaScript object
// per entry. Node offers one readdir per folder and then one lstat per entry,
// each through libuv and each building a BigIntStats with four Dates; this
// reads the folder with readdir(3) and fstatat(2)s each name relative to the
// folder's descriptor, writing straight into the arrays the walk reads.
#include "addon.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace {

// The stat fields stored per entry, in the order DirListing documents.
constexpr size_t kStatFields = 10;

// One name in the arena: where it starts and how long it is.
struct Name {
  uint32_t start;
  uint32_t length;
};

// Scratch space kept between calls, one per thread (the scan worker and the
// main thread may both list).
thread_local std::string arena;
thread_local std::vector<Name> names;

// Closes a DIR* on every way out.
struct DirCloser {
  DIR* dir;
  ~DirCloser() { closedir(dir); }
};

// listDirStats(dir: Buffer): the folder's errno if it cannot be opened or
// read (as Node's readdir: opendir(3), so symlinks to folders are followed),
// or [names, ends, fields, failures]: three ArrayBuffers of their own (the
// scan worker transfers them) holding the names sorted bytewise back to
// back, the end of each (uint32), ten int64 stat fields per entry (zeros
// where lstat failed), and failures as [index, errno, ...] or undefined.
Napi::Value ListDirStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) {
    Napi::TypeError::New(env, "listDirStats: the folder must be a Buffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<char> arg = info[0].As<Napi::Buffer<char>>();
  std::string path(arg.Data(), arg.Length());
  if (path.find('\0') != std::string::npos) {
    Napi::TypeError::New(env, "listDirStats: the folder's path holds a NUL byte").ThrowAsJavaScriptException();
    return env.Undefined();
  }

  // An errno as the result (raw N-API: see below).
  const auto errnoValue = [env](int error) {
    napi_value v;
    return napi_create_int32(env, error, &v) == napi_ok ? Napi::Value(env, v) : Napi::Value();
  };
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return errnoValue(errno);
  DirCloser closer{dir};

  arena.clear();
  names.clear();
  for (;;) {
    errno = 0;
    const dirent* d = readdir(dir);
    if (d == nullptr) {
      if (errno != 0) return errnoValue(errno);
      break;
    }
    const char* n = d->d_name;
    if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'))) continue;
    const size_t length = strlen(n);
    names.push_back({static_cast<uint32_t>(arena.size()), static_cast<uint32_t>(length)});
    arena.append(n, length);
  }

  const char* base = arena.data();
  std::sort(names.begin(), names.end(), [base](const Name& a, const Name& b) {
    const int c = memcmp(base + a.start, base + b.start, std::min(a.length, b.length));
    return c != 0 ? c < 0 : a.length < b.length;
  });

  // Raw N-API from here on, each status checked (addon.h: a worker stopped
  // while it lists, a scanner closed mid-walk, must not abort the process).
  const size_t count = names.size();
  void* namesData = nullptr;
  void* endsData = nullptr;
  void* fieldsData = nullptr;
  napi_value namesBuffer;
  napi_value endsBuffer;
  napi_value fieldsBuffer;
  if (napi_create_arraybuffer(env, arena.size(), &namesData, &namesBuffer) != napi_ok ||
      napi_create_arraybuffer(env, count * sizeof(uint32_t), &endsData, &endsBuffer) != napi_ok ||
      napi_create_arraybuffer(env, count * kStatFields * sizeof(int64_t), &fieldsData, &fieldsBuffer) != napi_ok) {
    return Napi::Value();
  }
  char* out = static_cast<char*>(namesData);
  uint32_t* ends = static_cast<uint32_t*>(endsData);
  int64_t* fields = static_cast<int64_t*>(fieldsData);
  // A name is NUL-terminated for fstatat: copied out of the arena, which holds none.
  std::string name;
  napi_value failures = nullptr;
  uint32_t failed = 0;
  uint32_t end = 0;
  const int fd = dirfd(dir);
  for (size_t i = 0; i < count; i++) {
    const Name& n = names[i];
    memcpy(out + end, base + n.start, n.length);
    end += n.length;
    ends[i] = end;
    name.assign(base + n.start, n.length);
    int64_t* f = fields + i * kStatFields;
    struct stat st;
    if (fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      const int error = errno;
      memset(f, 0, kStatFields * sizeof(int64_t));
      napi_value index;
      napi_value code;
      if (napi_create_uint32(env, static_cast<uint32_t>(i), &index) != napi_ok || napi_create_int32(env, error, &code) != napi_ok ||
          !AppendTo(env, &failures, failed++, index) || !AppendTo(env, &failures, failed++, code)) {
        return Napi::Value();
      }
      continue;
    }
    // ino, dev and rdev are unsigned: stored modulo 2^64, as a BigInt64Array stores them.
    f[0] = st.st_mode;
    f[1] = st.st_uid;
    f[2] = st.st_gid;
    f[3] = st.st_size;
    f[4] = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    f[5] = static_cast<int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
    f[6] = static_cast<int64_t>(st.st_ino);
    f[7] = static_cast<int64_t>(st.st_dev);
    f[8] = static_cast<int64_t>(st.st_rdev);
    f[9] = static_cast<int64_t>(st.st_nlink);
  }

  napi_value result;
  if (failures == nullptr && napi_get_undefined(env, &failures) != napi_ok) return Napi::Value();
  if (napi_create_array_with_length(env, 4, &result) != napi_ok || napi_set_element(env, result, 0, namesBuffer) != napi_ok ||
      napi_set_element(env, result, 1, endsBuffer) != napi_ok || napi_set_element(env, result, 2, fieldsBuffer) != napi_ok ||
      napi_set_element(env, result, 3, failures) != napi_ok) {
    return Napi::Value();
  }
  return Napi::Value(env, result);
}

}  // namespace

void InitWalk(Napi::Env env, Napi::Object exports) {
  exports.Set("listDirStats", Napi::Function::New(env, ListDirStats, "listDirStats"));
}

// Extended attributes by Buffer path, without following a final symlink:
// llistxattr, lgetxattr, lsetxattr, lremovexattr (Linux), or of an open file
// when given its descriptor instead of a path (flistxattr, ...: a restore
// sets them on the file it opened and checked, never on whatever a name
// leads to by then). Node offers none of them. Each call is synchronous, like the lstat and readlink the backup's
// walk and the restore's metadata steps already make on the main thread.
//
// Errors throw an Error whose `code` is the errno's name as Node spells it
// (uv_err_name: ENODATA, ENOTSUP, EPERM, ...), with `errno` and `syscall`.
#include "addon.h"

#include <errno.h>
#include <string.h>
#include <sys/xattr.h>
#include <uv.h>

#include <cstdint>
#include <string>
#include <vector>

namespace {

// The first try's size: a name list or a value that fits needs one system call.
constexpr size_t kFirstTry = 4096;

// A path (or name) as a NUL-terminated string; false when it is not a Buffer or holds a NUL.
bool CString(const Napi::Value& v, const char* what, std::string* out) {
  if (!v.IsBuffer()) {
    Napi::TypeError::New(v.Env(), std::string(what) + " must be a Buffer").ThrowAsJavaScriptException();
    return false;
  }
  auto b = v.As<Napi::Buffer<char>>();
  out->assign(b.Data(), b.Length());
  if (out->find('\0') != std::string::npos) {
    Napi::TypeError::New(v.Env(), std::string(what) + " must not contain a NUL byte").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// The file a call is about: a path, or an open descriptor (`fd` >= 0).
struct Target {
  std::string path;
  int fd = -1;
  std::string Name() const { return fd >= 0 ? "descriptor " + std::to_string(fd) : path; }
};

// A Buffer path or a descriptor (a whole number >= 0).
bool TargetArg(const Napi::Value& v, Target* out) {
  if (v.IsNumber()) {
    const int64_t fd = v.As<Napi::Number>().Int64Value();
    if (fd < 0 || fd > INT32_MAX) {
      Napi::TypeError::New(v.Env(), "a descriptor must be a whole number of at least 0").ThrowAsJavaScriptException();
      return false;
    }
    out->fd = static_cast<int>(fd);
    return true;
  }
  return CString(v, "path", &out->path);
}

void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& path) {
  const char* code = uv_err_name(-err);
  auto e = Napi::Error::New(env, std::string(code) + ": " + strerror(err) + ", " + syscall + " '" + path + "'");
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.ThrowAsJavaScriptException();
}

// Calls `call(buffer, size)` until the buffer is big enough: ERANGE (the list
// or value grew between asking its size and reading it) asks again. The
// buffer is the calling thread's, kept from call to call.
template <typename F>
ssize_t ReadGrowing(std::vector<char>* buf, F call) {
  if (buf->size() < kFirstTry) buf->resize(kFirstTry);
  for (;;) {
    ssize_t n = call(buf->data(), buf->size());
    if (n >= 0 || errno != ERANGE) return n;
    ssize_t need = call(nullptr, 0);
    if (need < 0) return need;
    buf->resize(static_cast<size_t>(need) + kFirstTry);
  }
}

// llistxattr(path: Buffer | fd): Buffer[] — the names, in the file system's order.
Napi::Value List(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Target t;
  if (!TargetArg(info[0], &t)) return env.Undefined();
  static thread_local std::vector<char> buf;
  ssize_t n = ReadGrowing(&buf, [&](char* b, size_t size) { return t.fd >= 0 ? flistxattr(t.fd, b, size) : llistxattr(t.path.c_str(), b, size); });
  if (n < 0) {
    ThrowErrno(env, errno, "llistxattr", t.Name());
    return env.Undefined();
  }
  napi_value names;
  if (napi_create_array(env, &names) != napi_ok) return Napi::Value();
  uint32_t count = 0;
  for (ssize_t i = 0; i < n;) {
    size_t len = strnlen(buf.data() + i, static_cast<size_t>(n - i));
    if (len > 0 && !AppendTo(env, &names, count++, CopyToBuffer(env, buf.data() + i, len))) return Napi::Value();
    i += static_cast<ssize_t>(len) + 1;
  }
  return Napi::Value(env, names);
}

// lgetxattr(path: Buffer | fd, name: Buffer): Buffer — the value.
Napi::Value Get(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Target t;
  std::string name;
  if (!TargetArg(info[0], &t) || !CString(info[1], "name", &name)) return env.Undefined();
  static thread_local std::vector<char> buf;
  ssize_t n = ReadGrowing(&buf, [&](char* b, size_t size) {
    return t.fd >= 0 ? fgetxattr(t.fd, name.c_str(), b, size) : lgetxattr(t.path.c_str(), name.c_str(), b, size);
  });
  if (n < 0) {
    ThrowErrno(env, errno, "lgetxattr", t.Name());
    return env.Undefined();
  }
  return CopyToBuffer(env, buf.data(), static_cast<size_t>(n));
}

// lsetxattr(path: Buffer | fd, name: Buffer, value: Buffer): undefined — creates or replaces.
Napi::Value Set(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Target t;
  std::string name;
  if (!TargetArg(info[0], &t) || !CString(info[1], "name", &name)) return env.Undefined();
  if (!info[2].IsBuffer()) {
    Napi::TypeError::New(env, "value must be a Buffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto value = info[2].As<Napi::Buffer<char>>();
  const int r = t.fd >= 0 ? fsetxattr(t.fd, name.c_str(), value.Data(), value.Length(), 0) : lsetxattr(t.path.c_str(), name.c_str(), value.Data(), value.Length(), 0);
  if (r != 0) ThrowErrno(env, errno, "lsetxattr", t.Name());
  return env.Undefined();
}

// lremovexattr(path: Buffer | fd, name: Buffer): undefined.
Napi::Value Remove(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Target t;
  std::string name;
  if (!TargetArg(info[0], &t) || !CString(info[1], "name", &name)) return env.Undefined();
  if ((t.fd >= 0 ? fremovexattr(t.fd, name.c_str()) : lremovexattr(t.path.c_str(), name.c_str())) != 0) ThrowErrno(env, errno, "lremovexattr", t.Name());
  return env.Undefined();
}

}  // namespace

void InitXattr(Napi::Env env, Napi::Object exports) {
  exports.Set("llistxattr", Napi::Function::New(env, List, "llistxattr"));
  exports.Set("lgetxattr", Napi::Function::New(env, Get, "lgetxattr"));
  exports.Set("lsetxattr", Napi::Function::New(env, Set, "lsetxattr"));
  exports.Set("lremovexattr", Napi::Function::New(env, Remove, "lremovexattr"));
}

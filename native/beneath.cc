// Paths resolved beneath a restore's target folder without following any
// symbolic link. A restore runs as root into a folder others may write into
// (a customer's home, a web root): a folder on the way swapped for a symlink
// while the restore runs must not make it write, create or chmod anything
// outside the target. Every path the restore touches is opened relative to
// the target's descriptor with openat2(2) and RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS (Linux 5.6); where the kernel has no openat2 (ENOSYS),
// one component at a time with openat(O_NOFOLLOW), which refuses the same.
//
// openBeneath(dirFd, path, flags, mode, walk?): the descriptor of `path`
// (leading slashes ignored; relative to dirFd) opened with `flags` (and
// `mode` when creating). A symlink anywhere on the way or at the end is
// ELOOP, a ".." that would leave the folder EXDEV. `walk` resolves one
// component at a time, as without openat2 (tests).
// makeFolderBeneath(dirFd, path, mode): makes the folder `path` (relative to
// dirFd, as openBeneath resolves it) with mkdirat(2) in its parent's
// descriptor, opens what is then at that name from that same descriptor
// (O_PATH, O_DIRECTORY, O_NOFOLLOW: a symlink or file put there meanwhile is
// refused) and returns [its inode, its owner]: a folder a racer put there
// in its place passes this, and the caller tells it by its owner. -1 when
// something is at that name already (nothing made: the caller merges into a
// folder there or refuses anything else). One call where a restore made
// four: a full path resolution, a mkdir through /proc/self/fd, another full
// resolution and an fstat per folder.
// mknod(path, mode, dev): mknod(2) (a FIFO or a device node); the path is one
// the caller resolved (/proc/self/fd/N/name through its parent's descriptor).
// fchownPath(fd, uid, gid): the owner of what an O_PATH descriptor names, a
// symlink itself included (fchownat with AT_EMPTY_PATH): Node's fchown
// refuses O_PATH descriptors, and lchown by name acts on whatever the name
// leads to by then.
// utimesPath(fd, seconds, nanoseconds): access and modification times of what
// an O_PATH descriptor names, a symlink itself included (utimensat with
// AT_EMPTY_PATH; EINVAL on kernels without it).
// close(fd): close(2), for a descriptor openBeneath gave a worker thread
// (Node's closeSync in a worker warns about descriptors its fs did not open).
//
// Errors throw an Error as node:fs does: `code` (errno name), `errno`,
// `syscall`, the path in the message.
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <string>

namespace {

// The longest piece of a path handed to one openat2 (PATH_MAX is 4096 with its NUL).
constexpr size_t kPiece = 4000;
// openat2 may answer EAGAIN when a rename races the resolution; it is asked again this often.
constexpr int kAgain = 8;

// Set once openat2 answered ENOSYS: the kernel has none, walk from then on.
std::atomic<bool> gNoOpenat2{false};

int Openat2(int dirfd, const char* path, int flags, mode_t mode) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & O_CREAT) != 0 ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd;
  int tries = 0;
  do {
    fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
  } while (fd < 0 && (errno == EINTR || (errno == EAGAIN && ++tries < kAgain)));
  return static_cast<int>(fd);
}

// Whether `name` in `dirfd` is a symlink (to tell ELOOP from ENOTDIR after an O_NOFOLLOW open).
bool IsLink(int dirfd, const std::string& name) {
  struct stat st;
  return fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
}

// One component at a time from `dirfd`, never following a link: what openat2 refuses, refused here.
int OpenByWalk(int dirfd, const char* path, size_t len, int flags, mode_t mode) {
  int cur = dirfd;
  std::string name = ".";
  size_t i = 0;
  for (;;) {
    while (i < len && path[i] == '/') i++;
    size_t end = i;
    while (end < len && path[end] != '/') end++;
    size_t next = end;
    while (next < len && path[next] == '/') next++;
    const bool last = next >= len;
    if (end > i) name.assign(path + i, end - i);
    if (name == "..") {
      if (cur != dirfd) close(cur);
      errno = EXDEV;
      return -1;
    }
    if (last) {
      int fd;
      do {
        fd = openat(cur, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
      } while (fd < 0 && errno == EINTR);
      if (fd >= 0 && (flags & O_PATH) != 0) {
        // O_PATH | O_NOFOLLOW opens a symlink itself: refused as openat2 refuses it.
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
          close(fd);
          fd = -1;
          errno = ELOOP;
        }
      } else if (fd < 0 && errno == ENOTDIR && (flags & O_DIRECTORY) != 0 && IsLink(cur, name)) {
        errno = ELOOP;
      }
      const int saved = errno;
      if (cur != dirfd) close(cur);
      errno = saved;
      return fd;
    }
    if (name != ".") {
      const int fd = openat(cur, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0 && errno == ENOTDIR && IsLink(cur, name)) errno = ELOOP;
      const int saved = errno;
      if (cur != dirfd) close(cur);
      errno = saved;
      if (fd < 0) return -1;
      cur = fd;
    }
    i = next;
  }
}

}  // namespace

int OpenBeneath(int dirfd, const char* path, size_t len, int flags, mode_t mode, bool walk) {
  while (len > 0 && path[0] == '/') {
    path++;
    len--;
  }
  if (walk || gNoOpenat2.load(std::memory_order_relaxed)) return OpenByWalk(dirfd, path, len, flags, mode);
  if (len == 0) return Openat2(dirfd, ".", flags, mode);
  if (len <= kPiece) {
    const std::string p(path, len);
    const int fd = Openat2(dirfd, p.c_str(), flags, mode);
    if (fd < 0 && errno == ENOSYS) {
      gNoOpenat2.store(true, std::memory_order_relaxed);
      return OpenByWalk(dirfd, path, len, flags, mode);
    }
    return fd;
  }
  // Longer than a system call takes: the folder at a "/" within the first piece, then the rest from it.
  size_t cut = kPiece;
  while (cut > 0 && path[cut] != '/') cut--;
  if (cut == 0) {
    errno = ENAMETOOLONG;
    return -1;
  }
  const int folder = OpenBeneath(dirfd, path, cut, O_PATH | O_DIRECTORY, 0, false);
  if (folder < 0) return -1;
  const int fd = OpenBeneath(folder, path + cut, len - cut, flags, mode, false);
  const int saved = errno;
  close(folder);
  errno = saved;
  return fd;
}

std::string BeneathMessage(int err, const char* syscall, const std::string& path) {
  const char* why = err == ELOOP ? "a symbolic link is on the way (never followed below the target)"
                  : err == EXDEV ? "the path leads out of the target"
                                 : uv_strerror(-err);
  return std::string(uv_err_name(-err)) + ": " + why + ", " + syscall + " '" + path + "'";
}

namespace {

void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& path) {
  auto e = Napi::Error::New(env, BeneathMessage(err, syscall, path));
  e.Set("code", Napi::String::New(env, uv_err_name(-err)));
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("syscall", Napi::String::New(env, syscall));
  e.ThrowAsJavaScriptException();
}

bool PathArg(const Napi::Value& v, std::string* out) {
  if (!v.IsBuffer()) {
    Napi::TypeError::New(v.Env(), "path must be a Buffer").ThrowAsJavaScriptException();
    return false;
  }
  auto b = v.As<Napi::Buffer<char>>();
  out->assign(b.Data(), b.Length());
  if (out->find('\0') != std::string::npos) {
    Napi::TypeError::New(v.Env(), "path must not contain a NUL byte").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

Napi::Value OpenBeneathJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (info.Length() < 4 || !info[0].IsNumber() || !info[2].IsNumber() || !info[3].IsNumber()) {
    Napi::TypeError::New(env, "openBeneath(dirFd: number, path: Buffer, flags: number, mode: number, walk?: boolean)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!PathArg(info[1], &path)) return env.Undefined();
  const bool walk = info.Length() > 4 && info[4].ToBoolean().Value();
  const int fd = OpenBeneath(info[0].As<Napi::Number>().Int32Value(), path.data(), path.size(), info[2].As<Napi::Number>().Int32Value(),
                             static_cast<mode_t>(info[3].As<Napi::Number>().Uint32Value()), walk);
  if (fd < 0) {
    ThrowErrno(env, errno, "open", path);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value MakeFolderBeneath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (info.Length() < 3 || !info[0].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "makeFolderBeneath(dirFd: number, path: Buffer, mode: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!PathArg(info[1], &path)) return env.Undefined();
  const int dirfd = info[0].As<Napi::Number>().Int32Value();
  const mode_t mode = static_cast<mode_t>(info[2].As<Napi::Number>().Uint32Value());
  const size_t slash = path.rfind('/');
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  // The walk refuses such names; a name that is none would reach the parent itself or above it.
  if (base.empty() || base == "." || base == "..") {
    Napi::TypeError::New(env, "not a file name: " + path).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const size_t parentLen = slash == std::string::npos ? 0 : slash;
  size_t lead = 0;
  while (lead < parentLen && path[lead] == '/') lead++;
  const int parent = lead == parentLen ? dirfd : OpenBeneath(dirfd, path.data(), parentLen, O_PATH | O_DIRECTORY, 0, false);
  if (parent < 0) {
    ThrowErrno(env, errno, "open", path.substr(0, parentLen));
    return env.Undefined();
  }
  const auto done = [&](int fd) {
    const int saved = errno;
    if (fd >= 0) close(fd);
    if (parent != dirfd) close(parent);
    errno = saved;
  };
  if (mkdirat(parent, base.c_str(), mode) != 0) {
    const int err = errno;
    done(-1);
    if (err == EEXIST) return Napi::Number::New(env, -1);
    ThrowErrno(env, err, "mkdir", path);
    return env.Undefined();
  }
  // O_PATH: the folder is only looked at, so one its mode or a default ACL leaves unreadable to us is no error.
  const int fd = openat(parent, base.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    int err = errno;
    // A symlink put there is refused as openBeneath refuses one (O_DIRECTORY answers ENOTDIR for it).
    if (fd < 0 && err == ENOTDIR && IsLink(parent, base)) err = ELOOP;
    done(fd);
    ThrowErrno(env, err, fd < 0 ? "open" : "fstat", path);
    return env.Undefined();
  }
  done(fd);
  auto made = Napi::Array::New(env, 2);
  made.Set(0u, Napi::Number::New(env, static_cast<double>(st.st_ino)));
  made.Set(1u, Napi::Number::New(env, static_cast<double>(st.st_uid)));
  return made;
}

Napi::Value Mknod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (info.Length() < 3 || !info[1].IsNumber() || !info[2].IsBigInt()) {
    Napi::TypeError::New(env, "mknod(path: Buffer, mode: number, dev: bigint)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!PathArg(info[0], &path)) return env.Undefined();
  bool lossless;
  const uint64_t dev = info[2].As<Napi::BigInt>().Uint64Value(&lossless);
  if (mknod(path.c_str(), static_cast<mode_t>(info[1].As<Napi::Number>().Uint32Value()), static_cast<dev_t>(dev)) != 0) {
    ThrowErrno(env, errno, "mknod", path);
  }
  return env.Undefined();
}

Napi::Value FchownPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "fchownPath(fd: number, uid: number, gid: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int fd = info[0].As<Napi::Number>().Int32Value();
  if (fchownat(fd, "", static_cast<uid_t>(info[1].As<Napi::Number>().Uint32Value()), static_cast<gid_t>(info[2].As<Napi::Number>().Uint32Value()),
               AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
    ThrowErrno(env, errno, "fchownat", "descriptor " + std::to_string(fd));
  }
  return env.Undefined();
}

Napi::Value UtimesPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "utimesPath(fd: number, seconds: number, nanoseconds: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int fd = info[0].As<Napi::Number>().Int32Value();
  const struct timespec t = {static_cast<time_t>(info[1].As<Napi::Number>().Int64Value()), static_cast<long>(info[2].As<Napi::Number>().Int64Value())};
  const struct timespec times[2] = {t, t};
  if (utimensat(fd, "", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) ThrowErrno(env, errno, "utimensat", "descriptor " + std::to_string(fd));
  return env.Undefined();
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "close(fd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int fd = info[0].As<Napi::Number>().Int32Value();
  if (close(fd) != 0 && errno != EINTR) ThrowErrno(env, errno, "close", "descriptor " + std::to_string(fd));
  return env.Undefined();
}

}  // namespace

void InitBeneath(Napi::Env env, Napi::Object exports) {
  exports.Set("openBeneath", Napi::Function::New(env, OpenBeneathJs, "openBeneath"));
  exports.Set("makeFolderBeneath", Napi::Function::New(env, MakeFolderBeneath, "makeFolderBeneath"));
  exports.Set("mknod", Napi::Function::New(env, Mknod, "mknod"));
  exports.Set("fchownPath", Napi::Function::New(env, FchownPath, "fchownPath"));
  exports.Set("utimesPath", Napi::Function::New(env, UtimesPath, "utimesPath"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
}

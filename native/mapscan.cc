// The block workers' native work (src/jobs/image/block-worker.ts).
//
// The image backups' scan of a raw file or block device without copying it:
// the range is mapped, each block's zero check and keyed Poly1305
// fingerprint are computed on the mapping, and only the blocks whose
// fingerprint differs from the cache's are copied out (into the slot the
// seal task reads). A pread of every used block copied all of them from the
// page cache first: on the image bench that copy was a third of an
// incremental's CPU (docs/decisions.md, "Reading").
//
// A file that shrinks while it is mapped makes its pages past the end raise
// SIGBUS on access. The loop runs with a per-thread jump buffer armed; the
// handler returns to it when the kernel raised the fault for an address in
// the mapping this thread scans (the caller then reports the source as
// shrunk), and otherwise hands the signal to the action that was there
// before, so any other SIGBUS (one sent with kill, a fault elsewhere) does
// what it did.
#include "addon.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>

namespace {

// block-protocol.ts BlockKind.
constexpr uint8_t kZero = 0;
constexpr uint8_t kSame = 1;
constexpr uint8_t kChanged = 2;

thread_local sigjmp_buf* armed = nullptr;
thread_local const uint8_t* armedBase = nullptr;
thread_local size_t armedLength = 0;
struct sigaction previous;

void OnBus(int sig, siginfo_t* info, void* context) {
  // Ours only when the kernel raised it (si_code > 0: not kill(2)) for an
  // access inside this thread's mapping.
  const uint8_t* at = static_cast<const uint8_t*>(info->si_addr);
  if (armed != nullptr && info->si_code > 0 && at >= armedBase && at < armedBase + armedLength) siglongjmp(*armed, 1);
  if (previous.sa_flags & SA_SIGINFO) {
    previous.sa_sigaction(sig, info, context);
    return;
  }
  if (previous.sa_handler == SIG_IGN) return;
  if (previous.sa_handler != SIG_DFL) {
    previous.sa_handler(sig);
    return;
  }
  // The default action: the process ends as it would have without this handler.
  signal(sig, SIG_DFL);
  raise(sig);
}

std::once_flag installed;

void InstallHandler() {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = OnBus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &previous);
}

bool IsZero(const uint8_t* p, size_t n) {
  const uint64_t* w = reinterpret_cast<const uint64_t*>(p);
  size_t words = n / 8;
  uint64_t acc = 0;
  for (size_t i = 0; i < words; i++) {
    acc |= w[i];
    if ((i & 63) == 63 && acc != 0) return false;
  }
  for (size_t i = words * 8; i < n; i++) acc |= p[i];
  return acc == 0;
}

// scanMapped(fd, position, length, blockSize, fpKey, expect, kinds, fingerprints, copyTo)
//   → 0, an errno (mmap failed), or -1 (SIGBUS: the source is shorter than the range).
// kinds[i] and fingerprints[16i..] are written for each block; a changed block's
// bytes are copied to copyTo at its offset within the range.
Napi::Value ScanMapped(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 9) {
    Napi::TypeError::New(env, "scanMapped takes 9 arguments").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int64_t position = info[1].As<Napi::Number>().Int64Value();
  size_t length = info[2].As<Napi::Number>().Uint32Value();
  size_t blockSize = info[3].As<Napi::Number>().Uint32Value();
  auto key = info[4].As<Napi::Uint8Array>();
  auto expect = info[5].As<Napi::Uint8Array>();
  auto kinds = info[6].As<Napi::Uint8Array>();
  auto fingerprints = info[7].As<Napi::Uint8Array>();
  auto copyTo = info[8].As<Napi::Uint8Array>();
  size_t blocks = blockSize == 0 ? 0 : (length + blockSize - 1) / blockSize;
  long page = sysconf(_SC_PAGESIZE);
  if (blockSize == 0 || key.ByteLength() != 32 || position < 0 || position % page != 0 || expect.ByteLength() < blocks * kFingerprintBytes ||
      kinds.ByteLength() < blocks || fingerprints.ByteLength() < blocks * kFingerprintBytes || copyTo.ByteLength() < length) {
    Napi::RangeError::New(env, "scanMapped: bad arguments").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::call_once(installed, InstallHandler);
  void* map = mmap(nullptr, length, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, position);
  if (map == MAP_FAILED) return Napi::Number::New(env, errno);
  const uint8_t* base = static_cast<const uint8_t*>(map);
  int result = 0;
  sigjmp_buf jump;
  // volatile: read after a siglongjmp back into this frame.
  volatile size_t i = 0;
  armedBase = base;
  armedLength = length;
  if (sigsetjmp(jump, 0) == 0) {
    armed = &jump;
    for (; i < blocks; i++) {
      size_t at = i * blockSize;
      size_t n = at + blockSize <= length ? blockSize : length - at;
      uint8_t* fp = fingerprints.Data() + i * kFingerprintBytes;
      if (IsZero(base + at, n)) {
        kinds[i] = kZero;
        memset(fp, 0, kFingerprintBytes);
        continue;
      }
      if (!Fingerprint(key.Data(), base + at, n, fp)) {
        result = EIO;
        break;
      }
      if (memcmp(fp, expect.Data() + i * kFingerprintBytes, kFingerprintBytes) == 0) {
        kinds[i] = kSame;
        continue;
      }
      kinds[i] = kChanged;
      memcpy(copyTo.Data() + at, base + at, n);
    }
  } else {
    result = -1;
  }
  armed = nullptr;
  munmap(map, length);
  return Napi::Number::New(env, result);
}

}  // namespace

void InitMapScan(Napi::Env env, Napi::Object exports) {
  exports.Set("scanMapped", Napi::Function::New(env, ScanMapped, "scanMapped"));
}

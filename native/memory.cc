// The process's allocator, tuned by a long-running server
// (src/cli/cmd-server.ts): `keepLargeBlocks`.
#include "addon.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

// keepLargeBlocks(bytes) → whether the allocator took it: blocks up to
// glibc's largest mmap threshold (32 MiB on 64-bit) come from its heap
// instead of fresh mappings, and up to `bytes` freed at the heap's top stay
// there. A server that holds each 16 MiB pack body whole then reuses memory
// it touched before, where every body was a fresh mapping to fault in page
// by page. glibc raises its threshold by itself after freeing such a
// mapping, but not while a server keeps the bodies' buffers for the next
// upload (docs/decisions.md, "Upload bodies in reused buffers"). false on a
// C library without these settings.
Napi::Value KeepLargeBlocks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double bytes = info.Length() == 1 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (!(bytes >= 0 && bytes <= static_cast<double>(INT32_MAX))) {
    Napi::TypeError::New(env, "keepLargeBlocks takes a number of bytes from 0 to 2^31 - 1").ThrowAsJavaScriptException();
    return env.Undefined();
  }
#if defined(__GLIBC__)
  const bool ok = mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, static_cast<int>(bytes)) == 1;
  return Napi::Boolean::New(env, ok);
#else
  return Napi::Boolean::New(env, false);
#endif
}

}  // namespace

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("keepLargeBlocks", Napi::Function::New(env, KeepLargeBlocks, "keepLargeBlocks"));
}

// The parts of the holdfast_native addon, each adding its functions to the
// module's exports.
#pragma once
#include <napi.h>
#include <sys/types.h>

#include <string>

void InitBeneath(Napi::Env env, Napi::Object exports);
void InitGcm(Napi::Env env, Napi::Object exports);
void InitRestore(Napi::Env env, Napi::Object exports);
void InitWalk(Napi::Env env, Napi::Object exports);
void InitXattr(Napi::Env env, Napi::Object exports);
void InitMapScan(Napi::Env env, Napi::Object exports);
void InitMemory(Napi::Env env, Napi::Object exports);

// Results built through raw N-API, each status checked (native/addon.cc): a
// worker thread being stopped makes N-API calls fail, and node-addon-api's
// wrappers then build an Error for the failure, which aborts the whole
// process. These give an empty Value instead, which reaches JavaScript as
// undefined if the thread runs any more.
// A copy of `n` bytes as a new Buffer.
Napi::Value CopyToBuffer(Napi::Env env, const void* data, size_t n);
// `value` stored at `index` of `array` (made first when empty); false when that failed.
bool AppendTo(Napi::Env env, napi_value* array, uint32_t index, napi_value value);

// native/beneath.cc: `path` (leading slashes ignored) opened relative to
// `dirfd` without following any symlink and without leaving the folder; -1
// and errno when it cannot be. `walk`: one component at a time (tests).
int OpenBeneath(int dirfd, const char* path, size_t len, int flags, mode_t mode, bool walk);
// The message of an OpenBeneath failure, as node:fs words its errors.
std::string BeneathMessage(int err, const char* syscall, const std::string& path);

// native/gcm.cc: the keyed fingerprint of a file or a block (format §6.1):
// the 16-byte Poly1305 tag of a ChaCha20-Poly1305 seal of nothing under
// `key` (32 bytes) and a zero nonce, with `data` as the associated data, on
// the calling thread's context. false when OpenSSL failed.
constexpr size_t kFingerprintBytes = 16;
bool Fingerprint(const uint8_t* key, const uint8_t* data, size_t n, uint8_t* tag);

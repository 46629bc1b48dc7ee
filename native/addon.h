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

// native/beneath.cc: `path` (leading slashes ignored) opened relative to
// `dirfd` without following any symlink and without leaving the folder; -1
// and errno when it cannot be. `walk`: one component at a time (tests).
int OpenBeneath(int dirfd, const char* path, size_t len, int flags, mode_t mode, bool walk);
// The message of an OpenBeneath failure, as node:fs words its errors.
std::string BeneathMessage(int err, const char* syscall, const std::string& path);

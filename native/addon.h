// The parts of the holdfast_native addon, each adding its functions to the
// module's exports.
#pragma once
#include <napi.h>

void InitRestore(Napi::Env env, Napi::Object exports);
void InitWalk(Napi::Env env, Napi::Object exports);
void InitXattr(Napi::Env env, Napi::Object exports);
void InitMapScan(Napi::Env env, Napi::Object exports);

// The holdfast_native addon's entry point (binding.gyp).
#include "addon.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitBeneath(env, exports);
  InitGcm(env, exports);
  InitRestore(env, exports);
  InitWalk(env, exports);
  InitXattr(env, exports);
  InitMapScan(env, exports);
  InitMemory(env, exports);
  return exports;
}

NODE_API_MODULE(holdfast_native, Init)

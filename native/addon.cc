// The holdfast_native addon's entry point (binding.gyp).
#include "addon.h"

Napi::Value CopyToBuffer(Napi::Env env, const void* data, size_t n) {
  napi_value buffer;
  if (napi_create_buffer_copy(env, n, data, nullptr, &buffer) != napi_ok) return Napi::Value();
  return Napi::Value(env, buffer);
}

bool AppendTo(Napi::Env env, napi_value* array, uint32_t index, napi_value value) {
  if (*array == nullptr && napi_create_array(env, array) != napi_ok) return false;
  return value != nullptr && napi_set_element(env, *array, index, value) == napi_ok;
}

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

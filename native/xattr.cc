#include "addon.h"

void InitXattr(Napi::Env, Napi::Object) {}

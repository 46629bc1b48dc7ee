#include "addon.h"

void InitWalk(Napi::Env, Napi::Object) {}

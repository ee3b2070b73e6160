// Registers native/sync_binding.cc's functions on the addon's exports.
#pragma once

#include <napi.h>

namespace billiard {

void InitSync(Napi::Env env, Napi::Object exports);

}  // namespace billiard

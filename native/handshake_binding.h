// Registers native/handshake_binding.cc's functions on the addon's exports.
#pragma once

#include <napi.h>

namespace billiard {

void InitHandshake(Napi::Env env, Napi::Object exports);

}  // namespace billiard

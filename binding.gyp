{
  "targets": [
    {
      "target_name": "billiard_native",
      "sources": ["native/addon.cc", "native/posix.cc", "native/blocking.cc", "native/sync_binding.cc", "native/handshake.cc", "native/handshake_binding.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
      "libraries": ["-ldl"]
    }
  ]
}

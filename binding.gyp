# The native part of holdfast: the system calls Node does not offer with
# Buffer paths (the xattr family) or offers only at one call per entry
# (a folder's names and the lstat of each; a restored file's open, write,
# metadata and close), paths resolved beneath a folder without following
# symlinks (openat2), and the image backups' scan of a mapped file (mmap,
# which Node does not offer; OpenSSL is Node's own). Built by `npm ci`
# (node-gyp), loaded by src/sources/native.ts.
# NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS: a worker thread stopped while it
# loads the addon (a restore that fails at once closes its pool) makes
# node-addon-api's throws in Init fail; without it that is a fatal error that
# aborts the whole process.
{
  'targets': [
    {
      'target_name': 'holdfast_native',
      'sources': ['native/addon.cc', 'native/beneath.cc', 'native/gcm.cc', 'native/mapscan.cc', 'native/memory.cc', 'native/restore.cc', 'native/walk.cc', 'native/xattr.cc'],
      'include_dirs': ["<!(node -p \"require('node-addon-api').include_dir\")"],
      'defines': ['NAPI_VERSION=8', 'NODE_ADDON_API_DISABLE_DEPRECATED', 'NAPI_DISABLE_CPP_EXCEPTIONS', 'NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS'],
      'cflags+': ['-fvisibility=hidden', '-O2'],
      'cflags_cc+': ['-std=c++17'],
    },
    # scrypt by libsodium (Debian's libsodium-dev), loaded by src/core/crypto.ts
    # with the first key derived: a target of its own, so that the workers,
    # which never derive, do not load libsodium.
    {
      'target_name': 'holdfast_scrypt',
      'sources': ['native/scrypt.cc'],
      'include_dirs': ["<!(node -p \"require('node-addon-api').include_dir\")"],
      'defines': ['NAPI_VERSION=8', 'NODE_ADDON_API_DISABLE_DEPRECATED', 'NAPI_DISABLE_CPP_EXCEPTIONS', 'NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS'],
      'cflags+': ['-fvisibility=hidden', '-O2'],
      'cflags_cc+': ['-std=c++17'],
      'libraries': ['-lsodium'],
    },
  ],
}

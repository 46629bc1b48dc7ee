// The AEAD work in OpenSSL contexts kept per thread. AES-256-GCM of every
// sealed object, in buffers the caller gives (src/core/crypto.ts `seal` and
// `open`, on every thread): `gcmSeal` (an image backup's block worker seals
// into the buffer it hands back) and `gcmOpen` (a restore's worker opens into
// a buffer it reuses). Node's createCipheriv and createDecipheriv cost an
// OpenSSL cipher fetch, a JS object and fresh output buffers per call, about
// 20 µs of a block of some 25 KB sealed (docs/decisions.md, "AEAD").
// And `fingerprint`, the keyed fingerprint of every file a backup reads and
// every block of an image (format §6.1): through createCipheriv it cost
// 4.5 µs a call before a byte was hashed. OpenSSL is Node's own.
#include "addon.h"

#include <string.h>

#include <openssl/evp.h>

#include <cstdint>

namespace {

// One AES-256-GCM context per thread and direction, its cipher set once: a
// job seals or opens thousands of blocks per thread, each only with its own
// key and nonce.
struct GcmContext {
  EVP_CIPHER_CTX* ctx = nullptr;
  EVP_CIPHER* cipher = nullptr;
  bool ready = false;
  ~GcmContext() {
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(cipher);
  }
};

thread_local GcmContext sealing;
thread_local GcmContext opening;

constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;

// The thread's context for `encrypt` or not, made on first use; false after
// throwing when OpenSSL has no AES-256-GCM.
bool Ready(Napi::Env env, GcmContext& gcm, bool encrypt) {
  if (gcm.ready) return true;
  if (gcm.cipher == nullptr) gcm.cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  if (gcm.ctx == nullptr) gcm.ctx = EVP_CIPHER_CTX_new();
  if (gcm.cipher == nullptr || gcm.ctx == nullptr || EVP_CipherInit_ex2(gcm.ctx, gcm.cipher, nullptr, nullptr, encrypt ? 1 : 0, nullptr) != 1) {
    Napi::Error::New(env, "OpenSSL has no AES-256-GCM").ThrowAsJavaScriptException();
    return false;
  }
  gcm.ready = true;
  return true;
}

// Whether two byte ranges share a byte: sealing or opening into the bytes it
// reads would write over input before it is read (a valid tag over other
// bytes when sealing).
bool Overlap(const Napi::Uint8Array& a, const Napi::Uint8Array& b) {
  const uint8_t* x = a.Data();
  const uint8_t* y = b.Data();
  return a.ByteLength() > 0 && b.ByteLength() > 0 && x < y + b.ByteLength() && y < x + a.ByteLength();
}

bool AllTypedArrays(const Napi::CallbackInfo& info, size_t n) {
  if (info.Length() != n) return false;
  for (size_t i = 0; i < n; i++) {
    if (!info[i].IsTypedArray()) return false;
  }
  return true;
}

// gcmSeal(key, nonce, plain, aad, out) → the sealed length (plain + 28),
// written to the start of out in crypto.ts `seal`'s layout: nonce (12) ||
// ciphertext || tag (16).
Napi::Value GcmSeal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!AllTypedArrays(info, 5)) {
    Napi::TypeError::New(env, "gcmSeal takes 5 Uint8Arrays").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto key = info[0].As<Napi::Uint8Array>();
  auto nonce = info[1].As<Napi::Uint8Array>();
  auto plain = info[2].As<Napi::Uint8Array>();
  auto aad = info[3].As<Napi::Uint8Array>();
  auto out = info[4].As<Napi::Uint8Array>();
  size_t n = plain.ByteLength();
  if (key.ByteLength() != 32 || nonce.ByteLength() != kNonceBytes || n > INT32_MAX - kNonceBytes - kTagBytes || aad.ByteLength() > INT32_MAX ||
      out.ByteLength() < n + kNonceBytes + kTagBytes) {
    Napi::RangeError::New(env, "gcmSeal: bad arguments or output buffer too small").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (Overlap(out, plain) || Overlap(out, aad) || Overlap(out, nonce) || Overlap(out, key)) {
    Napi::RangeError::New(env, "gcmSeal: the output buffer overlaps an input").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!Ready(env, sealing, true)) return env.Undefined();
  uint8_t* o = out.Data();
  memmove(o, nonce.Data(), kNonceBytes);
  int len = 0;
  int last = 0;
  bool ok = EVP_EncryptInit_ex2(sealing.ctx, nullptr, key.Data(), o, nullptr) == 1 &&
            EVP_EncryptUpdate(sealing.ctx, nullptr, &len, aad.Data(), static_cast<int>(aad.ByteLength())) == 1 &&
            EVP_EncryptUpdate(sealing.ctx, o + kNonceBytes, &len, plain.Data(), static_cast<int>(n)) == 1 &&
            EVP_EncryptFinal_ex(sealing.ctx, o + kNonceBytes + len, &last) == 1 &&
            EVP_CIPHER_CTX_ctrl(sealing.ctx, EVP_CTRL_AEAD_GET_TAG, kTagBytes, o + kNonceBytes + n) == 1;
  if (!ok) {
    Napi::Error::New(env, "gcmSeal: AES-256-GCM failed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(n + kNonceBytes + kTagBytes));
}

// gcmOpen(key, sealed, aad, out) → the plaintext's length, written to the
// start of out, or -1 when authentication fails (the plaintext's room in out
// is then zeroed). sealed is crypto.ts `seal`'s layout: nonce (12) || ciphertext || tag (16).
Napi::Value GcmOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!AllTypedArrays(info, 4)) {
    Napi::TypeError::New(env, "gcmOpen takes 4 Uint8Arrays").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto key = info[0].As<Napi::Uint8Array>();
  auto sealed = info[1].As<Napi::Uint8Array>();
  auto aad = info[2].As<Napi::Uint8Array>();
  auto out = info[3].As<Napi::Uint8Array>();
  size_t n = sealed.ByteLength();
  if (key.ByteLength() != 32 || n > INT32_MAX || aad.ByteLength() > INT32_MAX) {
    Napi::RangeError::New(env, "gcmOpen: bad arguments").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (n < kNonceBytes + kTagBytes) return Napi::Number::New(env, -1);
  size_t plain = n - kNonceBytes - kTagBytes;
  if (out.ByteLength() < plain) {
    Napi::RangeError::New(env, "gcmOpen: output buffer too small").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (Overlap(out, sealed) || Overlap(out, aad) || Overlap(out, key)) {
    Napi::RangeError::New(env, "gcmOpen: the output buffer overlaps an input").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!Ready(env, opening, false)) return env.Undefined();
  const uint8_t* s = sealed.Data();
  int len = 0;
  int last = 0;
  bool ok = EVP_DecryptInit_ex2(opening.ctx, nullptr, key.Data(), s, nullptr) == 1 &&
            EVP_DecryptUpdate(opening.ctx, nullptr, &len, aad.Data(), static_cast<int>(aad.ByteLength())) == 1 &&
            EVP_DecryptUpdate(opening.ctx, out.Data(), &len, s + kNonceBytes, static_cast<int>(plain)) == 1 &&
            EVP_CIPHER_CTX_ctrl(opening.ctx, EVP_CTRL_AEAD_SET_TAG, kTagBytes, const_cast<uint8_t*>(s + n - kTagBytes)) == 1 &&
            EVP_DecryptFinal_ex(opening.ctx, out.Data() + len, &last) == 1;
  // Bytes that failed authentication are never left where a caller might read them.
  if (!ok) memset(out.Data(), 0, plain);
  return Napi::Number::New(env, ok ? static_cast<double>(plain) : -1);
}

// The ChaCha20-Poly1305 context of `Fingerprint`, per thread.
struct FingerprintContext {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  ~FingerprintContext() { EVP_CIPHER_CTX_free(ctx); }
};

thread_local FingerprintContext fingerprinting;

// fingerprint(key, data) → the 16-byte fingerprint (a new Buffer).
Napi::Value FingerprintOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!AllTypedArrays(info, 2) || info[0].As<Napi::Uint8Array>().ByteLength() != 32) {
    Napi::TypeError::New(env, "fingerprint takes a 32-byte key and a Uint8Array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto key = info[0].As<Napi::Uint8Array>();
  auto data = info[1].As<Napi::Uint8Array>();
  uint8_t tag[kFingerprintBytes];
  if (!Fingerprint(key.Data(), data.Data(), data.ByteLength(), tag)) {
    Napi::Error::New(env, "fingerprint: ChaCha20-Poly1305 failed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return CopyToBuffer(env, tag, kFingerprintBytes);
}

}  // namespace

bool Fingerprint(const uint8_t* key, const uint8_t* data, size_t n, uint8_t* tag) {
  EVP_CIPHER_CTX* ctx = fingerprinting.ctx;
  if (ctx == nullptr) return false;
  static const uint8_t nonce[12] = {0};
  int len = 0;
  uint8_t none[16];
  // The cipher is set once per context: each fingerprint then only rekeys it.
  if (EVP_CIPHER_CTX_get0_cipher(ctx) == nullptr && EVP_EncryptInit_ex(ctx, EVP_chacha20_poly1305(), nullptr, nullptr, nullptr) != 1) return false;
  if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, key, nonce) != 1) return false;
  // The associated data in pieces an int can count; Poly1305 takes them as one.
  constexpr size_t kPiece = size_t{1} << 30;
  for (size_t at = 0; at < n; at += kPiece) {
    const size_t piece = n - at < kPiece ? n - at : kPiece;
    if (EVP_EncryptUpdate(ctx, nullptr, &len, data + at, static_cast<int>(piece)) != 1) return false;
  }
  return EVP_EncryptFinal_ex(ctx, none, &len) == 1 && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kFingerprintBytes, tag) == 1;
}

void InitGcm(Napi::Env env, Napi::Object exports) {
  exports.Set("gcmSeal", Napi::Function::New(env, GcmSeal, "gcmSeal"));
  exports.Set("gcmOpen", Napi::Function::New(env, GcmOpen, "gcmOpen"));
  exports.Set("fingerprint", Napi::Function::New(env, FingerprintOf, "fingerprint"));
}

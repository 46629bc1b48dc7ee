// scrypt (RFC 7914) on the thread pool by libsodium's implementation, for
// the repository's key files and the server's password hashes
// (src/core/crypto.ts `scryptKey`). The same function as OpenSSL's, which
// Node's crypto.scrypt runs, in about two thirds of its time here (its Salsa20/8
// core in SSE2): every keyed command waits for one derivation before it can
// read a snapshot (docs/decisions.md, "KDF").
//
// scrypt(password, salt, N, r, p, length) → Promise<Buffer>. The password is
// copied and the copy zeroed once derived; the caller zeroes its own.
#include <errno.h>
#include <napi.h>
#include <sodium.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace {

std::vector<uint8_t> BytesOf(const Napi::Uint8Array& a) {
  return std::vector<uint8_t>(a.Data(), a.Data() + a.ByteLength());
}

class ScryptWorker : public Napi::AsyncWorker {
 public:
  ScryptWorker(Napi::Env env, std::vector<uint8_t> password, std::vector<uint8_t> salt, uint64_t n, uint32_t r, uint32_t p, size_t length)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        password_(std::move(password)),
        salt_(std::move(salt)),
        n_(n),
        r_(r),
        p_(p),
        key_(length) {}

  ~ScryptWorker() override {
    sodium_memzero(password_.data(), password_.size());
    sodium_memzero(key_.data(), key_.size());
  }

  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    static const uint8_t kNothing = 0;
    const uint8_t* pw = password_.empty() ? &kNothing : password_.data();
    const uint8_t* salt = salt_.empty() ? &kNothing : salt_.data();
    if (crypto_pwhash_scryptsalsa208sha256_ll(pw, password_.size(), salt, salt_.size(), n_, r_, p_, key_.data(), key_.size()) != 0) {
      // Never a key of zeros for a failure that set no errno.
      failed_ = true;
      errno_ = errno;
    }
    sodium_memzero(password_.data(), password_.size());
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (failed_) {
      const char* why = errno_ == ENOMEM ? "scrypt: not enough memory for these parameters" : "scrypt: parameters out of range";
      deferred_.Reject(Napi::Error::New(env, why).Value());
      return;
    }
    deferred_.Resolve(Napi::Buffer<uint8_t>::Copy(env, key_.data(), key_.size()));
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<uint8_t> password_;
  std::vector<uint8_t> salt_;
  uint64_t n_;
  uint32_t r_;
  uint32_t p_;
  std::vector<uint8_t> key_;
  bool failed_ = false;
  int errno_ = 0;
};

bool IsCount(const Napi::Value& v, double max) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  return d >= 1 && d <= max && d == static_cast<double>(static_cast<uint64_t>(d));
}

Napi::Value Scrypt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 6 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !IsCount(info[2], 9007199254740991.0) ||
      !IsCount(info[3], UINT32_MAX) || !IsCount(info[4], UINT32_MAX) || !IsCount(info[5], 1 << 16) ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(env, "scrypt(password: Uint8Array, salt: Uint8Array, N, r, p, length)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new ScryptWorker(env, BytesOf(info[0].As<Napi::Uint8Array>()), BytesOf(info[1].As<Napi::Uint8Array>()),
                                  static_cast<uint64_t>(info[2].As<Napi::Number>().DoubleValue()), info[3].As<Napi::Number>().Uint32Value(),
                                  info[4].As<Napi::Number>().Uint32Value(), info[5].As<Napi::Number>().Uint32Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Picks the SSE2 implementation where the CPU has it; scrypt is otherwise the portable C one.
  if (sodium_init() < 0) {
    Napi::Error::New(env, "libsodium failed to initialise").ThrowAsJavaScriptException();
    return exports;
  }
  exports.Set("scrypt", Napi::Function::New(env, Scrypt, "scrypt"));
  return exports;
}

}  // namespace

NODE_API_MODULE(holdfast_scrypt, Init)

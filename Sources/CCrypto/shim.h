#ifndef SWITCHBOARD_CCRYPTO_SHIM_H
#define SWITCHBOARD_CCRYPTO_SHIM_H

// libcrypto (OpenSSL 3) as JWT verification uses it: HMAC, EVP signature verification, public
// keys from PEM and from JWK parameters (OSSL_PARAM_BLD + EVP_PKEY_fromdata), ECDSA signature
// encoding. Nothing here signs, and no TLS (libssl) is imported.
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

// Macros Swift cannot import (they expand to expressions or to other macros).
static inline int switchboard_evp_pkey_public_key_selection(void) { return EVP_PKEY_PUBLIC_KEY; }
static inline int switchboard_evp_pkey_rsa(void) { return EVP_PKEY_RSA; }
static inline int switchboard_evp_pkey_ec(void) { return EVP_PKEY_EC; }

#endif

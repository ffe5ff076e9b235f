// Shim for OpenSSL 3 (libcrypto + libssl). Only includes, macro wrappers and one OSSL_PARAM helper.
#ifndef KMSFS_COPENSSL_H
#define KMSFS_COPENSSL_H
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/hmac.h>
#include <openssl/core_names.h>

// SSL_CTX_set_min_proto_version and friends are macros over SSL_CTX_ctrl.
static inline long COpenSSL_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}
static inline long COpenSSL_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_max_proto_version(ctx, version);
}
// SSL_set_tlsext_host_name is a macro over SSL_ctrl.
static inline long COpenSSL_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}
// Keys an HMAC EVP_MAC_CTX with SHA-256 (OSSL_PARAM arrays need C string literals).
static inline int COpenSSL_HMAC_SHA256_init(EVP_MAC_CTX *ctx, const unsigned char *key, size_t length) {
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    return EVP_MAC_init(ctx, key, length, params);
}
#endif

/* cleanup_ssl.h - cleanup attributes for OpenSSL objects (see cleanup.h). */
#ifndef CELLS_CLEANUP_SSL_H
#define CELLS_CLEANUP_SSL_H

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/ssl.h>

#define CELLS_DEFINE_SSL_CLEANUP(type, fn)                                                         \
	static inline void cells_##fn##p(type **p)                                                 \
	{                                                                                          \
		if (*p)                                                                            \
			fn(*p);                                                                    \
	}

CELLS_DEFINE_SSL_CLEANUP(EVP_PKEY, EVP_PKEY_free)
CELLS_DEFINE_SSL_CLEANUP(EVP_PKEY_CTX, EVP_PKEY_CTX_free)
CELLS_DEFINE_SSL_CLEANUP(EVP_MD_CTX, EVP_MD_CTX_free)
CELLS_DEFINE_SSL_CLEANUP(EVP_CIPHER_CTX, EVP_CIPHER_CTX_free)
CELLS_DEFINE_SSL_CLEANUP(X509, X509_free)
CELLS_DEFINE_SSL_CLEANUP(X509_REQ, X509_REQ_free)
CELLS_DEFINE_SSL_CLEANUP(X509_STORE, X509_STORE_free)
CELLS_DEFINE_SSL_CLEANUP(X509_STORE_CTX, X509_STORE_CTX_free)
CELLS_DEFINE_SSL_CLEANUP(BIO, BIO_free_all)
CELLS_DEFINE_SSL_CLEANUP(SSL_CTX, SSL_CTX_free)
CELLS_DEFINE_SSL_CLEANUP(SSL, SSL_free)

#define cleanup_pkey __attribute__((cleanup(cells_EVP_PKEY_freep)))
#define cleanup_pkey_ctx __attribute__((cleanup(cells_EVP_PKEY_CTX_freep)))
#define cleanup_md_ctx __attribute__((cleanup(cells_EVP_MD_CTX_freep)))
#define cleanup_cipher_ctx __attribute__((cleanup(cells_EVP_CIPHER_CTX_freep)))
#define cleanup_x509 __attribute__((cleanup(cells_X509_freep)))
#define cleanup_x509_req __attribute__((cleanup(cells_X509_REQ_freep)))
#define cleanup_x509_store __attribute__((cleanup(cells_X509_STORE_freep)))
#define cleanup_x509_store_ctx __attribute__((cleanup(cells_X509_STORE_CTX_freep)))
#define cleanup_bio __attribute__((cleanup(cells_BIO_free_allp)))
#define cleanup_ssl_ctx __attribute__((cleanup(cells_SSL_CTX_freep)))
#define cleanup_ssl __attribute__((cleanup(cells_SSL_freep)))

#endif

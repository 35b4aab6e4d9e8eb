/* NATS nkeys: the public key of a user's seed file, which nats.c needs
 * next to the file itself (natsOptions_SetNKeyFromSeed) and cannot derive.
 * An nkey is base32 (RFC 4648, unpadded) of prefix bytes, the Ed25519 key
 * and a CRC-16/XMODEM, little-endian; see the nkeys README of nats-io. */
#include "bus/internal.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define PREFIX_SEED (18 << 3) /* 'S' */
#define PREFIX_USER (20 << 3) /* 'U' */
#define KEY_LEN 32

static const char B32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

/* Decodes base32 text of n characters into out (at most cap bytes): the
 * byte count, or -1 on a character outside the alphabet or overflow. */
static int b32_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *c = strchr(B32, s[i]);
        if (!c || !s[i]) return -1;
        acc = (acc << 5) | (uint32_t)(c - B32);
        bits += 5;
        if (bits >= 8) {
            if (o == cap) return -1;
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (int)o;
}

static void b32_encode(const uint8_t *p, size_t n, char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | p[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = B32[(acc >> bits) & 31];
        }
    }
    if (bits > 0) out[o++] = B32[(acc << (5 - bits)) & 31];
    out[o] = '\0';
}

/* The seed's 32 key bytes into key, from the file's first "SU..." word. */
static int read_seed(const char *path, uint8_t key[KEY_LEN], char *err, size_t errlen)
{
    char text[4096];
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read it");
        return -1;
    }
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *s = strstr(text, "SU");
    uint8_t raw[2 + KEY_LEN + 2];
    int len = s ? b32_decode(s, strspn(s, B32), raw, sizeof raw) : -1;
    int rc = -1;
    if (len != (int)sizeof raw || (raw[0] & 0xf8) != PREFIX_SEED ||
        (((raw[0] & 7) << 5) | (raw[1] >> 3)) != PREFIX_USER) {
        snprintf(err, errlen, "holds no user nkey seed (SU...)");
    } else if (crc16(raw, sizeof raw - 2) != (raw[sizeof raw - 2] | raw[sizeof raw - 1] << 8)) {
        snprintf(err, errlen, "the seed's checksum is wrong");
    } else {
        memcpy(key, raw + 2, KEY_LEN);
        rc = 0;
    }
    OPENSSL_cleanse(raw, sizeof raw);
    OPENSSL_cleanse(text, sizeof text);
    return rc;
}

int fc__bus_nkey_public(const char *seed_file, char pub[FC__BUS_NKEY_LEN + 1], char *err,
                        size_t errlen)
{
    uint8_t seed[KEY_LEN];
    if (read_seed(seed_file, seed, err, errlen) != 0) return -1;
    EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, KEY_LEN);
    OPENSSL_cleanse(seed, sizeof seed);
    uint8_t raw[1 + KEY_LEN + 2] = {PREFIX_USER};
    size_t len = KEY_LEN;
    int ok = k && EVP_PKEY_get_raw_public_key(k, raw + 1, &len) == 1 && len == KEY_LEN;
    EVP_PKEY_free(k);
    if (!ok) {
        snprintf(err, errlen, "OpenSSL cannot make an Ed25519 key of its seed");
        return -1;
    }
    uint16_t crc = crc16(raw, 1 + KEY_LEN);
    raw[1 + KEY_LEN] = (uint8_t)(crc & 0xff);
    raw[2 + KEY_LEN] = (uint8_t)(crc >> 8);
    b32_encode(raw, sizeof raw, pub);
    return 0;
}

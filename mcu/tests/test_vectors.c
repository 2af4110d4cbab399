/* Check the C codec against the shared vectors (firmware_bridge/vectors/protocol_v1.json).
 * The file is written one vector per line (make_vectors.py), so a tiny key scanner is
 * enough here: no JSON library on the firmware side. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evla_proto.h"

static int failures;
#define FAIL(...) do { failures++; fprintf(stderr, "FAIL " __VA_ARGS__); fputc('\n', stderr); } while (0)

/* Copy the string value of "key": "..." in line to out; returns 1 if found. */
static int get_str(const char *line, const char *key, char *out, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(line, pat);
    if (!p)
        return 0;
    p += strlen(pat);
    const char *e = strchr(p, '"');
    if (!e || (size_t)(e - p) >= cap)
        return 0;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = 0;
    return 1;
}

static long get_int(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

static size_t unhex(const char *h, uint8_t *out, size_t cap)
{
    size_t n = strlen(h) / 2;
    if (n > cap)
        return (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    return n;
}

static char line[1 << 16], name[128], hex[1 << 15], canon[8192], tmp[8192];
static uint8_t bytes[1 << 14], out[1 << 14], raw2[1 << 14];

static void check_valid(void)
{
    size_t n = unhex(hex, bytes, sizeof bytes);
    evla_msg_t m;
    memset(&m, 0, sizeof m);
    evla_result_t r = evla_decode_frame(bytes, n - 1, &m); /* without the delimiter */
    if (r != EVLA_OK) {
        FAIL("%s: decode -> %s", name, evla_result_name(r));
        return;
    }
    evla_format_msg(&m, tmp, sizeof tmp);
    if (strcmp(tmp, canon) != 0)
        FAIL("%s: canonical\n  C:      %s\n  vector: %s", name, tmp, canon);
    size_t en = evla_encode_frame(&m, out, sizeof out);
    if (en != n || memcmp(out, bytes, n) != 0)
        FAIL("%s: re-encoded wire bytes differ", name);
    char rawhex[4096];
    if (get_str(line, "raw_hex", rawhex, sizeof rawhex)) {
        size_t rn = unhex(rawhex, raw2, sizeof raw2);
        size_t rn2 = evla_encode_raw(&m, out, sizeof out);
        if (rn != rn2 || memcmp(out, raw2, rn) != 0)
            FAIL("%s: raw bytes differ", name);
    }
}

static void check_invalid(const char *want)
{
    size_t n = unhex(hex, bytes, sizeof bytes);
    evla_msg_t m;
    evla_result_t r = evla_decode_frame(bytes, n - 1, &m);
    if (strcmp(evla_result_name(r), want) != 0)
        FAIL("%s: expected error %s, got %s", name, want, evla_result_name(r));
}

static void check_stream(void)
{
    size_t n = unhex(hex, bytes, sizeof bytes);
    static evla_stream_t s;
    evla_stream_init(&s);
    evla_msg_t m;
    const char *expect = strstr(line, "\"frames\": [");
    expect = expect ? expect + strlen("\"frames\": [") : "";
    int got_frames = 0;
    for (size_t i = 0; i < n; i++) {
        int got = 0;
        evla_stream_push(&s, bytes[i], &m, &got);
        if (!got)
            continue;
        got_frames++;
        evla_format_msg(&m, tmp, sizeof tmp);
        /* next expected entry: "..." */
        const char *q = strchr(expect, '"');
        const char *e = q ? strchr(q + 1, '"') : NULL;
        if (!q || !e || (size_t)(e - q - 1) != strlen(tmp) || strncmp(q + 1, tmp, strlen(tmp)))
            FAIL("%s: unexpected frame %s", name, tmp);
        if (e)
            expect = e + 1;
    }
    const char *end = strchr(expect, ']');
    const char *more = strchr(expect, '"');
    if (more && end && more < end)
        FAIL("%s: missing frames after %d", name, got_frames);
    long errs = get_int(line, "errors");
    if ((long)evla_stream_error_total(&s) != errs)
        FAIL("%s: errors %lu, expected %ld", name, (unsigned long)evla_stream_error_total(&s), errs);
}

static void check_cobs(void)
{
    char dec_hex[4096], enc_hex[4096];
    if (!get_str(line, "decoded_hex", dec_hex, sizeof dec_hex) ||
        !get_str(line, "encoded_hex", enc_hex, sizeof enc_hex)) {
        FAIL("cobs vector unreadable");
        return;
    }
    size_t dn = unhex(dec_hex, bytes, sizeof bytes);
    size_t en = unhex(enc_hex, raw2, sizeof raw2);
    size_t got = evla_cobs_encode(bytes, dn, out, sizeof out);
    if (got != en || memcmp(out, raw2, en) != 0)
        FAIL("cobs encode of %s", dec_hex);
    int back = evla_cobs_decode(raw2, en, out, sizeof out);
    if (back != (int)dn || memcmp(out, bytes, dn) != 0)
        FAIL("cobs decode of %s", enc_hex);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s firmware_bridge/vectors/protocol_v1.json\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    int nvalid = 0, ninvalid = 0, nstream = 0, ncobs = 0, crc_ok = 0;
    while (fgets(line, sizeof line, f)) {
        char err[64];
        name[0] = 0;
        get_str(line, "name", name, sizeof name);
        if (strstr(line, "\"crc_check\"")) {
            long want = get_int(line, "crc");
            crc_ok = (long)evla_crc32((const uint8_t *)"123456789", 9) == want;
            if (!crc_ok)
                FAIL("crc check value");
        } else if (get_str(line, "canonical", canon, sizeof canon) &&
                   get_str(line, "wire_hex", hex, sizeof hex)) {
            check_valid();
            nvalid++;
        } else if (get_str(line, "error", err, sizeof err) &&
                   get_str(line, "wire_hex", hex, sizeof hex)) {
            check_invalid(err);
            ninvalid++;
        } else if (get_str(line, "stream_hex", hex, sizeof hex)) {
            check_stream();
            nstream++;
        } else if (strstr(line, "\"encoded_hex\"")) {
            check_cobs();
            ncobs++;
        }
    }
    fclose(f);
    printf("vectors: valid=%d invalid=%d streams=%d cobs=%d crc=%s failures=%d\n", nvalid,
           ninvalid, nstream, ncobs, crc_ok ? "ok" : "FAIL", failures);
    if (nvalid == 0 || ninvalid == 0 || nstream == 0 || ncobs == 0 || !crc_ok)
        return 1;
    return failures ? 1 : 0;
}

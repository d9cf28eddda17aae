/*
 * Minimal compiled native messaging host: the floor any host can reach.
 *
 * Reads frames (4-byte native-order length + UTF-8 JSON object) from stdin and
 * answers each with {"id":<id>,"ok":true,"result":{}} on stdout until EOF.
 * The id is found by scanning for the "id" key (the harness sends flat objects
 * whose "id" is a non-negative integer); no other JSON is parsed.
 * Built on the fly by bench/harness/spawn.py with the system compiler.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int read_full(unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(0, buf + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(const unsigned char *buf, size_t n) {
    size_t put = 0;
    while (put < n) {
        ssize_t w = write(1, buf + put, n - put);
        if (w <= 0) return -1;
        put += (size_t)w;
    }
    return 0;
}

static unsigned long long find_id(const char *body, size_t n) {
    const char *key = "\"id\"";
    for (size_t i = 0; i + 4 <= n; i++) {
        if (memcmp(body + i, key, 4) != 0) continue;
        size_t j = i + 4;
        while (j < n && (body[j] == ' ' || body[j] == ':')) j++;
        unsigned long long id = 0;
        while (j < n && body[j] >= '0' && body[j] <= '9') id = id * 10 + (unsigned)(body[j++] - '0');
        return id;
    }
    return 0;
}

int main(void) {
    unsigned char *body = NULL;
    size_t cap = 0;
    for (;;) {
        uint32_t len;
        if (read_full((unsigned char *)&len, 4) != 0) return 0;
        if (len > cap) {
            free(body);
            cap = len;
            body = malloc(cap);
            if (body == NULL) return 1;
        }
        if (read_full(body, len) != 0) return 0;
        unsigned char out[96];
        int m = snprintf((char *)out + 4, sizeof out - 4, "{\"id\":%llu,\"ok\":true,\"result\":{}}",
                         find_id((const char *)body, len));
        uint32_t olen = (uint32_t)m;
        memcpy(out, &olen, 4);
        if (write_full(out, 4 + (size_t)m) != 0) return 1;
    }
}

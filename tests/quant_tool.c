/* quant_tool.c - kvchat's tensor-type kernels on standard input and output,
 * for tests/quant_refcheck.py, which holds them to the gguf Python package's
 * reference decoders. Raw little-endian bytes in, raw bytes out:
 *
 *   quant_tool dequant TYPE        blocks of TYPE   -> float32 elements
 *   quant_tool quant TYPE          float32 elements -> blocks (a whole number)
 *   quant_tool random TYPE N SEED  nothing          -> N elements of random
 *                                  blocks (quant_random_row, sigma 0.05)
 *
 * TYPE is a name as quant_type_from_name reads it. Exits 2 with a one-line
 * message for a bad command, an unsupported type or input that is not whole
 * blocks (or whole quantiser blocks of floats).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

static int die(const char *msg, const char *arg)
{
    fprintf(stderr, "quant_tool: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    return 2;
}

/* All of standard input into a malloc'd buffer; *N its length. */
static unsigned char *read_all(size_t *n)
{
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len, stdin);
        len += got;
        if (got == 0)
            break;
        if (len == cap) {
            unsigned char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                return NULL;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    *n = len;
    return buf;
}

static int write_all(const void *p, size_t n)
{
    return fwrite(p, 1, n, stdout) == n && fflush(stdout) == 0 ? 0 : die("cannot write the output", NULL);
}

int main(int argc, char **argv)
{
    enum ggml_type t;
    if (argc < 3)
        return die("usage: quant_tool dequant|quant|random TYPE [N SEED]", NULL);
    if (!quant_type_from_name(argv[2], &t) || !quant_type_supported(t))
        return die("not a type kvchat computes with", argv[2]);
    int64_t bs = quant_block_size(t);
    size_t ts = quant_type_size(t);
    if (strcmp(argv[1], "random") == 0) {
        if (argc != 5)
            return die("usage: quant_tool random TYPE N SEED", NULL);
        int64_t n = strtoll(argv[3], NULL, 10);
        uint64_t seed = strtoull(argv[4], NULL, 10);
        size_t rs = quant_row_size(t, n);
        if (n <= 0 || rs == 0)
            return die("N is not a positive whole number of blocks", argv[3]);
        void *row = malloc(rs);
        if (!row)
            return die("out of memory", NULL);
        quant_random_row(t, row, n, 0.05f, &seed);
        int rc = write_all(row, rs);
        free(row);
        return rc;
    }
    size_t len;
    unsigned char *in = read_all(&len);
    if (!in)
        return die("out of memory reading the input", NULL);
    int rc;
    if (strcmp(argv[1], "dequant") == 0) {
        if (len % ts != 0) {
            free(in);
            return die("input is not whole blocks", argv[2]);
        }
        int64_t n = (int64_t)(len / ts) * bs;
        float *out = malloc((size_t)n * sizeof *out + 1);
        rc = out ? 0 : die("out of memory", NULL);
        if (out && n > 0)
            quant_dequantize_row(t, in, out, n);
        if (out)
            rc = write_all(out, (size_t)n * sizeof *out);
        free(out);
    } else if (strcmp(argv[1], "quant") == 0) {
        int64_t n = (int64_t)(len / sizeof(float));
        if (len % sizeof(float) != 0 || n % bs != 0) {
            free(in);
            return die("input is not whole blocks of float32", argv[2]);
        }
        /* The quantisers read floats: copy to aligned memory. */
        float *x = malloc(len + 1);
        unsigned char *out = malloc(quant_row_size(t, n) + 1);
        rc = x && out ? 0 : die("out of memory", NULL);
        if (rc == 0) {
            memcpy(x, in, len);
            if (n > 0)
                quant_quantize_row(t, x, out, n);
            rc = write_all(out, quant_row_size(t, n));
        }
        free(x);
        free(out);
    } else {
        rc = die("unknown command (dequant, quant, random)", argv[1]);
    }
    free(in);
    return rc;
}

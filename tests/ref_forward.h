/* ref_forward.h - a deliberately naive forward pass used only by tests to
 * check the backends: every weight dequantised to f32 up front, plain loops
 * in double precision, and attention recomputed over the whole sequence with
 * an explicit mask. It shares nothing with backend/cpu.c but the model
 * description (model.h), quant_dequantize_row and the gguf reader (the
 * router's keys, read from the file again rather than from model.c).
 */
#ifndef KVCHAT_REF_FORWARD_H
#define KVCHAT_REF_FORWARD_H

#include <stdint.h>

struct model;
struct ref_model;

/* Dequantises M's weights (M is borrowed and must outlive the result).
 * NULL when out of memory. */
struct ref_model *ref_new(const struct model *m);
void ref_free(struct ref_model *r); /* NULL is a no-op */

/* Runs TOKENS[0..N) from position 0 and writes every position's logits
 * (N x n_vocab) to LOGITS. Returns 0, or -1 when out of memory. */
int ref_forward(const struct ref_model *r, const int32_t *tokens, int n, float *logits);

#endif

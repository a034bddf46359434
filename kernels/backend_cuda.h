/* backend_cuda.h - the CUDA backend's table, for the code linked with the
 * kernels directly: the module's entry point (backend_cuda.cu) and
 * tests/test_cuda.c, which tests the kernels without going through dlopen.
 * The engine never includes this: it gets the table from the module
 * (backend/engine/registry.h). Plain C, no CUDA header.
 */
#ifndef KVCHAT_BACKEND_CUDA_H
#define KVCHAT_BACKEND_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

#include "backend.h"

extern const struct backend_ops backend_cuda_ops;

#ifdef __cplusplus
}
#endif

#endif

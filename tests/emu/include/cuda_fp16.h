/* cuda_fp16.h - the device emulator stands in for this CUDA header (tests/emu/README.md). */
#include "kvemu.h"

/* fake_cuda_driver.c - a stand-in for libcuda.so.1 with one device, loaded by
 * test_registry through KVCHAT_CUDA_DRIVER, so the registry's paths past
 * "there is a device" (the module missing, broken, too small, failing) are
 * tested on machines without a GPU. Only the entry points cuda_host.c uses.
 */
#include <stddef.h>
#include <stdio.h>

int cuInit(unsigned flags)
{
    (void)flags;
    return 0;
}

int cuDeviceGetCount(int *n)
{
    *n = 1;
    return 0;
}

int cuDeviceGet(int *dev, int ordinal)
{
    *dev = ordinal;
    return ordinal == 0 ? 0 : 101; /* CUDA_ERROR_INVALID_DEVICE */
}

int cuDeviceGetName(char *name, int len, int dev)
{
    (void)dev;
    snprintf(name, (size_t)len, "Fake GPU");
    return 0;
}

int cuDeviceTotalMem_v2(size_t *bytes, int dev)
{
    (void)dev;
    *bytes = (size_t)8 << 30;
    return 0;
}

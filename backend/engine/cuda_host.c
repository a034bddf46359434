/* cuda_host.c - the host side of the CUDA backend (registry.h): asks the
 * driver whether there is a device, and loads the module that holds the
 * backend (kernels/, kvchat-cuda.so) only when there is.
 *
 * The driver is opened with dlopen and only the few entry points below are
 * declared here, so this file needs no CUDA header and kvchat starts, and
 * runs on the CPU, on a machine without the driver or the toolkit. The
 * module carries the CUDA runtime (static) and cuBLAS (541 MB of cublasLt):
 * kept out of the kvchat binary, they cost nothing to `kvchat --version` or
 * a CPU run.
 */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errmsg.h"
#include "registry.h"

/* The module's file name; kernels/CMakeLists.txt builds it under this name
 * beside the kvchat binary and installs it to ${prefix}/lib/kvchat. */
#define MODULE_NAME "kvchat-cuda.so"
#define MODULE_INSTALLED "../lib/kvchat/" MODULE_NAME

/* The driver API as far as the probe uses it (cuda.h, CUDA 3.2 and later:
 * the _v2 entry points take size_t). CUresult 0 is CUDA_SUCCESS, 100
 * CUDA_ERROR_NO_DEVICE. */
typedef int cu_result;
typedef int cu_device;
struct cu_api {
    cu_result (*init)(unsigned flags);
    cu_result (*device_get_count)(int *count);
    cu_result (*device_get)(cu_device *dev, int ordinal);
    cu_result (*device_get_name)(char *name, int len, cu_device dev);
    cu_result (*device_total_mem)(size_t *bytes, cu_device dev);
    cu_result (*get_error_string)(cu_result r, const char **s); /* optional */
};

static const char *cu_reason(const struct cu_api *cu, cu_result r)
{
    const char *s = NULL;
    if (cu->get_error_string && cu->get_error_string(r, &s) == 0 && s)
        return s;
    return "unknown driver error";
}

void cuda_host_find(struct backend_device *out)
{
    memset(out, 0, sizeof *out);
    const char *lib = getenv("KVCHAT_CUDA_DRIVER");
    if (!lib || !*lib)
        lib = "libcuda.so.1";
    /* Never closed: after cuInit the driver runs threads of its own. */
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        snprintf(out->reason, sizeof out->reason, "no CUDA driver (%s)",
                 why ? why : lib);
        return;
    }
    struct cu_api cu;
    /* dlsym returns void *; POSIX guarantees it converts to a function
     * pointer, which ISO C does not say, hence the copy through memcpy. */
    static const struct {
        const char *sym;
        size_t off;
        bool optional;
    } syms[] = {
        {"cuInit", offsetof(struct cu_api, init), false},
        {"cuDeviceGetCount", offsetof(struct cu_api, device_get_count), false},
        {"cuDeviceGet", offsetof(struct cu_api, device_get), false},
        {"cuDeviceGetName", offsetof(struct cu_api, device_get_name), false},
        {"cuDeviceTotalMem_v2", offsetof(struct cu_api, device_total_mem), false},
        {"cuGetErrorString", offsetof(struct cu_api, get_error_string), true},
    };
    memset(&cu, 0, sizeof cu);
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *f = dlsym(h, syms[i].sym);
        if (!f && !syms[i].optional) {
            snprintf(out->reason, sizeof out->reason,
                     "the CUDA driver %s has no %s (too old?)", lib, syms[i].sym);
            return;
        }
        memcpy((char *)&cu + syms[i].off, &f, sizeof f);
    }
    cu_result r = cu.init(0);
    int n = 0;
    if (r == 0)
        r = cu.device_get_count(&n);
    if (r == 100 || (r == 0 && n <= 0)) {
        snprintf(out->reason, sizeof out->reason, "no CUDA device found");
        return;
    }
    if (r != 0) {
        snprintf(out->reason, sizeof out->reason, "the CUDA driver cannot start: %s",
                 cu_reason(&cu, r));
        return;
    }
    cu_device dev = 0;
    size_t total = 0;
    r = cu.device_get(&dev, 0);
    if (r == 0)
        r = cu.device_get_name(out->name, (int)sizeof out->name, dev);
    if (r == 0)
        r = cu.device_total_mem(&total, dev);
    if (r != 0) {
        snprintf(out->reason, sizeof out->reason, "CUDA device 0 cannot be queried: %s",
                 cu_reason(&cu, r));
        return;
    }
    out->total = total;
    out->usable = true;
}

/* Directory of the running program into DIR (CAP bytes); false when
 * /proc/self/exe cannot be read. */
static bool exe_dir(char *dir, size_t cap)
{
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0)
        return false;
    path[n] = 0;
    char *slash = strrchr(path, '/');
    if (!slash)
        return false;
    *slash = 0;
    return snprintf(dir, cap, "%s", path) < (int)cap;
}

/* The module's path into PATH: KVCHAT_CUDA_MODULE, else beside the program,
 * else ../lib/kvchat from it. False with ERR when none exists. */
static bool module_path(char *path, size_t cap, char *err, size_t errlen)
{
    const char *env = getenv("KVCHAT_CUDA_MODULE");
    if (env && *env) {
        snprintf(path, cap, "%s", env);
        return true; /* dlopen says what is wrong with it */
    }
    char dir[PATH_MAX];
    if (!exe_dir(dir, sizeof dir)) {
        kv_seterr(err, errlen,
                  "cannot find the CUDA module: /proc/self/exe is unreadable; set "
                  "KVCHAT_CUDA_MODULE to the path of " MODULE_NAME);
        return false;
    }
    snprintf(path, cap, "%s/" MODULE_NAME, dir);
    if (access(path, R_OK) == 0)
        return true;
    snprintf(path, cap, "%s/" MODULE_INSTALLED, dir);
    if (access(path, R_OK) == 0)
        return true;
    kv_seterr(err, errlen,
              "the CUDA module " MODULE_NAME " is not installed (not beside %s nor in "
              "../lib/kvchat; KVCHAT_CUDA_MODULE names another place)",
              dir);
    return false;
}

const struct backend_ops *cuda_host_load(char *err, size_t errlen)
{
    char path[PATH_MAX + 64];
    if (!module_path(path, sizeof path, err, errlen))
        return NULL;
    /* Never closed: the static CUDA runtime inside registers exit handlers. */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        kv_seterr(err, errlen, "cannot load the CUDA module: %s", why ? why : path);
        return NULL;
    }
    void *sym = dlsym(h, BACKEND_ENTRY);
    if (!sym) {
        kv_seterr(err, errlen, "the CUDA module %s has no entry point " BACKEND_ENTRY, path);
        return NULL;
    }
    backend_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const struct backend_ops *ops = entry(BACKEND_ABI);
    if (!ops) {
        kv_seterr(err, errlen,
                  "the CUDA module %s was built for another version of kvchat; reinstall it "
                  "with this kvchat",
                  path);
        return NULL;
    }
    if (!ops->probe || !ops->estimate || !ops->create || !ops->destroy || !ops->forward ||
        !ops->memory || !ops->device_name) {
        kv_seterr(err, errlen, "the CUDA module %s has an incomplete backend table", path);
        return NULL;
    }
    return ops;
}

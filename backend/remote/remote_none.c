/* remote_none.c - remote_engine_new and remote_list_models in a build without libcurl or cJSON: the
 * local engine still builds (a GPU box may lack them), and asking for a
 * server says what to install. */
#include "engine_impl.h"

#include "errmsg.h"

struct engine *remote_engine_new(const struct engine_params *p, char *err, size_t errlen)
{
    (void)p;
    kv_seterr(err, errlen, "this kvchat was built without libcurl and cJSON, so it cannot talk "
              "to a server: install libcurl4-openssl-dev and libcjson-dev and rebuild");
    return NULL;
}

int remote_list_models(const struct engine_params *p, char ***names, size_t *n, char *err,
                       size_t errlen)
{
    *names = NULL;
    *n = 0;
    return remote_engine_new(p, err, errlen) ? 0 : -1;
}

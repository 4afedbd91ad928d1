/*
 * Plugin loading: dlopen(RTLD_NOW|RTLD_LOCAL), one entry symbol, a descriptor checked before any call into the
 * plugin, and an undo of everything a plugin registered when its create() fails.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include "host.h"

static int
validate_desc(const sk_plugin_desc_t *d, const char *path, char *err, size_t errlen)
{
    if (d == NULL) {
        snprintf(err, errlen, "%s: %s() returned NULL", path, SK_PLUGIN_ENTRY_SYMBOL);
        return -1;
    }
    if (d->abi != SK_PLUGIN_ABI) {
        snprintf(err, errlen, "%s: plugin ABI %u, host ABI %u: not binary compatible", path, d->abi, SK_PLUGIN_ABI);
        return -1;
    }
    if (d->size != sizeof(sk_plugin_desc_t)) {
        snprintf(err, errlen, "%s: descriptor size %u, host expects %zu: not binary compatible", path, d->size,
                 sizeof(sk_plugin_desc_t));
        return -1;
    }
    if (d->build_signature == NULL || strcmp(d->build_signature, SK_BUILD_SIGNATURE) != 0) {
        snprintf(err, errlen, "%s: build signature \"%s\", host \"%s\": not binary compatible", path,
                 d->build_signature ? d->build_signature : "(null)", SK_BUILD_SIGNATURE);
        return -1;
    }
    if (d->name == NULL || d->name[0] == '\0' || strlen(d->name) >= 64 || d->version == NULL) {
        snprintf(err, errlen, "%s: descriptor has no name or version", path);
        return -1;
    }
    if (d->create == NULL || d->destroy == NULL) {
        snprintf(err, errlen, "%s: descriptor lacks the mandatory create/destroy callbacks", path);
        return -1;
    }
    return 0;
}

/* Removes every route and hook of plugin p (after a failed create). */
static void
undo_registrations(sk_host_t *host, sk_plugin_t *p)
{
    size_t w = 0;
    for (size_t i = 0; i < host->nroutes; ++i)
        if (host->routes[i].plugin != p)
            host->routes[w++] = host->routes[i];
    host->nroutes = w;
    p->on_snapshot = NULL;
    p->on_etcd_event = NULL;
    p->spawn_count = 0;
}

int
sk_plugin_load_one(sk_host_t *host, const char *path, char *err, size_t errlen)
{
    if (host->nplugins >= SK_MAX_PLUGINS) {
        snprintf(err, errlen, "%s: too many plugins (at most %d)", path, SK_MAX_PLUGINS);
        return -1;
    }
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        snprintf(err, errlen, "cannot load plugin %s: %s", path, dlerror());
        return -1;
    }
    sk_plugin_entry_fn entry;
    *(void **)&entry = dlsym(dl, SK_PLUGIN_ENTRY_SYMBOL);
    if (entry == NULL) {
        snprintf(err, errlen, "%s: no %s symbol: not a seckill plugin", path, SK_PLUGIN_ENTRY_SYMBOL);
        goto fail;
    }
    const sk_plugin_desc_t *d = entry();
    if (validate_desc(d, path, err, errlen) != 0)
        goto fail;
    for (size_t i = 0; i < host->nplugins; ++i) {
        if (strcmp(host->plugins[i].name, d->name) == 0 || host->plugins[i].dl == dl) {
            snprintf(err, errlen, "%s: plugin \"%s\" is already loaded", path, d->name);
            goto fail;
        }
    }
    sk_plugin_t *p = &host->plugins[host->nplugins];
    memset(p, 0, sizeof(*p));
    p->host = host;
    p->index = (unsigned)host->nplugins;
    snprintf(p->name, sizeof(p->name), "%s", d->name);
    snprintf(p->path, sizeof(p->path), "%s", path);
    p->dl = dl;
    p->desc = d;
    host->creating = 1;
    char perr[512] = "";
    p->inst = d->create(&sk_host_api, p, perr, sizeof(perr));
    host->creating = 0;
    if (p->inst == NULL) {
        undo_registrations(host, p);
        snprintf(err, errlen, "plugin \"%s\" (%s) failed to start: %s", d->name, path, perr[0] ? perr : "no reason given");
        memset(p, 0, sizeof(*p));
        goto fail;
    }
    host->nplugins++;
    sk_logf(SK_LOG_INFO, "host", "loaded plugin %s %s from %s", d->name, d->version, path);
    return 0;
fail:
    dlclose(dl);
    return -1;
}

int
sk_plugins_load(sk_host_t *host, const char *dir, char *err, size_t errlen)
{
    const char *p = host->conf.plugins;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        char path[1024];
        snprintf(path, sizeof(path), "%s/%.*s.so", dir, (int)len, p);
        if (sk_plugin_load_one(host, path, err, errlen) != 0)
            return -1;
        p += len;
        if (*p == ',')
            ++p;
    }
    return 0;
}

void
sk_plugins_destroy(sk_host_t *host)
{
    /* reverse order of loading */
    while (host->nplugins > 0) {
        sk_plugin_t *p = &host->plugins[--host->nplugins];
        if (p->desc->destroy != NULL)
            p->desc->destroy(p->inst);
        sk_logf(SK_LOG_INFO, "host", "unloaded plugin %s", p->name);
        dlclose(p->dl);
        memset(p, 0, sizeof(*p));
    }
    host->nroutes = 0;
}

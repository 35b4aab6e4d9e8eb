/* Static files of the browser dashboard, and the OpenAPI document at
 * /api/openapi.json, embedded in the binary at build time (generated from web/
 * and docs/openapi.json by CMake): no runtime files, no CDN. */
#ifndef FC_WEB_ASSETS_H
#define FC_WEB_ASSETS_H

#include <stddef.h>

typedef struct fc_asset {
    const char *path;         /* URL path, e.g. "/" or "/flowcast.js" */
    const char *content_type; /* e.g. "text/javascript; charset=utf-8" */
    const unsigned char *data;
    size_t len;
} fc_asset;

/* The asset served at path, or NULL. */
const fc_asset *fc_assets_find(const char *path);

#endif

/*
** api_key -- a covet-pipe native plugin that answers 401 unless the request
** carries the right `x-api-key` header.
**
** Settings (PluginConfig(plugin_settings={"api_key": {...}})):
**   key            required: the API key clients must send
**   exempt_prefix  optional: paths under it ("/public") need no key
**
** Build:  covet-pipe build api_key.c      (-> api_key.so)
*/

#include <stdlib.h>
#include <string.h>

#include "covet_plugin.h"

typedef struct api_key {
  const covet_host_api *host;
  covet_plugin_host_ptr plugin;
  char *key; /* our copies: config values are host memory (covet_host_str) */
  size_t key_len;
  char *exempt; /* NULL when no exempt_prefix is set */
  size_t exempt_len;
} api_key;

/* A malloc'd copy of host bytes; NULL when out of memory. Never NUL-terminated
** by contract, so the length travels beside it. */
static char *copy_host_str(covet_host_str s) {
  char *p = malloc(s.len ? s.len : 1);
  if (p != NULL && s.len) memcpy(p, s.ptr, s.len);
  return p;
}

/* Equal in time that depends only on the expected key's length, never on where
** the two differ: a timing side channel would let a client guess byte by byte. */
static int equal_constant_time(const char *got, size_t got_len, const char *want, size_t want_len) {
  unsigned char diff = (unsigned char)(got_len != want_len);
  size_t i;
  for (i = 0; i < want_len; i++) {
    unsigned char g = i < got_len ? (unsigned char)got[i] : 0;
    diff |= (unsigned char)(g ^ (unsigned char)want[i]);
  }
  return diff == 0;
}

/* "/public" exempts "/public" and "/public/x", not "/publicity". */
static int under_prefix(covet_host_str path, const char *prefix, size_t prefix_len) {
  if (path.len < prefix_len || memcmp(path.ptr, prefix, prefix_len) != 0) return 0;
  return path.len == prefix_len || prefix[prefix_len - 1] == '/' || path.ptr[prefix_len] == '/';
}

static void ak_shutdown(void *instance) {
  api_key *self = instance;
  if (self == NULL) return;
  free(self->key);
  free(self->exempt);
  free(self);
}

static int ak_init(const covet_host_api *host, covet_plugin_host_ptr plugin, void **instance) {
  covet_host_str value;
  api_key *self = calloc(1, sizeof *self);
  if (self == NULL) {
    host->error(plugin, COVET_STR("api_key: out of memory"));
    return COVET_ERROR;
  }
  self->host = host;
  self->plugin = plugin;

  /* Refuse to start without a key: an auth plugin that lets everyone in by
  ** default is worse than one that fails at startup. */
  if (host->config_get(plugin, COVET_STR("key"), &value) != COVET_OK || value.len == 0) {
    host->error(plugin, COVET_STR("api_key needs a 'key' setting: give it one with "
                                  "PluginConfig(plugin_settings={\"api_key\": {\"key\": \"...\"}})"));
    ak_shutdown(self);
    return COVET_ERROR;
  }
  if ((self->key = copy_host_str(value)) == NULL) goto oom;
  self->key_len = value.len;

  if (host->config_get(plugin, COVET_STR("exempt_prefix"), &value) == COVET_OK && value.len > 0) {
    if ((self->exempt = copy_host_str(value)) == NULL) goto oom;
    self->exempt_len = value.len;
  }
  *instance = self;
  return COVET_OK;

oom:
  host->error(plugin, COVET_STR("api_key: out of memory"));
  ak_shutdown(self);
  return COVET_ERROR;
}

static int ak_on_request(void *instance, covet_request_host_ptr req, const covet_request_view *view) {
  api_key *self = instance;
  covet_host_str got = {NULL, 0};
  if (self->exempt != NULL && under_prefix(view->path, self->exempt, self->exempt_len)) return COVET_OK;

  /* COVET_E_NOTFOUND leaves got = {NULL, 0}, which never matches a non-empty key */
  (void)self->host->get_header(req, COVET_STR("x-api-key"), &got);
  if (equal_constant_time(got.ptr, got.len, self->key, self->key_len)) return COVET_OK;

  if (self->host->respond(req, 401, COVET_STR("application/json"),
                          COVET_STR("{\"error\":\"missing or wrong API key\"}")) != COVET_OK) {
    self->host->error(self->plugin, COVET_STR("api_key: could not answer 401"));
    return COVET_ERROR;
  }
  return COVET_RESPOND;
}

static const covet_plugin_descriptor descriptor = {
  COVET_DESCRIPTOR_HEADER(0),
  .flags = COVET_FLAG_NONE, /* fail closed: an auth check that errors must not let requests through */
  .name = "api_key",
  .version = "1.0.0",
  .priority = 100,
  .init = ak_init,
  .shutdown = ak_shutdown,
  .on_request = ak_on_request,
};

COVET_EXPORT const covet_plugin_descriptor *covet_plugin_entry_v1(void) {
  return &descriptor;
}

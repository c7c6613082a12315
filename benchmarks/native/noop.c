/* A no-op native plugin for the per-layer benchmark: both hooks return COVET_OK at once.
   Built once per name: cc -shared -fPIC -O2 -DNAME='"noop_native_00"' -DPRIORITY=100 ... */
#include "covet_plugin.h"

#ifndef NAME
#define NAME "noop_native"
#endif
#ifndef PRIORITY
#define PRIORITY 100
#endif

static int on_request(void *instance, covet_request_host_ptr req, const covet_request_view *view) {
  (void)instance; (void)req; (void)view;
  return COVET_OK;
}

static int on_response(void *instance, covet_request_host_ptr req, const covet_request_view *view) {
  (void)instance; (void)req; (void)view;
  return COVET_OK;
}

static const covet_plugin_descriptor descriptor = {
  COVET_DESCRIPTOR_HEADER(0),
  .name = NAME, .version = "1.0.0", .priority = PRIORITY,
  .on_request = on_request, .on_response = on_response,
};

COVET_EXPORT const covet_plugin_descriptor *covet_plugin_entry_v1(void) { return &descriptor; }

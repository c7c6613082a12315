/* no_entry.c -- a shared library that is not a covet plugin: it exports
** another symbol, not covet_plugin_entry_v1. */

#include "covet_plugin.h"

COVET_EXPORT int covet_plugin_entry_v0(void) { return 0; }

/* an executable built from this file (-DWITH_MAIN) has a main() */
#ifdef WITH_MAIN
int main(void) { return covet_plugin_entry_v0(); }
#endif

// cachet — what the shared library exports. The library is built with hidden visibility:
// only what is marked CACHET_API (the classes and functions of these public headers) is
// visible to an application, so cachet's own dependencies (fmt, nlohmann-json, PCRE2, ...)
// never clash with the application's copies.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define CACHET_API __attribute__((visibility("default")))
// For the private implementation classes nested in exported ones (which would otherwise
// inherit their visibility).
#define CACHET_HIDDEN __attribute__((visibility("hidden")))
#else
#define CACHET_API
#define CACHET_HIDDEN
#endif

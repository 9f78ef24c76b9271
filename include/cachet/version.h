// cachet — the version of these headers, and of the library it was built with.
#pragma once

#include "cachet/export.h"

// CMakeLists.txt reads the project version from these three lines.
#define CACHET_VERSION_MAJOR 0
#define CACHET_VERSION_MINOR 2
#define CACHET_VERSION_PATCH 0

#define CACHET_VERSION_STRINGIFY_(x) #x
#define CACHET_VERSION_STRINGIFY(x) CACHET_VERSION_STRINGIFY_(x)
// "MAJOR.MINOR.PATCH" of the headers.
#define CACHET_VERSION_STRING                                                      \
  CACHET_VERSION_STRINGIFY(CACHET_VERSION_MAJOR)                                   \
  "." CACHET_VERSION_STRINGIFY(CACHET_VERSION_MINOR) "." CACHET_VERSION_STRINGIFY( \
      CACHET_VERSION_PATCH)

namespace cachet {

struct Version {
  int major = 0;
  int minor = 0;
  int patch = 0;
};

// The version of the library linked at run time (which may differ from the headers' when
// an application runs against a newer shared library of the same major version).
CACHET_API Version version();

}  // namespace cachet

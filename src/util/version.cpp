#include "cachet/version.h"

namespace cachet {

Version version() { return {CACHET_VERSION_MAJOR, CACHET_VERSION_MINOR, CACHET_VERSION_PATCH}; }

}  // namespace cachet

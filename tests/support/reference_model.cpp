#include "support/reference_model.h"
// Implemented by the CPU backend work.

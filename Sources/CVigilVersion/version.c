#include "CVigilVersion.h"

// #embed is C23; clang accepts it in every mode. The build tracks VERSION as a dependency of this
// file, so changing VERSION recompiles it and relinks the binaries.
#pragma clang diagnostic ignored "-Wc23-extensions"
static const char version[] = {
#embed "../../VERSION"
    , 0
};

const char *cvigil_version(void) { return version; }

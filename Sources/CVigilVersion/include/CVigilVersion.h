#ifndef CVIGIL_VERSION_H
#define CVIGIL_VERSION_H

/// The contents of the repository's VERSION file (the one place the version is set), as a
/// NUL-terminated string that may end in a newline.
const char *cvigil_version(void);

#endif

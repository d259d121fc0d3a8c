#ifndef CVIGILSYS_H
#define CVIGILSYS_H

/// Swaps the files at `from` and `to` atomically (renameat2 with RENAME_EXCHANGE, which glibc
/// declares only under _GNU_SOURCE). Returns 0, or -1 with errno set: ENOENT when either is
/// missing, EINVAL when the filesystem cannot exchange.
int vigil_rename_exchange(const char *from, const char *to);

#endif

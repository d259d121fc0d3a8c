#include <seccomp.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/landlock.h>

/* Swift cannot call C function-like macros or variadic functions (prctl, syscall): these
 * static inline shims give it what it needs for the self-sandbox. Checked on Swift 6.3.1. */

static inline uint32_t vigil_scmp_act_errno(uint16_t err) { return SCMP_ACT_ERRNO(err); }
static inline uint32_t vigil_scmp_act_kill_process(void) { return SCMP_ACT_KILL_PROCESS; }
static inline uint32_t vigil_scmp_act_allow(void) { return SCMP_ACT_ALLOW; }

/* prctl with its five arguments; returns -1 and sets errno on failure. */
static inline int vigil_prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5) {
    return prctl(option, a2, a3, a4, a5);
}

/* capget/capset (version 3: 64 capabilities in two 32-bit words) for the calling thread. */
static inline int vigil_capget(uint64_t *effective, uint64_t *permitted, uint64_t *inheritable) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &header, data) != 0) return -1;
    *effective = (uint64_t)data[0].effective | ((uint64_t)data[1].effective << 32);
    *permitted = (uint64_t)data[0].permitted | ((uint64_t)data[1].permitted << 32);
    *inheritable = (uint64_t)data[0].inheritable | ((uint64_t)data[1].inheritable << 32);
    return 0;
}

static inline int vigil_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    data[0].effective = (uint32_t)effective;
    data[1].effective = (uint32_t)(effective >> 32);
    data[0].permitted = (uint32_t)permitted;
    data[1].permitted = (uint32_t)(permitted >> 32);
    data[0].inheritable = (uint32_t)inheritable;
    data[1].inheritable = (uint32_t)(inheritable >> 32);
    return (int)syscall(SYS_capset, &header, data);
}

/* Landlock (Linux 5.13+): the ABI version, or -1 with errno (ENOSYS, EOPNOTSUPP when disabled). */
static inline int vigil_landlock_abi(void) {
    return (int)syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
}

static inline int vigil_landlock_create_ruleset(uint64_t handled_access_fs) {
    struct landlock_ruleset_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.handled_access_fs = handled_access_fs;
    /* Only the first field: works with every ABI version that knows the rights asked for. */
    return (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr.handled_access_fs, 0);
}

static inline int vigil_landlock_add_path_rule(int ruleset_fd, int parent_fd, uint64_t allowed_access) {
    struct landlock_path_beneath_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.allowed_access = allowed_access;
    attr.parent_fd = parent_fd;
    return (int)syscall(SYS_landlock_add_rule, ruleset_fd, LANDLOCK_RULE_PATH_BENEATH, &attr, 0);
}

static inline int vigil_landlock_restrict_self(int ruleset_fd) {
    return (int)syscall(SYS_landlock_restrict_self, ruleset_fd, 0);
}

/* Test probes: raw calls the sandbox must refuse, made without glibc wrappers that might
 * check arguments first. Each returns 0 or -errno. */
static inline long vigil_probe_syscall6(long nr, long a, long b, long c, long d, long e, long f) {
    long rc = syscall(nr, a, b, c, d, e, f);
    return rc < 0 ? -errno : rc;
}

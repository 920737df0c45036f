/*
 * priv.c: core dumps off, set-ID detection and drop, standard
 * descriptors.
 *
 * Why getauxval(AT_SECURE) and not getuid() != geteuid(): a set-group-ID
 * program run by a member of that group, or one given file capabilities,
 * has equal real and effective IDs in one of the pairs but still runs
 * with credentials its caller did not have; the kernel says so in
 * AT_SECURE, and the dynamic loader and glibc's secure_getenv() use the
 * same flag.
 */
#include "config.h"

#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "priv.h"

void
priv_no_core(void)
{
	struct rlimit rl = { 0, 0 };

	(void)setrlimit(RLIMIT_CORE, &rl);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

bool
priv_is_setid(void)
{
	return getauxval(AT_SECURE) != 0;
}

enum status
priv_drop(struct errinfo *ei)
{
	uid_t uid = getuid();
	gid_t gid = getgid();

	if (uid == geteuid() && gid == getegid())
		return ST_OK;
	/* The group first: after setresuid() we may no longer change it. */
	if (setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0)
		return st_errno(ei, ST_SYS, "cannot drop privileges");
	if (geteuid() != uid || getegid() != gid ||
	    (uid != 0 && setuid(0) == 0))
		return st_error(ei, ST_SYS, "privileges not dropped");
	return ST_OK;
}

bool
priv_std_fds(void)
{
	int fd;

	for (fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF &&
		    open("/dev/null", O_RDWR) != fd)
			return false;
	return true;
}

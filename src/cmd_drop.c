/*
 * cmd_drop.c: bearmail-drop, the maildrop writer.
 *
 * The only bearmail program that is ever installed with privilege: on a
 * system install it is set-group-ID bearmail-drop, the one group that
 * may create files in the 1730 directory LOCALSTATEDIR/spool/bearmail/
 * maildrop.  A local user who cannot read the tokens (so cannot deliver
 * and cannot write q/) has bearmail pipe the rewritten submission here;
 * the queue runner (user bearmail) imports it later.
 *
 * Contract:
 *   - no arguments, no options (anything else: exit 64);
 *   - standard input must not be a terminal (exit 64);
 *   - it reads one submission: a "bearmail-drop 1" envelope (see spool.c),
 *     an empty line, exactly `size` octets of message, EOF; at most
 *     ENVELOPE_HDR_MAX + ENVELOPE_MSG_MAX octets, at most 300 seconds of
 *     silence between reads;
 *   - it validates the envelope before anything becomes visible, writes
 *     maildrop/.ID, fsyncs, renames it to maildrop/ID without replacing,
 *     and makes the name durable;
 *   - success: the queue ID on standard output, exit 0.  Failure: one
 *     line on standard error and the sysexits code (65 bad submission or
 *     too large, 73 maildrop not writable, 75 input timed out), and no
 *     file left behind.
 *
 * What it will not do, whoever runs it: read a configuration file, take
 * a path or a queue directory from the caller, honour the environment
 * (cleared on entry), keep inherited descriptors beyond 0-2, dump core
 * (RLIMIT_CORE 0 and not dumpable, so a user cannot read its memory).
 * Only when the process is not privileged (AT_SECURE is 0) does
 * BEARMAIL_DROP_DIR name another queue directory, for tests.
 */
#include "config.h"

#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "maildrop.h"
#include "status.h"

#define DROP_QUEUE_DIR	LOCALSTATEDIR "/spool/bearmail"
#define DROP_DIR_ENV	"BEARMAIL_DROP_DIR"
#define DROP_TIMEOUT	300

static const char *progname = "bearmail-drop";

static void
harden(void)
{
	struct rlimit rl = { 0, 0 };

	umask(022);
	setrlimit(RLIMIT_CORE, &rl);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* 0, 1 and 2 open (so no file of ours lands on them), nothing else. */
static void
fix_fds(void)
{
	long max;
	int fd;

	for (fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF &&
		    open("/dev/null", O_RDWR) != fd)
			_exit(EX_OSERR);
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
		return;
#endif
	max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 65536)
		max = 65536;
	for (fd = 3; fd < max; fd++)
		close(fd);
}

static int
fail(enum status st, const char *msg)
{
	fprintf(stderr, "%s: %s\n", progname, msg);
	return st_exitcode(st);
}

int
main(int argc, char **argv)
{
	char dir[PATH_MAX], path[PATH_MAX];
	char id[ENVELOPE_ID_SIZE];
	struct errinfo ei;
	struct stat st;
	const char *env;
	bool secure;
	int dropfd;

	harden();
	fix_fds();
	secure = getauxval(AT_SECURE) != 0;
	snprintf(dir, sizeof(dir), "%s", DROP_QUEUE_DIR);
	if (!secure && (env = getenv(DROP_DIR_ENV)) != NULL && env[0] == '/')
		snprintf(dir, sizeof(dir), "%s", env);
	clearenv();

	if (argc > 1) {
		fprintf(stderr, "usage: %s < submission\n"
		    "(bearmail runs this; it takes no arguments)\n", progname);
		return EX_USAGE;
	}
	(void)argv;
	if (isatty(STDIN_FILENO))
		return fail(ST_USAGE, "refusing to read a submission from a "
		    "terminal");

	if ((size_t)snprintf(path, sizeof(path), "%s/maildrop", dir) >=
	    sizeof(path))
		return fail(ST_CANTCREAT, "maildrop path too long");
	/*
	 * O_PATH: the group may write and search the 1730 directory, but
	 * not read it.
	 */
	if ((dropfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    fstat(dropfd, &st) != 0) {
		st_clear(&ei);
		st_errno(&ei, ST_CANTCREAT, "%s", path);
		return fail(ei.st, ei.msg);
	}
	if (st.st_mode & S_IWOTH)
		return fail(ST_CANTCREAT, "the maildrop is writable by anyone: "
		    "refusing it");
	if (secure && (st.st_gid != getegid() || !(st.st_mode & S_ISVTX)))
		return fail(ST_CANTCREAT, "the maildrop is not a sticky "
		    "directory of this program's group: refusing it");

	st_clear(&ei);
	if (maildrop_write(dropfd, STDIN_FILENO, DROP_TIMEOUT, id, &ei) !=
	    ST_OK)
		return fail(ei.st, ei.msg);
	printf("%s\n", id);
	if (fflush(stdout) != 0)
		return EX_IOERR;	/* the file is in place all the same */
	return EX_OK;
}

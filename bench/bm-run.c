/*
 * bm-run: run a command repeatedly and report what the OS accounted.
 *
 *	bm-run [-n RUNS] [-w WARMUP] [-c CONCURRENT] [-i STDIN] [-o OUTPUT]
 *	    [-t SECONDS] [-e STATUS] [-x] -- PROGRAM [ARG...]
 *
 * Each run forks, points standard input at STDIN (default /dev/null)
 * and standard output and error at OUTPUT (default /dev/null), execs
 * PROGRAM and reaps it with wait4(), which gives user and system CPU
 * time and the peak resident set (ru_maxrss) of that child alone.  Wall
 * time is CLOCK_MONOTONIC from fork to reaping.  With -c, each round
 * starts CONCURRENT children at once and the round's wall time is from
 * the first fork to the last reap.  Prints one line of key=value pairs:
 * medians (and min, max) of wall, cpu (user+sys), user, sys and peak
 * RSS, the total wall time of all measured rounds, and the number of
 * runs that did not exit with STATUS (-e, default 0; -x: the first such
 * run stops the runs).
 *
 * Why not hyperfine: it reports no peak RSS, and a Python or shell
 * parent would inflate it: Linux seeds a child's ru_maxrss at execve()
 * with the RSS of the address space it replaces, which for a fork is
 * the parent's.  This parent is a small C program, so that floor is
 * about its own RSS (roughly 1 MB, see bench/README).
 *
 * Bounded: at most 100000 runs and 1000 concurrent, and after -t SECONDS
 * (default 600) in all, every child still running is killed and the
 * runs stop.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUNS_MAX	100000
#define CONC_MAX	1000

struct sample {
	double wall, user, sys;
	long rss;
};

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double
tv_ms(struct timeval tv)
{
	return tv.tv_sec * 1e3 + tv.tv_usec / 1e3;
}

static long
num(const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "bm-run: bad number: %s\n", s);
		exit(64);
	}
	return v;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median, min and max of n values (sorts v). */
static void
stats(double *v, size_t n, double *med, double *min, double *max)
{
	qsort(v, n, sizeof(*v), cmp_double);
	*min = v[0];
	*max = v[n - 1];
	*med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static pid_t
spawn(char **argv, const char *in, const char *out)
{
	pid_t pid;
	int fd;

	if ((pid = fork()) != 0)
		return pid;
	if ((fd = open(in, O_RDONLY)) == -1 || dup2(fd, 0) == -1)
		_exit(126);
	close(fd);
	if ((fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644)) == -1 ||
	    dup2(fd, 1) == -1 || dup2(fd, 2) == -1)
		_exit(126);
	close(fd);
	execvp(argv[0], argv);
	_exit(127);
}

static void
usage(void)
{
	fprintf(stderr, "usage: bm-run [-n RUNS] [-w WARMUP] [-c CONCURRENT] "
	    "[-i STDIN] [-o OUTPUT] [-t SECONDS] [-e STATUS] [-x] -- PROGRAM "
	    "[ARG...]\n");
	exit(64);
}

int
main(int argc, char **argv)
{
	const char *in = "/dev/null", *out = "/dev/null";
	long runs = 10, warm = 1, conc = 1, limit = 600, want = 0;
	bool stop_on_fail = false;
	struct sample *s;
	pid_t pids[CONC_MAX];
	double deadline, total = 0, *v;
	size_t ns = 0, i;
	long r, failed = 0, firstcode = 0;
	int ch;

	while ((ch = getopt(argc, argv, "n:w:c:i:o:t:e:x")) != -1) {
		switch (ch) {
		case 'n': runs = num(optarg, 1, RUNS_MAX); break;
		case 'w': warm = num(optarg, 0, RUNS_MAX); break;
		case 'c': conc = num(optarg, 1, CONC_MAX); break;
		case 'i': in = optarg; break;
		case 'o': out = optarg; break;
		case 't': limit = num(optarg, 1, 86400); break;
		case 'e': want = num(optarg, 0, 255); break;
		case 'x': stop_on_fail = true; break;
		default: usage();
		}
	}
	argv += optind;
	if (argv[0] == NULL)
		usage();
	if ((s = calloc((size_t)(runs * conc), sizeof(*s))) == NULL ||
	    (v = calloc((size_t)(runs * conc), sizeof(*v))) == NULL) {
		perror("bm-run");
		return 71;
	}
	deadline = now_ms() + limit * 1e3;
	for (r = -warm; r < runs; r++) {
		double start[CONC_MAX], round0;
		long live = 0, k;

		if (now_ms() > deadline) {
			fprintf(stderr, "bm-run: time limit reached\n");
			failed++;
			break;
		}
		round0 = now_ms();
		for (k = 0; k < conc; k++) {
			start[k] = now_ms();
			if ((pids[k] = spawn(argv, in, out)) == -1) {
				perror("fork");
				return 71;
			}
			live++;
		}
		while (live > 0) {
			struct rusage ru;
			int wst;
			pid_t p = wait4(-1, &wst, WNOHANG, &ru);

			if (p == 0) {
				if (now_ms() > deadline) {
					for (k = 0; k < conc; k++)
						if (pids[k] > 0)
							kill(pids[k], SIGKILL);
				}
				usleep(200);
				continue;
			}
			if (p == -1) {
				if (errno == EINTR)
					continue;
				perror("wait4");
				return 71;
			}
			for (k = 0; k < conc && pids[k] != p; k++)
				;
			if (k == conc)
				continue;
			pids[k] = 0;
			live--;
			if (!WIFEXITED(wst) || WEXITSTATUS(wst) != want) {
				if (failed++ == 0)
					firstcode = WIFEXITED(wst) ?
					    WEXITSTATUS(wst) :
					    128 + WTERMSIG(wst);
			}
			if (r < 0)
				continue;
			s[ns].wall = now_ms() - start[k];
			s[ns].user = tv_ms(ru.ru_utime);
			s[ns].sys = tv_ms(ru.ru_stime);
			s[ns].rss = ru.ru_maxrss;
			ns++;
		}
		if (r >= 0)
			total += now_ms() - round0;
		if (failed > 0 && stop_on_fail)
			break;
	}
	printf("runs=%zu failed=%ld", ns, failed);
	if (failed > 0)
		printf(" first_exit=%ld", firstcode);
	if (ns > 0) {
		double med, min, max;

		for (i = 0; i < ns; i++)
			v[i] = s[i].wall;
		stats(v, ns, &med, &min, &max);
		printf(" wall_ms=%.3f wall_min_ms=%.3f wall_max_ms=%.3f",
		    med, min, max);
		for (i = 0; i < ns; i++)
			v[i] = s[i].user + s[i].sys;
		stats(v, ns, &med, &min, &max);
		printf(" cpu_ms=%.3f cpu_min_ms=%.3f", med, min);
		for (i = 0; i < ns; i++)
			v[i] = s[i].user;
		stats(v, ns, &med, &min, &max);
		printf(" user_ms=%.3f", med);
		for (i = 0; i < ns; i++)
			v[i] = s[i].sys;
		stats(v, ns, &med, &min, &max);
		printf(" sys_ms=%.3f", med);
		for (i = 0; i < ns; i++)
			v[i] = (double)s[i].rss;
		stats(v, ns, &med, &min, &max);
		printf(" rss_kb=%.0f rss_max_kb=%.0f", med, max);
		printf(" total_ms=%.3f", total);
	}
	printf("\n");
	return failed > 0 ? 1 : 0;
}

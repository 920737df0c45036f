/*
 * replay.c: run a fuzz target's entry point without libFuzzer.
 *
 * The normal build links this with one target, as tests/fuzz/replay_NAME
 * (NAME is taken from the program's own name), so `make check` replays
 * every input that ever mattered under gcc, and under ASan/UBSan with
 * --enable-sanitizers, or valgrind with tests/valgrind.sh:
 *
 *	replay_NAME		every file in $BM_SRCDIR/tests/fuzz/corpus/NAME
 *				and .../regress/NAME, as TAP
 *	replay_NAME FILE...	just those files, as TAP
 *
 * Each input runs in a child process, so a crash is one "not ok" with the
 * file's name (the sanitizer's report goes to stderr, into the test's
 * log) and the other inputs still run.  With FUZZ_REPLAY_NOFORK set (as
 * tests/valgrind.sh does: memcheck's leak check of a forked child cannot
 * tell a leak from an _exit) they all run in this process instead.  The
 * input is copied into a buffer of exactly its size, so reading one byte
 * past it is an ASan error, as under libFuzzer.
 *
 * A regression input that shows a bug nobody has fixed yet may carry a
 * note FILE.todo beside it; its first line becomes a TAP TODO reason, so
 * the failure is reported as expected (XFAIL) and a fix as XPASS.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

/* Seconds one input may take; generous for valgrind. */
#define REPLAY_TIMEOUT	300
#define REPLAY_INPUT_MAX (16 * 1024 * 1024)

struct list {
	char **v;
	size_t n, cap;
};

static void
list_add(struct list *l, char *s)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL) {
			perror("replay");
			exit(99);
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = s;
}

static char *
join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s;

	if ((s = malloc(la + 1 + lb + 1)) == NULL) {
		perror("replay");
		exit(99);
	}
	memcpy(s, a, la);
	s[la] = '/';
	memcpy(s + la + 1, b, lb + 1);
	return s;
}

static int
cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool
suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);

	return n >= m && strcmp(s + n - m, suf) == 0;
}

/*
 * Add the regular files of dir (not dot-files, notes or READMEs) to l,
 * sorted.  -1 when dir cannot be read (errno set).
 */
static int
scan(const char *dir, struct list *l)
{
	DIR *d;
	struct dirent *e;
	size_t first = l->n;

	if ((d = opendir(dir)) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		struct stat sb;
		char *p;

		if (e->d_name[0] == '.' || suffix(e->d_name, ".todo") ||
		    strncmp(e->d_name, "README", 6) == 0)
			continue;
		p = join(dir, e->d_name);
		if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
			list_add(l, p);
		else
			free(p);
	}
	closedir(d);
	qsort(l->v + first, l->n - first, sizeof(*l->v), cmp);
	return 0;
}

/* The first line of FILE.todo, or NULL (caller frees). */
static char *
todo_reason(const char *file)
{
	char *p, line[256];
	FILE *fp;
	size_t n = strlen(file);

	if ((p = malloc(n + sizeof(".todo"))) == NULL)
		return NULL;
	memcpy(p, file, n);
	memcpy(p + n, ".todo", sizeof(".todo"));
	fp = fopen(p, "r");
	free(p);
	if (fp == NULL)
		return NULL;
	if (fgets(line, sizeof(line), fp) == NULL)
		line[0] = '\0';
	fclose(fp);
	line[strcspn(line, "\r\n")] = '\0';
	return fz_strndup(line, strlen(line));
}

/* Read the file and run the target once: 0, or an exit status. */
static int
run_input(const char *file)
{
	FILE *fp;
	uint8_t *data, *exact;
	size_t cap = 4096, n = 0, got;
	int rc;

	if ((fp = fopen(file, "rb")) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", file, strerror(errno));
		return 98;
	}
	if ((data = malloc(cap)) == NULL) {
		fclose(fp);
		return 98;
	}
	while ((got = fread(data + n, 1, cap - n, fp)) > 0) {
		n += got;
		if (n == cap) {
			uint8_t *d;

			if (cap >= REPLAY_INPUT_MAX ||
			    (d = realloc(data, cap * 2)) == NULL) {
				free(data);
				fclose(fp);
				return 98;
			}
			data = d;
			cap *= 2;
		}
	}
	fclose(fp);
	/* Exactly n bytes, so an overread is caught (malloc(0) is fine). */
	if ((exact = malloc(n ? n : 1)) == NULL) {
		free(data);
		return 98;
	}
	memcpy(exact, data, n);
	free(data);
	rc = LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return rc == 0 ? 0 : 97;
}

int
main(int argc, char **argv)
{
	struct list files = { NULL, 0, 0 };
	const char *base, *src;
	char *name = NULL, *dir;
	size_t i, failed = 0;
	int a;
	bool nofork = getenv("FUZZ_REPLAY_NOFORK") != NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1) {
		for (a = 1; a < argc; a++)
			list_add(&files, fz_strndup(argv[a], strlen(argv[a])));
	} else {
		base = strrchr(argv[0], '/');
		base = base ? base + 1 : argv[0];
		if (strncmp(base, "replay_", 7) != 0 || base[7] == '\0') {
			fprintf(stderr, "usage: replay_NAME [FILE...]\n");
			return 2;
		}
		name = fz_strndup(base + 7, strlen(base + 7));
		if ((src = getenv("BM_SRCDIR")) == NULL || *src == '\0')
			src = ".";
		dir = join(src, "tests/fuzz/corpus");
		free(name), name = join(dir, base + 7);
		free(dir);
		if (scan(name, &files) == -1) {
			/* Every target has seeds: a missing corpus is a bug. */
			printf("1..1\nnot ok 1 - %s: %s\n", name,
			    strerror(errno));
			return 1;
		}
		if (files.n == 0) {
			printf("1..1\nnot ok 1 - %s: no seeds\n", name);
			return 1;
		}
		free(name);
		dir = join(src, "tests/fuzz/regress");
		name = join(dir, base + 7);
		free(dir);
		(void)scan(name, &files);	/* may not exist yet */
		free(name);
	}

	printf("1..%zu\n", files.n);
	for (i = 0; i < files.n; i++) {
		char how[64] = "";
		char *todo = todo_reason(files.v[i]);
		bool passed;
		pid_t pid;
		int status, rc;

		fflush(stdout);
		fflush(stderr);
		if (nofork && todo != NULL) {
			/* A known crash would end every later input too. */
			printf("ok %zu - %s # SKIP known bug, needs a fork\n",
			    i + 1, files.v[i]);
			free(todo);
			free(files.v[i]);
			continue;
		}
		if (nofork) {
			rc = run_input(files.v[i]);
			passed = rc == 0;
			snprintf(how, sizeof(how), " (exit %d)", rc);
		} else {
			if ((pid = fork()) == -1) {
				perror("replay: fork");
				return 99;
			}
			if (pid == 0) {
				alarm(REPLAY_TIMEOUT);
				exit(run_input(files.v[i]));
			}
			while (waitpid(pid, &status, 0) == -1) {
				if (errno != EINTR) {
					perror("replay: waitpid");
					return 99;
				}
			}
			passed = WIFEXITED(status) && WEXITSTATUS(status) == 0;
			if (WIFSIGNALED(status))
				snprintf(how, sizeof(how), " (signal %d%s)",
				    WTERMSIG(status), WTERMSIG(status) ==
				    SIGALRM ? ", took too long" : "");
			else
				snprintf(how, sizeof(how), " (exit %d)",
				    WEXITSTATUS(status));
		}
		if (passed)
			printf("ok %zu - %s", i + 1, files.v[i]);
		else {
			if (todo == NULL)
				failed++;
			printf("not ok %zu - %s%s", i + 1, files.v[i], how);
		}
		if (todo != NULL)
			printf(" # TODO %s", todo);
		printf("\n");
		free(todo);
		free(files.v[i]);
	}
	free(files.v);
	return failed ? 1 : 0;
}

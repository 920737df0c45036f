/*
 * fuzz_conf.c: the configuration file (conf_load() in src/conf.h), read
 * from a scratch file as bearmail -C reads it, then the lookups the
 * programs make.  The first line of the input is also given to
 * conf_parse_duration() and conf_is_loopback().
 *
 * HOME and XDG_CONFIG_HOME point at an empty scratch directory, so "~/"
 * paths in the input never reach the real home.
 *
 * Promises checked: every account is complete after a successful load
 * (name, user, port, token endpoint for OAuth providers; tls none only
 * for loopback hosts); a failure leaves conf empty and says ST_CONFIG or
 * ST_SYS.
 */
#include "config.h"

#include <sys/stat.h>

#include <fcntl.h>
#include <unistd.h>

#include "conf.h"
#include "status.h"

#include "fuzz.h"

static char path[4096];
static char home[4096];

static void
cleanup(void)
{
	if (path[0] != '\0')
		(void)unlink(path);
	if (home[0] != '\0')
		(void)rmdir(home);
}

/* The scratch file, made once per process. */
static int
scratch(void)
{
	static int fd = -1;
	const char *tmp;
	int n;

	if (fd != -1)
		return fd;
	if ((tmp = getenv("TMPDIR")) == NULL || *tmp == '\0')
		tmp = "/tmp";
	n = snprintf(home, sizeof(home), "%s/bm-fuzz-home-XXXXXX", tmp);
	FZ_CHECK(n > 0 && (size_t)n < sizeof(home));
	FZ_CHECK(mkdtemp(home) != NULL);
	n = snprintf(path, sizeof(path), "%s/bm-fuzz-conf-XXXXXX", tmp);
	FZ_CHECK(n > 0 && (size_t)n < sizeof(path));
	FZ_CHECK((fd = mkstemp(path)) != -1);
	atexit(cleanup);
	setenv("HOME", home, 1);
	setenv("XDG_CONFIG_HOME", home, 1);
	unsetenv("BEARMAIL_CONFIG");
	return fd;
}

static void
check_account(const struct account *a)
{
	FZ_CHECK(a->name != NULL && a->name[0] != '\0');
	FZ_CHECK(strlen(a->name) <= 48 && strchr(a->name, '/') == NULL);
	FZ_CHECK(a->user != NULL);
	FZ_CHECK(a->from_addr != NULL);
	FZ_CHECK(a->smtp.port > 0 && a->smtp.port < 65536);
	if (a->provider != PROV_PASSWORD)
		FZ_CHECK(a->token_endpoint != NULL);
	if (a->smtp.tls == TLSM_NONE)
		FZ_CHECK(a->smtp.host == NULL ||
		    conf_is_loopback(a->smtp.host));
	FZ_CHECK(a->timeout >= 1 && a->timeout <= 3600);
	(void)conf_provider_name(a->provider);
	(void)conf_mech_name(a->auth);
	(void)conf_tls_name(a->smtp.tls);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errinfo ei;
	struct conf conf;
	const struct account *acct;
	const char *line;
	char *first;
	size_t i, len;
	time_t t;
	int fd;
	const uint8_t *p = data;
	size_t left = size;

	if (fz_line(&p, &left, &line, &len)) {
		first = fz_strndup(line, len);
		(void)conf_parse_duration(first, &t);
		(void)conf_is_loopback(first);
		free(first);
	}

	fd = scratch();
	FZ_CHECK(ftruncate(fd, 0) == 0);
	FZ_CHECK(pwrite(fd, data, size, 0) == (ssize_t)size);

	memset(&conf, 0, sizeof(conf));
	st_clear(&ei);
	if (conf_load(&conf, path, &ei) != ST_OK) {
		FZ_CHECK(ei.st == ST_CONFIG || ei.st == ST_SYS);
		FZ_CHECK(conf.naccounts == 0);
		conf_free(&conf);
		return 0;
	}
	for (i = 0; i < conf.naccounts; i++) {
		check_account(&conf.accounts[i]);
		acct = conf_account_for(&conf, conf.accounts[i].from_addr);
		st_clear(&ei);
		FZ_CHECK(conf_account(&conf, conf.accounts[i].name, &acct,
		    &ei) == ST_OK && acct == &conf.accounts[i]);
	}
	st_clear(&ei);
	(void)conf_account(&conf, NULL, &acct, &ei);
	(void)conf_account_for(&conf, "<root@localhost>");
	conf_free(&conf);
	return 0;
}

/*
 * bm-cred: test tool that calls cred_get() the way bearmail and
 * bearmail-fetch do, and prints the secret it got on standard output.
 *
 *	bm-cred [-C file] [--rejected] [account]
 *
 * Errors: one line on standard error, exit code from st_exitcode(), so a
 * test sees whether "temporary" or "permanent" survived the trip through
 * bearmail-auth.  Set BEARMAIL_AUTH to the bearmail-auth under test.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "cred.h"
#include "status.h"

int
main(int argc, char *argv[])
{
	const struct account *acct;
	const char *config = NULL, *name = NULL;
	struct conf conf;
	struct errinfo ei;
	enum status st;
	char *secret = NULL;
	bool rejected = false;
	int i;

	st_clear(&ei);
	memset(&conf, 0, sizeof(conf));
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-C") == 0 && i + 1 < argc)
			config = argv[++i];
		else if (strcmp(argv[i], "--rejected") == 0)
			rejected = true;
		else if (argv[i][0] != '-' && name == NULL)
			name = argv[i];
		else {
			fprintf(stderr, "usage: bm-cred [-C file] [--rejected] "
			    "[account]\n");
			return 64;
		}
	}
	if ((st = conf_load(&conf, config, &ei)) == ST_OK &&
	    (st = conf_account(&conf, name, &acct, &ei)) == ST_OK &&
	    (st = cred_get(&conf, acct, rejected, &secret, &ei)) == ST_OK)
		printf("%s\n", secret);
	cred_free(secret);
	conf_free(&conf);
	if (st != ST_OK) {
		fprintf(stderr, "bm-cred: %s: %s\n", st_name(st), ei.msg);
		return st_exitcode(st);
	}
	return 0;
}

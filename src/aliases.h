/*
 * aliases.h: the aliases file, and the recipient list of one message.
 *
 * The file (the `aliases` key) maps local names to addresses:
 *
 *	# comment
 *	root: alice@example.com, "Bob" <bob@example.org>
 *	postmaster: root
 *	www-data: root,
 *	    carol@example.net		(a line starting with white space
 *					 continues the one before)
 *	default: admin@example.com	(every unqualified name without
 *					 an alias of its own)
 *
 * Names are matched ignoring case.  The right-hand side is an RFC 5322
 * address list.  Targets may be local names again (expanded in turn, a
 * loop ends at the name that closes it); a name that no alias takes is
 * qualified with the account's domain.  Pipes ("|cmd"), files ("/path")
 * and ":include:" are sendmail features bearmail refuses: it relays,
 * it does not deliver locally.  Errors name file:line.
 */
#ifndef BEARMAIL_ALIASES_H
#define BEARMAIL_ALIASES_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

#define ALIASES_FILE_MAX	(4 * 1024 * 1024)	/* octets */
#define ALIASES_DEPTH_MAX	16	/* nested expansions */
#define ALIASES_RCPTS_MAX	1000	/* recipients of one message */

struct aliases;

/*
 * A recipient list without duplicates (compared ignoring case), in the
 * order first added.  Zero it before use; v and its strings are owned.
 */
struct aliases_rcpts {
	char **v;
	size_t n;
};

/*
 * Read and check the aliases file at path.  On success *out owns the
 * table (free it with aliases_free()).  ST_CONFIG "path:line: ..." for a
 * bad line, ST_CONFIG for a file that cannot be read, ST_LIMIT for a
 * file over ALIASES_FILE_MAX, ST_SYS on ENOMEM.
 */
enum status aliases_load(const char *path, struct aliases **out,
    struct errinfo *ei);

/* Same from memory; name is used in error texts. */
enum status aliases_parse(const char *text, size_t len, const char *name,
    struct aliases **out, struct errinfo *ei);

/* Free a table; NULL is a no-op. */
void aliases_free(struct aliases *a);

/* Number of entries, `default` included. */
size_t aliases_count(const struct aliases *a);

/*
 * Add the final recipients for addr to out: addr itself when it has a
 * domain; for a bare local name, its alias's targets (recursively),
 * else the `default` alias's, else name@domain.  a may be NULL (no
 * aliases file).  ST_NOUSER when a local name has no alias and domain
 * is NULL or empty; ST_LIMIT past ALIASES_RCPTS_MAX recipients; ST_SYS
 * on ENOMEM.  Duplicates are dropped.
 */
enum status aliases_expand(const struct aliases *a, const char *addr,
    const char *domain, struct aliases_rcpts *out, struct errinfo *ei);

/*
 * Add one address to out unless already there (ignoring case).  The
 * string is copied.  ST_LIMIT past ALIASES_RCPTS_MAX.
 */
enum status aliases_rcpts_add(struct aliases_rcpts *out, const char *addr,
    struct errinfo *ei);

/* Whether out holds addr (ignoring case). */
bool aliases_rcpts_has(const struct aliases_rcpts *out, const char *addr);

/* Free the list's strings and array; leaves it zeroed. */
void aliases_rcpts_free(struct aliases_rcpts *out);

#endif

/*
 * rfc5322.h: address lists and header fields of Internet messages.
 *
 *   RFC 5322 section 2.2 (header fields), 2.2.3 and 3.2.2 (folding),
 *            3.2 and 3.4 (address lists, including the obsolete syntax
 *            of section 4.4: empty list members, routes, CFWS around dots)
 *   RFC 6532 (UTF-8 in addresses and display names: passed through)
 *   RFC 5321 section 4.5.3.1 (length of a path)
 *
 * Pure functions, no I/O.  The parser accepts what RFC 5322 allows plus
 * the sloppy forms people type on a sendmail command line ("a@x,b@y",
 * "a@x b@y", "root"), and refuses anything that could smuggle a header
 * or an SMTP command: every control byte other than TAB (CR, LF, NUL...)
 * is an error, so parse only unfolded values (rfc5322_field_split()).
 *
 * Syntax errors are ST_DATAERR: the usual input is a message header.  A
 * caller that parses the command line and wants ST_USAGE parses into a
 * scratch errinfo and reports with its own status.  Limits (too many
 * addresses, too long an address or input) are ST_LIMIT.
 */
#ifndef BEARMAIL_RFC5322_H
#define BEARMAIL_RFC5322_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "status.h"

#define RFC5322_ADDR_MAX	254	/* octets in local@domain (a path is
					   256 with its angle brackets) */
#define RFC5322_INPUT_MAX	(1024 * 1024)	/* octets in one list */
#define RFC5322_MAX_ADDRS	1000	/* a sensible max_addrs for callers */

struct rfc5322_addr {
	char *name;	/* display name, unquoted, words joined by one
			   space; RFC 2047 encoded words left as they are;
			   NULL when there is none */
	char *comment;	/* text of the first non-empty comment in this
			   mailbox, unquoted ("Cron Daemon" from
			   "root (Cron Daemon)"), or NULL */
	char *addr;	/* "local@domain", or "local" when unqualified, or
			   "" for "<>" (only with RFC5322_NULL_OK).  The
			   local part is quoted only if it must be
			   ("\"a b\"@x"), routes are dropped, comments and
			   folding whitespace removed. */
	char *group;	/* the group this mailbox was listed in, or NULL */
	bool has_domain;	/* "@domain" present */
	bool is_utf8;		/* addr holds a byte >= 0x80 (needs SMTPUTF8) */
};

/*
 * Zero it ({ NULL, 0 }) before the first parse.  The array's size is
 * derived from n, so v must be NULL or come from this module: never
 * append to an array built by hand.  Taking entries away (lowering n,
 * or moving v elsewhere and zeroing both) is fine.
 */
struct rfc5322_list {
	struct rfc5322_addr *v;	/* n entries, owned by the list */
	size_t n;
};

/* Flags for rfc5322_parse_list(). */
#define RFC5322_NULL_OK		0x01	/* accept "<>" (an envelope sender) */

/*
 * Parse the address list in[0..len) (an unfolded header value, or one
 * command-line argument) and append its mailboxes to out, which must be
 * zeroed or hold earlier results.  Groups contribute their members (an
 * empty group "undisclosed-recipients:;" contributes nothing), so a list
 * with no mailboxes is not an error: out->n just does not grow.
 *
 * ST_DATAERR for a syntax error (the text says where), ST_LIMIT when out
 * would hold more than max_addrs entries, when one address is longer than
 * RFC5322_ADDR_MAX or the input longer than RFC5322_INPUT_MAX, ST_SYS on
 * ENOMEM.  On failure out keeps only what it held before the call.
 */
enum status rfc5322_parse_list(const char *in, size_t len, size_t max_addrs,
    unsigned flags, struct rfc5322_list *out, struct errinfo *ei);

/*
 * Parse exactly one mailbox (a From with one author, -f's argument) into
 * *out, which the caller later frees with rfc5322_addr_free().  ST_DATAERR
 * if in holds no mailbox or more than one.
 */
enum status rfc5322_parse_one(const char *in, size_t len, unsigned flags,
    struct rfc5322_addr *out, struct errinfo *ei);

/* Free one address's strings; a zeroed one is fine. */
void rfc5322_addr_free(struct rfc5322_addr *a);

/* Free every entry and the array; leaves l zeroed and reusable. */
void rfc5322_list_free(struct rfc5322_list *l);

/*
 * The best human name for a: the display name, else the comment (the
 * old "addr (Full Name)" form), else NULL.  Points into a.
 */
const char *rfc5322_addr_display(const struct rfc5322_addr *a);

/*
 * Append a mailbox to out: "\"Display Name\" <addr>", or plain "addr"
 * when name is NULL or empty.  The name is quoted with '"' and '\'
 * escaped, except that a name holding RFC 2047 encoded words and nothing
 * that needs quoting is written bare so mail readers still decode it.
 * ST_DATAERR if name or addr contains a control byte other than TAB (CR,
 * LF, ESC...), or addr contains '<', '>', space or TAB outside a quoted
 * local part; ST_LIMIT past out's maximum.
 */
enum status rfc5322_format_addr(struct buf *out, const char *name,
    const char *addr, struct errinfo *ei);

/*
 * Split one raw header field (its bytes from the name up to and including
 * the CRLF or LF that ends it, continuation lines included) into its name
 * and value.  *name and *namelen point into raw (valid as long as raw is).
 * The value is appended to value unfolded: each line break followed by
 * space or tab is removed (the whitespace stays, RFC 5322 section 2.2.3),
 * then leading and trailing whitespace is trimmed.  "Name : value" (the
 * obsolete space before the colon) is accepted.  ST_DATAERR when there is
 * no colon, the name is empty or holds a byte outside 33..126, a line
 * break is not followed by whitespace, or a CR is not followed by LF;
 * ST_LIMIT past value's maximum.
 */
enum status rfc5322_field_split(const char *raw, size_t len,
    const char **name, size_t *namelen, struct buf *value,
    struct errinfo *ei);

/* Whether name[0..namelen) equals want, ignoring ASCII case. */
bool rfc5322_name_is(const char *name, size_t namelen, const char *want);

/*
 * Whether the raw header field (or just its first line) raw[0..len) is a
 * field called want: the name matches ignoring case and is followed by
 * optional space or tab and a colon.  ("Bcc:" yes, "Bcc-Foo:" no.)
 */
bool rfc5322_field_is(const char *raw, size_t len, const char *want);

#endif

/*
 * envelope.c: queue IDs and the text envelope of a queued message:
 * building, checking, serialising and parsing it.  Pure: no I/O.  The
 * queue that stores envelopes is spool.c; the maildrop is maildrop.c.
 *
 * QUEUE IDs are 10 characters of Crockford's base 32 (0-9 A-Z without
 * I L O U), so they are filename-safe and sort as they were made:
 * 7 characters of seconds since the epoch (35 bits: until the year
 * 3058), 2 of milliseconds, 1 random.  Uniqueness does not rest on the
 * random character: a file is created with O_EXCL and moved into place
 * with RENAME_NOREPLACE, and a collision just draws another ID.  Ten
 * characters fit the ID column of Postfix's mailq layout.
 *
 * The envelope is one "key value" line per field, LF-terminated, in this
 * order (queue format; the first line is the magic and version):
 *
 *   bearmail-queue 1
 *   id 1KQ3V7H0D2                  the file's own name
 *   account gmail                  account (config section)
 *   uid 1000                       submitting user (optional)
 *   created 1764155719             arrival, seconds since the epoch
 *   attempts 2                     delivery attempts so far
 *   next-try 1764156319            not before this time
 *   last-error 421 4.7.0 Try later (optional) why the last try failed
 *   sender alice@example.com       "<>" for the null sender
 *   body 8bitmime                  none, 7bit or 8bitmime (BODY=)
 *   smtputf8 no                    yes or no
 *   notify failure,delay           (optional) DSN NOTIFY: never, or a
 *                                  list of success, failure, delay
 *   ret hdrs                       (optional) DSN RET: full or hdrs
 *   envid QQ314159                 (optional) DSN ENVID, raw
 *   size 1234                      octets of message after the empty line
 *   rcpt pending bob@example.org   one per recipient: pending, done or
 *   reply 421 4.7.0 Try later        failed; "reply" (optional) follows
 *   rcpt done carol@example.net      its rcpt: the last reply or reason
 *   <empty line>
 *   <message>
 *
 * Values are never empty and hold no control characters (so no line can
 * be smuggled in); numbers are plain decimal.  The parser is strict:
 * known keys only, each once (rcpt/reply excepted), bounded sizes, and
 * the file must be exactly as long as the envelope says.
 *
 * The maildrop format is the same with the magic "bearmail-drop 1" and
 * only account, sender, body, smtputf8, notify, ret, envid, size and
 * "rcpt pending ADDR" lines: whatever the runner decides (id, uid,
 * times, attempts, states, errors) cannot be submitted.
 */
#include "config.h"

#include <sys/types.h>

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_GETRANDOM
#include <sys/random.h>
#endif

#include "buf.h"
#include "envelope.h"

#define MAGIC_QUEUE	"bearmail-queue 1"
#define MAGIC_DROP	"bearmail-drop 1"

static const char id_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */

/*
 * Bytes for the last character of a queue ID.  Not tls_random(): that
 * lives in tls.c, which would pull the TLS library into the setgid
 * bearmail-drop (it links the core archive alone), and it may block or
 * fail before the kernel's pool is ready at boot, where a queue ID must
 * still be made.  Nothing here needs to be unpredictable, so
 * GRND_NONBLOCK and, failing that, a clock-and-pid mix will do.
 */
static void
envelope_random(void *p, size_t n)
{
	static unsigned long mix;
	unsigned char *c = p;
	struct timespec ts;
	size_t i;

#ifdef HAVE_GETRANDOM
	if (getrandom(p, n, GRND_NONBLOCK) == (ssize_t)n)
		return;
#endif
	/* Uniqueness never rests on this: O_EXCL and RENAME_NOREPLACE do. */
	clock_gettime(CLOCK_REALTIME, &ts);
	mix = mix * 6364136223846793005UL + (unsigned long)ts.tv_nsec +
	    (unsigned long)getpid();
	for (i = 0; i < n; i++)
		c[i] = (unsigned char)(mix >> (8 * (i % 8)));
}

/* Text a value may hold: no control characters, bounded, not empty. */
static bool
text_ok(const char *s, size_t n, size_t max)
{
	size_t i;

	if (n == 0 || n > max)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static bool
addr_ok(const char *s, size_t n)
{
	if (!text_ok(s, n, ENVELOPE_ADDR_MAX))
		return false;
	if (s[0] == ' ' || s[n - 1] == ' ')
		return false;
	return !(n == 2 && s[0] == '<' && s[1] == '>');
}

static bool
account_ok(const char *s, size_t n)
{
	return text_ok(s, n, ENVELOPE_ACCOUNT_MAX) && s[0] != ' ' &&
	    s[n - 1] != ' ';
}

static bool
envid_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > ENVELOPE_ENVID_MAX)
		return false;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

static char *
mem_dup(const char *s, size_t n, struct errinfo *ei)
{
	char *d;

	if ((d = malloc(n + 1)) == NULL) {
		st_errno(ei, ST_SYS, "out of memory");
		return NULL;
	}
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* ------------------------------------------------------------------ */
/* IDs, backoff                                                         */

void
envelope_id_make(char id[ENVELOPE_ID_SIZE], time_t t, long usec)
{
	unsigned long long sec = (unsigned long long)t;
	unsigned ms = (unsigned)(usec / 1000) % 1000;
	unsigned char r;
	int i;

	for (i = 6; i >= 0; i--) {
		id[i] = id_alphabet[sec & 31];
		sec >>= 5;
	}
	id[7] = id_alphabet[(ms >> 5) & 31];
	id[8] = id_alphabet[ms & 31];
	envelope_random(&r, 1);
	id[9] = id_alphabet[r & 31];
	id[10] = '\0';
}

bool
envelope_id_valid(const char *s)
{
	size_t i;

	for (i = 0; i < ENVELOPE_ID_LEN; i++)
		if (s[i] == '\0' || strchr(id_alphabet, s[i]) == NULL)
			return false;
	return s[ENVELOPE_ID_LEN] == '\0';
}

/* ------------------------------------------------------------------ */
/* Envelopes                                                            */

void
envelope_init(struct envelope *env)
{
	memset(env, 0, sizeof(*env));
	env->uid = (uid_t)-1;
	env->body = ENVELOPE_BODY_NONE;
	env->ret = ENVELOPE_RET_NONE;
}

void
envelope_free(struct envelope *env)
{
	size_t i;

	if (env == NULL)
		return;
	for (i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].reply);
	}
	free(env->rcpts);
	free(env->account);
	free(env->sender);
	free(env->envid);
	free(env->last_error);
	envelope_init(env);
}

enum status
envelope_set(struct envelope *env, const char *account, const char *sender,
    struct errinfo *ei)
{
	char *a, *s;

	if (!account_ok(account, strlen(account)))
		return st_error(ei, ST_DATAERR, "unusable account name");
	if (strcmp(sender, "<>") == 0)
		sender = "";
	if (*sender != '\0' && !addr_ok(sender, strlen(sender)))
		return st_error(ei, ST_DATAERR, "unusable sender address");
	if ((a = strdup(account)) == NULL || (s = strdup(sender)) == NULL) {
		free(a);
		return st_errno(ei, ST_SYS, "out of memory");
	}
	free(env->account);
	free(env->sender);
	env->account = a;
	env->sender = s;
	return ST_OK;
}

enum status
envelope_set_envid(struct envelope *env, const char *envid,
    struct errinfo *ei)
{
	char *e = NULL;

	if (envid != NULL) {
		if (!envid_ok(envid, strlen(envid)))
			return st_error(ei, ST_DATAERR, "unusable DSN ENVID");
		if ((e = strdup(envid)) == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
	}
	free(env->envid);
	env->envid = e;
	return ST_OK;
}

static enum status
rcpt_append(struct envelope *env, const char *addr, size_t n,
    enum envelope_rcpt_state state, struct errinfo *ei)
{
	struct envelope_rcpt *r;
	size_t cap;

	if (!addr_ok(addr, n))
		return st_error(ei, ST_DATAERR, "unusable recipient address");
	if (env->nrcpts >= ENVELOPE_RCPT_MAX)
		return st_error(ei, ST_LIMIT, "more than %d recipients",
		    ENVELOPE_RCPT_MAX);
	/* Grow at powers of two: the count itself says when. */
	if ((env->nrcpts & (env->nrcpts - 1)) == 0) {
		cap = env->nrcpts == 0 ? 1 : env->nrcpts * 2;
		if ((r = realloc(env->rcpts, cap * sizeof(*r))) == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
		env->rcpts = r;
	}
	r = &env->rcpts[env->nrcpts];
	if ((r->addr = mem_dup(addr, n, ei)) == NULL)
		return ST_SYS;
	r->state = state;
	r->reply = NULL;
	env->nrcpts++;
	return ST_OK;
}

enum status
envelope_add_rcpt(struct envelope *env, const char *addr,
    struct errinfo *ei)
{
	return rcpt_append(env, addr, strlen(addr), ENVELOPE_RCPT_PENDING, ei);
}

enum status
envelope_copy(struct envelope *dst, const struct envelope *src,
    struct errinfo *ei)
{
	enum status st = ST_SYS;
	size_t i;

	envelope_init(dst);
	memcpy(dst->id, src->id, sizeof(dst->id));
	dst->body = src->body;
	dst->smtputf8 = src->smtputf8;
	dst->notify = src->notify;
	dst->ret = src->ret;
	dst->uid = src->uid;
	dst->created = src->created;
	dst->attempts = src->attempts;
	dst->next_try = src->next_try;
	dst->size = src->size;
	if ((src->account != NULL &&
	    (dst->account = strdup(src->account)) == NULL) ||
	    (src->sender != NULL &&
	    (dst->sender = strdup(src->sender)) == NULL) ||
	    (src->envid != NULL &&
	    (dst->envid = strdup(src->envid)) == NULL) ||
	    (src->last_error != NULL &&
	    (dst->last_error = strdup(src->last_error)) == NULL)) {
		st_errno(ei, ST_SYS, "out of memory");
		goto fail;
	}
	for (i = 0; i < src->nrcpts; i++) {
		if ((st = rcpt_append(dst, src->rcpts[i].addr,
		    strlen(src->rcpts[i].addr), src->rcpts[i].state, ei)) !=
		    ST_OK)
			goto fail;
		if (src->rcpts[i].reply != NULL &&
		    (dst->rcpts[i].reply = strdup(src->rcpts[i].reply)) ==
		    NULL) {
			st = st_errno(ei, ST_SYS, "out of memory");
			goto fail;
		}
	}
	return ST_OK;
fail:
	envelope_free(dst);
	return st;
}

size_t
envelope_pending(const struct envelope *env)
{
	size_t i, n = 0;

	for (i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].state == ENVELOPE_RCPT_PENDING)
			n++;
	return n;
}

size_t
envelope_failed(const struct envelope *env)
{
	size_t i, n = 0;

	for (i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].state == ENVELOPE_RCPT_FAILED)
			n++;
	return n;
}

static const char *const body_names[] = { "none", "7bit", "8bitmime" };
static const char *const ret_names[] = { NULL, "hdrs", "full" };
static const char *const state_names[] = { "pending", "done", "failed" };
static const struct {
	const char *name;
	unsigned bit;
} notify_names[] = {
	{ "success", ENVELOPE_NOTIFY_SUCCESS },
	{ "failure", ENVELOPE_NOTIFY_FAILURE },
	{ "delay", ENVELOPE_NOTIFY_DELAY },
};

#define TIME_MAX_ACCEPTED	((1ULL << 40) - 1)

static bool
opt_text_ok(const char *s)
{
	return s == NULL || *s == '\0' || text_ok(s, strlen(s),
	    ENVELOPE_TEXT_MAX);
}

/* The checks the parser makes, made before writing. */
static bool
env_writable(const struct envelope *env, bool q)
{
	size_t i;

	if (!account_ok(env->account, strlen(env->account)) ||
	    (*env->sender != '\0' && !addr_ok(env->sender,
	    strlen(env->sender))) ||
	    (env->envid != NULL && !envid_ok(env->envid,
	    strlen(env->envid))) ||
	    env->nrcpts > ENVELOPE_RCPT_MAX)
		return false;
	if (q && (env->created < 0 || env->next_try < 0 ||
	    (unsigned long long)env->created > TIME_MAX_ACCEPTED ||
	    (unsigned long long)env->next_try > TIME_MAX_ACCEPTED ||
	    env->attempts > 1000000 || !opt_text_ok(env->last_error) ||
	    (env->uid != (uid_t)-1 && env->uid > 0xfffffffeU)))
		return false;
	for (i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].addr == NULL ||
		    !addr_ok(env->rcpts[i].addr, strlen(env->rcpts[i].addr)) ||
		    (unsigned)env->rcpts[i].state > ENVELOPE_RCPT_FAILED ||
		    !opt_text_ok(env->rcpts[i].reply))
			return false;
	return true;
}

enum status
envelope_format(const struct envelope *env, enum envelope_fmt fmt,
    struct buf *out, struct errinfo *ei)
{
	bool q = fmt == ENVELOPE_FMT_QUEUE;
	const char *sep = "";
	enum status st;
	size_t i;

	if (env->account == NULL || env->sender == NULL || env->nrcpts == 0)
		return st_error(ei, ST_DATAERR,
		    "envelope without account, sender or recipients");
	/* Whatever is written must parse back, or the message is stuck. */
	if (!env_writable(env, q))
		return st_error(ei, ST_DATAERR, "envelope holds a value the "
		    "queue format cannot carry");
	if ((unsigned)env->body > ENVELOPE_BODY_8BITMIME ||
	    (unsigned)env->ret > ENVELOPE_RET_FULL ||
	    (env->notify & ~0xfu) != 0 ||
	    ((env->notify & ENVELOPE_NOTIFY_NEVER) && env->notify != 1))
		return st_error(ei, ST_DATAERR, "bad envelope flags");
	if (q && !envelope_id_valid(env->id))
		return st_error(ei, ST_DATAERR, "envelope without a queue ID");
	if (env->size < 0 || env->size > ENVELOPE_MSG_MAX)
		return st_error(ei, ST_LIMIT, "message too large");

	if ((st = buf_printf(out, ei, "%s\n", q ? MAGIC_QUEUE : MAGIC_DROP)))
		return st;
	if (q && (st = buf_printf(out, ei, "id %s\n", env->id)))
		return st;
	if ((st = buf_printf(out, ei, "account %s\n", env->account)))
		return st;
	if (q) {
		if (env->uid != (uid_t)-1 && (st = buf_printf(out, ei,
		    "uid %lu\n", (unsigned long)env->uid)))
			return st;
		if ((st = buf_printf(out, ei, "created %lld\nattempts %u\n"
		    "next-try %lld\n", (long long)env->created, env->attempts,
		    (long long)env->next_try)))
			return st;
		if (env->last_error != NULL && *env->last_error != '\0' &&
		    (st = buf_printf(out, ei, "last-error %s\n",
		    env->last_error)))
			return st;
	}
	if ((st = buf_printf(out, ei, "sender %s\nbody %s\nsmtputf8 %s\n",
	    *env->sender == '\0' ? "<>" : env->sender, body_names[env->body],
	    env->smtputf8 ? "yes" : "no")))
		return st;
	if (env->notify != 0) {
		if ((st = buf_adds(out, "notify ", ei)))
			return st;
		if (env->notify == ENVELOPE_NOTIFY_NEVER)
			st = buf_adds(out, "never", ei);
		for (i = 0; i < 3 && st == ST_OK; i++)
			if (env->notify & notify_names[i].bit) {
				st = buf_printf(out, ei, "%s%s", sep,
				    notify_names[i].name);
				sep = ",";
			}
		if (st != ST_OK || (st = buf_adds(out, "\n", ei)))
			return st;
	}
	if (env->ret != ENVELOPE_RET_NONE &&
	    (st = buf_printf(out, ei, "ret %s\n", ret_names[env->ret])))
		return st;
	if (env->envid != NULL &&
	    (st = buf_printf(out, ei, "envid %s\n", env->envid)))
		return st;
	if ((st = buf_printf(out, ei, "size %lld\n", (long long)env->size)))
		return st;
	for (i = 0; i < env->nrcpts; i++) {
		const struct envelope_rcpt *r = &env->rcpts[i];

		if (!q && r->state != ENVELOPE_RCPT_PENDING)
			return st_error(ei, ST_DATAERR,
			    "a drop recipient must be pending");
		if ((st = buf_printf(out, ei, "rcpt %s %s\n",
		    state_names[r->state], r->addr)))
			return st;
		if (q && r->reply != NULL && *r->reply != '\0' &&
		    (st = buf_printf(out, ei, "reply %s\n", r->reply)))
			return st;
	}
	return buf_adds(out, "\n", ei);
}

/* Plain decimal, no sign, no leading zero, at most max. */
static bool
parse_num(const char *s, size_t n, unsigned long long max,
    unsigned long long *out)
{
	unsigned long long v = 0;
	size_t i;

	if (n == 0 || n > 19 || (n > 1 && s[0] == '0'))
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

static int
name_index(const char *const *names, size_t count, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < count; i++)
		if (names[i] != NULL && strlen(names[i]) == n &&
		    memcmp(names[i], s, n) == 0)
			return (int)i;
	return -1;
}

static bool
parse_notify(const char *s, size_t n, unsigned *out)
{
	size_t i, len;
	unsigned v = 0, bit;
	const char *e;

	if (n == 5 && memcmp(s, "never", 5) == 0) {
		*out = ENVELOPE_NOTIFY_NEVER;
		return true;
	}
	while (n > 0) {
		e = memchr(s, ',', n);
		len = e != NULL ? (size_t)(e - s) : n;
		bit = 0;
		for (i = 0; i < 3; i++)
			if (strlen(notify_names[i].name) == len &&
			    memcmp(notify_names[i].name, s, len) == 0)
				bit = notify_names[i].bit;
		if (bit == 0 || (v & bit))
			return false;
		v |= bit;
		if (e == NULL)
			break;
		if (len + 1 >= n)
			return false;		/* trailing comma */
		s += len + 1;
		n -= len + 1;
	}
	*out = v;
	return v != 0;
}

/* Fields and whether each format allows them. */
enum fld {
	FLD_ID, FLD_ACCOUNT, FLD_UID, FLD_CREATED, FLD_ATTEMPTS, FLD_NEXT_TRY,
	FLD_LAST_ERROR, FLD_SENDER, FLD_BODY, FLD_SMTPUTF8, FLD_NOTIFY,
	FLD_RET, FLD_ENVID, FLD_SIZE, FLD_RCPT, FLD_REPLY, FLD__COUNT
};

static const struct {
	const char *key;
	bool in_drop;		/* allowed in the maildrop format */
	bool required;		/* in the formats that allow it */
} fields[FLD__COUNT] = {
	[FLD_ID]		= { "id",		false,	true },
	[FLD_ACCOUNT]	= { "account",		true,	true },
	[FLD_UID]		= { "uid",		false,	false },
	[FLD_CREATED]	= { "created",		false,	true },
	[FLD_ATTEMPTS]	= { "attempts",		false,	true },
	[FLD_NEXT_TRY]	= { "next-try",		false,	true },
	[FLD_LAST_ERROR]	= { "last-error",	false,	false },
	[FLD_SENDER]	= { "sender",		true,	true },
	[FLD_BODY]	= { "body",		true,	true },
	[FLD_SMTPUTF8]	= { "smtputf8",		true,	true },
	[FLD_NOTIFY]	= { "notify",		true,	false },
	[FLD_RET]		= { "ret",		true,	false },
	[FLD_ENVID]	= { "envid",		true,	false },
	[FLD_SIZE]	= { "size",		true,	true },
	[FLD_RCPT]	= { "rcpt",		true,	true },
	[FLD_REPLY]	= { "reply",		false,	false },
};

static enum status
parse_field(struct envelope *env, enum fld f, const char *v, size_t n,
    bool after_rcpt, struct errinfo *ei)
{
	unsigned long long num;
	const char *sp;
	int i;

	switch (f) {
	case FLD_ID:
		if (n != ENVELOPE_ID_LEN)
			return ST_DATAERR;
		memcpy(env->id, v, n);
		env->id[n] = '\0';
		return envelope_id_valid(env->id) ? ST_OK : ST_DATAERR;
	case FLD_ACCOUNT:
		if (!account_ok(v, n))
			return ST_DATAERR;
		return (env->account = mem_dup(v, n, ei)) ? ST_OK : ST_SYS;
	case FLD_UID:
		if (!parse_num(v, n, 0xfffffffeULL, &num))
			return ST_DATAERR;
		env->uid = (uid_t)num;
		return ST_OK;
	case FLD_CREATED:
	case FLD_NEXT_TRY:
		if (!parse_num(v, n, TIME_MAX_ACCEPTED, &num))
			return ST_DATAERR;
		*(f == FLD_CREATED ? &env->created : &env->next_try) =
		    (time_t)num;
		return ST_OK;
	case FLD_ATTEMPTS:
		if (!parse_num(v, n, 1000000, &num))
			return ST_DATAERR;
		env->attempts = (unsigned)num;
		return ST_OK;
	case FLD_LAST_ERROR:
		if (!text_ok(v, n, ENVELOPE_TEXT_MAX))
			return ST_DATAERR;
		return (env->last_error = mem_dup(v, n, ei)) ? ST_OK : ST_SYS;
	case FLD_SENDER:
		if (n == 2 && memcmp(v, "<>", 2) == 0)
			n = 0;
		else if (!addr_ok(v, n))
			return ST_DATAERR;
		return (env->sender = mem_dup(v, n, ei)) ? ST_OK : ST_SYS;
	case FLD_BODY:
		if ((i = name_index(body_names, 3, v, n)) < 0)
			return ST_DATAERR;
		env->body = (enum envelope_body)i;
		return ST_OK;
	case FLD_SMTPUTF8:
		if (n == 3 && memcmp(v, "yes", 3) == 0)
			env->smtputf8 = true;
		else if (n == 2 && memcmp(v, "no", 2) == 0)
			env->smtputf8 = false;
		else
			return ST_DATAERR;
		return ST_OK;
	case FLD_NOTIFY:
		return parse_notify(v, n, &env->notify) ? ST_OK : ST_DATAERR;
	case FLD_RET:
		if ((i = name_index(ret_names, 3, v, n)) < 1)
			return ST_DATAERR;
		env->ret = (enum envelope_ret)i;
		return ST_OK;
	case FLD_ENVID:
		if (!envid_ok(v, n))
			return ST_DATAERR;
		return (env->envid = mem_dup(v, n, ei)) ? ST_OK : ST_SYS;
	case FLD_SIZE:
		if (!parse_num(v, n, (unsigned long long)ENVELOPE_MSG_MAX,
		    &num))
			return ST_DATAERR;
		env->size = (off_t)num;
		return ST_OK;
	case FLD_RCPT:
		if ((sp = memchr(v, ' ', n)) == NULL ||
		    (i = name_index(state_names, 3, v, (size_t)(sp - v))) < 0)
			return ST_DATAERR;
		sp++;
		return rcpt_append(env, sp, n - (size_t)(sp - v),
		    (enum envelope_rcpt_state)i, ei) == ST_OK ? ST_OK :
		    ST_DATAERR;
	case FLD_REPLY:
		if (!after_rcpt || !text_ok(v, n, ENVELOPE_TEXT_MAX))
			return ST_DATAERR;
		return (env->rcpts[env->nrcpts - 1].reply = mem_dup(v, n, ei)) ?
		    ST_OK : ST_SYS;
	default:
		return ST_DATAERR;
	}
}

enum status
envelope_parse(const char *data, size_t len, enum envelope_fmt fmt,
    struct envelope *env, size_t *hdrlen, struct errinfo *ei)
{
	const char *magic = fmt == ENVELOPE_FMT_QUEUE ? MAGIC_QUEUE :
	    MAGIC_DROP;
	bool seen[FLD__COUNT] = { false };
	bool drop = fmt == ENVELOPE_FMT_DROP, after_rcpt = false;
	const char *p = data, *nl, *sp, *end;
	size_t lineno = 0, n, klen;
	struct errinfo sub;
	enum status st;
	int f;

	envelope_free(env);
	if (len > ENVELOPE_HDR_MAX)
		len = ENVELOPE_HDR_MAX;
	end = data + len;
	for (;;) {
		lineno++;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL) {
			st = st_error(ei, len == ENVELOPE_HDR_MAX ? ST_LIMIT :
			    ST_DATAERR, "envelope line %zu: %s", lineno,
			    len == ENVELOPE_HDR_MAX ? "envelope too large" :
			    "truncated");
			goto fail;
		}
		n = (size_t)(nl - p);
		if (lineno == 1) {
			if (n != strlen(magic) || memcmp(p, magic, n) != 0) {
				st = st_error(ei, ST_DATAERR,
				    "not a bearmail %s file (bad first line)",
				    drop ? "maildrop" : "queue");
				goto fail;
			}
			p = nl + 1;
			continue;
		}
		if (n == 0)
			break;
		if ((sp = memchr(p, ' ', n)) == NULL || sp == p ||
		    sp + 1 == nl || !text_ok(p, n, SIZE_MAX)) {
			st = st_error(ei, ST_DATAERR,
			    "envelope line %zu: malformed", lineno);
			goto fail;
		}
		klen = (size_t)(sp - p);
		for (f = 0; f < FLD__COUNT; f++)
			if (strlen(fields[f].key) == klen &&
			    memcmp(fields[f].key, p, klen) == 0)
				break;
		if (f == FLD__COUNT || (drop && !fields[f].in_drop)) {
			st = st_error(ei, ST_DATAERR,
			    "envelope line %zu: unknown or forbidden field",
			    lineno);
			goto fail;
		}
		if (seen[f] && f != FLD_RCPT && f != FLD_REPLY) {
			st = st_error(ei, ST_DATAERR,
			    "envelope line %zu: duplicate field", lineno);
			goto fail;
		}
		seen[f] = true;
		st_clear(&sub);
		if ((st = parse_field(env, (enum fld)f, sp + 1,
		    (size_t)(nl - sp - 1), after_rcpt, &sub)) != ST_OK) {
			if (st == ST_SYS)
				st_error(ei, ST_SYS, "%s", sub.msg);
			else
				st = st_error(ei, ST_DATAERR, "envelope line "
				    "%zu: bad %s value", lineno,
				    fields[f].key);
			goto fail;
		}
		if (drop && f == FLD_RCPT &&
		    env->rcpts[env->nrcpts - 1].state !=
		    ENVELOPE_RCPT_PENDING) {
			st = st_error(ei, ST_DATAERR, "envelope line %zu: a "
			    "submitted recipient must be pending", lineno);
			goto fail;
		}
		after_rcpt = f == FLD_RCPT;
		p = nl + 1;
	}
	for (f = 0; f < FLD__COUNT; f++)
		if (fields[f].required && !seen[f] &&
		    (!drop || fields[f].in_drop)) {
			st = st_error(ei, ST_DATAERR,
			    "envelope lacks its %s field", fields[f].key);
			goto fail;
		}
	*hdrlen = (size_t)(nl + 1 - data);
	return ST_OK;
fail:
	envelope_free(env);
	return st;
}

/*
 * fuzz_spool.c: the queue file and maildrop envelope reader
 * (envelope_parse() in src/envelope.h): what maildrop_import() reads
 * from files other users wrote, and spool_scan() from the queue.
 *
 * The first byte picks the format (queue or drop).
 *
 * Promises checked: the envelope's end lies within the input; a parsed
 * envelope formats again (the parser accepts nothing the writer cannot
 * write) and the result parses back to the same envelope; the drop
 * format never yields runner-only state; no string holds a control
 * character.
 */
#include "config.h"

#include "buf.h"
#include "maildrop.h"
#include "spool.h"
#include "status.h"

#include "fuzz.h"

static bool
same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	    (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void
check_env(const struct envelope *e, enum envelope_fmt fmt)
{
	size_t i;

	FZ_CHECK(e->account != NULL && !fz_has_ctl(e->account, false));
	FZ_CHECK(e->sender != NULL && !fz_has_ctl(e->sender, false));
	FZ_CHECK(e->envid == NULL || !fz_has_ctl(e->envid, false));
	FZ_CHECK(e->last_error == NULL || !fz_has_ctl(e->last_error, true));
	FZ_CHECK(e->nrcpts <= ENVELOPE_RCPT_MAX);
	for (i = 0; i < e->nrcpts; i++) {
		FZ_CHECK(e->rcpts[i].addr != NULL &&
		    !fz_has_ctl(e->rcpts[i].addr, false));
		FZ_CHECK(e->rcpts[i].reply == NULL ||
		    !fz_has_ctl(e->rcpts[i].reply, true));
		if (fmt == ENVELOPE_FMT_DROP)
			FZ_CHECK(e->rcpts[i].state == ENVELOPE_RCPT_PENDING &&
			    e->rcpts[i].reply == NULL);
	}
	if (fmt == ENVELOPE_FMT_DROP)
		FZ_CHECK(e->attempts == 0 && e->last_error == NULL &&
		    e->id[0] == '\0');
	FZ_CHECK(fz_terminated(e->id, sizeof(e->id)));
	(void)envelope_pending(e);
	(void)envelope_failed(e);
	(void)spool_expired(e, 1764155719, 5 * 86400);
}

static void
check_same(const struct envelope *a, const struct envelope *b)
{
	size_t i;

	FZ_CHECK(strcmp(a->id, b->id) == 0);
	FZ_CHECK(same_str(a->account, b->account));
	FZ_CHECK(same_str(a->sender, b->sender));
	FZ_CHECK(same_str(a->envid, b->envid));
	FZ_CHECK(same_str(a->last_error, b->last_error));
	FZ_CHECK(a->body == b->body && a->smtputf8 == b->smtputf8 &&
	    a->notify == b->notify && a->ret == b->ret);
	FZ_CHECK(a->uid == b->uid && a->created == b->created &&
	    a->attempts == b->attempts && a->next_try == b->next_try &&
	    a->size == b->size);
	FZ_CHECK(a->nrcpts == b->nrcpts);
	for (i = 0; i < a->nrcpts; i++) {
		FZ_CHECK(same_str(a->rcpts[i].addr, b->rcpts[i].addr));
		FZ_CHECK(a->rcpts[i].state == b->rcpts[i].state);
		FZ_CHECK(same_str(a->rcpts[i].reply, b->rcpts[i].reply));
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct errinfo ei;
	struct envelope env, again, copy;
	struct buf out;
	enum envelope_fmt fmt;
	size_t hdrlen = (size_t)-1, hdrlen2;
	const char *in;

	fmt = (fz_byte(&data, &size) & 1) ? ENVELOPE_FMT_DROP :
	    ENVELOPE_FMT_QUEUE;
	in = (const char *)data;
	envelope_init(&env);
	envelope_init(&again);
	envelope_init(&copy);
	st_clear(&ei);
	if (envelope_parse(in, size, fmt, &env, &hdrlen, &ei) != ST_OK) {
		FZ_CHECK(ei.st == ST_DATAERR || ei.st == ST_LIMIT ||
		    ei.st == ST_SYS);
		envelope_free(&env);
		return 0;
	}
	FZ_CHECK(hdrlen >= 2 && hdrlen <= size);
	FZ_CHECK(in[hdrlen - 1] == '\n' && in[hdrlen - 2] == '\n');
	check_env(&env, fmt);

	/* Format, then parse what we wrote followed by the same message. */
	buf_init(&out, ENVELOPE_HDR_MAX + size);
	st_clear(&ei);
	if (envelope_format(&env, fmt, &out, &ei) != ST_OK) {
		fprintf(stderr, "parsed envelope does not format: %s\n",
		    ei.msg);
		FZ_CHECK(!"a parsed envelope formats");
	}
	hdrlen2 = out.len;
	FZ_CHECK(buf_add(&out, in + hdrlen, size - hdrlen, &ei) == ST_OK);
	st_clear(&ei);
	if (envelope_parse(out.data, out.len, fmt, &again, &hdrlen, &ei) !=
	    ST_OK) {
		fprintf(stderr, "formatted envelope does not parse: %s\n",
		    ei.msg);
		FZ_CHECK(!"a formatted envelope parses");
	}
	FZ_CHECK(hdrlen == hdrlen2);
	check_same(&env, &again);

	st_clear(&ei);
	FZ_CHECK(envelope_copy(&copy, &env, &ei) == ST_OK);
	check_same(&env, &copy);

	buf_free(&out);
	envelope_free(&copy);
	envelope_free(&again);
	envelope_free(&env);
	return 0;
}

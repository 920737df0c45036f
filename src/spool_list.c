/*
 * spool_list.c: reading the queue (spool_scan()) and the mailq listing
 * in Postfix's layout.  Part of the spool module (spool.h); the queue
 * internals it reads through are in spool_int.h.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "spool.h"
#include "spool_int.h"

/* ------------------------------------------------------------------ */
/* Scanning and listing                                                 */

void
spool_list_free(struct spool_list *l)
{
	size_t i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++)
		envelope_free(&l->v[i].env);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static enum status
list_push(struct spool_list *l, size_t *cap, struct spool_entry **e,
    struct errinfo *ei)
{
	struct spool_entry *v;
	size_t ncap;

	if (l->n == *cap) {
		ncap = *cap == 0 ? 64 : *cap * 2;
		if ((v = realloc(l->v, ncap * sizeof(*v))) == NULL)
			return st_errno(ei, ST_SYS, "out of memory");
		l->v = v;
		*cap = ncap;
	}
	*e = &l->v[l->n];
	memset(*e, 0, sizeof(**e));
	envelope_init(&(*e)->env);
	return ST_OK;
}

static int
entry_cmp(const void *a, const void *b)
{
	const struct spool_entry *x = a, *y = b;
	int c;

	if (x->drop != y->drop)
		return x->drop ? -1 : 1;
	if (!x->drop && (c = strcmp(x->env.account, y->env.account)) != 0)
		return c;
	return strcmp(x->env.id, y->env.id);
}

/* Read one q/ file's envelope; refusals are logged and skipped. */
static enum status
scan_one(struct spool *sp, const char *name, struct envelope *env,
    bool *ok, struct errinfo *ei)
{
	struct errinfo sub;
	struct stat st;
	const char *why;
	enum status rc;
	size_t hdrlen;
	int fd;

	*ok = false;
	st_clear(&sub);
	rc = spool_open_checked(sp->qfd, name, sp->owner, &fd, &st, &why, &sub);
	if (rc == ST_DATAERR) {
		log_warn("queue %s: refusing q/%s: %s", sp->path, name, why);
		return ST_OK;
	}
	if (rc != ST_OK)
		return st_error(ei, rc, "%s", sub.msg);
	if (fd < 0)
		return ST_OK;		/* delivered meanwhile */
	rc = spool_read_env(fd, st.st_size, ENVELOPE_FMT_QUEUE, env, &hdrlen,
	    &sub);
	close(fd);
	if (rc == ST_SYS)
		return st_error(ei, rc, "%s", sub.msg);
	if (rc != ST_OK) {
		log_warn("queue %s: skipping q/%s: %s", sp->path, name,
		    sub.msg);
		return ST_OK;
	}
	if (strcmp(env->id, name) != 0) {
		log_warn("queue %s: skipping q/%s: it says it is %s",
		    sp->path, name, env->id);
		envelope_free(env);
		return ST_OK;
	}
	*ok = true;
	return ST_OK;
}

static enum status
scan_maildrop(struct spool *sp, struct spool_list *out, size_t *cap,
    struct errinfo *ei)
{
	struct spool_entry *e;
	struct dirent *de;
	struct stat st;
	enum status rc = ST_OK;
	DIR *d;
	int fd;

	if (sp->dropfd < 0 || (fd = dup(sp->dropfd)) < 0)
		return ST_OK;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return ST_OK;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (!envelope_id_valid(de->d_name) ||
		    fstatat(sp->dropfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW)
		    != 0 || !S_ISREG(st.st_mode))
			continue;
		if ((rc = list_push(out, cap, &e, ei)) != ST_OK)
			break;
		e->drop = true;
		memcpy(e->env.id, de->d_name, ENVELOPE_ID_SIZE);
		e->env.uid = st.st_uid;
		e->env.created = st.st_mtime;
		e->env.size = st.st_size;
		out->n++;
	}
	closedir(d);
	return rc;
}

enum status
spool_scan(struct spool *sp, time_t now, unsigned flags,
    struct spool_list *out, struct errinfo *ei)
{
	struct spool_entry *e;
	struct dirent *de;
	enum status rc = ST_OK;
	size_t cap = 0;
	bool ok;
	DIR *d;
	int fd;

	out->v = NULL;
	out->n = 0;
	if ((flags & SPOOL_SCAN_MAILDROP) &&
	    (rc = scan_maildrop(sp, out, &cap, ei)) != ST_OK)
		goto fail;
	if ((fd = dup(sp->qfd)) < 0 || (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		rc = st_errno(ei, ST_SYS, "read %s/q", sp->path);
		goto fail;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (!envelope_id_valid(de->d_name)) {
			log_warn("queue %s: ignoring q/%s: not a queue ID",
			    sp->path, de->d_name);
			continue;
		}
		if ((rc = list_push(out, &cap, &e, ei)) != ST_OK)
			break;
		if ((rc = scan_one(sp, de->d_name, &e->env, &ok, ei)) != ST_OK)
			break;
		if (!ok)
			continue;
		if ((flags & SPOOL_SCAN_DUE) && e->env.next_try > now &&
		    envelope_pending(&e->env) > 0) {
			envelope_free(&e->env);
			continue;
		}
		out->n++;
	}
	closedir(d);
	if (rc != ST_OK)
		goto fail;
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), entry_cmp);
	return ST_OK;
fail:
	spool_list_free(out);
	return rc;
}

static const char *const wday_names[] = {
	"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
};
static const char *const mon_names[] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};

/* asctime()'s first 20 characters, in English whatever the locale. */
static void
list_time(time_t t, char out[32])
{
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL) {
		snprintf(out, 32, "%-20s", "??");
		return;
	}
	snprintf(out, 32, "%.3s %.3s%3d %.2d:%.2d:%.2d ",
	    wday_names[tm.tm_wday % 7], mon_names[tm.tm_mon % 12], tm.tm_mday,
	    tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/*
 * Postfix's showq layout for short queue IDs: the heading, per message
 * a line "ID size arrival sender", then for each pending recipient its
 * reason in parentheses when it differs from the previous one (right
 * aligned to column 78) and the address indented by 41.
 */
#define LIST_STRING	"%-11s %7s %-20s %s\n"
#define LIST_SENDER	"%-11s %7lld %20.20s %s\n"

enum status
spool_list_format(const struct spool_list *l, struct buf *out,
    struct errinfo *ei)
{
	unsigned long long total = 0;
	const struct envelope *env;
	const char *saved, *why, *show;
	char when[32], drop[64];
	enum status st;
	size_t i, j;
	int pad;

	if (l->n == 0)
		return buf_adds(out, "Mail queue is empty\n", ei);
	for (i = 0; i < l->n; i++) {
		env = &l->v[i].env;
		if (i == 0)
			st = buf_printf(out, ei, LIST_STRING, "-Queue ID-",
			    "--Size--", "----Arrival Time----",
			    "-Sender/Recipient-------");
		else
			st = buf_adds(out, "\n", ei);
		if (st != ST_OK)
			return st;
		list_time(env->created, when);
		total += (unsigned long long)env->size;
		if (l->v[i].drop) {
			snprintf(drop, sizeof(drop), "(maildrop queue, sender "
			    "UID %lu)", (unsigned long)env->uid);
			if ((st = buf_printf(out, ei, LIST_SENDER, env->id,
			    (long long)env->size, when, drop)))
				return st;
			continue;
		}
		if ((st = buf_printf(out, ei, LIST_SENDER, env->id,
		    (long long)env->size, when, *env->sender == '\0' ?
		    "MAILER-DAEMON" : env->sender)))
			return st;
		saved = "";
		for (j = 0; j < env->nrcpts; j++) {
			if (env->rcpts[j].state != ENVELOPE_RCPT_PENDING)
				continue;
			why = env->rcpts[j].reply;
			if (why == NULL)
				why = env->last_error;
			if (why == NULL)
				why = "";
			if (strcmp(saved, why) != 0) {
				saved = why;
				show = *why != '\0' ? why : "reason unavailable";
				pad = 76 - (int)strlen(show);
				if ((st = buf_printf(out, ei, "%*s(%s)\n",
				    pad > 0 ? pad : 0, "", show)))
					return st;
			}
			if ((st = buf_printf(out, ei, LIST_STRING, "", "", "",
			    env->rcpts[j].addr)))
				return st;
		}
	}
	return buf_printf(out, ei, "\n-- %llu Kbytes in %zu Request%s.\n",
	    total / 1024, l->n, l->n == 1 ? "" : "s");
}

enum status
spool_listing(struct spool *sp, struct buf *out, struct errinfo *ei)
{
	struct spool_list l;
	enum status st;

	if ((st = spool_scan(sp, 0, SPOOL_SCAN_MAILDROP, &l, ei)) != ST_OK)
		return st;
	st = spool_list_format(&l, out, ei);
	spool_list_free(&l);
	return st;
}

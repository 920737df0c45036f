/*
 * aliases.c: the aliases file (format in aliases.h) and recipient lists.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aliases.h"
#include "buf.h"
#include "rfc5322.h"

struct alias {
	char *name;
	char **targets;		/* bare addresses, local or qualified */
	size_t ntargets;
	int line;
};

struct aliases {
	struct alias *v;
	size_t n;
	const struct alias *def;	/* the `default` entry, or NULL */
};

/* ---- recipient lists ------------------------------------------------- */

bool
aliases_rcpts_has(const struct aliases_rcpts *out, const char *addr)
{
	size_t i;

	for (i = 0; i < out->n; i++)
		if (strcasecmp(out->v[i], addr) == 0)
			return true;
	return false;
}

enum status
aliases_rcpts_add(struct aliases_rcpts *out, const char *addr,
    struct errinfo *ei)
{
	char **nv, *s;

	if (aliases_rcpts_has(out, addr))
		return ST_OK;
	if (out->n >= ALIASES_RCPTS_MAX)
		return st_error(ei, ST_LIMIT, "more than %d recipients",
		    ALIASES_RCPTS_MAX);
	if ((s = strdup(addr)) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	if ((nv = realloc(out->v, (out->n + 1) * sizeof(*nv))) == NULL) {
		free(s);
		return st_errno(ei, ST_SYS, "out of memory");
	}
	out->v = nv;
	out->v[out->n++] = s;
	return ST_OK;
}

void
aliases_rcpts_free(struct aliases_rcpts *out)
{
	size_t i;

	for (i = 0; i < out->n; i++)
		free(out->v[i]);
	free(out->v);
	out->v = NULL;
	out->n = 0;
}

/* ---- the table ------------------------------------------------------- */

void
aliases_free(struct aliases *a)
{
	size_t i, j;

	if (a == NULL)
		return;
	for (i = 0; i < a->n; i++) {
		for (j = 0; j < a->v[i].ntargets; j++)
			free(a->v[i].targets[j]);
		free(a->v[i].targets);
		free(a->v[i].name);
	}
	free(a->v);
	free(a);
}

size_t
aliases_count(const struct aliases *a)
{
	return a == NULL ? 0 : a->n;
}

static const struct alias *
lookup(const struct aliases *a, const char *name)
{
	size_t i;

	for (i = 0; a != NULL && i < a->n; i++)
		if (strcasecmp(a->v[i].name, name) == 0)
			return &a->v[i];
	return NULL;
}

static bool
is_ws(char c)
{
	return c == ' ' || c == '\t';
}

/* One logical entry: text[0..len) with continuation lines joined. */
static enum status
parse_entry(struct aliases *a, const char *text, size_t len,
    const char *fname, int line, struct errinfo *ei)
{
	struct rfc5322_list l = { NULL, 0 };
	struct alias *nv, *al;
	struct errinfo tmp;
	const char *colon, *p, *e;
	enum status st = ST_OK;
	size_t i, namelen;

	if ((colon = memchr(text, ':', len)) == NULL)
		return st_error(ei, ST_CONFIG,
		    "%s:%d: expected \"name: address, ...\"", fname, line);
	for (e = colon; e > text && is_ws(e[-1]); e--)
		;
	namelen = (size_t)(e - text);
	if (namelen == 0)
		return st_error(ei, ST_CONFIG, "%s:%d: empty alias name",
		    fname, line);
	for (p = text; p < e; p++)
		if ((unsigned char)*p <= 32 || *p == '@' || *p == '"' ||
		    *p == '<' || *p == '>' || *p == ',' || *p == 0x7f)
			return st_error(ei, ST_CONFIG,
			    "%s:%d: alias name \"%.*s\" is not a bare "
			    "local name", fname, line, (int)namelen, text);
	p = colon + 1;
	if (memmem(p, len - (size_t)(p - text), ":include:", 9) != NULL)
		return st_error(ei, ST_CONFIG,
		    "%s:%d: :include: is not supported", fname, line);
	st_clear(&tmp);
	if (rfc5322_parse_list(p, len - (size_t)(p - text), RFC5322_MAX_ADDRS,
	    0, &l, &tmp) != ST_OK) {
		st = st_error(ei, ST_CONFIG, "%s:%d: %s", fname, line, tmp.msg);
		goto out;
	}
	if (l.n == 0) {
		st = st_error(ei, ST_CONFIG,
		    "%s:%d: alias \"%.*s\" has no address",
		    fname, line, (int)namelen, text);
		goto out;
	}
	for (i = 0; i < l.n; i++)
		if (l.v[i].addr[0] == '|' || l.v[i].addr[0] == '/') {
			st = st_error(ei, ST_CONFIG, "%s:%d: pipes and "
			    "files are not supported (bearmail only relays "
			    "mail)", fname, line);
			goto out;
		}
	for (i = 0; i < a->n; i++)
		if (strlen(a->v[i].name) == namelen &&
		    strncasecmp(a->v[i].name, text, namelen) == 0) {
			st = st_error(ei, ST_CONFIG,
			    "%s:%d: alias \"%.*s\" already defined at line %d",
			    fname, line, (int)namelen, text, a->v[i].line);
			goto out;
		}
	if ((nv = realloc(a->v, (a->n + 1) * sizeof(*nv))) == NULL) {
		st = st_errno(ei, ST_SYS, "out of memory");
		goto out;
	}
	a->v = nv;
	al = &a->v[a->n];
	memset(al, 0, sizeof(*al));
	al->line = line;
	if ((al->name = strndup(text, namelen)) == NULL ||
	    (al->targets = calloc(l.n, sizeof(char *))) == NULL) {
		free(al->name);
		st = st_errno(ei, ST_SYS, "out of memory");
		goto out;
	}
	a->n++;
	for (i = 0; i < l.n; i++) {
		/* Steal the strings: l frees what is left. */
		al->targets[al->ntargets++] = l.v[i].addr;
		l.v[i].addr = NULL;
	}
out:
	rfc5322_list_free(&l);
	return st;
}

enum status
aliases_parse(const char *text, size_t len, const char *name,
    struct aliases **out, struct errinfo *ei)
{
	struct aliases *a;
	struct buf ent;
	const char *p = text, *end = text + len, *nl, *q;
	enum status st = ST_OK;
	int line = 0, ent_line = 0;
	size_t i, n;

	*out = NULL;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return st_errno(ei, ST_SYS, "out of memory");
	buf_init(&ent, ALIASES_FILE_MAX);
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		line++;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		for (q = p; q < p + n && is_ws(*q); q++)
			;
		if (memchr(p, '\0', n) != NULL) {
			st = st_error(ei, ST_CONFIG, "%s:%d: NUL byte", name,
			    line);
			goto out;
		}
		if (q == p + n || *q == '#') {
			/* Blank or comment: neither ends nor continues. */
		} else if (q > p) {
			if (ent_line == 0) {
				st = st_error(ei, ST_CONFIG, "%s:%d: "
				    "continuation line without an alias "
				    "before it", name, line);
				goto out;
			}
			if ((st = buf_add(&ent, " ", 1, ei)) != ST_OK ||
			    (st = buf_add(&ent, q, (size_t)(p + n - q), ei))
			    != ST_OK)
				goto out;
		} else {
			if (ent_line != 0 && (st = parse_entry(a, ent.data,
			    ent.len, name, ent_line, ei)) != ST_OK)
				goto out;
			buf_reset(&ent);
			ent_line = line;
			if ((st = buf_add(&ent, p, n, ei)) != ST_OK)
				goto out;
		}
		p = nl != NULL ? nl + 1 : end;
	}
	if (ent_line != 0 && (st = parse_entry(a, ent.data, ent.len, name,
	    ent_line, ei)) != ST_OK)
		goto out;
	for (i = 0; i < a->n; i++)
		if (strcasecmp(a->v[i].name, "default") == 0)
			a->def = &a->v[i];
	*out = a;
	a = NULL;
out:
	buf_free(&ent);
	aliases_free(a);
	return st;
}

enum status
aliases_load(const char *path, struct aliases **out, struct errinfo *ei)
{
	struct buf b;
	char chunk[8192];
	ssize_t got;
	enum status st = ST_OK;
	int fd;

	*out = NULL;
	buf_init(&b, ALIASES_FILE_MAX);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return st_errno(ei, ST_CONFIG, "aliases file %s", path);
	for (;;) {
		got = read(fd, chunk, sizeof(chunk));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			st = st_errno(ei, ST_CONFIG, "reading %s", path);
			goto out;
		}
		if (got == 0)
			break;
		if ((st = buf_add(&b, chunk, (size_t)got, ei)) != ST_OK) {
			st_context(ei, "aliases file %s", path);
			goto out;
		}
	}
	st = aliases_parse(b.data != NULL ? b.data : "", b.len, path, out, ei);
out:
	close(fd);
	buf_free(&b);
	return st;
}

/* ---- expansion ------------------------------------------------------- */

static enum status
expand(const struct aliases *a, const char *addr, const char *domain,
    const struct alias **path, size_t depth, struct aliases_rcpts *out,
    struct errinfo *ei)
{
	const struct alias *al;
	struct buf q;
	enum status st;
	size_t i;

	if (strchr(addr, '@') != NULL)
		return aliases_rcpts_add(out, addr, ei);
	if ((al = lookup(a, addr)) == NULL)
		al = a != NULL ? a->def : NULL;
	/* A name already being expanded closes a loop: it stays itself. */
	for (i = 0; al != NULL && i < depth; i++)
		if (path[i] == al)
			al = NULL;
	if (al != NULL && depth < ALIASES_DEPTH_MAX) {
		path[depth] = al;
		for (i = 0; i < al->ntargets; i++)
			if ((st = expand(a, al->targets[i], domain, path,
			    depth + 1, out, ei)) != ST_OK)
				return st;
		return ST_OK;
	}
	if (domain == NULL || domain[0] == '\0')
		return st_error(ei, ST_NOUSER, "local name \"%s\" has no alias "
		    "and there is no domain to qualify it", addr);
	buf_init(&q, 1024);
	if ((st = buf_printf(&q, ei, "%s@%s", addr, domain)) == ST_OK)
		st = aliases_rcpts_add(out, q.data, ei);
	buf_free(&q);
	return st;
}

enum status
aliases_expand(const struct aliases *a, const char *addr, const char *domain,
    struct aliases_rcpts *out, struct errinfo *ei)
{
	const struct alias *path[ALIASES_DEPTH_MAX];

	if (addr == NULL || addr[0] == '\0')
		return st_error(ei, ST_NOUSER, "empty recipient address");
	return expand(a, addr, domain, path, 0, out, ei);
}

/*
 * log.c: event log and redacted protocol transcript.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

enum log_target { TO_STDERR, TO_SYSLOG, TO_FILE };

static enum log_target log_target = TO_STDERR;
static const char *log_ident = "bearmail";
static int log_fd = -1;
static bool log_v;

enum status
log_open(const char *ident, const char *where, struct errinfo *ei)
{
	log_close();
	log_ident = ident;
	if (where == NULL || strcmp(where, "syslog") == 0) {
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
		log_target = TO_SYSLOG;
	} else if (strcmp(where, "stderr") == 0) {
		log_target = TO_STDERR;
	} else {
		if (where[0] != '/')
			return st_error(ei, ST_CONFIG,
			    "log: '%s' is not syslog, stderr or an absolute path",
			    where);
		log_fd = open(where, O_WRONLY | O_APPEND | O_CREAT |
		    O_CLOEXEC | O_NOFOLLOW, 0600);
		if (log_fd < 0)
			return st_errno(ei, ST_CANTCREAT, "log file %s", where);
		log_target = TO_FILE;
	}
	return ST_OK;
}

void
log_close(void)
{
	if (log_target == TO_SYSLOG)
		closelog();
	if (log_fd >= 0)
		close(log_fd);
	log_fd = -1;
	log_target = TO_STDERR;
}

/* One whole line per write(2), so lines from concurrent processes never mix. */
static void
log_write_line(int fd, const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, line, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		line += n;
		len -= (size_t)n;
	}
}

static void
log_emit(int prio, const char *fmt, va_list ap)
{
	char line[2048];
	int n, off = 0;

	if (log_target == TO_SYSLOG) {
		vsyslog(prio, fmt, ap);
		return;
	}
	if (log_target == TO_FILE) {
		char stamp[32];
		time_t now = time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S ", &tm);
		off = snprintf(line, sizeof(line), "%s", stamp);
	}
	n = snprintf(line + off, sizeof(line) - (size_t)off, "%s[%ld]: ",
	    log_ident, (long)getpid());
	off += n;
	n = vsnprintf(line + off, sizeof(line) - (size_t)off - 1, fmt, ap);
	if (n < 0)
		return;
	off += n;
	if ((size_t)off > sizeof(line) - 2)
		off = sizeof(line) - 2;
	line[off++] = '\n';
	log_write_line(log_target == TO_FILE ? log_fd : STDERR_FILENO, line,
	    (size_t)off);
}

#define LOG_FN(name, prio)				\
void							\
name(const char *fmt, ...)				\
{							\
	va_list ap;					\
	va_start(ap, fmt);				\
	log_emit(prio, fmt, ap);			\
	va_end(ap);					\
}
LOG_FN(log_info, LOG_INFO)
LOG_FN(log_warn, LOG_WARNING)
LOG_FN(log_err, LOG_ERR)

void
log_set_verbose(bool on)
{
	log_v = on;
}

bool
log_verbose(void)
{
	return log_v;
}

/* Length of the word starting at s (up to a space or the end). */
static size_t
word_len(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len && s[i] != ' ')
		i++;
	return i;
}

static bool
word_is(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/*
 * How many leading bytes of a client line are safe to show: the command
 * words of AUTH/AUTHENTICATE (with the mechanism), PASS, LOGIN; len when
 * nothing looks secret.
 */
static size_t
redact_keep(const char *line, size_t len)
{
	size_t w1 = word_len(line, len), w2, off;
	const char *cmd = line;

	/* IMAP lines start with a tag: look at the second word. */
	off = 0;
	if (w1 < len && !word_is(line, w1, "AUTH") &&
	    !word_is(line, w1, "PASS") && !word_is(line, w1, "USER")) {
		off = w1 + 1;
		cmd = line + off;
		w1 = word_len(cmd, len - off);
	}
	if (word_is(cmd, w1, "PASS") || word_is(cmd, w1, "LOGIN"))
		return off + w1;
	if (word_is(cmd, w1, "AUTH") || word_is(cmd, w1, "AUTHENTICATE")) {
		if (off + w1 + 1 >= len)
			return len;
		w2 = word_len(cmd + w1 + 1, len - off - w1 - 1);
		return off + w1 + 1 + w2;
	}
	return len;
}

char *
log_redact(const char *line, size_t len, bool secret, char *out, size_t outsz)
{
	size_t keep, i, o = 0;
	const char *bearer;

	if (outsz == 0)
		return out;
	keep = redact_keep(line, len);
	/* A secret line keeps a recognised command word, nothing more. */
	if (secret && keep == len)
		keep = 0;
	for (i = 0; i < keep && o + 1 < outsz; i++)
		out[o++] = isprint((unsigned char)line[i]) ? line[i] : '?';
	if (keep < len) {
		size_t hidden = len - keep - (keep > 0 && line[keep] == ' ');
		int n = snprintf(out + o, outsz - o, "%s[redacted %zu bytes]",
		    keep > 0 ? " " : "", hidden);
		o = n < 0 ? o : (size_t)n + o >= outsz ? outsz - 1 : o + (size_t)n;
	}
	out[o] = '\0';
	/* Belt and braces: a bearer token that slipped into plain text. */
	if ((bearer = strstr(out, "Bearer ")) != NULL ||
	    (bearer = strstr(out, "ya29.")) != NULL) {
		size_t at = (size_t)(bearer - out);
		snprintf(out + at, outsz - at, "[redacted]");
	}
	return out;
}

static bool
token_char(unsigned char c)
{
	return isalnum(c) || c == '+' || c == '/' || c == '=' || c == '_' ||
	    c == '.' || c == '-';
}

char *
log_redact_tokens(char *s)
{
	static const char mark[] = "[redacted]";
	size_t i = 0, o = 0, run;
	bool digit, alpha;

	while (s[i] != '\0') {
		digit = alpha = false;
		for (run = 0; token_char((unsigned char)s[i + run]); run++) {
			digit |= isdigit((unsigned char)s[i + run]) != 0;
			alpha |= isalpha((unsigned char)s[i + run]) != 0;
		}
		/* Random tokens mix letters and digits; host names and
		 * words of reply text seldom do at this length. */
		if (run >= 20 && digit && alpha) {
			/* The mark is shorter than the run: o stays behind i. */
			memcpy(s + o, mark, sizeof(mark) - 1);
			o += sizeof(mark) - 1;
			i += run;
		} else if (run > 0) {
			memmove(s + o, s + i, run);
			o += run;
			i += run;
		} else {
			s[o++] = s[i++];
		}
	}
	s[o] = '\0';
	return s;
}

void
log_wire(enum log_dir dir, const char *line, size_t len, bool secret)
{
	static const char *const arrow[] = { "--> ", "<-- ", "*** " };
	char text[1024], outl[1100];
	int n;

	if (!log_v)
		return;
	if (dir == LOG_SEND) {
		log_redact(line, len, secret, text, sizeof(text));
	} else {
		size_t i, n2 = len < sizeof(text) - 1 ? len : sizeof(text) - 1;
		for (i = 0; i < n2; i++)
			text[i] = isprint((unsigned char)line[i]) ? line[i] : '?';
		text[n2] = '\0';
		if (secret)
			log_redact_tokens(text);
	}
	n = snprintf(outl, sizeof(outl), "%s%s\n", arrow[dir], text);
	if (n > 0)
		log_write_line(STDERR_FILENO, outl,
		    (size_t)n < sizeof(outl) ? (size_t)n : sizeof(outl) - 1);
}

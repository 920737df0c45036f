/*
 * log.h: one line per event to syslog (mail facility), standard error or
 * a file, and the -v protocol transcript on standard error.
 *
 * The log is process-wide: a program opens it once.  Before log_open()
 * (and if opening fails) lines go to standard error.
 *
 * Nothing here ever prints a secret it was told about, and the transcript
 * also redacts what looks like one (AUTH payloads, PASS, LOGIN, bearer
 * tokens) in case a caller forgot to say so.
 */
#ifndef BEARMAIL_LOG_H
#define BEARMAIL_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/*
 * Send log lines to where: "syslog", "stderr", or an absolute file path
 * (opened for append, created 0600).  ident is the program name used as
 * the line prefix ("bearmail[PID]: ").
 */
enum status log_open(const char *ident, const char *where, struct errinfo *ei);

/* Close a log file or syslog; later lines go to standard error. */
void log_close(void);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Turn the -v transcript on standard error on or off. */
void log_set_verbose(bool on);
bool log_verbose(void);

enum log_dir {
	LOG_SEND,	/* what we sent:     "--> line" */
	LOG_RECV,	/* what we received: "<-- line" */
	LOG_NOTE	/* our own remark:   "*** line" */
};

/*
 * Record one protocol line (without its CRLF) in the transcript.  With
 * secret set, a line we sent keeps only its command word ("--> AUTH
 * XOAUTH2 [redacted 184 bytes]" or "--> [redacted 184 bytes]"), and a
 * line we received goes through log_redact_tokens().  Cheap when -v is
 * off.
 */
void log_wire(enum log_dir dir, const char *line, size_t len, bool secret);

/*
 * Pure redaction used by log_wire(): copy line into out (always
 * NUL-terminated, truncated to outsz) with anything that looks like a
 * credential replaced by "[redacted N bytes]".  Returns out.
 */
char *log_redact(const char *line, size_t len, bool secret, char *out,
    size_t outsz);

/*
 * Replace, in place, every run of 20 or more characters that could be a
 * token (base64, base64url, JWT: letters, digits, + / = _ . -, with
 * both letters and digits) with "[redacted]".  For text a peer sent back while credentials were in
 * flight: a server that echoes an AUTH line must not put the token into
 * our errors or transcript.  Returns s.
 */
char *log_redact_tokens(char *s);

#endif

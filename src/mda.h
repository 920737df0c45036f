/*
 * mda.h: delivery through a command (procmail, maildrop, dovecot-lda,
 * a ticket system's mail gateway...).
 *
 * Each message runs COMMAND with /bin/sh -c, the message on standard
 * input, standard output and error inherited.  The exit status decides:
 * 0 delivered; 75 (EX_TEMPFAIL) "try later" (ST_TEMPFAIL: the message
 * stays unmarked on the server and the run stops); anything else, or a
 * signal, is an error that also stops the run (ST_CANTCREAT).  A command
 * that runs past its deadline is killed (ST_TIMEOUT).  A command that
 * exits without reading all its input is judged by its exit status.
 *
 * The process must ignore SIGPIPE (the programs do, first thing): a
 * command that stops reading would otherwise kill us on the next write
 * instead of giving EPIPE.
 */
#ifndef BEARMAIL_MDA_H
#define BEARMAIL_MDA_H

#include "deliver.h"
#include "status.h"

extern const struct deliver_ops mda_ops;

/* Prepare delivery through command; timeout: seconds per message. */
enum status mda_open(void **ctx, const char *command, int timeout,
    struct errinfo *ei);

#endif

/*
 * version.h: what --version prints, the same way in every program.
 */
#ifndef BEARMAIL_VERSION_H
#define BEARMAIL_VERSION_H

/*
 * Print "PROG VERSION" and the libraries this build runs with, on
 * standard output.  http names the HTTP library of the program that
 * links one (bearmail-auth: libcurl's version), or is NULL.
 */
void version_print(const char *prog, const char *http);

#endif

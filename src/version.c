/*
 * version.c: --version for all programs, with the run-time versions of
 * the libraries (what a bug report needs, not what we compiled against).
 */
#include "config.h"

#include <stdio.h>

#include <jansson.h>

#include "tls.h"
#include "version.h"

void
version_print(const char *prog, const char *http)
{
	printf("%s %s\n", prog, PACKAGE_VERSION);
	printf("libraries: %s (TLS), jansson %s (JSON), inih (configuration)",
	    tls_library_version(), jansson_version_str());
	if (http != NULL)
		printf(", %s (HTTP)\n", http);
	else
		printf("; no HTTP library in this program\n");
}

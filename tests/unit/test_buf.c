/* Unit tests: bounded buffers. */
#include "config.h"

#include <dlfcn.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "tap.h"

/*
 * A watch on free(): while `watching`, every block handed to free() is
 * searched for MARK before it really goes.  This sees the blocks a secret
 * buffer gives back when it grows (it calls free() itself), but not what
 * glibc's realloc() frees inside itself, so it can prove that a secret
 * buffer wipes, not that a plain one leaks on growth.  Interposing free()
 * would fight AddressSanitizer's own: the test is skipped under it.
 */
#define MARK	"s3cr3t-MARK"

#ifndef __SANITIZE_ADDRESS__
static int watching, frees_seen, frees_marked;

void
free(void *p)
{
	static void (*real_free)(void *);
	static int resolving;

	if (p == NULL)
		return;
	if (real_free == NULL) {
		if (resolving)
			return;		/* dlsym's own scratch: leak it */
		resolving = 1;
		*(void **)&real_free = dlsym(RTLD_NEXT, "free");
		resolving = 0;
		if (real_free == NULL)
			return;
	}
	if (watching) {
		frees_seen++;
		if (memmem(p, malloc_usable_size(p), MARK,
		    sizeof(MARK) - 1) != NULL)
			frees_marked++;
	}
	real_free(p);
}
#endif

/* Whether p[0..n) is all zero bytes. */
static int
zeros(const char *p, size_t n)
{
	while (n-- > 0)
		if (*p++ != '\0')
			return 0;
	return 1;
}

/*
 * memcheck would call searching a whole block (bytes never written
 * included) an error: the watch stands down under valgrind.
 */
static int __attribute__((unused))
under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");

	return p != NULL && strstr(p, "vgpreload") != NULL;
}

static void
test_secret(void)
{
	struct errinfo ei;
	struct buf b;
	char *old;
	size_t was;
	int i;

	st_clear(&ei);
	buf_init_secret(&b, 1 << 20);
	ok(b.secret, "buf_init_secret marks the buffer");
	for (i = 0; i < 200; i++)
		buf_adds(&b, MARK, &ei);
	is_int(b.len, 200 * (sizeof(MARK) - 1), "a secret buffer grows");
	ok(memcmp(b.data, MARK MARK, 2 * (sizeof(MARK) - 1)) == 0,
	    "growth keeps the contents");
	was = b.len;
	buf_consume(&b, b.len - (sizeof(MARK) - 1));
	is_str(b.data, MARK, "consume keeps the tail");
	ok(zeros(b.data + b.len, was - b.len),
	    "consume wiped the moved tail's old place");
	old = b.data;
	was = b.len;
	buf_reset(&b);
	ok(b.data == old && zeros(b.data, was),
	    "reset wipes and keeps the memory");
	buf_free(&b);
	ok(b.data == NULL && b.len == 0, "free");

	buf_init(&b, 64);
	ok(!b.secret, "buf_init makes a plain buffer");
	buf_set_secret(&b);
	ok(b.secret, "buf_set_secret marks it");
	buf_init(&b, 64);
	ok(!b.secret, "buf_init clears the mark");

	/* A secret larger than a first allocation, reserved once. */
	buf_init_secret(&b, 4096);
	is_int(buf_reserve(&b, 3000, &ei), ST_OK, "reserve");
	ok(b.cap >= 3001 && b.len == 0, "reserve makes room, adds nothing");
	old = b.data;
	for (i = 0; i < 3000 / 10; i++)
		buf_add(&b, "0123456789", 10, &ei);
	ok(b.data == old, "no growth after reserving");
	is_int(buf_reserve(&b, 2000, &ei), ST_LIMIT, "reserve past max");
	buf_free(&b);

#ifndef __SANITIZE_ADDRESS__
	if (under_valgrind()) {
		ok(1, "# SKIP free() watch under valgrind");
		return;
	}
	/* The watch works: a plain buffer freed with the mark is seen. */
	buf_init(&b, 1 << 20);
	buf_adds(&b, MARK, &ei);
	frees_seen = frees_marked = 0;
	watching = 1;
	buf_free(&b);
	watching = 0;
	ok(frees_seen == 1 && frees_marked == 1,
	    "control: the watch sees a plain block freed unwiped");

	/* A secret buffer: growth and free leave no copy behind. */
	buf_init_secret(&b, 1 << 20);
	frees_seen = frees_marked = 0;
	watching = 1;
	for (i = 0; i < 2000; i++)
		buf_adds(&b, MARK, &ei);
	buf_free(&b);
	watching = 0;
	ok(frees_seen >= 5, "secret growth gave old blocks back (%d)",
	    frees_seen);
	is_int(frees_marked, 0, "every block a secret buffer freed was wiped");

	/* buf_steal hands the block over; buf_wipe of the rest is clean. */
	buf_init_secret(&b, 1 << 20);
	for (i = 0; i < 100; i++)
		buf_adds(&b, MARK, &ei);
	frees_seen = frees_marked = 0;
	watching = 1;
	buf_wipe(&b);
	watching = 0;
	ok(frees_seen == 1 && frees_marked == 0, "buf_wipe wipes");
#else
	ok(1, "# SKIP free() watch under AddressSanitizer");
#endif
}

int
main(void)
{
	struct errinfo ei;
	struct buf b;
	char *s;
	int i;

	st_clear(&ei);
	buf_init(&b, 10);
	is_int(buf_adds(&b, "hello", &ei), ST_OK, "append within limit");
	is_int(buf_printf(&b, &ei, "%d", 1234), ST_OK, "printf within limit");
	is_str(b.data, "hello1234", "contents");
	is_int(buf_adds(&b, "xy", &ei), ST_LIMIT, "past the limit fails");
	is_str(b.data, "hello1234", "failed append changes nothing");
	is_int(buf_adds(&b, "x", &ei), ST_OK, "exactly the limit is fine");
	is_int(b.len, 10, "len at max");
	buf_consume(&b, 5);
	is_str(b.data, "1234x", "consume keeps the tail");
	buf_free(&b);

	st_clear(&ei);
	buf_init(&b, 1 << 20);
	for (i = 0; i < 1000; i++)
		buf_add(&b, "abc\0", 4, &ei);
	is_int(b.len, 4000, "binary data with NULs");
	ok(b.cap <= (1 << 20) + 1, "capacity bounded by max");
	buf_wipe(&b);
	ok(b.data == NULL && b.len == 0, "wipe frees");

	buf_init(&b, 8);
	s = buf_steal(&b, &ei);
	ok(s != NULL && s[0] == '\0', "stealing an empty buffer gives \"\"");
	free(s);
	buf_add(&b, "ab", 2, &ei);
	s = buf_steal(&b, &ei);
	is_str(s, "ab", "steal takes the contents");
	ok(b.data == NULL, "steal leaves the buffer empty");
	free(s);

	st_clear(&ei);
	buf_init(&b, (size_t)-1);
	is_int(buf_add(&b, "x", (size_t)-1, &ei), ST_LIMIT,
	    "size overflow refused");
	buf_free(&b);

	test_secret();
	return tap_done();
}

/* Unit tests: bounded buffers. */
#include "config.h"

#include <stdlib.h>

#include "buf.h"
#include "tap.h"

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
	return tap_done();
}

/*
 * bm-nothing: the floor for start-up cost (bench row 2).  A C program
 * that links only libc and exits at once.
 */
int
main(void)
{
	return 0;
}

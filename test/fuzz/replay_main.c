/*
 * replay_main.c
 *		Runs fuzz_cloudevent.c's target over files given on the command
 *		line, without libFuzzer: the regression test (test/0590) replays the
 *		kept corpus and every crash found so far with it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
main(int argc, char **argv)
{
	int			n = 0;

	for (int i = 1; i < argc; i++)
	{
		FILE	   *f = fopen(argv[i], "rb");
		uint8_t    *buf;
		long		len;

		if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0)
		{
			perror(argv[i]);
			return 2;
		}
		rewind(f);
		buf = malloc(len ? len : 1);
		if (len && fread(buf, 1, len, f) != (size_t) len)
		{
			perror(argv[i]);
			return 2;
		}
		fclose(f);
		LLVMFuzzerTestOneInput(buf, len);
		free(buf);
		n++;
	}
	printf("replayed %d inputs\n", n);
	return 0;
}

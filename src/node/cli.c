/* cli.c - the options every node takes: --help, --version, --max-line. */
#include "node_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "securitor/version.h"

static void usage(const struct node_program *p, FILE *f)
{
    fprintf(f,
            "usage: %s [--help] [--version] [--max-line BYTES]%s\n"
            "%s\n"
            "Reads one JSON message per line on stdin and writes replies on stdout\n"
            "(Maelstrom's protocol; see PROTOCOL.md). Diagnostics go to stderr.\n"
            "  --max-line BYTES   longer lines get error 12 (default 256M; K, M, G allowed)\n"
            "It parses on one thread and answers on another; SECURITOR_THREADS=1 keeps\n"
            "it on one.\n",
            p->name, p->extra_usage ? p->extra_usage : "", p->summary);
    if (p->extra_help)
        fputs(p->extra_help, f);
}

/* "1048576", "64K", "256M", "1G": at least 1 KiB, at most 16 GiB. */
static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return -1;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10, end++;
    else if (*end == 'M' || *end == 'm')
        shift = 20, end++;
    else if (*end == 'G' || *end == 'g')
        shift = 30, end++;
    if (*end || v > (16ULL << 30) >> shift || (v << shift) < 1024)
        return -1;
    *out = (size_t)(v << shift);
    return 0;
}

int node_main_options(const struct node_program *prog, int *argc, char **argv, int *exit_code)
{
    int kept = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(prog, stdout);
            *exit_code = 0;
            return 1;
        }
        if (!strcmp(a, "--version")) {
            printf("%s %s\n", prog->name, SECURITOR_VERSION);
            *exit_code = 0;
            return 1;
        }
        const char *value = NULL;
        if (!strcmp(a, "--max-line")) {
            value = i + 1 < *argc ? argv[++i] : "";
        } else if (!strncmp(a, "--max-line=", 11)) {
            value = a + 11;
        } else {
            argv[kept++] = argv[i]; /* the binary's own */
            continue;
        }
        if (parse_size(value, &node_opt_max_line)) {
            fprintf(stderr, "%s: --max-line: expected a size in bytes from 1K to 16G "
                            "(e.g. 1048576, 64M), got \"%s\"\n", prog->name, value);
            *exit_code = 2;
            return 1;
        }
    }
    *argc = kept;
    argv[kept] = NULL;
    return 0;
}

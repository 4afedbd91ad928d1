/*
 * sk_scripts (generated from the redis/ folder at build time): each embedded script is its file, byte for byte, so the SHA1
 * of the file is the SHA Redis knows it by; and every script documents its KEYS and ARGV at its top.
 */
#define _POSIX_C_SOURCE 200809L /* opendir */
#include "sk_test.h"
#include "sk_scripts.h"

#include <dirent.h>

static void
test_match_files(void)
{
    const char *src = getenv("SK_SOURCE_DIR");
    if (src == NULL) {
        fprintf(stderr, "SK_SOURCE_DIR not set (run under ctest): the files are not compared\n");
        return;
    }
    for (size_t i = 0; i < sk_scripts_count; ++i) {
        const sk_script_t *s = &sk_scripts[i];
        char path[1024];
        snprintf(path, sizeof(path), "%s/redis/%s.lua", src, s->name);
        FILE *f = fopen(path, "rb");
        ASSERT(f != NULL);
        static char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        ASSERT_EQ(n, s->len);
        ASSERT(memcmp(buf, s->text, n) == 0);
    }
    /* and every file is embedded */
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/redis", src);
    DIR *d = opendir(dir);
    ASSERT(d != NULL);
    size_t files = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t l = strlen(e->d_name);
        files += l > 4 && strcmp(e->d_name + l - 4, ".lua") == 0;
    }
    closedir(d);
    ASSERT_EQ(files, sk_scripts_count);
}

static void
test_documented(void)
{
    ASSERT(sk_scripts_count >= 11);
    for (size_t i = 0; i < sk_scripts_count; ++i) {
        const sk_script_t *s = &sk_scripts[i];
        /* callers pass the text with strlen() or as a C string: no NUL inside */
        ASSERT_EQ(strlen(s->text), s->len);
        ASSERT(strncmp(s->text, "-- ", 3) == 0);
        ASSERT(strstr(s->text, "\n-- KEYS:") != NULL);
        ASSERT(strstr(s->text, "\n-- ARGV:") != NULL);
    }
    ASSERT_EQ(strlen(sk_script_logic_stock), sk_script_logic_stock_len);
}

int
main(void)
{
    RUN(test_match_files);
    RUN(test_documented);
    DONE();
}

/*
 * Logging: one line per event, to stderr or a file, with a level filter. Lines are written with a single write() so
 * that threads never interleave inside a line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "host.h"

/* Process-wide by nature: the host opens it once before any thread starts and never changes it afterwards. */
static int log_fd = 2;
static int log_min = SK_LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error"};

int
sk_log_open(const char *level, const char *file, char *err, size_t errlen)
{
    int lv = -1;
    for (int i = 0; i < 4; ++i)
        if (strcmp(level, level_names[i]) == 0)
            lv = i;
    if (lv < 0) {
        snprintf(err, errlen, "log.level: expected debug, info, warn or error, got \"%s\"", level);
        return -1;
    }
    if (file != NULL && file[0] != '\0') {
        int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            snprintf(err, errlen, "log.file: cannot open %s: %s", file, strerror(errno));
            return -1;
        }
        if (log_fd > 2)
            close(log_fd);
        log_fd = fd;
    }
    log_min = lv;
    return 0;
}

void
sk_vlogf(int level, const char *who, const char *fmt, va_list ap)
{
    if (level < log_min)
        return;
    if (level < SK_LOG_DEBUG || level > SK_LOG_ERROR)
        level = SK_LOG_ERROR;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n =
        snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], who != NULL ? who : "host");
    if (n < 0)
        return;
    int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    size_t len = m < 0 ? (size_t)n : (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    /* keep one event on one line whatever the message holds */
    for (size_t i = (size_t)n; i < len; ++i)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    line[len++] = '\n';
    ssize_t w;
    do {
        w = write(log_fd, line, len);
    } while (w < 0 && errno == EINTR);
}

void
sk_logf(int level, const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sk_vlogf(level, who, fmt, ap);
    va_end(ap);
}

const char *
sk_log_mask(const char *secret, char *out, size_t outlen)
{
    size_t len = strlen(secret);
    if (len <= 8)
        snprintf(out, outlen, "***(%zu)", len);
    else
        snprintf(out, outlen, "%.4s…(%zu)", secret, len);
    return out;
}

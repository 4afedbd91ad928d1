/*
 * The admin's SQLite store: products, activities (deleted ones kept as tombstones so that their tokens can still be
 * consumed), the etcd sync state, the policy history and the orders.
 *
 * WAL with synchronous=FULL: an acknowledged admin call or order survives a crash of the process and of the machine.
 * Every statement is prepared once at open; the schema is versioned with PRAGMA user_version and migrated at start.
 * Used only on the admin thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sqlite3.h>
#include "admin.h"
#include "sk_sign.h"

/* Each entry moves the schema from version i to i+1. Never edit one that shipped: append. */
static const char *migrations[] = {
    "CREATE TABLE products ("
    " product_id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " product_name TEXT NOT NULL UNIQUE,"
    " product_total INTEGER NOT NULL,"
    " status INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    "CREATE TABLE activities ("
    " activity_id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " activity_name TEXT NOT NULL,"
    " product_id INTEGER NOT NULL,"
    " start_time INTEGER NOT NULL,"
    " end_time INTEGER NOT NULL,"
    " total INTEGER NOT NULL,"
    " status INTEGER NOT NULL,"
    " speed INTEGER NOT NULL,"
    " buy_limit INTEGER NOT NULL,"
    " buy_rate REAL NOT NULL,"
    " deleted INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL);"
    "CREATE INDEX activities_product ON activities(product_id);"
    "CREATE TABLE etcd_sync (key TEXT PRIMARY KEY, since INTEGER NOT NULL);"
    "CREATE TABLE policy_history ("
    " name TEXT NOT NULL,"
    " revision INTEGER NOT NULL,"
    " sha256 TEXT NOT NULL,"
    " source BLOB NOT NULL,"
    " deleted INTEGER NOT NULL,"
    " seen_at INTEGER NOT NULL,"
    " PRIMARY KEY (name, revision));"
    "CREATE TABLE orders ("
    " order_id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " token TEXT NOT NULL UNIQUE,"
    " user_id INTEGER NOT NULL,"
    " product_id INTEGER NOT NULL,"
    " activity_id INTEGER NOT NULL DEFAULT 0,"
    " state INTEGER NOT NULL,"
    " issued_at INTEGER NOT NULL DEFAULT 0,"
    " expires_at INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL);"
    "CREATE INDEX orders_pending ON orders(state, created_at);",
    "ALTER TABLE activities ADD COLUMN shards INTEGER NOT NULL DEFAULT 1;",
};

#define ACT_COLS "activity_id, activity_name, product_id, start_time, end_time, total, status, speed, buy_limit, buy_rate, shards"
#define ORDER_COLS "order_id, token, user_id, product_id, activity_id, state, issued_at, expires_at, created_at"

enum {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_P_INS,
    Q_P_GET,
    Q_P_DEL,
    Q_P_LIST,
    Q_P_INUSE,
    Q_P_UPD,
    Q_A_INS,
    Q_A_UPD,
    Q_A_GET,
    Q_A_DEL,
    Q_A_LIST,
    Q_A_BY_PRODUCT,
    Q_A_IDS,
    Q_S_MARK,
    Q_S_CLEAR,
    Q_S_GET,
    Q_S_LIST,
    Q_S_COUNT,
    Q_H_INS,
    Q_H_LIST,
    Q_H_GET,
    Q_O_GET,
    Q_O_PENDING,
    Q_O_DONE,
    Q_O_DROP,
    Q_O_REPAIR,
    Q_O_STALE,
    Q_COUNT
};

static const char *queries[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_P_INS] = "INSERT INTO products (product_name, product_total, status, created_at, updated_at) VALUES (?1, ?2, ?3, "
                "?4, ?4)",
    [Q_P_GET] = "SELECT product_id, product_name, product_total, status FROM products WHERE product_id = ?1",
    [Q_P_DEL] = "DELETE FROM products WHERE product_id = ?1",
    [Q_P_LIST] = "SELECT product_id, product_name, product_total, status FROM products ORDER BY product_id",
    [Q_P_INUSE] = "SELECT COUNT(*) FROM activities WHERE product_id = ?1 AND deleted = 0",
    [Q_P_UPD] = "UPDATE products SET product_name = ?2, product_total = ?3, status = ?4, updated_at = ?5 WHERE product_id = ?1",
    [Q_A_INS] = "INSERT INTO activities (activity_name, product_id, start_time, end_time, total, status, speed, buy_limit, "
                "buy_rate, created_at, updated_at, shards) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?12)",
    [Q_A_UPD] =
        "UPDATE activities SET activity_name = ?1, product_id = ?2, start_time = ?3, end_time = ?4, total = ?5, "
        "status = ?6, speed = ?7, buy_limit = ?8, buy_rate = ?9, shards = ?12, updated_at = ?10 WHERE activity_id = ?11 AND "
        "deleted = 0",
    [Q_A_GET] = "SELECT " ACT_COLS ", deleted FROM activities WHERE activity_id = ?1",
    [Q_A_DEL] = "UPDATE activities SET deleted = 1, updated_at = ?2 WHERE activity_id = ?1 AND deleted = 0",
    [Q_A_LIST] = "SELECT " ACT_COLS " FROM activities WHERE deleted = 0 ORDER BY activity_id LIMIT 100000",
    [Q_A_BY_PRODUCT] = "SELECT " ACT_COLS " FROM activities WHERE deleted = 0 AND product_id = ?1 ORDER BY activity_id",
    [Q_A_IDS] = "SELECT activity_id FROM activities WHERE product_id = ?1 ORDER BY activity_id DESC LIMIT ?2",
    [Q_S_MARK] = "INSERT OR IGNORE INTO etcd_sync (key, since) VALUES (?1, ?2)",
    [Q_S_CLEAR] = "DELETE FROM etcd_sync WHERE key = ?1",
    [Q_S_GET] = "SELECT 1 FROM etcd_sync WHERE key = ?1",
    [Q_S_LIST] = "SELECT key FROM etcd_sync ORDER BY since, key LIMIT ?1",
    [Q_S_COUNT] = "SELECT COUNT(*) FROM etcd_sync",
    [Q_H_INS] = "INSERT OR IGNORE INTO policy_history (name, revision, sha256, source, deleted, seen_at) VALUES (?1, ?2, "
                "?3, ?4, ?5, ?6)",
    [Q_H_LIST] = "SELECT name, revision, sha256, deleted, seen_at FROM policy_history WHERE name = ?1 ORDER BY revision "
                 "DESC LIMIT ?2",
    [Q_H_GET] = "SELECT name, revision, sha256, deleted, seen_at, source FROM policy_history WHERE name = ?1 AND "
                "revision = ?2",
    [Q_O_GET] = "SELECT " ORDER_COLS " FROM orders WHERE token = ?1",
    [Q_O_PENDING] = "INSERT INTO orders (token, user_id, product_id, state, created_at) VALUES (?1, ?2, ?3, 0, ?4)",
    [Q_O_DONE] = "UPDATE orders SET state = 1, user_id = ?2, product_id = ?3, activity_id = ?4, issued_at = ?5, "
                 "expires_at = ?6, created_at = ?7 WHERE order_id = ?1",
    [Q_O_DROP] = "DELETE FROM orders WHERE token = ?1 AND state = 0",
    [Q_O_REPAIR] = "INSERT OR IGNORE INTO orders (" ORDER_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?8)",
    [Q_O_STALE] = "SELECT " ORDER_COLS " FROM orders WHERE state = 0 AND created_at <= ?1 ORDER BY created_at LIMIT ?2",
};

struct st_sk_admin_store_t {
    sqlite3 *db;
    sqlite3_stmt *st[Q_COUNT];
    int version;
};

/* Resets a statement so that the next use starts clean, whatever happened to the previous one. */
static sqlite3_stmt *
q(sk_admin_store_t *s, int which)
{
    sqlite3_stmt *st = s->st[which];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static int
step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return SK_ADMIN_STORE_OK;
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return SK_ADMIN_STORE_CONFLICT;
    return SK_ADMIN_STORE_ERR;
}

static int
begin(sk_admin_store_t *s)
{
    return step_done(q(s, Q_BEGIN)) == SK_ADMIN_STORE_OK ? 0 : -1;
}

/* Commits when rc is OK, rolls back otherwise; returns rc, or ERR when the commit itself failed. */
static int
finish(sk_admin_store_t *s, int rc)
{
    if (rc == SK_ADMIN_STORE_OK) {
        if (step_done(q(s, Q_COMMIT)) == SK_ADMIN_STORE_OK)
            return rc;
        rc = SK_ADMIN_STORE_ERR;
    }
    step_done(q(s, Q_ROLLBACK));
    return rc;
}

static int
mkdir_parent(const char *path)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p != '\0'; ++p) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0750) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(dir, 0750) != 0 && errno != EEXIST ? -1 : 0;
}

static int
exec(sk_admin_store_t *s, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s", msg != NULL ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int
migrate(sk_admin_store_t *s, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        goto fail;
    s->version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    int latest = (int)(sizeof(migrations) / sizeof(migrations[0]));
    if (s->version < 0)
        goto fail;
    if (s->version > latest) {
        snprintf(err, errlen, "schema version %d is newer than this build (%d)", s->version, latest);
        return -1;
    }
    for (; s->version < latest; ++s->version) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", s->version + 1);
        if (exec(s, "BEGIN IMMEDIATE", err, errlen) != 0)
            return -1;
        if (exec(s, migrations[s->version], err, errlen) != 0 || exec(s, pragma, err, errlen) != 0) {
            exec(s, "ROLLBACK", err + strlen(err), errlen - strlen(err));
            return -1;
        }
        if (exec(s, "COMMIT", err, errlen) != 0)
            return -1;
    }
    return 0;
fail:
    snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
    return -1;
}

sk_admin_store_t *
sk_admin_store_open(const char *path, char *err, size_t errlen)
{
    sk_admin_store_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (mkdir_parent(path) != 0) {
        snprintf(err, errlen, "admin.db: cannot create the directory of %s: %s", path, strerror(errno));
        goto fail;
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "admin.db: cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 2000);
    char e[256] = "";
    if (exec(s, "PRAGMA journal_mode = WAL", e, sizeof(e)) != 0 || exec(s, "PRAGMA synchronous = FULL", e, sizeof(e)) ||
        migrate(s, e, sizeof(e)) != 0) {
        snprintf(err, errlen, "admin.db %s: %s", path, e);
        goto fail;
    }
    for (int i = 0; i < Q_COUNT; ++i) {
        if (sqlite3_prepare_v3(s->db, queries[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "admin.db: preparing statement %d: %s", i, sqlite3_errmsg(s->db));
            goto fail;
        }
    }
    return s;
fail:
    sk_admin_store_close(s);
    return NULL;
}

void
sk_admin_store_close(sk_admin_store_t *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < Q_COUNT; ++i)
        sqlite3_finalize(s->st[i]);
    sqlite3_close_v2(s->db);
    free(s);
}

const char *
sk_admin_store_errmsg(sk_admin_store_t *s)
{
    return sqlite3_errmsg(s->db);
}

int
sk_admin_store_user_version(sk_admin_store_t *s)
{
    return s->version;
}

/* ---- sync state ---- */

static int
mark(sk_admin_store_t *s, const char *key)
{
    sqlite3_stmt *st = q(s, Q_S_MARK);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, sk_admin_now());
    return step_done(st);
}

int
sk_admin_store_sync_mark(sk_admin_store_t *s, const char *key)
{
    return mark(s, key);
}

int
sk_admin_store_sync_clear(sk_admin_store_t *s, const char *key)
{
    sqlite3_stmt *st = q(s, Q_S_CLEAR);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    return step_done(st);
}

int
sk_admin_store_sync_pending(sk_admin_store_t *s, const char *key)
{
    sqlite3_stmt *st = q(s, Q_S_GET);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int
sk_admin_store_sync_list(sk_admin_store_t *s, char (*keys)[64], int cap)
{
    sqlite3_stmt *st = q(s, Q_S_LIST);
    sqlite3_bind_int(st, 1, cap);
    int n = 0;
    while (n < cap && sqlite3_step(st) == SQLITE_ROW)
        snprintf(keys[n++], 64, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    return n;
}

int64_t
sk_admin_store_sync_count(sk_admin_store_t *s)
{
    sqlite3_stmt *st = q(s, Q_S_COUNT);
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    return n;
}

static void
key_of(char *out, size_t n, const char *kind, int64_t id)
{
    snprintf(out, n, "%s/%lld", kind, (long long)id);
}

/* ---- products ---- */

static void
read_product(sqlite3_stmt *st, sk_product_t *p)
{
    p->product_id = sqlite3_column_int64(st, 0);
    snprintf(p->name, sizeof(p->name), "%s", (const char *)sqlite3_column_text(st, 1));
    p->total = sqlite3_column_int64(st, 2);
    p->status = sqlite3_column_int(st, 3);
}

int
sk_admin_store_product_create(sk_admin_store_t *s, sk_product_t *p, int64_t now)
{
    char key[64];
    if (begin(s) != 0)
        return SK_ADMIN_STORE_ERR;
    sqlite3_stmt *st = q(s, Q_P_INS);
    sqlite3_bind_text(st, 1, p->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, p->total);
    sqlite3_bind_int(st, 3, p->status);
    sqlite3_bind_int64(st, 4, now);
    int rc = step_done(st);
    if (rc == SK_ADMIN_STORE_OK) {
        p->product_id = sqlite3_last_insert_rowid(s->db);
        key_of(key, sizeof(key), "products", p->product_id);
        rc = mark(s, key);
    }
    return finish(s, rc);
}

int
sk_admin_store_product_get(sk_admin_store_t *s, int64_t id, sk_product_t *p)
{
    sqlite3_stmt *st = q(s, Q_P_GET);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_product(st, p);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SK_ADMIN_STORE_OK : rc == SQLITE_DONE ? SK_ADMIN_STORE_NONE : SK_ADMIN_STORE_ERR;
}

int
sk_admin_store_product_delete(sk_admin_store_t *s, int64_t id)
{
    char key[64];
    if (begin(s) != 0)
        return SK_ADMIN_STORE_ERR;
    sqlite3_stmt *st = q(s, Q_P_DEL);
    sqlite3_bind_int64(st, 1, id);
    int rc = step_done(st);
    if (rc == SK_ADMIN_STORE_OK && sqlite3_changes(s->db) == 0)
        rc = SK_ADMIN_STORE_NONE;
    if (rc == SK_ADMIN_STORE_OK) {
        key_of(key, sizeof(key), "products", id);
        rc = mark(s, key);
    }
    return finish(s, rc);
}

int
sk_admin_store_product_update(sk_admin_store_t *s, const sk_product_t *p, int64_t now)
{
    char key[64];
    if (begin(s) != 0)
        return SK_ADMIN_STORE_ERR;
    sqlite3_stmt *st = q(s, Q_P_UPD);
    sqlite3_bind_int64(st, 1, p->product_id);
    sqlite3_bind_text(st, 2, p->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, p->total);
    sqlite3_bind_int(st, 4, p->status);
    sqlite3_bind_int64(st, 5, now);
    int rc = step_done(st);
    if (rc == SK_ADMIN_STORE_OK && sqlite3_changes(s->db) == 0)
        rc = SK_ADMIN_STORE_NONE;
    key_of(key, sizeof(key), "products", p->product_id);
    return finish(s, rc == SK_ADMIN_STORE_OK ? mark(s, key) : rc);
}

int
sk_admin_store_product_in_use(sk_admin_store_t *s, int64_t id, int64_t *count)
{
    sqlite3_stmt *st = q(s, Q_P_INUSE);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *count = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SK_ADMIN_STORE_OK : SK_ADMIN_STORE_ERR;
}

int
sk_admin_store_products(sk_admin_store_t *s, int (*cb)(void *arg, const sk_product_t *p), void *arg)
{
    sqlite3_stmt *st = q(s, Q_P_LIST);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sk_product_t p;
        read_product(st, &p);
        if (cb(arg, &p) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SK_ADMIN_STORE_OK : SK_ADMIN_STORE_ERR;
}

/* ---- activities ---- */

static void
read_activity(sqlite3_stmt *st, sk_activity_t *a)
{
    a->activity_id = sqlite3_column_int64(st, 0);
    snprintf(a->name, sizeof(a->name), "%s", (const char *)sqlite3_column_text(st, 1));
    a->product_id = sqlite3_column_int64(st, 2);
    a->start_time = sqlite3_column_int64(st, 3);
    a->end_time = sqlite3_column_int64(st, 4);
    a->total = sqlite3_column_int64(st, 5);
    a->status = sqlite3_column_int(st, 6);
    a->speed = sqlite3_column_int64(st, 7);
    a->buy_limit = sqlite3_column_int64(st, 8);
    a->buy_rate = sqlite3_column_double(st, 9);
    a->shards = sqlite3_column_int(st, 10);
}

static void
bind_activity(sqlite3_stmt *st, const sk_activity_t *a, int64_t now)
{
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, a->product_id);
    sqlite3_bind_int64(st, 3, a->start_time);
    sqlite3_bind_int64(st, 4, a->end_time);
    sqlite3_bind_int64(st, 5, a->total);
    sqlite3_bind_int(st, 6, a->status);
    sqlite3_bind_int64(st, 7, a->speed);
    sqlite3_bind_int64(st, 8, a->buy_limit);
    sqlite3_bind_double(st, 9, a->buy_rate);
    sqlite3_bind_int64(st, 10, now);
    sqlite3_bind_int(st, 12, sk_activity_shards(a));
}

int
sk_admin_store_activity_create(sk_admin_store_t *s, sk_activity_t *a, int64_t now)
{
    char key[64];
    if (begin(s) != 0)
        return SK_ADMIN_STORE_ERR;
    sqlite3_stmt *st = q(s, Q_A_INS);
    bind_activity(st, a, now);
    int rc = step_done(st);
    if (rc == SK_ADMIN_STORE_OK) {
        a->activity_id = sqlite3_last_insert_rowid(s->db);
        key_of(key, sizeof(key), "activities", a->activity_id);
        rc = mark(s, key);
    }
    return finish(s, rc);
}

int
sk_admin_store_activity_update(sk_admin_store_t *s, const sk_activity_t *a, int64_t now)
{
    char key[64];
    if (begin(s) != 0)
        return SK_ADMIN_STORE_ERR;
    sqlite3_stmt *st = q(s, Q_A_UPD);
    bind_activity(st, a, now);
    sqlite3_bind_int64(st, 11, a->activity_id);
    int rc = step_done(st);
    if (rc == SK_ADMIN_STORE_OK && sqlite3_changes(s->db) == 0)
        rc = SK_ADMIN_STORE_NONE;
    if (rc == SK_ADMIN_STORE_OK) {
        key_of(key, sizeof(key), "activities", a->activity_id);
        rc = mark(s, key);
    }
    return finish(s, rc);
}

int
sk_admin_store_activity_get(sk_admin_store_t *s, int64_t id, sk_activity_t *a, int *deleted)
{
    sqlite3_stmt *st = q(s, Q_A_GET);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_activity(st, a);
        *deleted = sqlite3_column_int(st, 11);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SK_ADMIN_STORE_OK : rc == SQLITE_DONE ? SK_ADMIN_STORE_NONE : SK_ADMIN_STORE_ERR;
}

int
sk_admin_store_activity_delete(sk_admin_store_t *s, int64_t id, int64_t now)
{
    char key[64];
    if (begin(s) != 0)
        return SK_ADMIN_STORE_ERR;
    sqlite3_stmt *st = q(s, Q_A_DEL);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    int rc = step_done(st);
    if (rc == SK_ADMIN_STORE_OK && sqlite3_changes(s->db) == 0)
        rc = SK_ADMIN_STORE_NONE;
    if (rc == SK_ADMIN_STORE_OK) {
        key_of(key, sizeof(key), "activities", id);
        rc = mark(s, key);
    }
    return finish(s, rc);
}

int
sk_admin_store_activities(sk_admin_store_t *s, int64_t product_id, int (*cb)(void *arg, const sk_activity_t *a), void *arg)
{
    sqlite3_stmt *st = q(s, product_id > 0 ? Q_A_BY_PRODUCT : Q_A_LIST);
    if (product_id > 0)
        sqlite3_bind_int64(st, 1, product_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sk_activity_t a;
        read_activity(st, &a);
        if (cb(arg, &a) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SK_ADMIN_STORE_OK : SK_ADMIN_STORE_ERR;
}

int
sk_admin_store_activity_ids(sk_admin_store_t *s, int64_t product_id, int64_t *ids, int cap)
{
    sqlite3_stmt *st = q(s, Q_A_IDS);
    sqlite3_bind_int64(st, 1, product_id);
    sqlite3_bind_int(st, 2, cap);
    int n = 0;
    while (n < cap && sqlite3_step(st) == SQLITE_ROW)
        ids[n++] = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

/* ---- policy history ---- */

int
sk_admin_store_policy_add(sk_admin_store_t *s, const char *name, int64_t revision, const char *src, size_t len, int deleted,
                          int64_t now)
{
    char sha[65];
    sk_sha256_hex(src, len, sha);
    sqlite3_stmt *st = q(s, Q_H_INS);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, revision);
    sqlite3_bind_text(st, 3, sha, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 4, len > 0 ? src : "", (int)len, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 5, deleted);
    sqlite3_bind_int64(st, 6, now);
    return step_done(st);
}

static void
read_rev(sqlite3_stmt *st, sk_admin_policy_rev_t *r)
{
    snprintf(r->name, sizeof(r->name), "%s", (const char *)sqlite3_column_text(st, 0));
    r->revision = sqlite3_column_int64(st, 1);
    snprintf(r->sha256, sizeof(r->sha256), "%s", (const char *)sqlite3_column_text(st, 2));
    r->deleted = sqlite3_column_int(st, 3);
    r->seen_at = sqlite3_column_int64(st, 4);
}

int
sk_admin_store_policy_list(sk_admin_store_t *s, const char *name, int limit, int (*cb)(void *arg, const sk_admin_policy_rev_t *r),
                           void *arg)
{
    sqlite3_stmt *st = q(s, Q_H_LIST);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sk_admin_policy_rev_t r;
        read_rev(st, &r);
        if (cb(arg, &r) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SK_ADMIN_STORE_OK : SK_ADMIN_STORE_ERR;
}

int
sk_admin_store_policy_get(sk_admin_store_t *s, const char *name, int64_t revision, char **src, size_t *len,
                          sk_admin_policy_rev_t *r)
{
    sqlite3_stmt *st = q(s, Q_H_GET);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, revision);
    int rc = sqlite3_step(st), out = SK_ADMIN_STORE_ERR;
    if (rc == SQLITE_ROW) {
        read_rev(st, r);
        const void *b = sqlite3_column_blob(st, 5);
        *len = (size_t)sqlite3_column_bytes(st, 5);
        if ((*src = malloc(*len + 1)) != NULL) {
            if (*len > 0)
                memcpy(*src, b, *len);
            (*src)[*len] = '\0';
            out = SK_ADMIN_STORE_OK;
        }
    } else if (rc == SQLITE_DONE) {
        out = SK_ADMIN_STORE_NONE;
    }
    sqlite3_reset(st);
    return out;
}

/* ---- orders ---- */

static void
read_order(sqlite3_stmt *st, sk_admin_order_t *o)
{
    o->order_id = sqlite3_column_int64(st, 0);
    snprintf(o->token, sizeof(o->token), "%s", (const char *)sqlite3_column_text(st, 1));
    o->user_id = sqlite3_column_int64(st, 2);
    o->product_id = sqlite3_column_int64(st, 3);
    o->activity_id = sqlite3_column_int64(st, 4);
    o->state = sqlite3_column_int(st, 5);
    o->issued_at = sqlite3_column_int64(st, 6);
    o->expires_at = sqlite3_column_int64(st, 7);
    o->created_at = sqlite3_column_int64(st, 8);
}

int
sk_admin_store_order_by_token(sk_admin_store_t *s, const char *token, sk_admin_order_t *o)
{
    sqlite3_stmt *st = q(s, Q_O_GET);
    sqlite3_bind_text(st, 1, token, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_order(st, o);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SK_ADMIN_STORE_OK : rc == SQLITE_DONE ? SK_ADMIN_STORE_NONE : SK_ADMIN_STORE_ERR;
}

int
sk_admin_store_order_pending(sk_admin_store_t *s, const char *token, int64_t user_id, int64_t product_id, int64_t now,
                             int64_t *order_id)
{
    sqlite3_stmt *st = q(s, Q_O_PENDING);
    sqlite3_bind_text(st, 1, token, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, user_id);
    sqlite3_bind_int64(st, 3, product_id);
    sqlite3_bind_int64(st, 4, now);
    int rc = step_done(st);
    if (rc == SK_ADMIN_STORE_OK)
        *order_id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int
sk_admin_store_order_done(sk_admin_store_t *s, int64_t order_id, const sk_admin_order_t *o)
{
    sqlite3_stmt *st = q(s, Q_O_DONE);
    sqlite3_bind_int64(st, 1, order_id);
    sqlite3_bind_int64(st, 2, o->user_id);
    sqlite3_bind_int64(st, 3, o->product_id);
    sqlite3_bind_int64(st, 4, o->activity_id);
    sqlite3_bind_int64(st, 5, o->issued_at);
    sqlite3_bind_int64(st, 6, o->expires_at);
    sqlite3_bind_int64(st, 7, o->created_at);
    int rc = step_done(st);
    if (rc == SK_ADMIN_STORE_OK && sqlite3_changes(s->db) == 0)
        rc = SK_ADMIN_STORE_NONE;
    return rc;
}

int
sk_admin_store_order_drop_pending(sk_admin_store_t *s, const char *token)
{
    sqlite3_stmt *st = q(s, Q_O_DROP);
    sqlite3_bind_text(st, 1, token, -1, SQLITE_TRANSIENT);
    return step_done(st);
}

int
sk_admin_store_order_repair(sk_admin_store_t *s, const sk_admin_order_t *o)
{
    if (begin(s) != 0)
        return SK_ADMIN_STORE_ERR;
    int rc = sk_admin_store_order_drop_pending(s, o->token);
    if (rc == SK_ADMIN_STORE_OK) {
        sqlite3_stmt *st = q(s, Q_O_REPAIR);
        sqlite3_bind_int64(st, 1, o->order_id);
        sqlite3_bind_text(st, 2, o->token, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, o->user_id);
        sqlite3_bind_int64(st, 4, o->product_id);
        sqlite3_bind_int64(st, 5, o->activity_id);
        sqlite3_bind_int64(st, 6, o->issued_at);
        sqlite3_bind_int64(st, 7, o->expires_at);
        sqlite3_bind_int64(st, 8, o->created_at);
        rc = step_done(st);
    }
    return finish(s, rc);
}

int
sk_admin_store_orders_stale(sk_admin_store_t *s, int64_t older_than, sk_admin_order_t *out, int cap)
{
    sqlite3_stmt *st = q(s, Q_O_STALE);
    sqlite3_bind_int64(st, 1, older_than);
    sqlite3_bind_int(st, 2, cap);
    int n = 0;
    while (n < cap && sqlite3_step(st) == SQLITE_ROW)
        read_order(st, &out[n++]);
    sqlite3_reset(st);
    return n;
}

/* test_tel.c - number assignment by (verified) signed command: validation, storage in
 * the state DB, audit (fail closed) and live application to the proxy's VP endpoints;
 * a VP endpoint answering AT without a real modem. Real sqlite, real audit log, real ptys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "audit.h"
#include "cellsd.h"
#include "cleanup.h"
#include "sqldb.h"
#include "tel.h"
#include "util.h"

struct fx {
	char dir[64];
	struct cellsd d;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/cells-test-tel.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->d.ctl_fd = -1;
	f->d.state = CELLSD_ST_READY;
	snprintf(f->d.state_dir, sizeof f->d.state_dir, "%s", f->dir);
	snprintf(f->d.run_dir, sizeof f->d.run_dir, "%s/run", f->dir);
	char p[PATH_MAX + 16];
	cells_err_t err;
	snprintf(p, sizeof p, "%s/state.db", f->dir);
	assert_int_equal(sqldb_open(p, SQLDB_DURABLE, 5000, &f->d.db, &err), 0);
	snprintf(p, sizeof p, "%s/audit.db", f->dir);
	assert_int_equal(audit_open(p, &f->d.audit, &err), 0);
	f->d.loop = loop_new(&err);
	assert_non_null(f->d.loop);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	tel_stop(&f->d);
	audit_close(f->d.audit);
	sqlite3_close_v2(f->d.db);
	loop_free(f->d.loop);
	cells_rm_rf(f->dir, NULL);
	free(f);
	return 0;
}

static int assign(struct cellsd *d, const char *vp, const char *number, unsigned digit,
		  const char *gw, cells_err_t *err)
{
	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__AssignNumber a = CELLS__V1__ASSIGN_NUMBER__INIT;
	c.command_id = "cmd-1";
	a.vp = (char *)vp;
	a.number = (char *)number;
	a.digit = digit;
	a.gateway = (char *)gw;
	c.action_case = CELLS__V1__COMMAND__ACTION_ASSIGN_NUMBER;
	c.assign_number = &a;
	return tel_cmd_assign(d, &c, err);
}

static int do_revoke(struct cellsd *d, const char *vp, cells_err_t *err)
{
	Cells__V1__Command c = CELLS__V1__COMMAND__INIT;
	Cells__V1__RevokeNumber r = CELLS__V1__REVOKE_NUMBER__INIT;
	c.command_id = "cmd-2";
	r.vp = (char *)vp;
	c.action_case = CELLS__V1__COMMAND__ACTION_REVOKE_NUMBER;
	c.revoke_number = &r;
	return tel_cmd_revoke(d, &c, err);
}

static long long q1(struct cellsd *d, const char *sql)
{
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(d->db, sql, -1, &st, NULL), SQLITE_OK);
	long long v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	return v;
}

static long long audit_count(struct fx *f, const char *event, const char *outcome)
{
	char p[PATH_MAX + 16], sql[256];
	snprintf(p, sizeof p, "%s/audit.db", f->dir);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM audit WHERE event='%s' AND outcome='%s'",
		 event, outcome);
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	long long v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void quit_cb(struct loop *l, void *data)
{
	loop_quit(l);
}

/* Write cmd to the VP side, run the loop a moment, return what came back. loop_quit() is
 * sticky, so this runs once per loop (new_round() gives a fresh one). */
static void vp_talk(struct fx *f, int fd, const char *cmd, char *out, size_t n)
{
	assert_int_equal(write(fd, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
	struct loop *l = f->d.loop;
	loop_add_timer(l, 100, quit_cb, NULL);
	loop_run(l);
	ssize_t r = read(fd, out, n - 1);
	out[r > 0 ? r : 0] = '\0';
}

static void new_round(struct fx *f)
{
	/* restart the proxy on a new loop: it re-creates the endpoints from the DB */
	tel_stop(&f->d);
	loop_free(f->d.loop);
	cells_err_t err;
	f->d.loop = loop_new(&err);
	assert_non_null(f->d.loop);
	assert_int_equal(tel_start(&f->d, NULL, &err), 0);
}

static void test_assign_live(void **state)
{
	struct fx *f = *state;
	struct cellsd *d = &f->d;
	cells_err_t err;
	assert_int_equal(tel_start(d, NULL, &err), 0);
	char link[PATH_MAX + 32];
	snprintf(link, sizeof link, "%s/tel/work.pty", d->run_dir);
	assert_int_equal(access(link, F_OK), -1);

	assert_int_equal(assign(d, "work", "+15550101", 1, "+15550000", &err), 0);
	assert_int_equal(access(link, F_OK), 0); /* applied live: the endpoint exists */
	assert_int_equal(q1(d, "SELECT digit FROM tel_numbers WHERE vp='work'"), 1);
	assert_int_equal(audit_count(f, "tel.number.assign", "ok"), 1);

	json_object *o = json_object_new_object();
	assert_int_equal(tel_status_json(d, o, &err), 0);
	json_object *v0 = json_object_array_get_idx(json_object_object_get(o, "vps"), 0);
	assert_string_equal(json_object_get_string(json_object_object_get(v0, "number")),
			    "+15550101");
	json_object_put(o);

	/* the endpoint answers AT; without a real modem, forwarded commands fail */
	int fd = open(link, O_RDWR | O_NOCTTY | O_NONBLOCK);
	assert_true(fd >= 0);
	char b[512];
	vp_talk(f, fd, "ATE0\rAT+CLIP?\rAT+CSQ\r", b, sizeof b);
	assert_non_null(strstr(b, "ATE0\r\r\nOK\r\n\r\n+CLIP: 0,1\r\n\r\nOK\r\n\r\nERROR\r\n"));
	close(fd);

	/* conflicts and bad input: refused, audited, nothing stored */
	assert_int_equal(assign(d, "personal", "+15550102", 1, "+15550000", &err), -1);
	assert_int_equal(err.code, EEXIST);
	assert_int_equal(assign(d, "personal", "+15550101", 2, "+15550000", &err), -1);
	assert_int_equal(err.code, EEXIST);
	assert_int_equal(assign(d, "personal", "+1555x", 2, "+15550000", &err), -1);
	assert_int_equal(assign(d, "personal", "15550102", 2, "+15550000", &err), -1);
	assert_int_equal(assign(d, "personal", "+15550102", 10, "+15550000", &err), -1);
	assert_int_equal(assign(d, "personal", "+15550102", 2, "+1x", &err), -1);
	assert_int_equal(assign(d, "../x", "+15550102", 2, "+15550000", &err), -1);
	assert_int_equal(err.code, EINVAL);
	assert_int_equal(q1(d, "SELECT count(*) FROM tel_numbers"), 1);
	assert_int_equal(audit_count(f, "tel.number.assign", "refused"), 7);
	Cells__V1__Command wrong = CELLS__V1__COMMAND__INIT;
	assert_int_equal(tel_cmd_assign(d, &wrong, &err), -1);
	assert_int_equal(tel_cmd_revoke(d, &wrong, &err), -1);

	/* a new number for the same VP replaces the old one live */
	assert_int_equal(assign(d, "work", "+15550199", 1, "+15550000", &err), 0);
	assert_int_equal(q1(d, "SELECT count(*) FROM tel_numbers WHERE number='+15550199'"), 1);

	/* persistence: a restarted proxy has the endpoint again */
	new_round(f);
	assert_int_equal(access(link, F_OK), 0);

	/* revoke: gone from the DB, the endpoint is closed, audited */
	assert_int_equal(do_revoke(d, "work", &err), 0);
	assert_int_equal(access(link, F_OK), -1);
	assert_int_equal(q1(d, "SELECT count(*) FROM tel_numbers"), 0);
	assert_int_equal(audit_count(f, "tel.number.revoke", "ok"), 1);
	/* now the digit is free for another VP; without a gateway (incoming calls only) */
	assert_int_equal(assign(d, "personal", "+15550102", 1, "", &err), 0);
	assert_int_equal(q1(d, "SELECT count(*) FROM tel_numbers WHERE gateway=''"), 1);
}

static void test_fail_closed(void **state)
{
	struct fx *f = *state;
	struct cellsd *d = &f->d;
	cells_err_t err;
	assert_int_equal(tel_start(d, NULL, &err), 0);
	audit_close(d->audit);
	d->audit = NULL; /* the audit log cannot be written */
	assert_int_equal(assign(d, "work", "+15550101", 1, "+15550000", &err), -1);
	assert_int_equal(q1(d, "SELECT count(*) FROM tel_numbers"), 0);
	char link[PATH_MAX + 32];
	snprintf(link, sizeof link, "%s/tel/work.pty", d->run_dir);
	assert_int_equal(access(link, F_OK), -1); /* not applied either */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_assign_live, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fail_closed, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

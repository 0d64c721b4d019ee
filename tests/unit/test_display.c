/* test_display.c - the foreground switch, the per-VP framebuffers, the shm panel flip,
 * screenshots and input delivery, driven directly on real files, real mmap, a real
 * audit database and real PNGs decoded back with libpng. Two VPs are two devcells
 * directories, drawn into exactly as a VP would (mmap of fb0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audit.h"
#include "cellsd.h"
#include "display.h"
#include "display_shm.h"
#include "fg.h"
#include "util.h"

#define W 64
#define H 48
#define RED 0x00ff0000u
#define GREEN 0x0000ff00u
#define BLUE 0x000000ffu

struct fx {
	char dir[64];
	char a[128], b[128];
	struct cellsd d;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/cells-disp.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->d.run_dir, sizeof f->d.run_dir, "%s/run", f->dir);
	snprintf(f->a, sizeof f->a, "%s/a", f->dir);
	snprintf(f->b, sizeof f->b, "%s/b", f->dir);
	assert_int_equal(mkdir(f->d.run_dir, 0700), 0);
	assert_int_equal(mkdir(f->a, 0755), 0);
	assert_int_equal(mkdir(f->b, 0755), 0);
	cells_err_t err = {0};
	f->d.loop = loop_new(&err);
	assert_non_null(f->d.loop);
	char p[200];
	snprintf(p, sizeof p, "%s/audit.db", f->dir);
	assert_int_equal(audit_open(p, &f->d.audit, &err), 0);
	assert_int_equal(fg_init(&f->d, &err), 0);
	assert_int_equal(disp_init(&f->d, "shm:64x48", NULL, &err), 0);
	/* as the VP runtime's listener does: devices first, then the foreground */
	assert_int_equal(disp_vp_up(&f->d, "a", f->a, &err), 0);
	assert_int_equal(fg_vp_up(&f->d, "a", &err), 0);
	assert_int_equal(disp_vp_up(&f->d, "b", f->b, &err), 0);
	assert_int_equal(fg_vp_up(&f->d, "b", &err), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	disp_shutdown(&f->d);
	fg_shutdown(&f->d);
	audit_close(f->d.audit);
	loop_free(f->d.loop);
	cells_rm_rf(f->dir, NULL);
	free(f);
	return 0;
}

/* A VP drawing a frame: map /dev/cells/fb0 and fill it. */
static void vp_draw(const char *devcells, uint32_t colour)
{
	char p[200];
	snprintf(p, sizeof p, "%s/fb0", devcells);
	int fd = open(p, O_RDWR);
	assert_true(fd >= 0);
	uint32_t *px = mmap(NULL, W * H * 4, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(px != MAP_FAILED);
	for (size_t i = 0; i < W * H; i++)
		px[i] = colour;
	munmap(px, W * H * 4);
	close(fd);
}

/* Take a screenshot and decode it: the one colour on the screen, or -1 if mixed. */
static long screen_colour(struct fx *f)
{
	char p[200];
	snprintf(p, sizeof p, "%s/shot.png", f->dir);
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	cells_err_t err = {0};
	json_object *info = json_object_new_object();
	assert_int_equal(disp_screenshot(&f->d, fd, info, &err), 0);
	json_object_put(info);
	close(fd);
	png_image img;
	memset(&img, 0, sizeof img);
	img.version = PNG_IMAGE_VERSION;
	assert_true(png_image_begin_read_from_file(&img, p));
	assert_int_equal(img.width, W);
	assert_int_equal(img.height, H);
	img.format = PNG_FORMAT_RGB;
	uint8_t *buf = malloc(PNG_IMAGE_SIZE(img));
	assert_true(png_image_finish_read(&img, NULL, buf, 0, NULL));
	long c = (long)buf[0] << 16 | buf[1] << 8 | buf[2];
	for (size_t i = 0; i < (size_t)W * H; i++)
		if (((long)buf[3 * i] << 16 | buf[3 * i + 1] << 8 | buf[3 * i + 2]) != c)
			c = -1;
	free(buf);
	return c;
}

static void read_text(const char *dir, const char *name, char *out, size_t n)
{
	char p[200];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	int fd = open(p, O_RDONLY | O_NONBLOCK);
	assert_true(fd >= 0);
	ssize_t r = read(fd, out, n - 1);
	out[r > 0 ? r : 0] = 0;
	close(fd);
}

static int count_audit(struct fx *f, const char *event, const char *outcome)
{
	char p[200];
	snprintf(p, sizeof p, "%s/audit.db", f->dir);
	sqlite3 *db;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_prepare_v2(db, "select count(*) from audit where event=? and outcome=?", -1,
			       &st, NULL),
	    SQLITE_OK);
	sqlite3_bind_text(st, 1, event, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, outcome, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static void test_screen_shows_only_the_fvp(void **state)
{
	struct fx *f = *state;
	cells_err_t err = {0};
	assert_string_equal(fg_current(&f->d), "a"); /* the first VP to start */
	vp_draw(f->a, RED);
	vp_draw(f->b, GREEN);
	assert_int_equal(screen_colour(f), RED);
	assert_int_equal(fg_switch(&f->d, "b", "uid:0", &err), 0);
	assert_string_equal(fg_current(&f->d), "b");
	assert_int_equal(screen_colour(f), GREEN);
	/* the BVP keeps rendering, invisibly */
	vp_draw(f->a, BLUE);
	assert_int_equal(screen_colour(f), GREEN);
	/* back: a's latest frame */
	assert_int_equal(fg_switch(&f->d, "a", "uid:0", &err), 0);
	assert_int_equal(screen_colour(f), BLUE);
	assert_int_equal(count_audit(f, "fg.switch", "ok"), 3); /* start + 2 switches */
	/* switching to the FVP is a no-op */
	assert_int_equal(fg_switch(&f->d, "a", "uid:0", &err), 0);
	assert_int_equal(count_audit(f, "fg.switch", "ok"), 3);
}

static void test_vps_are_told(void **state)
{
	struct fx *f = *state;
	cells_err_t err = {0};
	char s[64];
	read_text(f->a, "fb0.state", s, sizeof s);
	assert_string_equal(s, "foreground\n");
	read_text(f->b, "fb0.state", s, sizeof s);
	assert_string_equal(s, "background\n");
	read_text(f->a, "fb0.geometry", s, sizeof s);
	assert_string_equal(s, "64 48 256 XRGB8888\n");
	char ea[200], eb[200];
	snprintf(ea, sizeof ea, "%s/events", f->a);
	snprintf(eb, sizeof eb, "%s/events", f->b);
	int fa = open(ea, O_RDONLY | O_NONBLOCK), fb = open(eb, O_RDONLY | O_NONBLOCK);
	assert_true(fa >= 0 && fb >= 0);
	char junk[256];
	while (read(fa, junk, sizeof junk) > 0) /* the start-up event */
		;
	assert_int_equal(fg_switch(&f->d, "b", "uid:0", &err), 0);
	unsigned long long g = fg_generation(&f->d);
	char want[64];
	ssize_t r = read(fa, junk, sizeof junk - 1);
	assert_true(r > 0);
	junk[r] = 0;
	snprintf(want, sizeof want, "background %llu\n", g);
	assert_string_equal(junk, want);
	r = read(fb, junk, sizeof junk - 1);
	assert_true(r > 0);
	junk[r] = 0;
	snprintf(want, sizeof want, "foreground %llu\n", g);
	assert_string_equal(junk, want);
	read_text(f->a, "fb0.state", s, sizeof s);
	assert_string_equal(s, "background\n");
	read_text(f->b, "fb0.state", s, sizeof s);
	assert_string_equal(s, "foreground\n");
	close(fa);
	close(fb);
}

/* The flip copies nothing: the panel names the FVP's own buffer by identity, and a VP
 * renaming or replacing its fb0 cannot redirect the screen. */
static void test_panel_flip_names_the_fvp_buffer(void **state)
{
	struct fx *f = *state;
	cells_err_t err = {0};
	char panel[200], p[200], q[200];
	snprintf(panel, sizeof panel, "%s/display/panel", f->d.run_dir);
	struct disp_panel_view v;
	assert_int_equal(disp_panel_read(panel, &v, &err), 0);
	assert_string_equal(v.h.vp, "a");
	snprintf(p, sizeof p, "%s/fb0", f->a);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(v.h.ino, st.st_ino);
	assert_true(v.buf_fd >= 0);
	close(v.buf_fd);
	vp_draw(f->a, RED);
	/* the VP moves its fb0 away and plants a symlink to a host file */
	snprintf(q, sizeof q, "%s/fb0.moved", f->a);
	assert_int_equal(rename(p, q), 0);
	assert_int_equal(symlink("/etc/passwd", p), 0);
	assert_int_equal(screen_colour(f), RED);
	assert_int_equal(fg_switch(&f->d, "b", "uid:0", &err), 0);
	assert_int_equal(disp_panel_read(panel, &v, &err), 0);
	assert_string_equal(v.h.vp, "b");
	assert_int_equal(v.h.gen, fg_generation(&f->d));
	close(v.buf_fd);
}

/* A VP shrinking its own buffer cannot fault the agent. */
static void test_truncated_buffer_is_harmless(void **state)
{
	struct fx *f = *state;
	vp_draw(f->a, RED);
	char p[200];
	snprintf(p, sizeof p, "%s/fb0", f->a);
	assert_int_equal(truncate(p, W * 4 * 10), 0); /* ten rows left */
	char png[200];
	snprintf(png, sizeof png, "%s/x.png", f->dir);
	int fd = open(png, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cells_err_t err = {0};
	assert_int_equal(disp_screenshot(&f->d, fd, NULL, &err), 0);
	close(fd);
	assert_int_equal(screen_colour(f), -1); /* red rows, then black */
}

static int open_input(const char *devcells)
{
	char p[200];
	snprintf(p, sizeof p, "%s/input", devcells);
	int fd = open(p, O_RDONLY | O_NONBLOCK);
	assert_true(fd >= 0);
	return fd;
}

static int inject_key(struct fx *f, int code, uint64_t gen)
{
	struct input_event ev[2] = {{.type = EV_KEY, .code = (uint16_t)code, .value = 1},
				    {.type = EV_SYN, .code = SYN_REPORT}};
	cells_err_t err = {0};
	return disp_input(&f->d, ev, 2, gen, &err);
}

static void test_input_reaches_only_the_fvp(void **state)
{
	struct fx *f = *state;
	int ia = open_input(f->a), ib = open_input(f->b);
	struct input_event ev[8];
	assert_int_equal(inject_key(f, KEY_A, fg_generation(&f->d)), 2);
	assert_int_equal(read(ia, ev, sizeof ev), 2 * sizeof ev[0]);
	assert_int_equal(ev[0].type, EV_KEY);
	assert_int_equal(ev[0].code, KEY_A);
	assert_int_equal(ev[1].type, EV_SYN);
	assert_int_equal(read(ib, ev, sizeof ev), -1);
	assert_int_equal(errno, EAGAIN);
	close(ia);
	close(ib);
}

/* Events around a switch: what the leaving VP has not read is discarded, and a packet
 * stamped before the switch is delivered to nobody. */
static void test_input_around_a_switch(void **state)
{
	struct fx *f = *state;
	cells_err_t err = {0};
	int ia = open_input(f->a), ib = open_input(f->b);
	struct input_event ev[8];
	uint64_t g0 = fg_generation(&f->d);
	assert_int_equal(inject_key(f, KEY_B, g0), 2); /* queued, a has not read it */
	assert_int_equal(fg_switch(&f->d, "b", "uid:0", &err), 0);
	assert_int_equal(inject_key(f, KEY_C, g0), 0); /* in flight during the switch */
	assert_int_equal(read(ia, ev, sizeof ev), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(read(ib, ev, sizeof ev), -1);
	assert_int_equal(inject_key(f, KEY_D, fg_generation(&f->d)), 2);
	assert_int_equal(read(ib, ev, sizeof ev), 2 * sizeof ev[0]);
	assert_int_equal(ev[0].code, KEY_D);
	assert_int_equal(read(ia, ev, sizeof ev), -1);
	close(ia);
	close(ib);
}

static int inject(struct fx *f, int code, int value)
{
	struct input_event ev[2] = {{.type = EV_KEY, .code = (uint16_t)code, .value = value},
				    {.type = EV_SYN, .code = SYN_REPORT}};
	cells_err_t err = {0};
	return disp_input(&f->d, ev, 2, fg_generation(&f->d), &err);
}

/* A key pressed in one VP and released after a switch: the new FVP never sees a release
 * without its press; the VP that held the key gets the release once it is back. */
static void test_held_keys_across_a_switch(void **state)
{
	struct fx *f = *state;
	cells_err_t err = {0};
	int ia = open_input(f->a), ib = open_input(f->b);
	struct input_event ev[8];
	assert_int_equal(inject(f, KEY_LEFTSHIFT, 1), 2);
	assert_int_equal(read(ia, ev, sizeof ev), 2 * sizeof ev[0]);
	assert_int_equal(fg_switch(&f->d, "b", "uid:0", &err), 0);
	assert_int_equal(inject(f, KEY_LEFTSHIFT, 2), 0); /* repeat: not b's key */
	assert_int_equal(inject(f, KEY_LEFTSHIFT, 0), 0); /* release: not b's key */
	assert_int_equal(read(ib, ev, sizeof ev), -1);
	assert_int_equal(read(ia, ev, sizeof ev), -1);
	assert_int_equal(fg_switch(&f->d, "a", "uid:0", &err), 0);
	assert_int_equal(inject(f, KEY_LEFTSHIFT, 0), 2); /* a's own key comes up */
	assert_int_equal(read(ia, ev, sizeof ev), 2 * sizeof ev[0]);
	assert_int_equal(ev[0].code, KEY_LEFTSHIFT);
	assert_int_equal(ev[0].value, 0);
	assert_int_equal(inject(f, KEY_LEFTSHIFT, 0), 0); /* a second release: dropped */
	close(ia);
	close(ib);
}

static bool deny_b(struct cellsd *d, const char *vp, bool self, void *data)
{
	return strcmp(vp, "b") != 0;
}

static bool no_self(struct cellsd *d, const char *vp, bool self, void *data)
{
	return !self;
}

static void test_switch_rules(void **state)
{
	struct fx *f = *state;
	cells_err_t err = {0};
	assert_int_equal(fg_switch(&f->d, "nope", "uid:0", &err), -1);
	assert_int_equal(err.code, ESRCH);
	assert_int_equal(fg_switch(&f->d, "../x", "uid:0", &err), -1);
	fg_set_permit(&f->d, deny_b, NULL);
	assert_int_equal(fg_switch(&f->d, "b", "uid:0", &err), -1);
	assert_int_equal(err.code, EPERM);
	assert_string_equal(fg_current(&f->d), "a");
	/* a VP may not take the foreground by itself (telephony) unless the rule says so */
	fg_set_permit(&f->d, no_self, NULL);
	assert_int_equal(fg_switch(&f->d, "b", "telephony", &err), -1);
	assert_int_equal(err.code, EPERM);
	assert_int_equal(fg_switch(&f->d, "b", "uid:1000", &err), 0);
	assert_int_equal(count_audit(f, "fg.switch", "refused"), 3);
	/* fail closed: no audit record, no switch */
	struct audit *log = f->d.audit;
	f->d.audit = NULL; /* cellsd_audit cannot write */
	assert_int_equal(fg_switch(&f->d, "a", "uid:0", &err), -1);
	assert_true(f->d.state & CELLSD_ST_AUDIT_CLOSED);
	f->d.audit = log;
	f->d.state &= ~CELLSD_ST_AUDIT_CLOSED;
	assert_string_equal(fg_current(&f->d), "b");
}

/* A VP denied the display cannot map it, not even through a mapping it already had. */
static void test_denied_vp_cannot_map(void **state)
{
	struct fx *f = *state;
	cells_err_t err = {0};
	char p[200];
	snprintf(p, sizeof p, "%s/fb0", f->b);
	int go[2], ready[2];
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* the kernel's verdict, not a sanitizer's handler */
		struct sigaction sa = {.sa_handler = SIG_DFL};
		sigaction(SIGBUS, &sa, NULL);
		int fd = open(p, O_RDWR);
		uint32_t *px = mmap(NULL, W * H * 4, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (fd < 0 || px == MAP_FAILED)
			_exit(3);
		px[0] = GREEN;
		char c = 1;
		if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(4);
		for (size_t i = 0; i < W * H; i++) /* draws after the revocation */
			px[i] = GREEN;
		_exit(0);
	}
	char c;
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(disp_set_allowed(&f->d, "b", false, &err), 0);
	assert_int_equal(write(go[1], &c, 1), 1);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGBUS);
	assert_int_equal(open(p, O_RDWR), -1);
	assert_int_equal(errno, ENOENT);
	char s[64];
	read_text(f->b, "fb0.state", s, sizeof s);
	assert_string_equal(s, "denied\n");
	/* in front, a denied VP shows black */
	assert_int_equal(fg_switch(&f->d, "b", "uid:0", &err), 0);
	assert_int_equal(screen_colour(f), 0);
	/* allowed again: a fresh (black) buffer, drawable and shown */
	assert_int_equal(disp_set_allowed(&f->d, "b", true, &err), 0);
	vp_draw(f->b, GREEN);
	assert_int_equal(screen_colour(f), GREEN);
	close(go[0]);
	close(go[1]);
	close(ready[0]);
	close(ready[1]);
}

static void test_fvp_stops(void **state)
{
	struct fx *f = *state;
	vp_draw(f->a, RED);
	vp_draw(f->b, GREEN);
	fg_vp_down(&f->d, "a");
	disp_vp_down(&f->d, "a");
	assert_string_equal(fg_current(&f->d), "b");
	assert_int_equal(screen_colour(f), GREEN);
	fg_vp_down(&f->d, "b");
	disp_vp_down(&f->d, "b");
	assert_null(fg_current(&f->d));
	assert_int_equal(screen_colour(f), 0);
	assert_int_equal(inject_key(f, KEY_A, fg_generation(&f->d)), 0);
}

static void test_bad_specs(void **state)
{
	struct cellsd d = {0};
	cells_err_t err = {0};
	snprintf(d.run_dir, sizeof d.run_dir, "/tmp");
	d.loop = loop_new(&err);
	assert_int_equal(fg_init(&d, &err), 0);
	assert_int_equal(disp_init(&d, "vga", NULL, &err), -1);
	assert_int_equal(disp_init(&d, "shm:0x10", NULL, &err), -1);
	assert_int_equal(disp_init(&d, "shm:99999x10", NULL, &err), -1);
	assert_int_equal(disp_init(&d, "fbdev:/nonexistent/fb9", NULL, &err), -1);
	assert_null(d.disp);
	fg_shutdown(&d);
	loop_free(d.loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_screen_shows_only_the_fvp, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vps_are_told, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_panel_flip_names_the_fvp_buffer, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_truncated_buffer_is_harmless, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_input_reaches_only_the_fvp, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_input_around_a_switch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_held_keys_across_a_switch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_switch_rules, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_denied_vp_cannot_map, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fvp_stops, setup, teardown),
	    cmocka_unit_test(test_bad_specs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

// A small HTTP/1.1 server in C on hotcluster's socket: the listener from
// libsystemd's sd_listen_fds_with_names (which checks LISTEN_PID), READY=1
// with sd_notify, a thread per connection with keep-alive, and on SIGTERM
// a drain: the listener is closed, each connection answers its next
// request with "Connection: close", an idle one is closed only after 2s
// without a request (closing it at once races with a request the client
// is sending), and the process exits once every connection has ended.
// Build: cc -O2 -pthread -o server server.c -lsystemd
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

static atomic_int stopping, active;
static atomic_long stop_at; // CLOCK_MONOTONIC seconds when the stop began
static int listener = -1;

static long now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void on_term(int sig) {
	(void)sig;
	atomic_store(&stop_at, now()); // clock_gettime is async-signal-safe
	atomic_store(&stopping, 1);
}

static void *serve(void *arg) {
	int c = (int)(long)arg;
	char buf[8192];
	size_t have = 0;
	for (;;) {
		char *end = memmem(buf, have, "\r\n\r\n", 4);
		if (!end) {
			if (have == sizeof buf) break;
			struct pollfd p = {c, POLLIN, 0};
			// Wake up now and then to see whether a stop began, so that an
			// idle keep-alive connection is closed only between requests.
			int n = poll(&p, 1, 100);
			if (n == 0) {
				if (atomic_load(&stopping) && now() - atomic_load(&stop_at) >= 2) break;
				continue;
			}
			ssize_t r = read(c, buf + have, sizeof buf - have);
			if (r <= 0) break;
			have += r;
			continue;
		}
		int closing = atomic_load(&stopping) || strcasestr(buf, "connection: close") != NULL;
		char body[128], resp[512];
		int bl = snprintf(body, sizeof body, "hello pid=%d gen=%s worker=%s\n", getpid(),
		                  getenv("HOTCLUSTER_GENERATION") ? getenv("HOTCLUSTER_GENERATION") : "",
		                  getenv("HOTCLUSTER_WORKER_ID") ? getenv("HOTCLUSTER_WORKER_ID") : "");
		int rl = snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s",
		                  bl, closing ? "Connection: close\r\n" : "", body);
		if (write(c, resp, rl) != rl || closing) break;
		size_t used = end + 4 - buf;
		memmove(buf, buf + used, have - used);
		have -= used;
	}
	close(c);
	atomic_fetch_sub(&active, 1);
	return NULL;
}

int main(void) {
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);
	if (n < 1) {
		fprintf(stderr, "no socket from LISTEN_FDS (%d)\n", n);
		return 1;
	}
	listener = SD_LISTEN_FDS_START;
	struct sigaction sa = {0};
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sd_notifyf(0, "READY=1\nSTATUS=serving %s", names && names[0] ? names[0] : "");
	while (!atomic_load(&stopping)) {
		// The listener is non-blocking (shared with the master): wait in poll.
		struct pollfd p = {listener, POLLIN, 0};
		if (poll(&p, 1, 100) <= 0) continue;
		int c = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) continue;
		atomic_fetch_add(&active, 1);
		pthread_t t;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &at, serve, (void *)(long)c) != 0) {
			close(c);
			atomic_fetch_sub(&active, 1);
		}
	}
	close(listener); // never shutdown(2): the socket is shared
	sd_notify(0, "STOPPING=1");
	while (atomic_load(&active) > 0) usleep(10000);
	return 0;
}

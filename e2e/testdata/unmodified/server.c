/*
 * A plain C HTTP server that binds its own port, as servers written before
 * socket activation do: socket, bind, listen, accept. It knows nothing of
 * hotcluster (the generation in its answers is only for the tests to tell
 * generations apart).
 *
 *   server PORT [HOST [PREFORK]]
 *
 * HOST defaults to 0.0.0.0. With PREFORK > 0 it binds and listens, then
 * forks PREFORK children that accept (as Apache's prefork MPM, gunicorn and
 * puma do) and waits for them; on SIGTERM each process finishes the
 * request it is answering and exits. The listening socket may be
 * non-blocking (as hotcluster's is): accept waits in poll, and EAGAIN,
 * which every process but one gets when a connection arrives, is retried.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_term(int sig) { (void)sig; stopping = 1; }

static void serve(int ln) {
	const char *gen = getenv("HOTCLUSTER_GENERATION");
	char body[128], resp[512], req[4096];
	snprintf(body, sizeof body, "hello pid=%d gen=%s\n", (int)getpid(), gen ? gen : "?");
	int n = snprintf(resp, sizeof resp,
			 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
			 strlen(body), body);
	while (!stopping) {
		struct pollfd p = {.fd = ln, .events = POLLIN};
		if (poll(&p, 1, -1) < 0)
			continue; /* EINTR: look at stopping */
		int c = accept(ln, NULL, NULL);
		if (c < 0)
			continue; /* EAGAIN: another process took it */
		size_t got = 0;
		while (got < sizeof req - 1) {
			ssize_t r = read(c, req + got, sizeof req - 1 - got);
			if (r <= 0)
				break;
			got += (size_t)r;
			req[got] = 0;
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		if (write(c, resp, (size_t)n) < 0)
			perror("write");
		close(c);
	}
	close(ln);
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: %s PORT [HOST [PREFORK]]\n", argv[0]);
		return 2;
	}
	int port = atoi(argv[1]);
	const char *host = argc > 2 ? argv[2] : "0.0.0.0";
	int prefork = argc > 3 ? atoi(argv[3]) : 0;

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term; /* no SA_RESTART: poll returns EINTR */
	sigaction(SIGTERM, &sa, NULL);

	int ln = socket(AF_INET, SOCK_STREAM, 0);
	if (ln < 0) {
		perror("socket");
		return 1;
	}
	int one = 1;
	setsockopt(ln, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
		fprintf(stderr, "bad host %s\n", host);
		return 2;
	}
	if (bind(ln, (struct sockaddr *)&addr, sizeof addr) < 0) {
		perror("bind");
		return 1;
	}
	if (listen(ln, 16) < 0) {
		perror("listen");
		return 1;
	}
	printf("listening on %s:%d\n", host, port);
	fflush(stdout);
	if (prefork <= 0) {
		serve(ln);
		return 0;
	}
	for (int i = 0; i < prefork; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			serve(ln);
			_exit(0);
		}
	}
	close(ln);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	return 0;
}

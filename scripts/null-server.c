/* The least an HTTP server can do: answer every request head (bodiless,
   keep-alive) with a fixed 204, reading nothing but where the head ends. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 65536
#define BUF 16384
static char *bufs[MAXFD];
static size_t lens[MAXFD];
static const char RESP[] = "HTTP/1.1 204 No Content\r\nServer: null\r\nConnection: keep-alive\r\n\r\n";

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8080;
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (void *)&a, sizeof a) || listen(ls, 4096)) { perror("listen"); return 1; }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[512];
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  static char out[BUF * 2];
  for (;;) {
    int n = epoll_wait(ep, evs, 512, -1);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        int c;
        while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          if (c >= MAXFD) { close(c); continue; }
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          if (!bufs[c]) bufs[c] = malloc(BUF);
          lens[c] = 0;
          struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
        }
        continue;
      }
      ssize_t r = read(fd, bufs[fd] + lens[fd], BUF - lens[fd]);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        close(fd); lens[fd] = 0; continue;
      }
      size_t len = lens[fd] + r, start = 0, o = 0;
      char *b = bufs[fd], *e;
      while ((e = memmem(b + start, len - start, "\r\n\r\n", 4))) {
        memcpy(out + o, RESP, sizeof RESP - 1); o += sizeof RESP - 1;
        start = e + 4 - b;
      }
      memmove(b, b + start, len - start); lens[fd] = len - start;
      if (lens[fd] == BUF) { close(fd); lens[fd] = 0; continue; }
      if (o && write(fd, out, o) < 0) { close(fd); lens[fd] = 0; }
    }
  }
}

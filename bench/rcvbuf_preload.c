/* LD_PRELOAD shim for the load generator in bench/dhcp6.sh (not part of vmlan):
 * every datagram socket the process opens gets a receive buffer of RCVBUF_BYTES
 * (SO_RCVBUFFORCE, so root may exceed net.core.rmem_max, which is not per network
 * namespace; nothing outside the process changes). perfdhcp receives every server's
 * replies on one socket; with the default 208 KiB a burst of replies after the
 * server or perfdhcp was descheduled for a few ms overflows it, which measures
 * perfdhcp's scheduling, not the server. Build: gcc -shared -fPIC -O2 -o rcvbuf.so
 * rcvbuf_preload.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

int socket(int domain, int type, int protocol)
{
    static int (*real_socket)(int, int, int);
    if (!real_socket)
        real_socket = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
    int fd = real_socket(domain, type, protocol);
    const char *s = getenv("RCVBUF_BYTES");
    int n = s ? atoi(s) : 0;
    if (fd >= 0 && (type & 0xf) == SOCK_DGRAM && n > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &n, sizeof n);
    return fd;
}

#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <unistd.h>
#include <sys/syscall.h>
#include "icmpwall_shim.h"

int icw_setns_net(int fd)
{
	return setns(fd, CLONE_NEWNET) == 0 ? 0 : -errno;
}

int icw_gettid(void)
{
	return (int)syscall(SYS_gettid);
}

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

int icw_packet_open(int ifindex, int receive)
{
	struct sockaddr_ll addr;
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, receive ? htons(ETH_P_ALL) : 0);
	if (fd < 0)
		return -errno;
	if (receive) {
		memset(&addr, 0, sizeof(addr));
		addr.sll_family = AF_PACKET;
		addr.sll_protocol = htons(ETH_P_ALL);
		addr.sll_ifindex = ifindex;
		if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		/* A receiver counts what arrives: our own transmissions would only fill its buffer (a flood sent
		 * on the same interface would crowd out the replies), so the kernel leaves them out. A larger
		 * buffer holds a burst of replies until the test reads them. */
		int one = 1, size = 8 << 20;
		setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
	}
	return fd;
}

int icw_packet_send(int fd, int ifindex, const void *frame, unsigned long len)
{
	struct sockaddr_ll addr;
	memset(&addr, 0, sizeof(addr));
	addr.sll_family = AF_PACKET;
	addr.sll_ifindex = ifindex;
	addr.sll_halen = ETH_ALEN;
	memcpy(addr.sll_addr, frame, ETH_ALEN);
	if (sendto(fd, frame, len, 0, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return -errno;
	return 0;
}

long icw_packet_recv(int fd, void *buf, unsigned long cap, int timeout_ms)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		struct sockaddr_ll from;
		socklen_t fromlen = sizeof(from);
		ssize_t n;
		int r = poll(&p, 1, timeout_ms);
		if (r < 0)
			return errno == EINTR ? 0 : -errno;
		if (r == 0)
			return 0;
		n = recvfrom(fd, buf, cap, MSG_DONTWAIT, (struct sockaddr *)&from, &fromlen);
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		if (from.sll_pkttype == PACKET_OUTGOING)
			continue; /* our own transmissions are not what arrived */
		return n;
	}
}

#include <stdio.h>

void icw_line_buffer_stdout(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
}

int icw_pin_thread_to_cpu(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) == 0 ? 0 : -errno;
}

#include <fcntl.h>
#include <stdio.h>

int icw_rename_exchange(const char *a, const char *b)
{
	return renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0 ? 0 : -errno;
}

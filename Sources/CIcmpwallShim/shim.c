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

#include <stdlib.h>

#define ICW_FLOOD_MAX_BATCH 256
#define ICW_FLOOD_MAX_FRAME 2048

/* IPv4 header checksum over `words` 16-bit words in network order, the checksum field already zero. */
static unsigned short icw_ipv4_checksum(const unsigned char *ip, unsigned words)
{
	unsigned int sum = 0, i;
	for (i = 0; i < words; i++)
		sum += (unsigned int)ip[2 * i] << 8 | ip[2 * i + 1];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (unsigned short)~sum;
}

long icw_packet_flood(int fd, int ifindex, const void *frame, unsigned long len, unsigned long count, unsigned batch,
		      unsigned int spoof_base, unsigned int spoof_count, unsigned long long *sequence)
{
	unsigned char *frames;
	struct mmsghdr msgs[ICW_FLOOD_MAX_BATCH];
	struct iovec iovs[ICW_FLOOD_MAX_BATCH];
	struct sockaddr_ll addr;
	unsigned long sent = 0;
	unsigned i, ihl;

	if (len < 14 + 20 || len > ICW_FLOOD_MAX_FRAME || batch == 0 || batch > ICW_FLOOD_MAX_BATCH)
		return -EINVAL;
	ihl = (((const unsigned char *)frame)[14] & 0x0f) * 4;
	if (spoof_count && (ihl < 20 || 14 + ihl > len))
		return -EINVAL;
	/* Straight to the driver: the veth's queue discipline is not what the benchmark compares. */
	int one = 1;
	setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	frames = malloc((unsigned long)batch * len);
	if (!frames)
		return -ENOMEM;
	memset(&addr, 0, sizeof(addr));
	addr.sll_family = AF_PACKET;
	addr.sll_ifindex = ifindex;
	addr.sll_halen = ETH_ALEN;
	memcpy(addr.sll_addr, frame, ETH_ALEN);
	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < batch; i++) {
		memcpy(frames + (unsigned long)i * len, frame, len);
		iovs[i].iov_base = frames + (unsigned long)i * len;
		iovs[i].iov_len = len;
		msgs[i].msg_hdr.msg_name = &addr;
		msgs[i].msg_hdr.msg_namelen = sizeof(addr);
		msgs[i].msg_hdr.msg_iov = &iovs[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	while (sent < count) {
		unsigned n = count - sent < batch ? (unsigned)(count - sent) : batch;
		int r;
		if (spoof_count) {
			for (i = 0; i < n; i++) {
				unsigned char *ip = frames + (unsigned long)i * len + 14;
				unsigned int source = spoof_base + (unsigned int)((*sequence + i) % spoof_count);
				unsigned short sum;
				ip[12] = source >> 24;
				ip[13] = source >> 16;
				ip[14] = source >> 8;
				ip[15] = source;
				ip[10] = ip[11] = 0;
				sum = icw_ipv4_checksum(ip, ihl / 2);
				ip[10] = sum >> 8;
				ip[11] = sum & 0xff;
			}
		}
		r = sendmmsg(fd, msgs, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == ENOBUFS || errno == EAGAIN)
				break;
			r = -errno;
			free(frames);
			return sent ? (long)sent : r;
		}
		sent += (unsigned)r;
		*sequence += (unsigned)r;
		if ((unsigned)r < n)
			break;
	}
	free(frames);
	return (long)sent;
}

int icw_rename_exchange(const char *a, const char *b)
{
	return renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0 ? 0 : -errno;
}

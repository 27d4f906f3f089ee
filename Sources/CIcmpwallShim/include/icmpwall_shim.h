#ifndef ICMPWALL_SHIM_H
#define ICMPWALL_SHIM_H

/* The one ABI definition lives beside the BPF code; Swift sees it through this module. */
#include "../../../bpf/include/icmpwall_abi.h"

/* setns(2) for network namespaces (Glibc's Swift overlay lacks _GNU_SOURCE). Returns 0 or -errno. */
int icw_setns_net(int fd);

/* Line-buffers stdout (Swift 6 cannot touch the `stdout` global): progress shows through pipes. */
void icw_line_buffer_stdout(void);

/* Pins the calling thread to one CPU (CPU_SET is a macro Swift cannot call). 0 or -errno. */
int icw_pin_thread_to_cpu(int cpu);

/* The calling thread's kernel thread id (setns affects only the calling thread). */
int icw_gettid(void);

/* Raw Ethernet I/O on one interface (AF_PACKET), for the lab and end-to-end tests: crafted frames
 * go out exactly as built, and a receiver sees what got past XDP. Return -errno on failure. */
int icw_packet_open(int ifindex, int receive);
int icw_packet_send(int fd, int ifindex, const void *frame, unsigned long len);
/* Receives one frame, waiting at most timeout_ms; 0 on timeout. Only frames arriving on the interface. */
long icw_packet_recv(int fd, void *buf, unsigned long cap, int timeout_ms);

/* A frame flood through an AF_PACKET socket (qdisc bypassed, sendmmsg in batches of up to 256), for benchmarks
 * on kernels that refuse BPF_F_TEST_XDP_LIVE_FRAMES: sends `count` copies of `frame` (Ethernet + IPv4, no VLAN,
 * at most 2048 bytes) on `fd` (icw_packet_open) out of `ifindex`. With spoof_count > 0, frame k (counting on
 * from *sequence) gets the IPv4 source spoof_base + (k mod spoof_count) and a fixed header checksum, like the
 * live-frames sender. Returns the frames sent (a full socket buffer ends a batch early) or -errno. */
long icw_packet_flood(int fd, int ifindex, const void *frame, unsigned long len, unsigned long count, unsigned batch,
		      unsigned int spoof_base, unsigned int spoof_count, unsigned long long *sequence);

/* Swaps two paths atomically (renameat2 RENAME_EXCHANGE): an upgrade replaces a whole pin folder with no moment
 * where neither exists. 0 or -errno (EINVAL where the file system cannot exchange). */
int icw_rename_exchange(const char *a, const char *b);

#endif

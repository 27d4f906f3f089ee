#ifndef ICMPWALL_SHIM_H
#define ICMPWALL_SHIM_H

/* The one ABI definition lives beside the BPF code; Swift sees it through this module. */
#include "../../../bpf/include/icmpwall_abi.h"

/* setns(2) for network namespaces (Glibc's Swift overlay lacks _GNU_SOURCE). Returns 0 or -errno. */
int icw_setns_net(int fd);

/* The calling thread's kernel thread id (setns affects only the calling thread). */
int icw_gettid(void);

#endif

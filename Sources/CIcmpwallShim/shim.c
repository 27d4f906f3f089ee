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

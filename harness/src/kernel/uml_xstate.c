/*
 * uml_xstate: an LD_PRELOAD shim that lets Debian's linux.uml (Linux 6.1) run on hosts whose
 * XSAVE area is larger than the one UML knows (AVX-512, AMX).
 *
 * Why: UML saves and restores its guest processes' FPU state through
 * ptrace(PTRACE_GETREGSET/PTRACE_SETREGSET, NT_X86_XSTATE) with a buffer sized for x87, SSE and
 * AVX only (832 bytes; arch/x86/um/os-Linux/registers.c, FP_SIZE). A GETREGSET with a short
 * buffer is truncated and succeeds, but the host refuses any SETREGSET that is not exactly its
 * whole XSAVE area (arch/x86/kernel/fpu/regset.c, xstateregs_set: EFAULT), so on such a host
 * the guest's init dies at once: "userspace - ptrace set fp regs failed, errno = 14". Upstream
 * UML sizes the buffer from the host since Linux 6.13; the 6.1 kernel Debian ships does not.
 *
 * What: for those two requests only, the shim keeps a whole host-sized area beside each buffer
 * UML passes (keyed by its address: UML uses one buffer per guest thread, in its
 * thread_struct). A GETREGSET reads the whole area and hands UML the part it asked for; a
 * SETREGSET lays UML's part over the whole area last read for that buffer and writes it all.
 * So the state UML does not know about (the upper halves and extra registers of AVX-512, AMX)
 * is kept per guest thread exactly as the host's process had it, instead of being lost or
 * leaked between threads. Every other call, and every call on a host whose area is no larger
 * than UML's buffer, goes straight to glibc's ptrace.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

/* The host's whole XSAVE area for ptrace; generous upper bound for the first read. */
#define MAX_AREA (64 * 1024)

struct area {
	void *key;   /* the buffer UML passed */
	size_t size; /* bytes of `whole` the host filled */
	unsigned char *whole;
};

static struct area *areas;
static size_t n_areas, cap_areas;

static ptrace_fn real_ptrace(void)
{
	static ptrace_fn real;
	if (!real)
		real = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
	return real;
}

static struct area *area_of(void *key)
{
	for (size_t i = 0; i < n_areas; i++)
		if (areas[i].key == key)
			return &areas[i];
	if (n_areas == cap_areas) {
		size_t cap = cap_areas ? 2 * cap_areas : 64;
		struct area *grown = realloc(areas, cap * sizeof *areas);
		if (!grown)
			return NULL;
		areas = grown;
		cap_areas = cap;
	}
	unsigned char *whole = malloc(MAX_AREA);
	if (!whole)
		return NULL;
	areas[n_areas] = (struct area){ .key = key, .size = 0, .whole = whole };
	return &areas[n_areas++];
}

/* Reads pid's whole XSAVE area into `a`; the host says its size in iov_len. */
static long read_whole(pid_t pid, struct area *a)
{
	struct iovec iov = { .iov_base = a->whole, .iov_len = MAX_AREA };
	long r = real_ptrace()(PTRACE_GETREGSET, pid, (void *)(long)NT_X86_XSTATE, &iov);
	if (r == 0)
		a->size = iov.iov_len;
	return r;
}

long ptrace(enum __ptrace_request request, ...)
{
	va_list ap;
	va_start(ap, request);
	pid_t pid = va_arg(ap, pid_t);
	void *addr = va_arg(ap, void *);
	void *data = va_arg(ap, void *);
	va_end(ap);

	int xstate = (request == PTRACE_GETREGSET || request == PTRACE_SETREGSET) &&
		     (long)addr == NT_X86_XSTATE && data;
	if (!xstate)
		return real_ptrace()(request, pid, addr, data);

	struct iovec *uml = data;
	struct area *a = area_of(uml->iov_base);
	if (!a)
		return real_ptrace()(request, pid, addr, data);
	if (request == PTRACE_GETREGSET) {
		long r = read_whole(pid, a);
		if (r != 0)
			return r;
		if (uml->iov_len > a->size)
			uml->iov_len = a->size;
		memcpy(uml->iov_base, a->whole, uml->iov_len);
		return 0;
	}
	/* SETREGSET: a buffer never read yet (a forked thread's copy) starts from pid's state. */
	if (a->size == 0 && read_whole(pid, a) != 0)
		return real_ptrace()(request, pid, addr, data);
	if (uml->iov_len >= a->size)
		return real_ptrace()(request, pid, addr, data);
	memcpy(a->whole, uml->iov_base, uml->iov_len);
	struct iovec whole = { .iov_base = a->whole, .iov_len = a->size };
	return real_ptrace()(request, pid, addr, &whole);
}

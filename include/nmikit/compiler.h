/*
 * Compiler and memory-model helpers shared by the portable core: alignment,
 * attributes, and the few atomic idioms (statistics counters, a running
 * maximum) that several core files use.  Freestanding C11 only.
 */
#ifndef NMIKIT_COMPILER_H
#define NMIKIT_COMPILER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NK_CACHELINE		64
#define NK_CACHE_ALIGNED	__attribute__((aligned(NK_CACHELINE)))
#define NK_UNUSED		__attribute__((unused))
#define NK_PRINTF(fmt, args)	__attribute__((format(printf, fmt, args)))
#define NK_LIKELY(x)		__builtin_expect(!!(x), 1)
#define NK_UNLIKELY(x)		__builtin_expect(!!(x), 0)
#define NK_ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

/* Stops the compiler from moving memory accesses across this point. */
#define nk_barrier()		__asm__ __volatile__("" ::: "memory")

/*
 * Per-CPU statistics counter increment.
 *
 * NMI-safe: yes.  No LOCK prefix, so it costs what an ordinary increment
 * costs.  Correct only for a counter that a single CPU writes.  On x86-64
 * it is one `addq $1, mem`: an interrupt or NMI lands before or after the
 * whole instruction, so even an increment nested on the same CPU is never
 * lost.  Elsewhere it is a relaxed load and store, and a nested increment of
 * the same counter could land between them.  Other CPUs may read the counter
 * at any time and see the old or the new value, never a torn one (an aligned
 * 8-byte store is single-copy atomic).
 */
static inline void nk_stat_inc(_Atomic uint64_t *c)
{
#if defined(__GNUC__) && defined(__x86_64__)
	__asm__ volatile("addq $1, %0" : "+m"(*(volatile uint64_t *)c));
#else
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
#endif
}

/*
 * Counter increment for a counter written from several contexts or CPUs.
 * NMI-safe: yes (a single atomic read-modify-write, wait-free on x86).
 */
static inline void nk_atomic_inc(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static inline uint64_t nk_stat_read(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/*
 * Raise *p to v if v is larger; returns true when this call raised it.
 *
 * NMI-safe: yes.  Lock-free: every failed compare-exchange means another CPU
 * stored a different value; the loop ends as soon as *p >= v, so it retries at
 * most once per concurrent writer that raised the value.
 */
static inline bool nk_atomic_max_u64(_Atomic uint64_t *p, uint64_t v)
{
	uint64_t cur = atomic_load_explicit(p, memory_order_relaxed);

	while (cur < v) {
		if (atomic_compare_exchange_weak_explicit(p, &cur, v,
							  memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	}
	return false;
}

#endif

/*
 * bench_stub.S: two tiny pieces of code for the NMI benchmarks
 * (kernel/bench_nmi.c, docs/performance.md).
 *
 * bench_stub_nmi: an NMI gate that does nothing but set a flag and IRETQ.
 * stub_self_nmi loads it into a private copy of the IDT on the measuring CPU
 * only; the round trip through it is the floor any NMI handling adds to.
 *
 * bench_iret_to_self: IRETQ to the instruction after it, on the same stack.
 * Called from an NMI handler it unblocks NMIs exactly as the IRET that ends
 * an exception would, so an NMI already latched arrives right there, nested,
 * and goes through the entry's nested path and repeat_nmi
 * (nested_nmi_repeat).
 */
	.data
	.globl	bench_stub_flag
	.balign	4
bench_stub_flag:
	.long	0

	.text
	.code64

	.globl	bench_stub_nmi
	.balign	16
bench_stub_nmi:
	movl	$1, bench_stub_flag(%rip)
	iretq

/* void bench_iret_to_self(void): clobbers %rax and %rcx; RFLAGS as it was. */
	.globl	bench_iret_to_self
	.balign	16
bench_iret_to_self:
	movq	%rsp, %rax		/* RSP to return to: our return address on top */
	movl	%ss, %ecx
	pushq	%rcx
	pushq	%rax
	pushfq
	movl	%cs, %ecx
	pushq	%rcx
	leaq	1f(%rip), %rcx
	pushq	%rcx
	iretq
1:	ret

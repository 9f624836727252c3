/* The KVM probe's boot sector (kvm.rs BOOT_SECTOR holds its bytes; a unit test assembles
 * this file and compares). Real mode -> 32-bit protected mode without paging -> a software
 * interrupt whose handler returns with iret -> QEMU's isa-debug-exit port. Nested PVM hosts
 * run real-mode code but fail on exactly this (SeaBIOS takes interrupts in 32-bit mode, and
 * its iret stops the guest with "KVM internal error"), so booting this is the test.
 *
 *   as --32 -o probe.o probe.S && ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o probe.bin probe.o
 */
.code16
.globl _start
_start:
    cli
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl gdt_desc
    movl %cr0, %eax
    orb $1, %al
    movl %eax, %cr0
    ljmpl $0x08, $pm
.code32
pm:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %ss
    movl $0x7000, %esp
    lidtl idt_desc
    int $0x20
    movb $0x31, %al
    outb %al, $0xf4
1:  hlt
    jmp 1b
handler:
    iretl
.balign 8
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
gdt_desc:
    .word 23
    .long gdt
idt_entry:
    .word handler
    .word 0x08
    .byte 0
    .byte 0x8e
    .word 0
idt_desc:
    .word 0x20*8+7
    .long idt_entry - 0x20*8
.org 510
    .byte 0x55, 0xaa

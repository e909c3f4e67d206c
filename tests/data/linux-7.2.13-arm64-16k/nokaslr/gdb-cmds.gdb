set pagination off
set confirm off
set width 0
set architecture aarch64
file vmlinux
kdump-init vmlinux gdb-dumps.jsonl
kdump-relocate vmlinux 0xffffc00080000000
target remote 127.0.0.1:PORT
kdump-at el1-abort.full.elf el1_abort kernel_fault_in_syscall 5000 120.0
kdump-at irq-in-fault.full.elf sched_tick irq_in_fault 20000 240.0
detach

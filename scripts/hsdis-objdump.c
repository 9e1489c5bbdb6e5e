/*
 * A minimal hsdis for reading what C2 makes of a kernel, without building binutils: HotSpot hands each
 * code region to decode_instructions_virtual, which writes it to a file and lets objdump disassemble it.
 * Development aid only (no symbols or block comments in the listing; one objdump process per region).
 *
 *   gcc -O2 -shared -fPIC -o /tmp/hsdis/hsdis-amd64.so scripts/hsdis-objdump.c
 *   LD_LIBRARY_PATH=/tmp/hsdis java -XX:+UnlockDiagnosticVMOptions \
 *       -XX:CompileCommand=print,dev.exeunt.tensor.cpu.CpuQuant::tokensQ8_0TwoRows ...
 */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

void *decode_instructions_virtual(uintptr_t start_va, uintptr_t end_va, unsigned char *buffer, uintptr_t length,
                                  void *(*event_callback)(void *, const char *, void *), void *event_stream,
                                  int (*printf_callback)(void *, const char *, ...), void *printf_stream,
                                  const char *options, int newline) {
    char path[64], cmd[256], line[512];
    snprintf(path, sizeof path, "/tmp/hsdis-%d.bin", (int) getpid());
    FILE *f = fopen(path, "wb");
    if (f == NULL) return (void *) start_va;
    size_t written = fwrite(buffer, 1, length, f);
    fclose(f);
    if (written != length) return (void *) start_va;
    snprintf(cmd, sizeof cmd, "objdump -D -b binary -m i386:x86-64 --adjust-vma=0x%lx %s | tail -n +8",
             (unsigned long) start_va, path);
    FILE *p = popen(cmd, "r");
    if (p == NULL) return (void *) start_va;
    while (fgets(line, sizeof line, p)) printf_callback(printf_stream, "%s", line);
    pclose(p);
    unlink(path);
    return (void *) end_va;
}

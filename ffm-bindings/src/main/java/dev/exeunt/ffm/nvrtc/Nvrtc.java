package dev.exeunt.ffm.nvrtc;

import dev.exeunt.ffm.loader.NativeLibraries;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/** Checked calls over {@link nvrtc_h}: compile CUDA C++ source to PTX and (for a real {@code sm_XY} target) CUBIN. */
public final class Nvrtc {
    private Nvrtc() {
    }

    public static final String LIBRARY = "nvrtc";

    /** Whether libnvrtc can be opened. Never throws. */
    public static boolean isAvailable() {
        return unavailableReason() == null;
    }

    /** Why NVRTC cannot be used, or null. Never throws. */
    public static String unavailableReason() {
        return NativeLibraries.unavailableReason(LIBRARY);
    }

    /** Throws {@link NvrtcException} with nvrtcGetErrorString's text unless {@code status == NVRTC_SUCCESS}. */
    public static void check(int status, String call) {
        if (status != nvrtc_h.NVRTC_SUCCESS()) {
            throw new NvrtcException(call, status, errorString(status), null);
        }
    }

    /** nvrtcGetErrorString; never throws. */
    public static String errorString(int status) {
        try {
            MemorySegment p = nvrtc_h.nvrtcGetErrorString(status);
            return p.equals(MemorySegment.NULL) ? "nvrtcResult " + status : p.reinterpret(Long.MAX_VALUE).getString(0);
        } catch (RuntimeException | LinkageError e) {
            return "nvrtcResult " + status;
        }
    }

    /** {major, minor} of NVRTC, e.g. {12, 4}. */
    public static int[] version() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment major = arena.allocate(ValueLayout.JAVA_INT);
            MemorySegment minor = arena.allocate(ValueLayout.JAVA_INT);
            check(nvrtc_h.nvrtcVersion(major, minor), "nvrtcVersion");
            return new int[] {major.get(ValueLayout.JAVA_INT, 0), minor.get(ValueLayout.JAVA_INT, 0)};
        }
    }

    /** The real architectures this NVRTC can target, e.g. {50, 52, ..., 90}. */
    public static int[] supportedArchitectures() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment n = arena.allocate(ValueLayout.JAVA_INT);
            check(nvrtc_h.nvrtcGetNumSupportedArchs(n), "nvrtcGetNumSupportedArchs");
            int count = n.get(ValueLayout.JAVA_INT, 0);
            MemorySegment archs = arena.allocate(ValueLayout.JAVA_INT, Math.max(1, count));
            check(nvrtc_h.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs");
            return Arrays.copyOf(archs.toArray(ValueLayout.JAVA_INT), count);
        }
    }

    /**
     * A compiled program. {@code ptx} is NUL-terminated (as cuModuleLoadData wants), empty when NVRTC did not keep PTX;
     * {@code cubin} is empty unless the target was a real architecture ({@code -arch=sm_XY}).
     */
    public record Program(String log, byte[] ptx, byte[] cubin) {
        /** The PTX as text, without the trailing NUL. */
        public String ptxText() {
            int n = ptx.length > 0 && ptx[ptx.length - 1] == 0 ? ptx.length - 1 : ptx.length;
            return new String(ptx, 0, n, StandardCharsets.UTF_8);
        }

        /** The CUBIN when there is one, else the PTX: what the driver's cuModuleLoadData should get. */
        public byte[] image() {
            return cubin.length > 0 ? cubin : ptx;
        }
    }

    /**
     * Compiles {@code source} (named {@code name} in diagnostics) with NVRTC options such as
     * {@code "--gpu-architecture=sm_90"}, {@code "-default-device"}, {@code "--std=c++17"}.
     *
     * @throws NvrtcException with the compile log when compilation fails
     */
    public static Program compile(String source, String name, String... options) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment progSlot = arena.allocate(ValueLayout.ADDRESS);
            check(nvrtc_h.nvrtcCreateProgram(progSlot, arena.allocateFrom(source), arena.allocateFrom(name), 0,
                    MemorySegment.NULL, MemorySegment.NULL), "nvrtcCreateProgram");
            MemorySegment prog = progSlot.get(ValueLayout.ADDRESS, 0);
            try {
                MemorySegment opts = arena.allocate(ValueLayout.ADDRESS, Math.max(1, options.length));
                for (int i = 0; i < options.length; i++) {
                    opts.setAtIndex(ValueLayout.ADDRESS, i, arena.allocateFrom(options[i]));
                }
                int status = nvrtc_h.nvrtcCompileProgram(prog, options.length, opts);
                String log = programLog(prog, arena);
                if (status != nvrtc_h.NVRTC_SUCCESS()) {
                    throw new NvrtcException("nvrtcCompileProgram(" + name + ")", status, errorString(status), log);
                }
                byte[] ptx = output(prog, arena, true);
                byte[] cubin = output(prog, arena, false);
                return new Program(log, ptx, cubin);
            } finally {
                nvrtc_h.nvrtcDestroyProgram(progSlot);
            }
        }
    }

    private static String programLog(MemorySegment prog, Arena arena) {
        MemorySegment size = arena.allocate(ValueLayout.JAVA_LONG);
        if (nvrtc_h.nvrtcGetProgramLogSize(prog, size) != 0) {
            return "";
        }
        long n = size.get(ValueLayout.JAVA_LONG, 0);
        if (n <= 1) {
            return "";
        }
        MemorySegment buf = arena.allocate(n);
        if (nvrtc_h.nvrtcGetProgramLog(prog, buf) != 0) {
            return "";
        }
        return buf.getString(0);
    }

    private static byte[] output(MemorySegment prog, Arena arena, boolean ptx) {
        MemorySegment size = arena.allocate(ValueLayout.JAVA_LONG);
        int status = ptx ? nvrtc_h.nvrtcGetPTXSize(prog, size) : nvrtc_h.nvrtcGetCUBINSize(prog, size);
        if (status != 0) {
            return new byte[0];
        }
        long n = size.get(ValueLayout.JAVA_LONG, 0);
        if (n <= 0) {
            return new byte[0];
        }
        MemorySegment buf = arena.allocate(n);
        status = ptx ? nvrtc_h.nvrtcGetPTX(prog, buf) : nvrtc_h.nvrtcGetCUBIN(prog, buf);
        if (status != 0) {
            return new byte[0];
        }
        return buf.toArray(ValueLayout.JAVA_BYTE);
    }
}

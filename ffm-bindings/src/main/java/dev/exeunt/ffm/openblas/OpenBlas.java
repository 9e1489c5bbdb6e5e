package dev.exeunt.ffm.openblas;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * jextract-style binding to the few OpenBLAS entry points Exeunt uses as a reference: {@code cblas_sgemm},
 * {@code cblas_sgemv}, {@code openblas_set_num_threads} and {@code openblas_get_num_threads} (32-bit
 * {@code blasint}, as Debian's libopenblas0 builds it).
 *
 * <p>The library is looked for, in order, at {@code -Dexeunt.openblas.path}, in every {@code LD_LIBRARY_PATH}
 * directory, at the usual Debian/Ubuntu and Fedora places, and finally by name through the dynamic loader. It is
 * optional: {@link #isAvailable()} says whether it was found and {@link #unavailableReason()} where it looked.
 */
public final class OpenBlas {
    public static final int CblasRowMajor = 101;
    public static final int CblasColMajor = 102;
    public static final int CblasNoTrans = 111;
    public static final int CblasTrans = 112;

    private static final MethodHandle SGEMM;
    private static final MethodHandle SGEMV;
    private static final MethodHandle SET_NUM_THREADS;
    private static final MethodHandle GET_NUM_THREADS;
    private static final MethodHandle GET_CORENAME;
    private static final String LIBRARY;
    private static final String UNAVAILABLE;

    static {
        MethodHandle sgemm = null, sgemv = null, setThreads = null, getThreads = null, corename = null;
        String lib = null, why = null;
        List<String> tried = new ArrayList<>();
        SymbolLookup lookup = null;
        for (String candidate : candidates()) {
            try {
                if (candidate.contains("/")) {
                    if (!Files.exists(Path.of(candidate))) {
                        tried.add(candidate + " (missing)");
                        continue;
                    }
                    lookup = SymbolLookup.libraryLookup(Path.of(candidate), Arena.global());
                } else {
                    lookup = SymbolLookup.libraryLookup(candidate, Arena.global());
                }
                lib = candidate;
                break;
            } catch (IllegalArgumentException | UnsatisfiedLinkError e) {
                tried.add(candidate + " (" + e.getMessage() + ")");
            }
        }
        if (lookup == null) {
            why = "libopenblas.so.0 not found; tried " + String.join(", ", tried)
                    + " (install libopenblas0-pthread or set -Dexeunt.openblas.path)";
        } else {
            try {
                Linker linker = Linker.nativeLinker();
                sgemm = linker.downcallHandle(find(lookup, "cblas_sgemm"), FunctionDescriptor.ofVoid(
                        JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_FLOAT,
                        ADDRESS, JAVA_INT, ADDRESS, JAVA_INT, JAVA_FLOAT, ADDRESS, JAVA_INT));
                sgemv = linker.downcallHandle(find(lookup, "cblas_sgemv"), FunctionDescriptor.ofVoid(
                        JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_FLOAT, ADDRESS, JAVA_INT,
                        ADDRESS, JAVA_INT, JAVA_FLOAT, ADDRESS, JAVA_INT));
                setThreads = linker.downcallHandle(find(lookup, "openblas_set_num_threads"), FunctionDescriptor.ofVoid(JAVA_INT));
                getThreads = linker.downcallHandle(find(lookup, "openblas_get_num_threads"), FunctionDescriptor.of(JAVA_INT));
                var name = lookup.find("openblas_get_corename"); // optional: older builds lack it
                if (name.isPresent()) corename = linker.downcallHandle(name.get(), FunctionDescriptor.of(ADDRESS));
            } catch (RuntimeException e) {
                why = lib + " loaded but unusable: " + e.getMessage();
                sgemm = sgemv = setThreads = getThreads = corename = null;
            }
        }
        SGEMM = sgemm;
        SGEMV = sgemv;
        SET_NUM_THREADS = setThreads;
        GET_NUM_THREADS = getThreads;
        GET_CORENAME = corename;
        LIBRARY = why == null ? lib : null;
        UNAVAILABLE = why;
    }

    private OpenBlas() {}

    private static MemorySegment find(SymbolLookup lookup, String name) {
        return lookup.find(name).orElseThrow(() -> new IllegalStateException("symbol " + name + " missing"));
    }

    private static Set<String> candidates() {
        Set<String> c = new LinkedHashSet<>();
        String prop = System.getProperty("exeunt.openblas.path");
        if (prop != null && !prop.isBlank()) c.add(prop.trim());
        String ld = System.getenv("LD_LIBRARY_PATH");
        if (ld != null)
            for (String dir : ld.split(":"))
                if (!dir.isBlank()) {
                    c.add(Path.of(dir, "libopenblas.so.0").toString());
                    c.add(Path.of(dir, "libopenblas.so").toString());
                }
        c.add("/usr/lib/x86_64-linux-gnu/libopenblas.so.0");
        c.add("/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0");
        c.add("/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0");
        c.add("/usr/lib/aarch64-linux-gnu/libopenblas.so.0");
        c.add("/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0");
        c.add("/usr/lib64/libopenblas.so.0");
        c.add("/usr/lib/libopenblas.so.0");
        c.add("/usr/local/lib/libopenblas.so.0");
        c.add("libopenblas.so.0");
        return c;
    }

    /** Whether the library and all bound symbols were found. */
    public static boolean isAvailable() {
        return UNAVAILABLE == null;
    }

    /** Null when available; otherwise why not, naming every place looked at. */
    public static String unavailableReason() {
        return UNAVAILABLE;
    }

    /** The path (or name) the library was loaded from, or null. */
    public static String libraryPath() {
        return LIBRARY;
    }

    private static void require() {
        if (UNAVAILABLE != null) throw new IllegalStateException("OpenBLAS unavailable: " + UNAVAILABLE);
    }

    /** Raw {@code cblas_sgemm}: pointers are the segments' base addresses. */
    public static void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha,
                                   MemorySegment a, int lda, MemorySegment b, int ldb, float beta, MemorySegment c, int ldc) {
        require();
        try {
            SGEMM.invokeExact(order, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Raw {@code cblas_sgemv}. */
    public static void cblas_sgemv(int order, int trans, int m, int n, float alpha, MemorySegment a, int lda,
                                   MemorySegment x, int incX, float beta, MemorySegment y, int incY) {
        require();
        try {
            SGEMV.invokeExact(order, trans, m, n, alpha, a, lda, x, incX, beta, y, incY);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Row-major SGEMM with float-element offsets, mirroring {@code CpuGemm.sgemm}. */
    public static void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha,
                             MemorySegment a, long aOff, int lda, MemorySegment b, long bOff, int ldb,
                             float beta, MemorySegment c, long cOff, int ldc) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, m, n, k, alpha,
                a.asSlice(aOff * 4), lda, b.asSlice(bOff * 4), ldb, beta, c.asSlice(cOff * 4), ldc);
    }

    /** Row-major SGEMV with float-element offsets and unit increments, mirroring {@code CpuGemm.sgemv}. */
    public static void sgemv(boolean trans, int m, int n, float alpha, MemorySegment a, long aOff, int lda,
                             MemorySegment x, long xOff, float beta, MemorySegment y, long yOff) {
        cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, m, n, alpha, a.asSlice(aOff * 4), lda,
                x.asSlice(xOff * 4), 1, beta, y.asSlice(yOff * 4), 1);
    }

    /** {@code openblas_set_num_threads}. */
    public static void setNumThreads(int threads) {
        require();
        try {
            SET_NUM_THREADS.invokeExact(threads);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * The kernel family OpenBLAS picked for this CPU ({@code openblas_get_corename}, e.g. "SkylakeX", "Haswell"), or
     * null when the build does not say. A CPU newer than the build gets a generic family ("Prescott"), unless
     * {@code OPENBLAS_CORETYPE} names one before the library loads.
     */
    public static String coreName() {
        require();
        if (GET_CORENAME == null) return null;
        try {
            MemorySegment p = (MemorySegment) GET_CORENAME.invokeExact();
            return p.equals(MemorySegment.NULL) ? null : p.reinterpret(256).getString(0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** {@code openblas_get_num_threads}. */
    public static int getNumThreads() {
        require();
        try {
            return (int) GET_NUM_THREADS.invokeExact();
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new RuntimeException(t);
    }
}

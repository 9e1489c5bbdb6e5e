package dev.exeunt.tensor.cuda;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.exeunt.tensor.Backend;
import dev.exeunt.tensor.Shape;
import dev.exeunt.tensor.TensorAllocationException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The CUDA backend's pure-Java parts: everything here runs without a GPU. */
class CudaPureJavaTest {

    // ---------------------------------------------------------------- GEMM mapping

    /** Naive row-major reference: C[i] = alpha op(A[i]) op(B[i]) + beta C[i]. */
    static void rowMajorGemm(boolean ta, boolean tb, int m, int n, int k, float alpha, float[] a, int aOff, int lda, long sa,
                             float[] b, int bOff, int ldb, long sb, float beta, float[] c, int cOff, int ldc, long sc, int batch) {
        for (int p = 0; p < batch; p++) {
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int l = 0; l < k; l++) {
                        float av = ta ? a[(int) (aOff + p * sa + (long) l * lda + i)] : a[(int) (aOff + p * sa + (long) i * lda + l)];
                        float bv = tb ? b[(int) (bOff + p * sb + (long) j * ldb + l)] : b[(int) (bOff + p * sb + (long) l * ldb + j)];
                        s += av * bv;
                    }
                    int ci = (int) (cOff + p * sc + (long) i * ldc + j);
                    c[ci] = (float) (alpha * s + (beta == 0 ? 0 : beta * c[ci]));
                }
            }
        }
    }

    /** Naive column-major (BLAS) reference: element (r, c) of a column-major matrix is at r + c * ld. */
    static void colMajorGemm(boolean ta, boolean tb, int m, int n, int k, float alpha, float[] a, int aOff, int lda, long sa,
                             float[] b, int bOff, int ldb, long sb, float beta, float[] c, int cOff, int ldc, long sc, int batch) {
        for (int p = 0; p < batch; p++) {
            for (int i = 0; i < m; i++) {
                for (int j = 0; j < n; j++) {
                    double s = 0;
                    for (int l = 0; l < k; l++) {
                        float av = ta ? a[(int) (aOff + p * sa + l + (long) i * lda)] : a[(int) (aOff + p * sa + i + (long) l * lda)];
                        float bv = tb ? b[(int) (bOff + p * sb + j + (long) l * ldb)] : b[(int) (bOff + p * sb + l + (long) j * ldb)];
                        s += av * bv;
                    }
                    int ci = (int) (cOff + p * sc + i + (long) j * ldc);
                    c[ci] = (float) (alpha * s + (beta == 0 ? 0 : beta * c[ci]));
                }
            }
        }
    }

    @Test
    void rowMajorGemmMapsToColumnMajorCublas() {
        Random rnd = new Random(7);
        for (int trial = 0; trial < 200; trial++) {
            boolean ta = rnd.nextBoolean(), tb = rnd.nextBoolean();
            int m = 1 + rnd.nextInt(6), n = 1 + rnd.nextInt(6), k = 1 + rnd.nextInt(6), batch = 1 + rnd.nextInt(3);
            int lda = (ta ? m : k) + rnd.nextInt(3), ldb = (tb ? k : n) + rnd.nextInt(3), ldc = n + rnd.nextInt(3);
            int aRows = ta ? k : m, bRows = tb ? n : k;
            long sa = rnd.nextInt(4) == 0 ? 0 : (long) aRows * lda + rnd.nextInt(3);
            long sb = rnd.nextInt(4) == 0 ? 0 : (long) bRows * ldb + rnd.nextInt(3);
            long sc = (long) m * ldc + rnd.nextInt(3);
            int aOff = rnd.nextInt(3), bOff = rnd.nextInt(3), cOff = rnd.nextInt(3);
            float alpha = rnd.nextBoolean() ? 1f : 0.5f + rnd.nextFloat(), beta = rnd.nextBoolean() ? 0f : rnd.nextFloat();
            float[] a = random(rnd, (int) (aOff + sa * batch + (long) aRows * lda + 8));
            float[] b = random(rnd, (int) (bOff + sb * batch + (long) bRows * ldb + 8));
            float[] c0 = random(rnd, (int) (cOff + sc * batch + 8));
            float[] want = c0.clone(), got = c0.clone();
            rowMajorGemm(ta, tb, m, n, k, alpha, a, aOff, lda, sa, b, bOff, ldb, sb, beta, want, cOff, ldc, sc, batch);

            GemmMapping g = GemmMapping.fromRowMajor(ta, tb, m, n, k, lda, sa, ldb, sb, ldc, sc);
            assertEquals(GemmMapping.Operand.ROW_MAJOR_B, g.a());
            assertEquals(GemmMapping.Operand.ROW_MAJOR_A, g.b());
            colMajorGemm(g.transA(), g.transB(), g.m(), g.n(), g.k(), alpha, b, bOff, g.lda(), g.strideA(),
                    a, aOff, g.ldb(), g.strideB(), beta, got, cOff, g.ldc(), g.strideC(), batch);
            assertArrayEquals(want, got, 1e-5f, "trial " + trial);
        }
    }

    @Test
    void leadingDimsOfSingleColumnOperandsAreRaisedOthersRejected() {
        // y = x W^T for one token: A [1, k] with lda 0 is fine (never steps); cuBLAS still wants ld >= rows
        GemmMapping g = GemmMapping.fromRowMajor(false, true, 1, 4, 3, 0, 0, 3, 0, 4, 0);
        assertEquals(3, g.ldb());
        assertThrows(IllegalArgumentException.class, () -> GemmMapping.fromRowMajor(false, false, 2, 4, 3, 3, 0, 2, 0, 4, 0));
        assertEquals(5, GemmMapping.fixLd(5, 3, 7));
    }

    static float[] random(Random r, int n) {
        float[] f = new float[n];
        for (int i = 0; i < n; i++) f[i] = r.nextFloat() * 2 - 1;
        return f;
    }

    // ---------------------------------------------------------------- allocator

    static final class FakeBacking implements CudaAllocator.Backing {
        long capacity, used, next = 0x1000;
        final java.util.Map<Long, Long> live = new java.util.HashMap<>();
        int syncs;

        FakeBacking(long capacity) {
            this.capacity = capacity;
        }

        @Override
        public long tryAllocate(long bytes) {
            if (used + bytes > capacity) return 0;
            used += bytes;
            long p = next;
            next += bytes + 256;
            live.put(p, bytes);
            return p;
        }

        @Override
        public void free(long ptr) {
            Long b = live.remove(ptr);
            if (b == null) throw new AssertionError("double or foreign free " + ptr);
            used -= b;
        }

        @Override
        public String describe() {
            return "fake: " + (capacity - used) + " free of " + capacity;
        }

        @Override
        public void synchronize() {
            syncs++;
        }
    }

    @Test
    void sizeClasses() {
        assertEquals(512, CudaAllocator.sizeClass(0));
        assertEquals(512, CudaAllocator.sizeClass(1));
        assertEquals(512, CudaAllocator.sizeClass(512));
        assertEquals(1024, CudaAllocator.sizeClass(513));
        assertEquals(1L << 20, CudaAllocator.sizeClass(1L << 20));
        assertEquals(2L << 20, CudaAllocator.sizeClass((1L << 20) + 1));
        assertEquals(4L << 20, CudaAllocator.sizeClass((2L << 20) + 1));
        for (long b = 1; b < 10_000_000; b = b * 3 + 1) {
            long c = CudaAllocator.sizeClass(b);
            assertTrue(c >= b && c % 512 == 0 && c - b < (b <= 1 << 20 ? 512 : 2 << 20), b + " -> " + c);
        }
        assertThrows(IllegalArgumentException.class, () -> CudaAllocator.sizeClass(-1));
    }

    @Test
    void freedBlocksAreReusedByClass() {
        FakeBacking fb = new FakeBacking(1L << 30);
        CudaAllocator a = new CudaAllocator(fb);
        long p1 = a.allocate(1000);
        a.free(p1, 1000);
        assertEquals(1024, a.cachedBytes());
        long p2 = a.allocate(900); // same 1024 class
        assertEquals(p1, p2);
        assertEquals(1, a.backingCalls());
        long p3 = a.allocate(3000); // other class: fresh
        assertNotEquals(p1, p3);
        assertEquals(1024 + 3072, a.inUseBytes());
        a.free(p2, 900);
        a.free(p3, 3000);
        assertEquals(0, a.inUseBytes());
        a.close();
        assertTrue(fb.live.isEmpty(), "close releases every cached block");
        assertThrows(IllegalStateException.class, () -> a.allocate(1));
    }

    @Test
    void outOfMemoryReleasesTheCacheThenFailsWithSizes() {
        FakeBacking fb = new FakeBacking(8L << 20);
        CudaAllocator a = new CudaAllocator(fb);
        long big = a.allocate(5L << 20); // class 6 MiB
        a.free(big, 5L << 20);
        long other = a.allocate(3L << 20); // class 4 MiB: needs the cached 6 MiB released first
        assertEquals(0, a.cachedBytes());
        assertEquals(1, fb.syncs, "queued work is waited for before cached blocks are freed");
        var e = assertThrows(TensorAllocationException.class, () -> a.allocate(7L << 20));
        assertTrue(e.getMessage().contains("7340032 bytes requested"), e.getMessage());
        assertTrue(e.getMessage().contains("4.0 MiB in use"), e.getMessage());
        assertTrue(e.getMessage().contains("fake:"), e.getMessage());
        a.free(other, 3L << 20);
        a.close();
        assertTrue(fb.live.isEmpty());
    }

    @Test
    void blocksFreedAfterCloseGoStraightBack() {
        FakeBacking fb = new FakeBacking(1L << 30);
        CudaAllocator a = new CudaAllocator(fb);
        long p = a.allocate(100);
        a.close();
        assertEquals(1, fb.live.size());
        a.free(p, 100);
        assertTrue(fb.live.isEmpty());
    }

    // ---------------------------------------------------------------- kernel cache and sources

    @Test
    void cacheKeysAndPaths(@TempDir Path dir) {
        KernelCache c = new KernelCache(dir);
        String[] o = CudaKernels.options("sm_90");
        String k = KernelCache.key("src", o, "[12, 4]");
        assertEquals(32, k.length());
        assertEquals(k, KernelCache.key("src", o, "[12, 4]"));
        assertNotEquals(k, KernelCache.key("src2", o, "[12, 4]"));
        assertNotEquals(k, KernelCache.key("src", CudaKernels.options("sm_80"), "[12, 4]"));
        assertNotEquals(k, KernelCache.key("src", o, "[12, 5]"));
        assertEquals(dir.resolve("rows-" + k + "-sm_90.cubin"), c.path("rows", k, "sm_90"));
        assertEquals(dir.resolve("rows-" + k + "-compute_90.ptx"), c.path("rows", k, "compute_90"));
        assertThrows(IllegalArgumentException.class, () -> c.path("../x", k, "sm_90"));
        Path p = c.path("rows", k, "sm_90");
        assertTrue(c.read(p).isEmpty());
        assertTrue(c.write(p, new byte[] {1, 2, 3}));
        assertArrayEquals(new byte[] {1, 2, 3}, c.read(p).orElseThrow());
        c.delete(p);
        assertTrue(c.read(p).isEmpty());
    }

    @Test
    void cacheDirectoryDefaultsAndProperty() {
        String old = System.getProperty("exeunt.cuda.cache");
        try {
            System.clearProperty("exeunt.cuda.cache");
            assertEquals(Path.of(System.getProperty("user.home"), ".cache", "exeunt", "cuda"), KernelCache.defaultDir());
            System.setProperty("exeunt.cuda.cache", "/tmp/somewhere");
            assertEquals(Path.of("/tmp/somewhere"), KernelCache.defaultDir());
        } finally {
            if (old == null) System.clearProperty("exeunt.cuda.cache");
            else System.setProperty("exeunt.cuda.cache", old);
        }
    }

    @Test
    void unwritableCacheIsNotFatal(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("plain-file");
        Files.writeString(file, "x");
        KernelCache c = new KernelCache(file.resolve("sub"));
        assertTrue(!c.write(c.path("rows", "k", "sm_90"), new byte[] {1}));
    }

    @Test
    void architectureChoice() {
        assertEquals("sm_90", CudaKernels.chooseArch(new int[] {9, 0}, new int[] {75, 80, 86, 89, 90}));
        assertEquals("compute_90", CudaKernels.chooseArch(new int[] {10, 0}, new int[] {75, 80, 90}));
        assertEquals("compute_80", CudaKernels.chooseArch(new int[] {8, 7}, new int[] {75, 80, 90}));
        assertThrows(IllegalStateException.class, () -> CudaKernels.chooseArch(new int[] {5, 0}, new int[] {75}));
    }

    /** Every kernel the backend launches is defined by the module it is launched from. */
    @Test
    void launchedKernelsExistInTheirModules() throws IOException {
        String backend = Files.readString(Path.of("src/main/java/dev/exeunt/tensor/cuda/CudaBackend.java"));
        Matcher mt = Pattern.compile("(?:launch|elementwise)\\((ELEMENTWISE|ROWS|ATTENTION|MISC), \"(\\w+)\"").matcher(backend);
        Set<String> launched = new HashSet<>();
        while (mt.find()) {
            var module = KernelSources.Module.valueOf(mt.group(1));
            assertTrue(KernelSources.kernelNames(KernelSources.fullSource(module)).contains(mt.group(2)),
                    mt.group(2) + " is not defined in " + module.file + ".cu");
            launched.add(mt.group(2));
        }
        // row kernels are launched through rowKernel(name, ...) from ROWS
        Matcher rk = Pattern.compile("rowKernel\\(\"(\\w+)\"").matcher(backend);
        while (rk.find()) {
            assertTrue(KernelSources.kernelNames(KernelSources.fullSource(KernelSources.Module.ROWS)).contains(rk.group(1)), rk.group(1));
            launched.add(rk.group(1));
        }
        for (String k : List.of("ew_copy4", "ew_copy2", "ew_copy1")) {
            assertTrue(KernelSources.kernelNames(KernelSources.fullSource(KernelSources.Module.ELEMENTWISE)).contains(k), k);
        }
        assertTrue(launched.size() >= 25, "found " + launched);
    }

    /** The op codes in elementwise.cu are the Java enums' ordinals. */
    @Test
    void opCodesMatchEnumOrdinals() {
        String src = KernelSources.resource("elementwise");
        for (Backend.Binary b : Backend.Binary.values()) assertTrue(src.contains("B_" + b.name() + " = " + b.ordinal()), b.name());
        for (Backend.Unary u : Backend.Unary.values()) assertTrue(src.contains("U_" + u.name() + " = " + u.ordinal()), u.name());
        String misc = KernelSources.resource("misc");
        for (var t : new dev.exeunt.tensor.DType[] {dev.exeunt.tensor.DType.F32, dev.exeunt.tensor.DType.BF16,
                dev.exeunt.tensor.DType.F16, dev.exeunt.tensor.DType.Q8_0, dev.exeunt.tensor.DType.Q4_0}) {
            assertTrue(misc.contains("W_" + t.name() + " = " + CudaBackend.weightCode(t)), t.name());
        }
    }

    /**
     * Where nvcc is on the PATH (CUDA toolkit without a GPU, like the build machine), each module is compiled to a
     * CUBIN for sm_80 and sm_90 exactly as NVRTC would get it (prelude + module); skipped otherwise.
     */
    @Test
    void kernelSourcesCompileWithNvcc(@TempDir Path dir) throws Exception {
        assumeTrue(onPath("nvcc"), "nvcc not on PATH");
        for (KernelSources.Module m : KernelSources.Module.values()) {
            Path src = dir.resolve(m.file + ".cu");
            Files.writeString(src, KernelSources.fullSource(m));
            for (String arch : List.of("sm_80", "sm_90")) {
                List<String> cmd = new ArrayList<>(List.of("nvcc", "-arch=" + arch, "-cubin", "--std=c++17", "-o",
                        dir.resolve(m.file + "-" + arch + ".cubin").toString(), src.toString()));
                Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
                String out = new String(p.getInputStream().readAllBytes());
                assertTrue(p.waitFor(300, TimeUnit.SECONDS), "nvcc timed out");
                assertEquals(0, p.exitValue(), m.file + ".cu for " + arch + ":\n" + out);
            }
        }
    }

    static boolean onPath(String exe) {
        String path = System.getenv("PATH");
        if (path == null) return false;
        for (String d : path.split(java.io.File.pathSeparator)) {
            if (Files.isExecutable(Path.of(d, exe))) return true;
        }
        return false;
    }

    // ---------------------------------------------------------------- strided descriptors and launch math

    @Test
    void collapseMergesContiguousDimsAndKeepsOffsets() {
        int[] shape = {2, 3, 4};
        long[] contiguous = Shape.contiguousStrides(shape);
        StridedDesc[] d = StridedDesc.collapse(shape, contiguous, contiguous);
        assertArrayEquals(new long[] {24}, d[0].shape());
        assertArrayEquals(new long[] {1}, d[0].strides());
        // broadcast of a [3, 1] column over [2, 3, 4] and a transposed view
        long[] bcast = {0, 1, 0};
        long[] transposed = {1, 2, 6};
        StridedDesc[] e = StridedDesc.collapse(shape, bcast, transposed, contiguous);
        Random r = new Random(1);
        for (int trial = 0; trial < 50; trial++) {
            int i0 = r.nextInt(2), i1 = r.nextInt(3), i2 = r.nextInt(4);
            long lin = (i0 * 3L + i1) * 4 + i2;
            assertEquals(i1, e[0].offsetOf(lin));
            assertEquals(i0 + 2L * i1 + 6L * i2, e[1].offsetOf(lin));
            assertEquals(lin, e[2].offsetOf(lin));
        }
        // size-1 dims vanish; an all-ones shape is one element
        assertArrayEquals(new long[] {1}, StridedDesc.collapse(new int[] {1, 1}, new long[] {5, 7})[0].shape());
        assertThrows(IllegalArgumentException.class, () -> StridedDesc.collapse(new int[] {2, 2, 2, 2, 2, 2, 2, 2, 2},
                new long[] {1, 2, 4, 8, 16, 32, 64, 128, 256}));
    }

    @Test
    void descriptorByteLayoutMatchesTheCStruct() {
        StridedDesc d = new StridedDesc(new long[] {3, 5}, new long[] {7, 0});
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocate(StridedDesc.BYTES);
            d.write(s);
            assertEquals(136, StridedDesc.BYTES);
            assertEquals(2, s.get(ValueLayout.JAVA_INT, 0));
            assertEquals(3, s.get(ValueLayout.JAVA_LONG, 8));
            assertEquals(5, s.get(ValueLayout.JAVA_LONG, 16));
            assertEquals(7, s.get(ValueLayout.JAVA_LONG, 8 + 64));
            assertEquals(0, s.get(ValueLayout.JAVA_LONG, 8 + 72));
            MemorySegment params = KernelArgs.params(arena, 3, 4L, 1.5f, 2.0, d, KernelArgs.ints(1, 2), KernelArgs.NULL_PTR);
            assertEquals(3, params.getAtIndex(ValueLayout.ADDRESS, 0).reinterpret(4).get(ValueLayout.JAVA_INT, 0));
            assertEquals(4L, params.getAtIndex(ValueLayout.ADDRESS, 1).reinterpret(8).get(ValueLayout.JAVA_LONG, 0));
            assertEquals(1.5f, params.getAtIndex(ValueLayout.ADDRESS, 2).reinterpret(4).get(ValueLayout.JAVA_FLOAT, 0));
            assertEquals(2.0, params.getAtIndex(ValueLayout.ADDRESS, 3).reinterpret(8).get(ValueLayout.JAVA_DOUBLE, 0));
            MemorySegment desc = params.getAtIndex(ValueLayout.ADDRESS, 4).reinterpret(136);
            assertEquals(0, desc.address() % 8);
            assertEquals(5, desc.get(ValueLayout.JAVA_LONG, 16));
            assertEquals(2, params.getAtIndex(ValueLayout.ADDRESS, 5).reinterpret(8).get(ValueLayout.JAVA_INT, 4));
            assertThrows(IllegalArgumentException.class, () -> KernelArgs.params(arena, (Object) null));
        }
    }

    @Test
    void launchDimensions() {
        assertEquals(1, Launch.elementwiseBlocks(0));
        assertEquals(1, Launch.elementwiseBlocks(256));
        assertEquals(2, Launch.elementwiseBlocks(257));
        assertEquals(Launch.MAX_ELEMENTWISE_BLOCKS, Launch.elementwiseBlocks(1L << 40));
        assertEquals(32, Launch.rowThreads(1));
        assertEquals(64, Launch.rowThreads(33));
        assertEquals(512, Launch.rowThreads(50_000));
        for (long c = 1; c < 5000; c += 37) {
            int t = Launch.rowThreads(c);
            assertTrue(t % 32 == 0 && t >= 32 && t <= 1024);
        }
        assertEquals(1, Launch.rowBlocks(0));
        assertEquals(Launch.MAX_ROW_BLOCKS, Launch.rowBlocks(1L << 40));
        assertEquals(2, Launch.gemvBlocksX(9));
        assertEquals(65535, Launch.gemvBlocksY(100_000));
        assertTrue(Launch.attentionForwardShared(256) < 48 * 1024, "fits the default shared-memory limit");
        assertTrue(Launch.attentionDkvShared(256) < 48 * 1024);
        assertThrows(IllegalArgumentException.class, () -> Launch.exactRows(1L << 32, "x"));
    }
}

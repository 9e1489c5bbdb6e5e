package dev.exeunt.tensor.cuda;

import dev.exeunt.ffm.cuda.CudaDriver;
import dev.exeunt.ffm.cuda.CudaException;
import dev.exeunt.ffm.nvrtc.Nvrtc;
import dev.exeunt.ffm.nvrtc.NvrtcException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.HashMap;
import java.util.Map;
import java.util.Optional;

/**
 * The kernel modules of one device: compiled from the {@code .cu} resources with NVRTC for the device's
 * architecture on first use, cached on disk ({@link KernelCache}), loaded with the driver API into the device's
 * primary context (which must be current on the calling thread).
 */
final class CudaKernels implements AutoCloseable {
    private final String arch;
    private final KernelCache cache;
    private final Map<KernelSources.Module, MemorySegment> modules = new EnumMap<>(KernelSources.Module.class);
    private final Map<String, MemorySegment> functions = new HashMap<>();

    CudaKernels(String arch, KernelCache cache) {
        this.arch = arch;
        this.cache = cache;
    }

    String arch() {
        return arch;
    }

    /**
     * {@code sm_XY} when NVRTC can target the device's architecture exactly (a CUBIN, no JIT), else
     * {@code compute_XY} of the newest supported architecture not above it (PTX, JIT-compiled by the driver).
     */
    static String chooseArch(int[] computeCapability, int[] supported) {
        int target = computeCapability[0] * 10 + computeCapability[1];
        if (Arrays.stream(supported).anyMatch(a -> a == target)) return "sm_" + target;
        int best = Arrays.stream(supported).filter(a -> a <= target).max()
                .orElseThrow(() -> new IllegalStateException("NVRTC supports none of the architectures up to sm_" + target
                        + " (supported: " + Arrays.toString(supported) + ")"));
        return "compute_" + best;
    }

    static String[] options(String arch) {
        return new String[] {"--gpu-architecture=" + arch, "--std=c++17"};
    }

    synchronized MemorySegment function(KernelSources.Module module, String name) {
        String key = module.file + "/" + name;
        MemorySegment f = functions.get(key);
        if (f == null) {
            f = CudaDriver.moduleGetFunction(module(module), name);
            functions.put(key, f);
        }
        return f;
    }

    private MemorySegment module(KernelSources.Module m) {
        MemorySegment mod = modules.get(m);
        if (mod != null) return mod;
        String source = KernelSources.fullSource(m);
        String[] opts = options(arch);
        String version = Arrays.toString(Nvrtc.version());
        Path path = cache.path(m.file, KernelCache.key(source, opts, version), arch);
        Optional<byte[]> cached = cache.read(path);
        if (cached.isPresent()) {
            try {
                mod = CudaDriver.moduleLoad(cached.get());
            } catch (CudaException e) {
                cache.delete(path); // stale or corrupt: compile again
            }
        }
        if (mod == null) {
            byte[] image = compile(m, source, opts);
            cache.write(path, image);
            mod = CudaDriver.moduleLoad(image);
        }
        modules.put(m, mod);
        return mod;
    }

    private byte[] compile(KernelSources.Module m, String source, String[] opts) {
        try {
            Nvrtc.Program p = Nvrtc.compile(source, m.file + ".cu", opts);
            byte[] image = p.image();
            if (image.length == 0) throw new IllegalStateException("NVRTC produced neither CUBIN nor PTX for " + m.file + ".cu");
            return image;
        } catch (NvrtcException e) {
            throw new IllegalStateException("compiling CUDA kernels " + m.file + ".cu for " + arch + " with NVRTC failed: "
                    + e.getMessage() + "\n--- NVRTC log ---\n" + e.log(), e);
        }
    }

    @Override
    public synchronized void close() {
        for (MemorySegment mod : modules.values()) {
            try {
                CudaDriver.moduleUnload(mod);
            } catch (RuntimeException ignored) {
                // shutting down
            }
        }
        modules.clear();
        functions.clear();
    }
}

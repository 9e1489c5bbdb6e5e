package dev.exeunt.tensor;

import dev.exeunt.tensor.cpu.CpuBackend;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Finds the backend for a device. The CPU backend is built in; others (CUDA) register themselves
 * through {@link BackendProvider} services or {@link #register}.
 */
public final class Backends {
    private static final Map<Device, Backend> BACKENDS = new ConcurrentHashMap<>();

    static {
        JvmFlags.requireVectorModule(); // before CpuBackend's kernels touch jdk.incubator.vector
        BACKENDS.put(Device.CPU, CpuBackend.INSTANCE);
    }

    private Backends() {}

    public static Backend of(Device device) {
        Backend b = BACKENDS.get(device);
        if (b != null) return b;
        synchronized (Backends.class) {
            b = BACKENDS.get(device);
            if (b != null) return b;
            for (BackendProvider p : ServiceLoader.load(BackendProvider.class)) {
                if (p.kind() == device.kind()) {
                    b = p.create(device);
                    BACKENDS.put(device, b);
                    return b;
                }
            }
        }
        throw new IllegalStateException("no backend for device " + device
                + (device.kind() == Device.Kind.CUDA ? " (the CUDA backend is not on the class path or no GPU was found)" : ""));
    }

    public static void register(Device device, Backend backend) {
        BACKENDS.put(device, backend);
    }

    /** Plug-in point for device backends. */
    public interface BackendProvider {
        Device.Kind kind();

        Backend create(Device device);
    }
}

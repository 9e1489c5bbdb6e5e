package dev.exeunt.tensor.cuda;

import dev.exeunt.tensor.Backend;
import dev.exeunt.tensor.Backends;
import dev.exeunt.tensor.Device;

/** Registers {@link CudaBackend} for {@link Device.Kind#CUDA} devices (META-INF/services). */
public final class CudaBackendProvider implements Backends.BackendProvider {
    @Override
    public Device.Kind kind() {
        return Device.Kind.CUDA;
    }

    @Override
    public Backend create(Device device) {
        return new CudaBackend(device);
    }
}

package dev.exeunt.parallel.comm;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.HostMemory;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.cuda.CudaBackend;
import java.util.function.LongToDoubleFunction;

/**
 * The collective checks' tensors, placed where the engine under test takes them: host memory for {@code local} and
 * {@code mpi}, this rank's GPU for {@code nccl}. Values are always written and read on the host (with
 * {@link TypedValues}), so every engine is checked the same way; for a GPU the tensor travels by a plain copy.
 */
final class EngineTensors {
    private EngineTensors() {}

    static Device deviceOf(ProcessGroup pg) {
        return pg instanceof NcclProcessGroup nccl ? nccl.device() : Device.CPU;
    }

    /** {@code n} elements of {@code value(i)} in {@code dtype}, on {@code pg}'s device. */
    static Tensor filled(ProcessGroup pg, DType dtype, long n, LongToDoubleFunction value) {
        Tensor host = TypedValues.filled(dtype, n, value);
        Device device = deviceOf(pg);
        if (device.equals(Device.CPU)) return host;
        try (host) {
            return host.to(device);
        }
    }

    static Tensor ints(ProcessGroup pg, int... values) {
        return filled(pg, DType.I32, values.length, i -> values[(int) i]);
    }

    /** {@code t}'s elements readable on the host: a copy of a device tensor, a view of a host one; close it after. */
    static Tensor onHost(Tensor t) {
        if (t.device().equals(Device.CPU)) return t.view(t.shape(), t.strides(), t.offset());
        return t.to(Device.CPU);
    }

    static int[] toInts(Tensor t) {
        try (Tensor h = onHost(t)) {
            return h.toIntArray();
        }
    }

    /** Tensor memory this rank's process holds: host memory, plus its GPU's for a device engine. */
    static long allocatedBytes(ProcessGroup pg) {
        Device device = deviceOf(pg);
        long host = HostMemory.allocatedBytes();
        return device.equals(Device.CPU) ? host : host + CudaBackend.of(device).allocatedBytes();
    }
}

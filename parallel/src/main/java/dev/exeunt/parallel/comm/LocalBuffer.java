package dev.exeunt.parallel.comm;

import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import java.lang.foreign.MemorySegment;

/**
 * A tensor's bytes as the local engine moves them. It holds its own view of the tensor, which retains
 * the storage, so the caller may close the tensor (or its scope) while the operation is in flight; the
 * view is closed when the operation completes.
 */
final class LocalBuffer implements AutoCloseable {
    final DType dtype;
    final long numel;
    /** Exactly the tensor's elements. */
    final MemorySegment bytes;
    private final Tensor view;

    private LocalBuffer(Tensor view) {
        this.view = view;
        this.dtype = view.dtype();
        this.numel = view.numel();
        long elementBytes = dtype.elementBytes();
        this.bytes = view.segment().asSlice(view.offset() * elementBytes, numel * elementBytes);
    }

    /** Checks {@code t} is usable by {@code op} and retains it; a bad tensor fails naming the operation and rank. */
    static LocalBuffer of(String op, int worldRank, Tensor t) {
        String where = op + " on rank " + worldRank;
        if (t == null) throw new CommException(where + ": the tensor is null");
        if (t.isClosed()) throw new CommException(where + ": the tensor is closed (" + t + ")");
        if (t.device().kind() != Device.Kind.CPU) {
            throw new CommException(where + ": the local engine moves host tensors; this one is on " + t.device());
        }
        DType d = t.dtype();
        if (d != DType.F32 && d != DType.BF16 && d != DType.F16 && d != DType.I32 && d != DType.I8) {
            throw new CommException(where + ": dtype " + d + " is not one of F32, BF16, F16, I32, I8");
        }
        if (!t.isContiguous()) throw new CommException(where + ": the tensor is not contiguous (" + t + "); call contiguous() first");
        // Outside any scope: the caller's scope must not close our reference when it closes.
        return new LocalBuffer(Scope.outside(() -> t.view(t.shape(), t.strides(), t.offset())));
    }

    String describe() {
        return dtype + " x " + numel;
    }

    /** Overwrites this buffer with {@code bytes.byteSize()} bytes of {@code src} from {@code srcOffset}. */
    void copyFrom(MemorySegment src, long srcOffset) {
        MemorySegment.copy(src, srcOffset, bytes, 0, bytes.byteSize());
    }

    @Override
    public void close() {
        view.close();
    }
}

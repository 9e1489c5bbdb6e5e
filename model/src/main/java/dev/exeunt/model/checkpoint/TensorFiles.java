package dev.exeunt.model.checkpoint;

import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.io.SafetensorsDtype;
import dev.exeunt.model.io.SafetensorsTensorInfo;
import dev.exeunt.model.io.SafetensorsWriter;
import dev.exeunt.model.io.TensorDataSource;
import dev.exeunt.model.nn.Shard;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.tensor.DType;
import dev.exeunt.tensor.Device;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import dev.exeunt.tensor.autograd.GradMode;
import dev.exeunt.tensor.ops.Ops;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Function;

/** Moves tensors between safetensors files and {@link Tensor}s. */
public final class TensorFiles {
    private TensorFiles() {}

    /** Writes named tensors as F32 (or their own BF16/F16/I32 dtype) into one safetensors file, atomically. */
    public static void save(Map<String, Tensor> tensors, Path file, Map<String, String> metadata) throws IOException {
        save(tensors, name -> null, TensorParallel.NONE, file, metadata);
    }

    /**
     * Writes the full tensors of which this tensor-parallel rank holds the shards {@code shardOf} names
     * (null or whole: the tensor is the same on every rank) into one safetensors file, as one rank holding
     * the whole model would. Every rank of {@code tp} calls it; rank 0 writes, streaming tensor by tensor:
     * each split tensor is all-gathered when its turn comes and freed once written, so no rank ever holds
     * more than one full tensor beyond its own shards.
     */
    public static void save(Map<String, Tensor> tensors, Function<String, Shard> shardOf, TensorParallel tp, Path file,
                            Map<String, String> metadata) throws IOException {
        // The writer emits tensors in name order; the other ranks join the same gathers in the same order.
        Map<String, Tensor> sorted = new TreeMap<>(tensors);
        if (tp.rank() != 0) {
            joinGathers(sorted, shardOf, tp);
            return;
        }
        List<Tensor> temps = new ArrayList<>();
        try (var g = GradMode.noGrad()) {
            var writer = new SafetensorsWriter();
            if (metadata != null) writer.metadata(metadata);
            for (var e : sorted.entrySet()) {
                Tensor t = e.getValue();
                Shard shard = shardOf.apply(e.getKey());
                if (shard != null && shard.isSplit()) {
                    addGathered(writer, e.getKey(), t, shard, tp);
                    continue;
                }
                Tensor host = t;
                if (!t.device().equals(Device.CPU) || !t.isContiguous()) {
                    host = Ops.unowned(() -> t.to(Device.CPU).contiguous());
                    temps.add(host);
                }
                long[] shape = new long[host.rank()];
                for (int i = 0; i < shape.length; i++) shape[i] = host.dim(i);
                long bytes = host.dtype().byteSize(host.numel());
                MemorySegment data = host.segment().asSlice(host.dtype().byteSize(host.offset()), bytes);
                writer.add(e.getKey(), safetensorsDtype(e.getKey(), host), shape, data);
            }
            writer.write(file);
        } finally {
            temps.forEach(Tensor::close);
        }
    }

    /**
     * Adds to {@code writer} (on tensor-parallel rank 0) the full tensor of which {@code local} is this
     * rank's {@code shard}, all-gathered when the writer reaches it; the other ranks call
     * {@link #joinGathers} with the same split tensors. The writer emits tensors in name order.
     */
    public static void addGathered(SafetensorsWriter writer, String name, Tensor local, Shard shard, TensorParallel tp) {
        long[] shape = Arrays.stream(shard.fullShape()).asLongStream().toArray();
        writer.add(name, safetensorsDtype(name, local), shape, out -> {
            try (var sc = Scope.open(); var ng = GradMode.noGrad()) {
                Tensor full = gather(local, shard, tp);
                TensorDataSource.of(full.segment().asSlice(0, full.dtype().byteSize(full.numel()))).writeTo(out);
            }
        });
    }

    /** A rank other than 0's part of a save: the gathers of the split tensors, in name order, as the writer makes them. */
    public static void joinGathers(Map<String, Tensor> tensors, Function<String, Shard> shardOf, TensorParallel tp) {
        for (var e : new TreeMap<>(tensors).entrySet()) {
            Shard shard = shardOf.apply(e.getKey());
            if (shard == null || !shard.isSplit()) continue;
            try (var sc = Scope.open(); var g = GradMode.noGrad()) {
                gather(e.getValue(), shard, tp);
            }
        }
    }

    private static SafetensorsDtype safetensorsDtype(String name, Tensor t) {
        return switch (t.dtype()) {
            case F32 -> SafetensorsDtype.F32;
            case BF16 -> SafetensorsDtype.BF16;
            case F16 -> SafetensorsDtype.F16;
            case I32 -> SafetensorsDtype.I32;
            default -> throw new IllegalArgumentException("cannot save " + t.dtype() + " tensor " + name + " to safetensors (dequantize first)");
        };
    }

    /** The full tensor of which every rank of {@code tp} holds its {@code shard}: a contiguous CPU tensor in the current scope. */
    public static Tensor gather(Tensor local, Shard shard, TensorParallel tp) {
        Tensor mine = local.to(Device.CPU).contiguous();
        long n = mine.numel();
        Tensor all = Tensor.empty(mine.dtype(), Device.CPU, Math.toIntExact(n * tp.size()));
        tp.allGather(mine.reshape(Math.toIntExact(n)), all);
        Tensor full = Tensor.empty(mine.dtype(), Device.CPU, shard.fullShape());
        for (int r = 0; r < tp.size(); r++) {
            shard.place(all.narrow(0, Math.toIntExact(r * n), Math.toIntExact(n)).reshape(shard.localShape()), r, full);
        }
        return full;
    }

    /** Reads one tensor as F32 on {@code device} (F32, F16 and BF16 on disk; I32/I64 as I32). Caller owns it. */
    public static Tensor load(SafetensorsCheckpoint ckpt, String name, Device device) throws CheckpointFormatException {
        SafetensorsTensorInfo info = ckpt.tensor(name);
        MemorySegment data = ckpt.data(name);
        int[] shape = new int[info.rank()];
        for (int i = 0; i < shape.length; i++) {
            long d = info.shape()[i];
            if (d > Integer.MAX_VALUE) {
                throw new CheckpointFormatException(ckpt.location(), "tensor " + name + " dimension " + i + " = " + d
                        + " exceeds the largest tensor dimension, " + Integer.MAX_VALUE);
            }
            shape[i] = (int) d;
        }
        DType raw = switch (info.dtype()) {
            case F32 -> DType.F32;
            case F16 -> DType.F16;
            case BF16 -> DType.BF16;
            case I32 -> DType.I32;
            default -> throw new CheckpointFormatException(ckpt.location(), "tensor " + name + " has dtype "
                    + info.dtype() + "; supported: F32, F16, BF16, I32");
        };
        return Ops.unowned(() -> {
            try (var s = Scope.open(); var g = GradMode.noGrad()) {
                Tensor onDisk = Tensor.empty(raw, shape);
                MemorySegment.copy(data, 0, onDisk.segment(), 0, raw.byteSize(onDisk.numel()));
                Tensor f = raw == DType.I32 ? onDisk : onDisk.to(DType.F32);
                Tensor out = device.equals(Device.CPU) ? f.contiguous() : f.to(device);
                return out.escape();
            }
        });
    }
}

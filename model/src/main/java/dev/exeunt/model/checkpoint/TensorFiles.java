package dev.exeunt.model.checkpoint;

import dev.exeunt.model.io.CheckpointFormatException;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.io.SafetensorsDtype;
import dev.exeunt.model.io.SafetensorsTensorInfo;
import dev.exeunt.model.io.SafetensorsWriter;
import dev.exeunt.model.io.TensorDataSource;
import dev.exeunt.model.nn.PipelineParallel;
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
import java.util.LinkedHashMap;
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
                addLocal(writer, e.getKey(), e.getValue(), shardOf.apply(e.getKey()), tp, temps);
            }
            writer.write(file);
        } finally {
            temps.forEach(Tensor::close);
        }
    }

    /** Adds a tensor this rank holds: gathered when split over tp, else its own bytes (host copies kept in {@code temps}). */
    private static void addLocal(SafetensorsWriter writer, String name, Tensor t, Shard shard, TensorParallel tp, List<Tensor> temps) {
        if (shard != null && shard.isSplit()) {
            addGathered(writer, name, t, shard, tp);
            return;
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
        writer.add(name, safetensorsDtype(name, host), shape, data);
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

    /**
     * {@link #save(Map, Function, TensorParallel, Path, Map)} over pipeline stages: each stage calls it with
     * the tensors it owns (not its copies of stage 0's), and stage 0's tensor-parallel rank 0 writes one
     * file holding every stage's tensors whole. Each other stage first sends the names and full shapes of
     * its tensors, then streams them in name order, tensor by tensor (each gathered over its tensor-parallel
     * ranks when its turn comes), which is the order the writer asks for them in; no rank holds more than
     * one full tensor beyond its own.
     */
    public static void save(Map<String, Tensor> tensors, Function<String, Shard> shardOf, TensorParallel tp, PipelineParallel pp,
                            Path file, Map<String, String> metadata) throws IOException {
        if (pp.stages() == 1) {
            save(tensors, shardOf, tp, file, metadata);
            return;
        }
        Map<String, Tensor> sorted = new TreeMap<>(tensors);
        if (pp.stage() != 0) {
            if (tp.rank() == 0) sendManifest(sorted, shardOf, pp);
            for (var e : sorted.entrySet()) {
                Shard shard = shardOf.apply(e.getKey());
                boolean split = shard != null && shard.isSplit();
                if (!split && tp.rank() != 0) continue;
                try (var sc = Scope.open(); var g = GradMode.noGrad()) {
                    Tensor full = split ? gather(e.getValue(), shard, tp) : e.getValue().to(Device.CPU).contiguous();
                    if (tp.rank() == 0) pp.send(full.dtype() == DType.F32 ? full : full.to(DType.F32), 0);
                }
            }
            return;
        }
        if (tp.rank() != 0) {
            joinGathers(sorted, shardOf, tp);
            return;
        }
        Map<String, Tensor> own = new TreeMap<>(sorted);
        Map<String, long[]> shapes = new LinkedHashMap<>();
        Map<String, Integer> owner = new LinkedHashMap<>();
        for (int st = 1; st < pp.stages(); st++) {
            for (var e : receiveManifest(pp, st).entrySet()) {
                if (own.containsKey(e.getKey()) || owner.containsKey(e.getKey())) {
                    throw new IllegalStateException("tensor " + e.getKey() + " is saved by two pipeline stages");
                }
                shapes.put(e.getKey(), e.getValue());
                owner.put(e.getKey(), st);
            }
        }
        // The writer takes every tensor in name order; a remote one is received when the writer reaches it.
        Map<String, Tensor> all = new TreeMap<>(own);
        for (String name : owner.keySet()) all.put(name, null);
        List<Tensor> temps = new ArrayList<>();
        try (var g = GradMode.noGrad()) {
            var writer = new SafetensorsWriter();
            if (metadata != null) writer.metadata(metadata);
            for (var e : all.entrySet()) {
                String name = e.getKey();
                if (e.getValue() != null) {
                    addLocal(writer, name, e.getValue(), shardOf.apply(name), tp, temps);
                    continue;
                }
                addReceived(writer, name, shapes.get(name), pp, owner.get(name));
            }
            writer.write(file);
        } finally {
            temps.forEach(Tensor::close);
        }
    }

    /**
     * Adds to {@code writer} the F32 tensor {@code name} of {@code shape} that pipeline stage {@code from}
     * streams (whole, in name order after its manifest): it is received when the writer reaches it.
     */
    public static void addReceived(SafetensorsWriter writer, String name, long[] shape, PipelineParallel pp, int from) {
        writer.add(name, SafetensorsDtype.F32, shape, out -> {
            try (var sc = Scope.open()) {
                Tensor buf = Tensor.empty(DType.F32, Device.CPU, Arrays.stream(shape).mapToInt(Math::toIntExact).toArray());
                pp.recv(buf, from);
                TensorDataSource.of(buf.segment().asSlice(0, 4L * buf.numel())).writeTo(out);
            }
        });
    }

    /**
     * Sends stage 0 the names and full shapes of a stage's tensors ({@code sorted}, in name order), as ints
     * (one per UTF-16 unit), length first: what a stage streaming its tensors to stage 0 sends before them.
     */
    public static void sendManifest(Map<String, Tensor> sorted, Function<String, Shard> shardOf, PipelineParallel pp) {
        StringBuilder sb = new StringBuilder();
        for (var e : sorted.entrySet()) {
            Shard shard = shardOf.apply(e.getKey());
            int[] shape = shard != null ? shard.fullShape() : e.getValue().shape();
            sb.append(e.getKey()).append('\t');
            for (int i = 0; i < shape.length; i++) sb.append(i > 0 ? "," : "").append(shape[i]);
            sb.append('\n');
        }
        int[] chars = sb.chars().toArray();
        try (var sc = Scope.open()) {
            pp.send(Tensor.ofInts(new int[] {chars.length}, 1), 0);
            if (chars.length > 0) pp.send(Tensor.ofInts(chars, chars.length), 0);
        }
    }

    /** The names and full shapes stage {@code from} sent with {@link #sendManifest}, in its order. */
    public static Map<String, long[]> receiveManifest(PipelineParallel pp, int from) {
        Map<String, long[]> out = new LinkedHashMap<>();
        try (var sc = Scope.open()) {
            Tensor n = Tensor.empty(DType.I32, Device.CPU, 1);
            pp.recv(n, from);
            int len = n.toIntArray()[0];
            if (len == 0) return out;
            Tensor chars = Tensor.empty(DType.I32, Device.CPU, len);
            pp.recv(chars, from);
            String text = new String(chars.toIntArray(), 0, len);
            for (String line : text.split("\n")) {
                int tab = line.indexOf('\t');
                String dims = line.substring(tab + 1);
                long[] shape = dims.isEmpty() ? new long[0] : Arrays.stream(dims.split(",")).mapToLong(Long::parseLong).toArray();
                out.put(line.substring(0, tab), shape);
            }
        }
        return out;
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

package dev.exeunt.model.tune;

import dev.exeunt.model.checkpoint.TensorFiles;
import dev.exeunt.model.io.SafetensorsCheckpoint;
import dev.exeunt.model.io.SafetensorsDtype;
import dev.exeunt.model.io.SafetensorsTensorInfo;
import dev.exeunt.model.io.SafetensorsWriter;
import dev.exeunt.model.nn.Parameters;
import dev.exeunt.model.nn.PipelineParallel;
import dev.exeunt.tensor.Tensor;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;

/**
 * The weights file of a tuned checkpoint: every tensor of the pretrained source copied byte for byte (its
 * own dtype), and every exit tensor whole. A tensor-parallel exit is gathered when the writer reaches it;
 * a later pipeline stage streams its exits to stage 0, which receives each in name order
 * ({@link TensorFiles#save(Map, java.util.function.Function, dev.exeunt.model.nn.TensorParallel, PipelineParallel, Path, Map)}'s protocol).
 */
final class TunedWeights {
    private TunedWeights() {}

    /**
     * Every rank of data-parallel rank 0 calls it, with {@code file} on the one that writes (tensor-parallel
     * rank 0 of stage 0) and null on the others, which contribute their exits.
     */
    static void save(Parameters params, Path source, Path file) throws IOException {
        Map<String, Tensor> exits = new TreeMap<>();
        params.all().forEach((name, t) -> {
            if (name.startsWith("exits.")) exits.put(name, t);
        });
        PipelineParallel pp = params.pipeline();
        if (pp.stage() != 0) {
            TensorFiles.save(exits, params::shard, params.tensorParallel(), pp, null, Map.of());
            return;
        }
        if (file == null) {
            TensorFiles.joinGathers(exits, params::shard, params.tensorParallel());
            return;
        }
        try (SafetensorsCheckpoint src = SafetensorsCheckpoint.open(source)) {
            var writer = new SafetensorsWriter();
            writer.metadata("format", "pt");
            writer.metadata("producer", "exeunt tune");
            for (var e : src.tensors().entrySet()) {
                SafetensorsTensorInfo info = e.getValue();
                writer.add(e.getKey(), info.dtype(), info.shape(), src.data(e.getKey()));
            }
            for (var e : exits.entrySet()) {
                String name = e.getKey();
                Tensor t = e.getValue();
                if (params.shard(name).isSplit()) {
                    TensorFiles.addGathered(writer, name, t, params.shard(name), params.tensorParallel());
                    continue;
                }
                long[] shape = new long[t.rank()];
                for (int i = 0; i < shape.length; i++) shape[i] = t.dim(i);
                writer.add(name, SafetensorsDtype.F32, shape, t.segment().asSlice(t.offset() * 4, t.numel() * 4));
            }
            for (int st = 1; st < pp.stages(); st++) {
                for (var e : TensorFiles.receiveManifest(pp, st).entrySet()) TensorFiles.addReceived(writer, e.getKey(), e.getValue(), pp, st);
            }
            writer.write(file);
        }
    }
}

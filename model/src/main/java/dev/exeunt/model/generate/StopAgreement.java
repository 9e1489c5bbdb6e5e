package dev.exeunt.model.generate;

import dev.exeunt.model.nn.PipelineParallel;
import dev.exeunt.model.nn.TensorParallel;
import dev.exeunt.tensor.Scope;
import dev.exeunt.tensor.Tensor;
import java.util.List;

/**
 * A stop that one rank's listener asked for (a server's stop sequence, a client gone, a shutdown) stops
 * the sequence on every rank of a sharded or staged model, after the same token, so that all of them
 * keep running the same sequences. One small collective per decode step.
 */
final class StopAgreement {
    private StopAgreement() {}

    static void overRanks(List<DecodeSequence> seqs, TensorParallel tp, PipelineParallel pp) {
        if (seqs.isEmpty() || (tp.size() == 1 && pp.stages() == 1)) return;
        float[] stop = new float[seqs.size()];
        for (int i = 0; i < stop.length; i++) stop[i] = "stop".equals(seqs.get(i).finish) ? 1 : 0;
        if (tp.size() > 1) {
            try (var scope = Scope.open()) {
                Tensor t = Tensor.of(stop, stop.length);
                tp.allReduceMax(t);
                stop = t.toFloatArray();
            }
        }
        double[] any = new double[stop.length];
        for (int i = 0; i < stop.length; i++) any[i] = stop[i];
        pp.sumOverStages(any);
        for (int i = 0; i < any.length; i++) {
            DecodeSequence s = seqs.get(i);
            if (any[i] > 0 && s.finish == null) {
                s.finish = "stop";
                s.length = s.committed;
            }
        }
    }
}
